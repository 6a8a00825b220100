/**
 * One request as the scheduler runs it: the tokens whose keys and values must be in the cache,
 * its blocks, and what it has generated (text through the streaming decoder and the stop
 * strings). The scheduler moves it between waiting and running; this file decides what a
 * sampled token means for it.
 */
import type { CompiledGrammar } from '../grammar/index.js';
import type { IncrementalDecoder } from '../tokenizer.js';
import type { FinishReason, GenerationChunk, GenerationOptions, GenerationResult, NativeSampling } from './sampling.js';
import type { StopStringMatcher } from './stop-strings.js';

export interface SequenceSetup {
  id: number;
  promptIds: number[];
  options: GenerationOptions;
  /** Tokens the sequence may generate (already capped by the context). */
  maxTokens: number;
  stopIds: ReadonlySet<number>;
  stops: StopStringMatcher;
  decoder: IncrementalDecoder;
  emit: (chunk: GenerationChunk) => void;
  /** Only the logits after the prompt are wanted (scoring); nothing is generated. */
  logitsOnly: boolean;
  /** The grammar the output follows. */
  constraint?: CompiledGrammar | undefined;
  /** The sampling options as the native layer takes them (`nativeSampling`). */
  sampling: NativeSampling;
}

type Logprob = { logprob: number; top: Array<{ token: number; logprob: number }> };

export class Sequence {
  readonly id: number;
  readonly promptIds: number[];
  readonly options: GenerationOptions;
  readonly logitsOnly: boolean;
  readonly constraint: CompiledGrammar | undefined;
  readonly sampling: NativeSampling;
  /** KV-cache blocks held, in table order. */
  blocks: number[] = [];
  /** Tokens whose keys and values are in the cache (prompt first, then generated). */
  computed = 0;
  /** Chain hashes of the full prompt blocks (prefix caching), computed once. */
  blockHashes: string[] | undefined;
  /** Leading blocks already registered in the prefix cache. */
  registered = 0;
  readonly generated: number[] = [];
  /** Tokens it may generate in all. */
  get maxTokens(): number {
    return this.#setup.maxTokens;
  }

  /** Draws its native generator has taken (a restarted sequence skips as many). */
  draws = 0;
  /** Speculative decoding: tokens proposed for it, and how many of them the model kept. */
  readonly speculation = { proposed: 0, accepted: 0 };
  /** The proposal length it asks for next (adapted to how many were kept), and how many steps
   * it waits before proposing again after proposals that were all refused. */
  #lookahead = { tokens: Infinity, pause: 0, backoff: 0 };
  finishReason: FinishReason | undefined;
  logits: Float32Array | undefined;
  text = '';
  readonly #setup: SequenceSetup;
  #firstStep = 0;
  #firstToken = 0;

  constructor(setup: SequenceSetup) {
    this.#setup = setup;
    this.id = setup.id;
    this.promptIds = setup.promptIds;
    this.options = setup.options;
    this.logitsOnly = setup.logitsOnly;
    this.constraint = setup.constraint;
    this.sampling = setup.sampling;
  }

  /** How many tokens to propose this step, at most `limit`: every verified row costs a
   * fraction of a decode step, so the length follows what was kept (doubling after a run kept
   * whole, one past the kept part otherwise), and after proposals all refused twice in a row
   * the sequence decodes plainly for 1, 2, 4, … 32 steps before trying again. */
  lookahead(limit: number): number {
    const l = this.#lookahead;
    if (l.pause > 0) {
      l.pause--;
      return 0;
    }
    return Math.min(limit, l.tokens);
  }

  /** What the model did with this step's proposals. */
  recordSpeculation(proposed: number, kept: number): void {
    this.speculation.proposed += proposed;
    this.speculation.accepted += kept;
    const l = this.#lookahead;
    if (kept === proposed) {
      l.tokens = Math.max(2 * proposed, 1);
      l.backoff = 0;
    } else if (kept > 0) {
      l.tokens = kept + 1;
      l.backoff = 0;
    } else if (proposed === 1 || l.tokens === 1) {
      l.tokens = 1;
      l.backoff = Math.min(32, Math.max(1, 2 * l.backoff));
      l.pause = l.backoff;
    } else {
      l.tokens = 1;
    }
  }

  /** Tokens known but not yet in the cache (the last sampled one, the tokens a grammar
   * forced after it, or everything generated when recomputing after a preemption). */
  get pending(): number {
    return this.promptIds.length + this.generated.length - this.computed;
  }

  /** Everything the model must have seen before the next token: prompt and generated. */
  tokenAt(i: number): number {
    return i < this.promptIds.length ? this.promptIds[i]! : this.generated[i - this.promptIds.length]!;
  }

  get done(): boolean {
    return this.finishReason !== undefined;
  }

  markStarted(now: number): void {
    if (this.#firstStep === 0) this.#firstStep = now;
  }

  /**
   * A token the model sampled for this sequence: ends it (stop token, stop string, length,
   * cancellation) or emits its text and keeps it pending for the next step.
   */
  accept(token: number, logprob: Logprob | undefined, forced: readonly number[] = []): void {
    if (this.#firstToken === 0) this.#firstToken = performance.now();
    if (this.options.signal?.aborted) {
      this.finish('cancelled');
      return;
    }
    this.#push(token, logprob);
    // Forced tokens had no choice: probability 1 under the grammar.
    for (const t of forced) if (!this.done) this.#push(t, logprob && { logprob: 0, top: [] });
  }

  #push(token: number, logprob: Logprob | undefined): void {
    const s = this.#setup;
    if (s.stopIds.has(token)) {
      this.finish('stop');
      return;
    }
    this.generated.push(token);
    const { emit: visible, stopped } = s.stops.push(s.decoder.push(token));
    this.text += visible;
    s.emit({ text: visible, tokenIds: [token], ...(logprob ? { logprobs: [{ token, ...logprob }] } : {}) });
    if (stopped) this.finish('stop', { stopString: true });
    else if (this.generated.length >= s.maxTokens) this.finish('length');
  }

  /** Ends the sequence; text held back (an incomplete character, a possible stop-string
   * start) is released unless a stop string ended it. */
  finish(reason: FinishReason, how: { stopString?: boolean } = {}): void {
    if (this.finishReason) return;
    this.finishReason = reason;
    if (!how.stopString && !this.logitsOnly) {
      const s = this.#setup;
      const rest = s.stops.push(s.decoder.flush()).emit + s.stops.flush();
      if (rest) {
        this.text += rest;
        s.emit({ text: rest, tokenIds: [] });
      }
    }
  }

  result(): GenerationResult {
    const ended = performance.now();
    const started = this.#firstStep || ended;
    const firstToken = this.#firstToken || ended;
    const promptMs = firstToken - started;
    const generationMs = ended - firstToken;
    const p = this.promptIds.length;
    const g = this.generated.length;
    return {
      text: this.text,
      promptTokenIds: this.promptIds,
      tokenIds: this.generated,
      finishReason: this.finishReason ?? 'length',
      usage: { promptTokens: p, completionTokens: g, totalTokens: p + g },
      ...(this.speculation.proposed > 0 ? { speculation: { ...this.speculation } } : {}),
      timings: {
        promptMs,
        generationMs,
        promptTps: promptMs > 0 ? (p / promptMs) * 1000 : 0,
        // The first token comes from the prefill step; the rest from decode steps.
        generationTps: generationMs > 0 ? (Math.max(g - 1, 0) / generationMs) * 1000 : 0,
      },
    };
  }
}
