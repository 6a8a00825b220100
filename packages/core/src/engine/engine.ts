/**
 * The engine: a model, its tokenizer and chat template, and generation over the native
 * runner. Requests run concurrently: the scheduler batches them step by step (continuous
 * batching over the paged KV cache).
 */
import { existsSync } from 'node:fs';
import { freemem } from 'node:os';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

import { callNative, callNativeSync } from '@mistralrs/napi-support';

import { ChatTemplate } from '../chat-template/index.js';
import { GrammarCompiler, type CompiledGrammar, type Grammar } from '../grammar/index.js';
import { binding, type Binding } from '../native.js';
import { Tokenizer } from '../tokenizer.js';
import { unknownArchitecture } from './architecture-check.js';
import { planChatPrompt, renderChatPrompt, type ChatPromptRequest } from './chat-prompt.js';
import { EngineError, positiveOption } from './engine-error.js';
import { Generation } from './generation.js';
import {
  isHfFolder,
  type ModelFormat,
  modelSourceOptions,
  type ModelSourceOptions,
  resolveModelPath,
  resolveTokenizerDir,
} from './model-source.js';
import {
  DEFAULT_DRY_SEQUENCE_BREAKERS,
  dryEnabled,
  dryProblem,
  nativeSampling,
  type GenerationChunk,
  type GenerationOptions,
  type GenerationResult,
} from './sampling.js';
import { Scheduler, type SpeculationCounts } from './scheduler.js';
import { setUpSpeculation, speculationGamma, type SpeculativeOptions } from './speculative.js';
import { Sequence } from './sequence.js';
import { StopStringMatcher } from './stop-strings.js';

export interface EngineOptions {
  /** A .gguf file, a folder (Hugging Face layout, or holding one GGUF), a registry model id, or a
   * Hugging Face repository (`org/name`, `org/name:Q4_K_M`); the default model if absent. */
  model?: string;
  /** The file inside a `model` folder or Hub repository; several name the parts of a split GGUF. */
  file?: string | readonly string[];
  /** What a Hub repository must hold (`gguf` or `plain` safetensors); told by its files if absent. */
  format?: ModelFormat;
  /** Another tokenizer (mistral.rs's `-t/--tok-model-id`): a folder with `tokenizer.json`, or a
   * Hub repository. Its tokenizer and chat template win over the model's. */
  tokenizerModel?: string;
  /** Hub token: literal:TOKEN, env:VAR, path:FILE, cache (default: `HF_TOKEN`, then the token file) or none. */
  tokenSource?: string;
  /** Hub revision: a branch, tag or commit (default main). */
  revision?: string;
  /** The Hub's endpoint, cache, offline mode and progress output (defaults: `HF_ENDPOINT`,
   * `HF_HUB_CACHE`/`HF_HOME`, `HF_HUB_OFFLINE`, progress on stderr). */
  hub?: ModelSourceOptions['hub'];
  /** Chat template override: a file path or an inline template. */
  chatTemplate?: string;
  /** Tokens the KV cache holds (default: the model's context, at most 8192). */
  kvTokens?: number;
  /** Or the KV cache's size in MiB (as mistral.rs's `--pa-gpu-mem`). */
  kvCacheMb?: number;
  /** Or a fraction of the memory free when the model loads (as `--pa-gpu-mem-usage`). */
  kvCacheFraction?: number;
  /** How the KV cache stores keys and values: `f16` (default, llama.cpp's arithmetic) or
   * `q8_0` (about half the memory per token, slightly less accurate). */
  kvCacheType?: 'f16' | 'q8_0';
  /** Tokens per KV block (default 32). */
  blockSize?: number;
  /** Tokens per step at most, decode tokens and prompt chunks together (default 512). */
  prefillChunk?: number;
  /** Sequences generating together at most (default 16). */
  maxRunning?: number;
  /** Requests waiting for a place at most (default 64); more are refused (`OverloadedError`). */
  maxWaiting?: number;
  /** Reuse the KV blocks of earlier prompts with the same prefix (default true). */
  prefixCaching?: boolean;
  /** How a safetensors folder's float matrices are stored: `auto` (default: the checkpoint's
   * types), `f32`, `f16` or `bf16`. A GGUF's weights keep their types: it refuses any other. */
  dtype?: WeightDtype;
  /** Speculative decoding: proposals by prompt lookup (`ngram`) or a draft model (`draft`),
   * verified by the model in one pass; the output is exactly what the model alone gives
   * (greedy: the same tokens; sampling: the same distribution). Off by default. */
  speculative?: SpeculativeOptions;
  /** The architecture the model must be (the CLI's `-a`): a Hugging Face `model_type`, a
   * mistral.rs `-a` name or a GGUF `general.architecture` (see `resolveArchitecture`). The
   * native registry refuses a model of another architecture, naming both. */
  architecture?: string;
}

