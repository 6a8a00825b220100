/** Sampling and generation options shared by `complete` and `chat`. */
import type { CompiledGrammar, Grammar } from '../grammar/index.js';
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
  timings: {
    /** Prompt processing, from the first prefill step to the first sampled token. */
    promptMs: number;
    generationMs: number;
    promptTps: number;
    generationTps: number;
  };
}

/** The native layer's shape of sampling options. */
export function nativeSampling(o: SamplingOptions) {
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
  };
}
