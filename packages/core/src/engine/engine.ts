/**
 * The engine: a model, its tokenizer and chat template, and generation over the native
 * runner. One sequence runs at a time here (requests queue); the server's scheduler batches
 * many over the same runner.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { callNative, callNativeSync } from '@mistralrs/quant/errors';
import { GgufFile } from '@mistralrs/quant';

import { ChatTemplate } from '../chat-template/index.js';
import type { ChatMessage, ChatTool } from '../chat-template/index.js';
import { binding, type Binding } from '../native.js';
import { Tokenizer } from '../tokenizer.js';
import { BlockAllocator } from './block-allocator.js';
import { Generation } from './generation.js';
import { isHfFolder, resolveGgufPath } from './model-source.js';
import {
  nativeSampling,
  type FinishReason,
  type GenerationChunk,
  type GenerationOptions,
  type GenerationResult,
} from './sampling.js';
import { StopStringMatcher } from './stop-strings.js';

export interface EngineOptions {
  /** A .gguf path, a folder holding one, or a registry model id; the default model if absent. */
  model?: string;
  /** The file inside a `model` folder or hub repository. */
  file?: string;
  /** Hub token: literal:TOKEN, env:VAR, path:FILE, cache (default) or none. */
  tokenSource?: string;
  /** Hub revision (default main). */
  revision?: string;
  /** Chat template override: a file path or an inline template. */
  chatTemplate?: string;
  /** Tokens the KV cache holds (default: the model's context, at most 8192). */
  kvTokens?: number;
  /** Tokens per KV block (default 32). */
  blockSize?: number;
  /** Prompt tokens per prefill step (default 512). */
  prefillChunk?: number;
}

export type ModelInfo = Binding.ModelInfo & { path: string };

export interface CompleteRequest extends GenerationOptions {
  prompt: string | number[];
}

export interface ChatRequest extends GenerationOptions {
  messages: ChatMessage[];
  tools?: ChatTool[];
  /** Extra template variables (e.g. `enable_thinking`). */
  templateArgs?: Record<string, unknown>;
}

export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly code: 'PromptTooLongError' | 'InvalidArgumentError' | 'EngineClosedError' | 'OverloadedError',
    message: string,
  ) {
    super(message);
  }
}

export class Engine {
  readonly #allocator: BlockAllocator;
  #queue: Promise<unknown> = Promise.resolve();
  #nextSeq = 1;
  #closed = false;

  private constructor(
    private readonly model: Binding.ModelHandle,
    readonly tokenizer: Tokenizer,
    readonly chatTemplate: ChatTemplate | undefined,
    readonly info: ModelInfo,
    private readonly prefillChunk: number,
  ) {
    this.#allocator = new BlockAllocator(info.nBlocks);
  }

  static async load(options: EngineOptions = {}): Promise<Engine> {
    const path = await resolveGgufPath(options.model, options.file, {
      tokenSource: options.tokenSource,
      revision: options.revision,
    });
    const [model, tokenizer, chatTemplate] = await Promise.all([
      callNative(() => binding.loadModel(path, { kvTokens: options.kvTokens, blockSize: options.blockSize })),
      isHfFolder(path) ? hfTokenizer(path) : Tokenizer.fromGguf(path),
      loadChatTemplate(path, options.chatTemplate),
    ]);
    const info = { ...callNativeSync(() => model.info()), path };
    return new Engine(model, tokenizer, chatTemplate, info, options.prefillChunk ?? 512);
  }