/** `EngineOptions.dtype`. */
export const WEIGHT_DTYPES = ['auto', 'f32', 'f16', 'bf16'] as const;
export type WeightDtype = (typeof WEIGHT_DTYPES)[number];

/** The loaded model, and its draft model when speculative decoding uses one. */
export type ModelInfo = Binding.ModelInfo & { path: string; draft?: Binding.DraftInfo };

export interface CompleteRequest extends GenerationOptions {
  prompt: string | number[];
}

/** A chat turn: the messages, tools and template variables (see `ChatPromptRequest`), and how
 * to generate. The prompt always ends with the header of the assistant's turn. */
export interface ChatRequest extends GenerationOptions, Omit<ChatPromptRequest, 'addGenerationPrompt'> {}

export interface EngineLoad {
  running: number;
  waiting: number;
  freeBlocks: number;
  preemptions: number;
  prefixCache: { queriedBlocks: number; hitBlocks: number; evictedBlocks: number; cachedBlocks: number };
  /** Speculative decoding so far (zeros when off). */
  speculation: SpeculationCounts;
}

export class Engine {
  readonly #scheduler: Scheduler;
  readonly #grammars: GrammarCompiler;
  #nextSeq = 1;
  #closed = false;

  private constructor(
    private readonly model: Binding.ModelHandle,
    readonly tokenizer: Tokenizer,
    readonly chatTemplate: ChatTemplate | undefined,
    readonly info: ModelInfo,
    options: EngineOptions,
  ) {
    this.#scheduler = new Scheduler(model, info.blockSize, info.nBlocks, {
      maxRunning: positiveOption(options.maxRunning, 16, 'maxRunning'),
      maxWaiting: positiveOption(options.maxWaiting, 64, 'maxWaiting'),
      stepTokens: positiveOption(options.prefillChunk, 512, 'prefillChunk'),
      // A recurrent state cannot start from cached blocks (llama-server re-processes such
      // prompts whole too).
      prefixCaching: (options.prefixCaching ?? true) && info.recurrentStateBytes === 0,
      speculate: speculationGamma(options.speculative),
    });
    this.#grammars = new GrammarCompiler(tokenizer);
  }

  static async load(options: EngineOptions = {}): Promise<Engine> {
    const unknownArch = options.architecture === undefined ? undefined : unknownArchitecture(options.architecture);
    if (unknownArch) throw new EngineError('InvalidArgumentError', unknownArch);
    const source = modelSourceOptions(options);
    const path = await resolveModelPath(options.model, options.file, { ...source, ...(options.format ? { format: options.format } : {}) });
    // `-t`: its own revision is main; the model's revision names the model's commit.
    const tokenizerDir =
      options.tokenizerModel === undefined ? undefined : await resolveTokenizerDir(options.tokenizerModel, { ...source, revision: 'main' });
    const kvBytes = kvBudgetBytes(options);
    const dtype = weightDtype(options.dtype, path);
    const hf = isHfFolder(path);
    const hfTokenizerDir = tokenizerDir ?? (hf ? path : undefined);
    // A GGUF is opened once: the model's load builds the tokenizer from the same file (unless
    // an engine on it already holds one), and the chat template is read from it too.
    const live = hfTokenizerDir ? undefined : await Tokenizer.liveOfGguf(path);
    const [model, hfParts] = await Promise.all([
      callNative(() =>
        binding.loadModel(path, {
          kvTokens: options.kvTokens,
          blockSize: options.blockSize,
          kvBytes,
          kvCacheType: options.kvCacheType,
          dtype,
          architecture: options.architecture,
          tokenizer: !hfTokenizerDir && !live,
        }),
      ),
      hfTokenizerDir
        ? Promise.all([Tokenizer.fromFolder(hfTokenizerDir), hfChatTemplate(hfTokenizerDir, options.chatTemplate)])
        : undefined,
    ]);
    const [tokenizer, chatTemplate] = hfParts
      ? // A `-t` tokenizer without a template keeps the GGUF's.
        [hfParts[0], hfParts[1] ?? (hf ? undefined : await ggufChatTemplate(path, model, options.chatTemplate))]
      : [
          live ?? (await Tokenizer.fromLoadedModel(path, () => callNativeSync(() => model.takeTokenizer()))),
          await ggufChatTemplate(path, model, options.chatTemplate),
        ];
    const info: ModelInfo = { ...callNativeSync(() => model.info()), path };
    const foreign =
      tokenizerDir === undefined ? undefined : tokenizer.whyNotFor(info.vocabSize, `the tokenizer of ${options.tokenizerModel}`, path);
    if (foreign !== undefined) {
      model.release();
      throw new EngineError('InvalidArgumentError', foreign);
    }
    if (options.speculative) {
      if (info.recurrentStateBytes > 0) {
        model.release();
        throw new EngineError(
          'InvalidArgumentError',
          `${path}: speculative decoding is not available for \`${info.architecture}\`: it keeps a recurrent state per sequence, which cannot take back rejected proposals`,
        );
      }
      try {
        speculationGamma(options.speculative);
        const draft = await setUpSpeculation(model, options.speculative, { tokenizer, path, kvCacheType: options.kvCacheType }, source);
        if (draft) info.draft = draft;
      } catch (error) {
        model.release();
        throw error;
      }
    }
    return new Engine(model, tokenizer, chatTemplate, info, options);
  }

  /** Compiles a grammar against the model's vocabulary; rejects with an
   * `InvalidArgumentError` naming what is wrong with it. */
  compileGrammar(grammar: Grammar): Promise<CompiledGrammar> {
    return this.#grammars.compile(grammar);
  }

  /** Tokens a sequence can hold: the model's context, or the whole KV cache if smaller. */
  get contextTokens(): number {
    return Math.min(this.info.contextLength, this.info.nBlocks * this.info.blockSize);
  }

  /** Sequences generating now, requests waiting for a place, free KV blocks (cached prefix
   * blocks nobody uses count as free), preemptions so far, and the prefix cache's counts. */
  get load(): EngineLoad {
    const s = this.#scheduler;
    return {
      running: s.running,
      waiting: s.waiting,
      freeBlocks: s.freeBlocks,
      preemptions: s.preemptions,
      prefixCache: s.prefixCache,
      speculation: { ...s.speculation },
    };
  }

  /** Plain completion of `prompt` (text, or token ids used as they are). */
  complete(request: CompleteRequest): Generation {
    return this.#enqueue(request, async () =>
      typeof request.prompt === 'string'
        ? Array.from(await this.tokenizer.encodeAsync(request.prompt, { addSpecialTokens: true, parseSpecial: false }))
        : request.prompt,
    );
  }

  /** A chat turn: the template renders the messages, then the model answers. */
  chat(request: ChatRequest): Generation {
    const template = this.chatTemplate;
    const refuse = (message: string) => new Generation(() => Promise.reject(new EngineError('InvalidArgumentError', message)));
    if (!template) return refuse(`${this.info.path} has no chat template; pass one with --chat-template`);
    const plan = planChatPrompt(template, request);
    if (plan.unreadTemplateArgs.length > 0) {
      return refuse(`this model's chat template does not read ${plan.unreadTemplateArgs.join(', ')}, so it cannot be honoured`);
    }
    if (plan.toolGrammar && request.grammar) return refuse('toolChoice forces a tool call; it cannot be combined with grammar');
    const options = plan.toolGrammar ? { ...request, grammar: plan.toolGrammar } : request;
    const format = plan.toolCallFormat;
    return this.#enqueue(
      options,
      () => renderChatPrompt(this, plan),
      format &&
        ((result) => {
          const { content, calls } = format.parse(result.text);
          return calls.length > 0 ? { ...result, text: content, toolCalls: calls } : result;
        }),
    );
  }

  /** Tokens of a rendered chat prompt: special-token text is parsed; BOS added only if missing. */
  encodeChatPrompt(prompt: string): number[] {
    return this.#withBos(Array.from(this.tokenizer.encode(prompt, { addSpecialTokens: false, parseSpecial: true })));
  }

  /** `encodeChatPrompt` off the JavaScript thread. */
  async encodeChatPromptAsync(prompt: string): Promise<number[]> {
    return this.#withBos(Array.from(await this.tokenizer.encodeAsync(prompt, { addSpecialTokens: false, parseSpecial: true })));
  }

  #withBos(ids: number[]): number[] {
    const bos = this.tokenizer.bosId;
    if (this.tokenizer.addBos && bos !== undefined && ids[0] !== bos) ids.unshift(bos);
    return ids;
  }

  /** The raw logits of the token after `promptIds` (scoring, tests against a reference). */
  async nextTokenLogits(promptIds: number[]): Promise<Float32Array> {
    if (this.#closed) throw new EngineError('EngineClosedError', 'the engine is closed');
    const seq = this.#sequence(promptIds, {}, () => undefined, { logitsOnly: true });
    await this.#scheduler.submit(seq);
    if (!seq.logits) throw new EngineError('InvalidArgumentError', 'the step returned no logits');
    return seq.logits;
  }

  /**
   * Refuses new requests; those already queued or running finish, then the native model
   * (weights, KV cache) is freed at once rather than whenever the collector reaches it.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    void this.#scheduler.idle().then(() => this.model.release());
  }

  #enqueue(
    options: GenerationOptions,
    prompt: () => Promise<number[]>,
    finish: (result: GenerationResult) => GenerationResult = (r) => r,
  ): Generation {
    return new Generation(async (emit) => {
      if (this.#closed) throw new EngineError('EngineClosedError', 'the engine is closed');
      if (this.#scheduler.full) {
        throw new EngineError('OverloadedError', `${this.#scheduler.waiting} requests are already waiting; try again later`);
      }
      const problem = dryProblem(options);
      if (problem) throw new EngineError('InvalidArgumentError', problem);
      const grammar = options.grammar;
      const constraint = grammar && 'type' in grammar ? await this.compileGrammar(grammar) : grammar;
      const dryBreakers = dryEnabled(options)
        ? await this.tokenizer.drySequenceBreakers(options.drySequenceBreakers ?? DEFAULT_DRY_SEQUENCE_BREAKERS)
        : undefined;
      const seq = this.#sequence(await prompt(), options, emit, { constraint, dryBreakers });
      if (!seq.done) await this.#scheduler.submit(seq);
      return finish(seq.result());
    });
  }

  /** A checked sequence for `promptIds`: errors here reject before anything is queued. */
  #sequence(
    promptIds: number[],
    o: GenerationOptions,
    emit: (chunk: GenerationChunk) => void,
    extra: { logitsOnly?: boolean; constraint?: CompiledGrammar | undefined; dryBreakers?: number[][] | undefined },
  ): Sequence {
    const logitsOnly = extra.logitsOnly ?? false;
    const context = this.contextTokens;
    if (promptIds.length === 0) throw new EngineError('InvalidArgumentError', 'the prompt is empty');
    if (promptIds.length >= context) {
      throw new EngineError(
        'PromptTooLongError',
        `the prompt has ${promptIds.length} tokens; the context holds ${context} (prompt plus at least one generated token)`,
      );
    }
    const vocab = this.info.vocabSize;
    const bad = promptIds.find((t) => !Number.isInteger(t) || t < 0 || t >= vocab);
    if (bad !== undefined) throw new EngineError('InvalidArgumentError', `token id ${bad} is outside the vocabulary of ${vocab}`);
    if (o.maxTokens !== undefined && (!Number.isInteger(o.maxTokens) || o.maxTokens < 0)) {
      throw new EngineError('InvalidArgumentError', `maxTokens must be a non-negative integer, got ${o.maxTokens}`);
    }
    const seq = new Sequence({
      id: this.#nextSeq++,
      promptIds,
      options: o,
      maxTokens: Math.min(o.maxTokens ?? Infinity, context - promptIds.length),
      stopIds: new Set([...(o.ignoreEos ? [] : this.tokenizer.eosIds), ...(o.stopTokenIds ?? [])]),
      stops: new StopStringMatcher(typeof o.stop === 'string' ? [o.stop] : (o.stop ?? [])),
      decoder: this.tokenizer.createDecoder({ skipSpecialTokens: true }),
      emit,
      logitsOnly,
      constraint: extra.constraint,
      sampling: nativeSampling(o, extra.dryBreakers),
    });
    if (!logitsOnly && o.maxTokens === 0) seq.finish('length');
    if (o.signal?.aborted) seq.finish('cancelled');
    return seq;
  }
}

