/**
 * Embedding models (mistral.rs's `EmbeddingModelBuilder`): a sentence-transformers folder, or
 * a Hub repository holding one, loaded for `embed()`. Texts are tokenized as
 * sentence-transformers does (the prompt before the text, the tokenizer's special tokens
 * around both); token ids are used as given. Concurrent requests share native passes
 * (batcher.ts).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { callNative, callNativeSync } from '@mistralrs/napi-support';

import { EngineError, positiveOption } from '../engine/engine-error.js';
import { modelSourceOptions, type ModelSourceOptions, resolveModelPath, resolveTokenizerDir } from '../engine/model-source.js';
import { binding, type Binding } from '../native.js';
import { Tokenizer } from '../tokenizer.js';
import { EmbeddingBatcher } from './batcher.js';
import { readPrompts, type SentenceTransformerPrompts } from './prompts.js';

export interface EmbeddingModelOptions {
  /** A sentence-transformers folder, or a Hugging Face repository holding one (`org/name`). */
  model: string;
  /** Another tokenizer (`-t`): a folder with `tokenizer.json`, or a Hub repository. */
  tokenizerModel?: string;
  tokenSource?: string;
  revision?: string;
  hub?: ModelSourceOptions['hub'];
  /** How the transformer's float matrices are stored: `auto` (default), `f32`, `f16`, `bf16`. */
  dtype?: 'auto' | 'f32' | 'f16' | 'bf16';
  /** The architecture the model must be (`-a`). */
  architecture?: string;
  /** Tokens per native pass at most (default 8192); a longer input runs alone. */
  maxBatchTokens?: number;
  /** Inputs waiting at most (default 4096); more are refused (`OverloadedError`). */
  maxWaitingInputs?: number;
}

/** Texts, or token ids: one input, or a list of them. */
export type EmbeddingInput = string | readonly string[] | readonly number[] | readonly (readonly number[])[];

export interface EmbedOptions {
  /** Keep the first `dimensions` values of each embedding (Matryoshka), renormalised when the
   * model normalises its embeddings. */
  dimensions?: number;
  /** A text put before each text input (not before token ids). */
  prompt?: string;
  /** One of the model's prompts by name (`query`, `document`…); the model's default prompt,
   * if it has one, when neither this nor `prompt` is given. */
  promptName?: string;
  /** Cut inputs longer than the model takes (keeping the tokenizer's special tokens) instead
   * of refusing them (mistral.rs's `truncate_sequence`). */
  truncate?: boolean;
  signal?: AbortSignal;
}

export interface EmbeddingResult {
  /** One per input, in order. */
  embeddings: Float32Array[];
  /** Tokens of all inputs together, as the model saw them. */
  promptTokens: number;
}

export type EmbeddingModelInfo = Binding.EmbeddingModelInfo & { path: string };

export class EmbeddingModel {
  readonly #batcher: EmbeddingBatcher;
  #closed = false;

