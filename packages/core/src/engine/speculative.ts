/**
 * Speculative decoding's settings and their setup on a loaded model. The proposer lives in
 * the native runner (prompt lookup, or a draft model with its own KV cache over the same
 * block tables); the scheduler only reserves room for the proposals and reads back what the
 * model kept.
 */
import { callNative, callNativeSync } from '@mistralrs/napi-support';

import type { Binding } from '../native.js';
import { Tokenizer } from '../tokenizer.js';
import { EngineError } from './engine-error.js';
import { isHfFolder, ModelNotFoundError, type ModelSourceOptions, resolveModelPath } from './model-source.js';

/** Proposals by prompt lookup: the context's last n-gram matched against earlier tokens. */
export interface NgramSpeculation {
  kind: 'ngram';
  /** Tokens proposed per step at most (default 4). */
  gamma?: number;
  /** The shortest n-gram that may match (default 2). */
  minN?: number;
  /** The longest n-gram, tried first (default 4). */
  maxN?: number;
}

/** Proposals by a smaller model with the same tokenizer (mistral.rs's `[speculative]`). */
export interface DraftSpeculation {
  kind: 'draft';
  /** A .gguf file, a Hugging Face folder, a registry model id or a Hub repository. */
  draftModel: string;
  /** The file inside a `draftModel` folder or repository. */
  draftFile?: string;
  /** Tokens proposed per step at most (default 4). */
  gamma?: number;
  /** Stop proposing at the first guess the draft gives less probability than this (default 0). */
  pMin?: number;
}

export type SpeculativeOptions = NgramSpeculation | DraftSpeculation;

export const DEFAULT_GAMMA = 4;

/** Tokens proposed per step at most: `gamma`, checked. */
export function speculationGamma(options: SpeculativeOptions | undefined): number {
  if (!options) return 0;
  const gamma = options.gamma ?? DEFAULT_GAMMA;
  if (!Number.isInteger(gamma) || gamma < 1 || gamma > 32) {
    throw new EngineError('InvalidArgumentError', `speculative gamma must be an integer from 1 to 32, got ${gamma}`);
  }
  return gamma;
}

/** Sets the model's proposer up: prompt lookup at once; a draft model resolved, loaded and
 * checked to share the target's tokenizer token for token. */
export async function setUpSpeculation(
  model: Binding.ModelHandle,
  options: SpeculativeOptions,
  target: { tokenizer: Tokenizer; path: string; kvCacheType?: 'f16' | 'q8_0' | undefined },
  source: ModelSourceOptions,
): Promise<Binding.DraftInfo | undefined> {
  if (options.kind === 'ngram') {
    callNativeSync(() => model.useNgramProposals(options.minN, options.maxN));
    return undefined;
  }
  if ((options.kind as string) !== 'draft') {
    throw new EngineError('InvalidArgumentError', `speculative kind must be ngram or draft, got ${JSON.stringify(options.kind)}`);
  }
  const path = await resolveModelPath(options.draftModel, options.draftFile, source).catch((error: unknown) => {
    // The message starts "model …": say which model it is.
    throw error instanceof ModelNotFoundError ? new ModelNotFoundError(`draft ${error.message}`) : error;
  });
  const tokenizer = isHfFolder(path) ? await Tokenizer.fromFolder(path) : await Tokenizer.fromGguf(path);
  const different = vocabularyDifference(target.tokenizer, tokenizer);
  if (different) {
    throw new EngineError(
      'InvalidArgumentError',
      `${path}: the draft model's tokenizer differs from ${target.path}'s (${different}); a draft must share the target's vocabulary`,
    );
  }
  return callNative(() => model.loadDraft(path, { pMin: options.pMin, kvCacheType: target.kvCacheType }));
}

/** Where two tokenizers' vocabularies first differ, or undefined when they are the same. */
function vocabularyDifference(a: Tokenizer, b: Tokenizer): string | undefined {
  if (a.vocabSize !== b.vocabSize) return `${b.vocabSize} tokens against ${a.vocabSize}`;
  for (let id = 0; id < a.vocabSize; id++) {
    const [x, y] = [a.tokenText(id), b.tokenText(id)];
    if (x !== y) return `token ${id} is ${JSON.stringify(y)} against ${JSON.stringify(x)}`;
  }
  return undefined;
}