/** The `dtype` to load with: checked, and refused for a GGUF unless `auto`. */
function weightDtype(dtype: string | undefined, path: string): WeightDtype | undefined {
  if (dtype === undefined) return undefined;
  if (!(WEIGHT_DTYPES as readonly string[]).includes(dtype)) {
    throw new EngineError('InvalidArgumentError', `dtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`);
  }
  if (dtype !== 'auto' && !isHfFolder(path)) {
    throw new EngineError(
      'InvalidArgumentError',
      `${path}: a GGUF's weights keep the types in the file, so dtype ${dtype} cannot apply (it converts safetensors folders; use auto)`,
    );
  }
  return dtype as WeightDtype;
}

/** The KV cache budget in bytes, when given as a size or a fraction of free memory. */
function kvBudgetBytes(o: EngineOptions): number | undefined {
  if (o.kvCacheMb !== undefined) {
    if (!(o.kvCacheMb > 0) || !Number.isFinite(o.kvCacheMb)) {
      throw new EngineError('InvalidArgumentError', `kvCacheMb must be a positive number, got ${o.kvCacheMb}`);
    }
    return o.kvCacheMb * 2 ** 20;
  }
  if (o.kvCacheFraction !== undefined) {
    if (!(o.kvCacheFraction > 0 && o.kvCacheFraction <= 1)) {
      throw new EngineError('InvalidArgumentError', `kvCacheFraction must be in (0, 1], got ${o.kvCacheFraction}`);
    }
    return Math.floor(o.kvCacheFraction * freemem());
  }
  return undefined;
}