  private constructor(
    private readonly model: Binding.EmbeddingModelHandle,
    readonly tokenizer: Tokenizer,
    readonly info: EmbeddingModelInfo,
    readonly prompts: SentenceTransformerPrompts,
    options: EmbeddingModelOptions,
  ) {
    this.#batcher = new EmbeddingBatcher(model, {
      maxBatchTokens: positiveOption(options.maxBatchTokens, 8192, 'maxBatchTokens'),
      maxWaitingInputs: positiveOption(options.maxWaitingInputs, 4096, 'maxWaitingInputs'),
    });
  }

  static async load(options: EmbeddingModelOptions): Promise<EmbeddingModel> {
    const source = modelSourceOptions(options);
    const path = await resolveModelPath(options.model, undefined, { ...source, format: 'plain' });
    if (!statSync(path).isDirectory()) {
      throw new EngineError('InvalidArgumentError', `${path}: an embedding model is a sentence-transformers folder, not a file`);
    }
    const tokenizerDir =
      options.tokenizerModel === undefined ? path : await resolveTokenizerDir(options.tokenizerModel, { ...source, revision: 'main' });
    if (!existsSync(join(tokenizerDir, 'tokenizer.json'))) {
      throw new EngineError('InvalidArgumentError', `${tokenizerDir}: no tokenizer.json (pass another tokenizer with -t)`);
    }
    let prompts: SentenceTransformerPrompts;
    try {
      prompts = readPrompts(path);
    } catch (error) {
      throw new EngineError('InvalidArgumentError', (error as Error).message);
    }
    const [model, tokenizer] = await Promise.all([
      callNative(() => binding.loadEmbeddingModel(path, { dtype: options.dtype, architecture: options.architecture })),
      Tokenizer.fromFolder(tokenizerDir),
    ]);
    const info = { ...callNativeSync(() => model.info()), path };
    const foreign = tokenizer.whyNotFor(info.vocabSize, `the tokenizer of ${tokenizerDir}`, path);
    if (foreign !== undefined) {
      model.release();
      throw new EngineError('InvalidArgumentError', foreign);
    }
    return new EmbeddingModel(model, tokenizer, info, prompts, options);
  }

  /** Inputs waiting for a native pass. */
  get waiting(): number {
    return this.#batcher.waiting;
  }

  /** The token ids each input becomes (the prompt and special tokens included), checked. */
  async tokenize(input: EmbeddingInput, options: Omit<EmbedOptions, 'dimensions' | 'signal'> = {}): Promise<Uint32Array[]> {
    const prompt = this.#prompt(options);
    const items = inputList(input);
    const ids = await Promise.all(
      items.map((item) => (typeof item === 'string' ? this.#encode(prompt + item, options.truncate ?? false) : this.#checkIds(item))),
    );
    ids.forEach((seq, i) => {
      if (seq.length === 0) throw new EngineError('InvalidArgumentError', `input ${i} is empty: it has no tokens to embed`);
      if (seq.length > this.info.maxTokens) {
        throw new EngineError(
          'InvalidArgumentError',
          `input ${i} has ${seq.length} tokens, more than the ${this.info.maxTokens} this model takes (truncate to cut it)`,
        );
      }
    });
    return ids;
  }

  /** One embedding per input. */
  async embed(input: EmbeddingInput, options: EmbedOptions = {}): Promise<EmbeddingResult> {
    if (this.#closed) throw new EngineError('EngineClosedError', 'the embedding model was closed');
    const dimensions = options.dimensions;
    if (dimensions !== undefined && !(Number.isInteger(dimensions) && dimensions >= 1 && dimensions <= this.info.dimensions)) {
      throw new EngineError(
        'InvalidArgumentError',
        `dimensions must be a whole number from 1 to ${this.info.dimensions}, got ${dimensions}`,
      );
    }
    const ids = await this.tokenize(input, options);
    const full = await this.#batcher.embed(ids, options.signal);
    const embeddings =
      dimensions === undefined || dimensions === this.info.dimensions
        ? full
        : full.map((v) => truncated(v, dimensions, this.info.normalize));
    return { embeddings, promptTokens: ids.reduce((n, seq) => n + seq.length, 0) };
  }

  /** transformers' `last_hidden_state` of each input (`[tokens × hidden]`), before pooling. */
  async hiddenStates(ids: readonly Uint32Array[]): Promise<Float32Array[]> {
    return callNative(() => this.model.hiddenStates([...ids]));
  }

  /** Fails waiting requests, waits for the pass in flight, frees the model. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#batcher.close();
    this.model.release();
  }

  #prompt(options: Pick<EmbedOptions, 'prompt' | 'promptName'>): string {
    if (options.prompt !== undefined && options.promptName !== undefined) {
      throw new EngineError('InvalidArgumentError', 'give prompt or promptName, not both');
    }
    if (options.prompt !== undefined) return options.prompt;
    const name = options.promptName ?? this.prompts.defaultPromptName;
    if (name === undefined) return '';
    const text = this.prompts.prompts[name];
    if (text === undefined) {
      const known = Object.keys(this.prompts.prompts);
      throw new EngineError(
        'InvalidArgumentError',
        `this model has no prompt named ${JSON.stringify(name)} (${known.length > 0 ? `it has ${known.join(', ')}` : 'it has none'})`,
      );
    }
    return text;
  }

  /** A text's ids as sentence-transformers makes them; when too long and `truncate` is set,
   * the text's own tokens are cut and the special tokens kept, as its tokenizer truncates. */
  async #encode(text: string, truncate: boolean): Promise<Uint32Array> {
    const ids = await this.tokenizer.encodeAsync(text, { addSpecialTokens: true, parseSpecial: false });
    if (ids.length <= this.info.maxTokens || !truncate) return ids;
    const plain = await this.tokenizer.encodeAsync(text, { addSpecialTokens: false, parseSpecial: false });
    const head = indexOfRun(ids, plain);
    if (head < 0) return ids.slice(0, this.info.maxTokens);
    const tail = ids.length - head - plain.length;
    const keep = Math.max(0, this.info.maxTokens - head - tail);
    return Uint32Array.from([...ids.subarray(0, head + keep), ...ids.subarray(head + plain.length)]);
  }

  #checkIds(ids: readonly number[]): Uint32Array {
    const bad = ids.find((t) => !Number.isInteger(t) || t < 0 || t >= this.info.vocabSize);
    if (bad !== undefined)
      throw new EngineError('InvalidArgumentError', `token id ${bad} is not in the vocabulary (0 to ${this.info.vocabSize - 1})`);
    return Uint32Array.from(ids);
  }
}

/** The inputs of a request: a text or an id list alone is one input. */
function inputList(input: EmbeddingInput): ReadonlyArray<string | readonly number[]> {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input))
    throw new EngineError('InvalidArgumentError', 'input must be a string, a list of strings, a list of token ids or a list of such lists');
  if (input.length === 0) throw new EngineError('InvalidArgumentError', 'input is an empty list');
  if (input.every((x) => typeof x === 'number')) return [input as readonly number[]];
  if (input.every((x) => typeof x === 'string')) return input as readonly string[];
  if (input.every((x) => Array.isArray(x) && x.every((t: unknown) => typeof t === 'number')))
    return input as ReadonlyArray<readonly number[]>;
  throw new EngineError(
    'InvalidArgumentError',
    'input must be a string, a list of strings, a list of token ids or a list of such lists, not a mix',
  );
}

/** Where `run` starts inside `ids` (-1 when it does not occur). */
function indexOfRun(ids: Uint32Array, run: Uint32Array): number {
  outer: for (let i = 0; i + run.length <= ids.length; i++) {
    for (let j = 0; j < run.length; j++) if (ids[i + j] !== run[j]) continue outer;
    return i;
  }
  return -1;
}

/** The first `dimensions` values, renormalised (to unit length) when `normalize`. */
function truncated(v: Float32Array, dimensions: number, normalize: boolean): Float32Array {
  const out = v.slice(0, dimensions);
  if (!normalize) return out;
  let sum = 0;
  for (const x of out) sum += x * x;
  const norm = Math.max(Math.sqrt(sum), 1e-12);
  for (let i = 0; i < out.length; i++) out[i]! /= norm;
  return out;
}