  /** Plain completion of `prompt` (text, or token ids used as they are). */
  complete(request: CompleteRequest): Generation {
    return this.#enqueue(request, async () =>
      typeof request.prompt === 'string'
        ? Array.from(this.tokenizer.encode(request.prompt, { addSpecialTokens: true, parseSpecial: false }))
        : request.prompt,
    );
  }

  /** A chat turn: the template renders the messages, then the model answers. */
  chat(request: ChatRequest): Generation {
    return this.#enqueue(request, async () => {
      const template = this.chatTemplate;
      if (!template) {
        throw new EngineError('InvalidArgumentError', `${this.info.path} has no chat template; pass one with --chat-template`);
      }
      const prompt = await template.render({
        messages: request.messages,
        tools: request.tools,
        addGenerationPrompt: true,
        extra: request.templateArgs as never,
      });
      return this.encodeChatPrompt(prompt);
    });
  }

  /** Tokens of a rendered chat prompt: special-token text is parsed; BOS added only if missing. */
  encodeChatPrompt(prompt: string): number[] {
    const ids = Array.from(this.tokenizer.encode(prompt, { addSpecialTokens: false, parseSpecial: true }));
    const bos = this.tokenizer.bosId;
    if (this.tokenizer.addBos && bos !== undefined && ids[0] !== bos) ids.unshift(bos);
    return ids;
  }

  /** The raw logits of the token after `promptIds` (scoring, tests against a reference). */
  nextTokenLogits(promptIds: number[]): Promise<Float32Array> {
    const run = this.#queue.then(async () => {
      const blocks = this.#allocator.allocate(Math.ceil(promptIds.length / this.info.blockSize));
      if (!blocks) throw new EngineError('PromptTooLongError', 'the KV cache has no room for this prompt');
      const seqId = this.#nextSeq++;
      callNativeSync(() => this.model.addSequence(seqId, {}));
      try {
        const [out] = await callNative(() =>
          this.model.step([
            { seqId, tokens: Uint32Array.from(promptIds), startPos: 0, blockTable: Uint32Array.from(blocks), sample: false, returnLogits: true },
          ]),
        );
        return out!.logits!;
      } finally {
        callNativeSync(() => this.model.removeSequence(seqId));
        this.#allocator.release(blocks);
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.#closed = true;
  }

  #enqueue(options: GenerationOptions, prompt: () => Promise<number[]>): Generation {
    return new Generation((emit) => {
      const run = this.#queue.then(async () => {
        if (this.#closed) throw new EngineError('EngineClosedError', 'the engine is closed');
        return this.#generate(await prompt(), options, emit);
      });
      this.#queue = run.catch(() => undefined);
      return run;
    });
  }

  async #generate(
    promptIds: number[],
    o: GenerationOptions,
    emit: (chunk: GenerationChunk) => void,
  ): Promise<GenerationResult> {
    const context = Math.min(this.info.contextLength, this.info.nBlocks * this.info.blockSize);
    if (promptIds.length === 0) throw new EngineError('InvalidArgumentError', 'the prompt is empty');
    if (promptIds.length >= context) {
      throw new EngineError(
        'PromptTooLongError',
        `the prompt has ${promptIds.length} tokens; the context holds ${context} (prompt plus at least one generated token)`,
      );
    }
    if (o.maxTokens !== undefined && (!Number.isInteger(o.maxTokens) || o.maxTokens < 0)) {
      throw new EngineError('InvalidArgumentError', `maxTokens must be a non-negative integer, got ${o.maxTokens}`);
    }
    const maxTokens = Math.min(o.maxTokens ?? Infinity, context - promptIds.length);
    const blocks = this.#allocator.allocate(Math.ceil((promptIds.length + maxTokens) / this.info.blockSize));
    if (!blocks) throw new EngineError('PromptTooLongError', 'the KV cache has no room for this request');
    const table = Uint32Array.from(blocks);
    const seqId = this.#nextSeq++;
    callNativeSync(() => this.model.addSequence(seqId, nativeSampling(o)));

    const stopIds = new Set([...(o.ignoreEos ? [] : this.tokenizer.eosIds), ...(o.stopTokenIds ?? [])]);
    const stops = new StopStringMatcher(typeof o.stop === 'string' ? [o.stop] : (o.stop ?? []));
    const decoder = this.tokenizer.createDecoder({ skipSpecialTokens: true });
    const generated: number[] = [];
    let text = '';
    let finishReason: FinishReason = 'length';
    const started = performance.now();
    let promptDone = started;

    const step = async (tokens: number[], startPos: number, sample: boolean) => {
      const [out] = await callNative(() =>
        this.model.step([{ seqId, tokens: Uint32Array.from(tokens), startPos, blockTable: table, sample }]),
      );
      return out!;
    };

    try {
      let out: Binding.StepOutput | undefined;
      for (let at = 0; at < promptIds.length; at += this.prefillChunk) {
        const chunk = promptIds.slice(at, at + this.prefillChunk);
        out = await step(chunk, at, at + chunk.length === promptIds.length);
      }
      promptDone = performance.now();
      while (generated.length < maxTokens) {
        if (o.signal?.aborted) {
          finishReason = 'cancelled';
          break;
        }
        const token = out!.token!;
        if (stopIds.has(token)) {
          finishReason = 'stop';
          break;
        }
        generated.push(token);
        const piece = decoder.push(token);
        const { emit: visible, stopped } = stops.push(piece);
        text += visible;
        const logprobs =
          out!.logprob !== undefined && out!.logprob !== null
            ? [{ token, logprob: out!.logprob, top: out!.topLogprobs ?? [] }]
            : undefined;
        emit({ text: visible, tokenIds: [token], ...(logprobs ? { logprobs } : {}) });
        if (stopped) {
          finishReason = 'stop';
          break;
        }
        if (generated.length >= maxTokens) break;
        out = await step([token], promptIds.length + generated.length - 1, true);
      }
      if (finishReason !== 'stop') {
        const rest = stops.push(decoder.flush()).emit + stops.flush();
        if (rest) {
          text += rest;
          emit({ text: rest, tokenIds: [] });
        }
      }
    } finally {
      callNativeSync(() => this.model.removeSequence(seqId));
      this.#allocator.release(blocks);
    }

    const ended = performance.now();
    const promptMs = promptDone - started;
    const generationMs = ended - promptDone;
    return {
      text,
      promptTokenIds: promptIds,
      tokenIds: generated,
      finishReason,
      usage: {
        promptTokens: promptIds.length,
        completionTokens: generated.length,
        totalTokens: promptIds.length + generated.length,
      },
      timings: {
        promptMs,
        generationMs,
        promptTps: promptMs > 0 ? (promptIds.length / promptMs) * 1000 : 0,
        // The first token comes from the prefill step; the rest from decode steps.
        generationTps: generationMs > 0 ? (Math.max(generated.length - 1, 0) / generationMs) * 1000 : 0,
      },
    };
  }
}

function hfTokenizer(dir: string): Promise<Tokenizer> {
  const config = join(dir, 'tokenizer_config.json');
  return Tokenizer.fromFile(join(dir, 'tokenizer.json'), existsSync(config) ? { config } : {});
}

async function loadChatTemplate(path: string, override: string | undefined): Promise<ChatTemplate | undefined> {
  if (override) return ChatTemplate.fromOverride(override);
  if (isHfFolder(path)) {
    const configPath = join(path, 'tokenizer_config.json');
    if (!existsSync(configPath)) return undefined;
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { chat_template?: unknown };
    return config.chat_template ? ChatTemplate.fromTokenizerConfig(config, configPath) : undefined;
  }
  const file = await GgufFile.open(path);
  try {
    return file.getString('tokenizer.chat_template') ? ChatTemplate.fromGgufMetadata(file) : undefined;
  } finally {
    file.close();
  }
}