/** A Hugging Face folder's template: `tokenizer_config.json`'s, unless overridden. */
async function hfChatTemplate(path: string, override: string | undefined): Promise<ChatTemplate | undefined> {
  if (override) return ChatTemplate.fromOverride(override);
  const configPath = join(path, 'tokenizer_config.json');
  const config = existsSync(configPath) ? (JSON.parse(await readFile(configPath, 'utf8')) as { chat_template?: unknown }) : {};
  // transformers 5 saves the template beside the config, as chat_template.jinja.
  const jinjaPath = join(path, 'chat_template.jinja');
  if (existsSync(jinjaPath))
    return ChatTemplate.fromTokenizerConfig({ ...config, chat_template: await readFile(jinjaPath, 'utf8') }, jinjaPath);
  return config.chat_template ? ChatTemplate.fromTokenizerConfig(config, configPath) : undefined;
}

/** A GGUF's template, read from the model's own open file, unless overridden. */
async function ggufChatTemplate(path: string, model: Binding.ModelHandle, override: string | undefined): Promise<ChatTemplate | undefined> {
  if (override) return ChatTemplate.fromOverride(override);
  const found = callNativeSync(() => model.ggufChatTemplates());
  if (!found || found.templates.length === 0) return undefined;
  const entries = found.templates.map(([key, template]) => ({ key: key!, template: template! }));
  return ChatTemplate.fromGgufTemplates(basename(path), entries, found.bosToken ?? undefined, found.eosToken ?? undefined);
}
