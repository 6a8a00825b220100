/** Sampling and generation options shared by `complete` and `chat`. */
import type { CompiledGrammar, Grammar } from '../grammar/index.js';
import type { Binding } from '../native.js';
import type { ParsedToolCall } from '../tools/index.js';

export interface SamplingOptions {
  /** 0 (the default) is greedy decoding. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** llama.cpp-style repetition penalty over the last `penaltyLastN` tokens; 1 is off. */
  repetitionPenalty?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  penaltyLastN?: number;
  /** Token id → bias added to its logit. */
  logitBias?: Record<number, number>;
  /**
   * DRY ("Don't Repeat Yourself", as llama.cpp and mistral.rs have it): a token that would
   * extend a repeat of the latest tokens (prompt included) loses
   * `dryMultiplier · dryBase^(length − dryAllowedLength)` from its logit, for repeats at least
   * `dryAllowedLength` long. 0 (the default) is off.
   */
  dryMultiplier?: number;
  /** Default 1.75; at least 1. */
  dryBase?: number;
  /** Repeats this long go unpenalised beyond the multiplier (default 2). */
  dryAllowedLength?: number;
  /** How many of the latest tokens are searched: -1 (the default) all of them, 0 turns DRY off. */
  dryPenaltyLastN?: number;
  /** Text that ends a repeat: a repeat never reaches back past one (default
   * `DEFAULT_DRY_SEQUENCE_BREAKERS`; `[]` for none). At most 40 bytes each. */
  drySequenceBreakers?: readonly string[];
  /** Makes sampling reproducible. */
  seed?: number;
  /** Return the log-probability of each chosen token and of the `topLogprobs` best. */
  logprobs?: boolean;
  topLogprobs?: number;
}

export interface GenerationOptions extends SamplingOptions {
  /** Default: until a stop token, a stop string or the context fills. */
  maxTokens?: number;
  stop?: string | string[];
  /** Extra token ids that end generation (the model's EOS/EOT ids always do). */
  stopTokenIds?: number[];
  /** Keep generating through the model's end-of-generation tokens (benchmarks). */
  ignoreEos?: boolean;
  /** The output follows this grammar (JSON schema, regex, Lark, llguidance), or one compiled
   * beforehand with `engine.compileGrammar` (to share it between requests). */
  grammar?: Grammar | CompiledGrammar;
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface TokenLogprob {
  token: number;
  logprob: number;
}

export interface GenerationChunk {
  /** New text (whole UTF-8 characters, stop strings never half-shown). */
  text: string;
  /** Token ids generated since the previous chunk. */
  tokenIds: number[];
  logprobs?: Array<{ token: number; logprob: number; top: TokenLogprob[] }>;
}

export interface GenerationResult {
  text: string;
  /** Exactly what the model saw (chat template applied). */
  promptTokenIds: number[];
  tokenIds: number[];
  finishReason: FinishReason;
  /** Calls read from the output of a chat with tools (then `text` is what remains around them). */
  toolCalls?: ParsedToolCall[];
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
  /** Speculative decoding, when the engine proposed any tokens: how many, and how many the
   * model kept (each kept token saved one step). */
  speculation?: { proposed: number; accepted: number };
  timings: {
    /** Prompt processing, from the first prefill step to the first sampled token. */
    promptMs: number;
    generationMs: number;
    promptTps: number;
    generationTps: number;
  };
}

/** Sampling options as the native layer takes them. */
export type NativeSampling = Binding.SamplingOptions;

/** llama.cpp's and mistral.rs's default DRY breakers: a new line, a colon, a quote, an asterisk. */
export const DEFAULT_DRY_SEQUENCE_BREAKERS: readonly string[] = ['\n', ':', '"', '*'];

/** Longest DRY breaker, in UTF-8 bytes (llama.cpp's bound). */
export const MAX_DRY_BREAKER_BYTES = 40;

/** Whether the options turn DRY on (a multiplier, and a window that is not 0). */
export function dryEnabled(o: SamplingOptions): boolean {
  return o.dryMultiplier !== undefined && o.dryMultiplier !== 0 && o.dryPenaltyLastN !== 0;
}

/** Why DRY's options cannot be used, or undefined when they can. */
export function dryProblem(o: SamplingOptions): string | undefined {
  const { dryMultiplier: multiplier, dryBase: base, dryAllowedLength: allowed, dryPenaltyLastN: lastN } = o;
  if (multiplier !== undefined && !(Number.isFinite(multiplier) && multiplier >= 0)) {
    return `dryMultiplier must be a number of at least 0, got ${multiplier}`;
  }
  if (base !== undefined && !(Number.isFinite(base) && base >= 1)) return `dryBase must be a number of at least 1, got ${base}`;
  if (allowed !== undefined && !(Number.isSafeInteger(allowed) && allowed >= 0)) {
    return `dryAllowedLength must be a non-negative integer, got ${allowed}`;
  }
  if (lastN !== undefined && !(Number.isSafeInteger(lastN) && lastN >= -1 && lastN <= 2 ** 31 - 1)) {
    return `dryPenaltyLastN must be -1 (all tokens), 0 (off) or a positive integer, got ${lastN}`;
  }
  for (const breaker of o.drySequenceBreakers ?? []) {
    if (typeof breaker !== 'string' || breaker.length === 0) return 'a DRY sequence breaker must be a non-empty string';
    const bytes = Buffer.byteLength(breaker);
    if (bytes > MAX_DRY_BREAKER_BYTES) {
      return `the DRY sequence breaker ${JSON.stringify(breaker)} has ${bytes} bytes; at most ${MAX_DRY_BREAKER_BYTES} are allowed`;
    }
  }
  return undefined;
}

/**
 * The native layer's shape of sampling options. `dryBreakers`: the sequence breakers as token
 * sequences (`Tokenizer.drySequenceBreakers`), when DRY is on.
 */
export function nativeSampling(o: SamplingOptions, dryBreakers?: number[][]): NativeSampling {
  return {
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    minP: o.minP,
    repetitionPenalty: o.repetitionPenalty,
    frequencyPenalty: o.frequencyPenalty,
    presencePenalty: o.presencePenalty,
    penaltyLastN: o.penaltyLastN,
    logitBias: o.logitBias ? Object.entries(o.logitBias).map(([t, b]) => [Number(t), b]) : undefined,
    seed: o.seed,
    topLogprobs: o.logprobs || o.topLogprobs !== undefined ? (o.topLogprobs ?? 0) : undefined,
    ...(dryEnabled(o)
      ? {
          dryMultiplier: o.dryMultiplier,
          dryBase: o.dryBase,
          dryAllowedLength: o.dryAllowedLength,
          dryPenaltyLastN: o.dryPenaltyLastN,
          drySequenceBreakers: dryBreakers,
        }
      : {}),
  };
}
