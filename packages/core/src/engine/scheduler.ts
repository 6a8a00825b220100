/**
 * Continuous batching: each step runs every decoding sequence (one token each) and chunks of
 * the prompts being prefilled, up to a token budget, in one native call. Sequences join when
 * the KV cache has blocks for their prompt; when a growing sequence finds no free block, the
 * most recently admitted one gives its blocks back and is recomputed later (preemption). A
 * sequence's results never depend on what else is in the step: the native kernels group and
 * order their arithmetic per sequence.
 *
 * Prefix caching: the full blocks of a prompt are registered once computed, and a later
 * prompt starting with the same tokens starts from them. Only prompt blocks are shared, and
 * never the block that would leave a single token to compute: those were computed exactly as
 * the new request would compute them (in the same groups of rows, by the same attention
 * order), so outputs are the same bits with the cache on and off.
 */
import { BlockPool, type PrefixCacheStats } from '@mistralrs/paged-attn';
import { callNative, callNativeSync, MistralrsError } from '@mistralrs/napi-support';

import type { Binding } from '../native.js';
import { EngineError } from './engine-error.js';
import type { Sequence } from './sequence.js';

export interface SchedulerLimits {
  /** Sequences in the running batch at most. */
  maxRunning: number;
  /** Requests waiting for a place at most; beyond it, requests are refused at once. */
  maxWaiting: number;
  /** Tokens per step at most (decode tokens plus prefill chunks). */
  stepTokens: number;
  /** Reuse the cached blocks of earlier prompts with the same prefix. */
  prefixCaching: boolean;
  /** Speculative decoding: tokens proposed per step at most (0: off). The model's proposer
   * (prompt lookup or a draft model) is set on the native model. */
  speculate: number;
}

/** Speculative decoding since the engine started: verify steps, tokens proposed and kept. */
export interface SpeculationCounts {
  steps: number;
  proposed: number;
  accepted: number;
}

interface Entry {
  seq: Sequence;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** A sequence's part of a step: tokens fed, and proposals it may have verified after them. */
interface Planned {
  entry: Entry;
  tokens: number;
  speculate: number;
}

export class Scheduler {
  readonly #pool: BlockPool;
  readonly #waiting: Entry[] = [];
  /** In admission order: the last one is preempted first. */
  readonly #running: Entry[] = [];
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(
    private readonly model: Binding.ModelHandle,
    private readonly blockSize: number,
    nBlocks: number,
    private readonly limits: SchedulerLimits,
  ) {
    // Shared blocks must start on a boundary of the kernels' groups of four rows.
    const prefixCaching = limits.prefixCaching && blockSize % 4 === 0;
    this.#pool = new BlockPool(nBlocks, blockSize, { prefixCaching });
  }

  get totalBlocks(): number {
    return this.#pool.totalBlocks;
  }

  get prefixCache(): PrefixCacheStats & { cachedBlocks: number } {
    return { ...this.#pool.stats, cachedBlocks: this.#pool.cachedBlocks };
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  get running(): number {
    return this.#running.length;
  }

  get freeBlocks(): number {
    return this.#pool.freeBlocks;
  }

  /** Sequences preempted so far (blocks given back, recomputed later). */
  preemptions = 0;

  readonly speculation: SpeculationCounts = { steps: 0, proposed: 0, accepted: 0 };

  /** Whether a new request would be refused for lack of queue space. */
  get full(): boolean {
    return this.#waiting.length >= this.limits.maxWaiting;
  }

  /** Settles once no step is running or due (the loop has ended). */
  async idle(): Promise<void> {
    while (this.#loop) await this.#loop;
  }

  /** Queues `seq`; settles when it has finished (or failed). */
  submit(seq: Sequence): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const entry = { seq, resolve, reject };
      this.#waiting.push(entry);
      // A request cancelled while it waits leaves the queue at once.
      seq.options.signal?.addEventListener('abort', () => this.#wake?.(), { once: true });
      this.#ensureLoop();
    });
  }

  #ensureLoop(): void {
    this.#wake?.();
    if (this.#loop) return;
    this.#loop = this.#run().finally(() => {
      this.#loop = undefined;
      // Work may have arrived while the loop was ending.
      if (this.#waiting.length > 0 || this.#running.length > 0) this.#ensureLoop();
    });
  }

  async #run(): Promise<void> {
    for (;;) {
      this.#dropCancelled();
      this.#admit();
      if (this.#running.length === 0) {
        if (this.#waiting.length === 0) return;
        // Nothing fits: the head of the queue waits for blocks that nothing will free.
        const head = this.#waiting.shift()!;
        this.#fail(head, new Error('the KV cache cannot hold this request'));
        continue;
      }
      const batch = this.#plan();
      if (batch.length === 0) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          setTimeout(resolve, 5);
        });
        continue;
      }
      await this.#step(batch);
    }
  }

  /** Sequences whose clients went away, waiting or running, end now and free their blocks. */
  #dropCancelled(): void {
    for (const list of [this.#waiting, this.#running]) {
      for (let i = list.length - 1; i >= 0; i--) {
        const entry = list[i]!;
        if (!entry.seq.options.signal?.aborted) continue;
        list.splice(i, 1);
        entry.seq.finish('cancelled');
        this.#complete(entry);
      }
    }
  }

  /** Admits waiting sequences in order while the batch has room and the cache has blocks
   * for the whole prompt (so that prefill never has to preempt). */
  #admit(): void {
    while (this.#waiting.length > 0 && this.#running.length < this.limits.maxRunning) {
      const entry = this.#waiting[0]!;
      const seq = entry.seq;
      const cached = this.#cachedPrefix(seq);
      const needed = this.#blocksFor(seq.promptIds.length + seq.generated.length + 1) - cached.length;
      const blocks = this.#pool.allocate(needed);
      if (!blocks) {
        // Whatever is running will free blocks; with nothing running, `#run` fails it.
        this.#pool.release(cached);
        return;
      }
      seq.blocks = [...cached, ...blocks];
      seq.computed = cached.length * this.blockSize;
      seq.registered = cached.length;
      this.#waiting.shift();
      try {
        const history = seq.computed > 0 ? Uint32Array.from(seq.promptIds.slice(0, seq.computed)) : undefined;
        const generated = seq.constraint && seq.generated.length > 0 ? Uint32Array.from(seq.generated) : undefined;
        callNativeSync(() => this.model.addSequence(seq.id, seq.sampling, history, seq.constraint, generated, seq.draws));
      } catch (error) {
        this.#fail(entry, error);
        continue;
      }
      this.#running.push(entry);
    }
  }

  /** The cached blocks `seq` can start from: full prompt blocks, leaving at least two prompt
   * tokens to compute (one alone would take the single-token attention order). */
  #cachedPrefix(seq: Sequence): number[] {
    if (!this.#pool.options.prefixCaching) return [];
    seq.blockHashes ??= this.#pool.hashes(seq.promptIds, Math.floor(seq.promptIds.length / this.blockSize));
    let usable = seq.blockHashes.length;
    while (usable > 0 && seq.promptIds.length - usable * this.blockSize < 2) usable--;
    return this.#pool.acquireCached(seq.blockHashes.slice(0, usable));
  }

  /** Registers the prompt blocks of `seq` computed so far for later requests. */
  #registerComputed(seq: Sequence): void {
    const hashes = seq.blockHashes;
    if (!hashes) return;
    while (seq.registered < hashes.length && (seq.registered + 1) * this.blockSize <= seq.computed) {
      this.#pool.register(seq.blocks[seq.registered]!, hashes[seq.registered]!);
      seq.registered++;
    }
  }

  #blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** This step's work: every decoding sequence, then prefill chunks within the budget.
   * Blocks for the new tokens are taken here, preempting when none are free; blocks for
   * speculative proposals only when free ones are left.
   *
   * What a sequence computes in a step never depends on the others: a prompt always goes in
   * chunks of `stepTokens` from its start (never cut shorter to fit a step), and generated
   * tokens are computed row by row in decode order (`decodeOrder`), so their logits are the
   * same bits whether one, several (grammar-forced tokens, proposals, recomputation after a
   * preemption) or all of them are fed in a step. Kernels group and order their arithmetic
   * per sequence, so its logits are the same bits as when it runs alone. */
  #plan(): Planned[] {
    const plan: Planned[] = [];
    let budget = this.limits.stepTokens;
    const work = (e: Entry) => {
      const seq = e.seq;
      const prompt = seq.promptIds.length;
      return Math.min(seq.computed < prompt ? prompt - seq.computed : seq.pending, this.limits.stepTokens);
    };
    const isDecode = (e: Entry) => e.seq.computed >= e.seq.promptIds.length;
    const ordered = [...this.#running.filter(isDecode), ...this.#running.filter((e) => !isDecode(e))];
    for (const entry of ordered) {
      if (!this.#running.includes(entry)) continue; // preempted while planning
      const tokens = work(entry);
      if (tokens > budget && plan.length > 0) continue;
      if (!this.#reserve(entry, entry.seq.computed + tokens)) continue;
      budget -= tokens;
      plan.push({ entry, tokens, speculate: 0 });
    }
    // A sequence preempted after it was planned must not run.
    const planned = plan.filter((p) => this.#running.includes(p.entry));
    // Proposals last: they take what budget and free blocks the step's own tokens left.
    for (const p of planned) {
      p.speculate = this.#speculation(p.entry, p.tokens, budget);
      budget -= p.speculate;
    }
    return planned;
  }

  /** How many tokens `entry` may have proposed after its `tokens` this step: within the
   * limit, the step's budget, what it may still generate, and blocks that are free now (a
   * proposal never preempts anyone). 0 unless all its known tokens are fed and it samples. */
  #speculation(entry: Entry, tokens: number, budget: number): number {
    const seq = entry.seq;
    if (this.limits.speculate === 0 || seq.logitsOnly || seq.computed < seq.promptIds.length || tokens !== seq.pending) return 0;
    const wanted = seq.lookahead(Math.min(this.limits.speculate, budget, seq.maxTokens - seq.generated.length - 1));
    if (wanted <= 0) return 0;
    const end = seq.computed + tokens;
    const extra = this.#blocksFor(end + wanted) - seq.blocks.length;
    if (extra > 0) {
      const blocks = this.#pool.allocate(extra);
      if (blocks) seq.blocks.push(...blocks);
    }
    return Math.max(0, Math.min(wanted, seq.blocks.length * this.blockSize - end));
  }

  /** Blocks for `tokens` positions of `entry`, preempting later-admitted sequences (or
   * itself, when it is the latest) if the pool is empty. False if it was preempted. */
  #reserve(entry: Entry, tokens: number): boolean {
    const seq = entry.seq;
    for (;;) {
      const needed = this.#blocksFor(tokens) - seq.blocks.length;
      if (needed <= 0) return true;
      const blocks = this.#pool.allocate(needed);
      if (blocks) {
        seq.blocks.push(...blocks);
        return true;
      }
      const victim = this.#running[this.#running.length - 1]!;
      this.#preempt(victim);
      if (victim === entry) return false;
    }
  }

  /** Gives the victim's blocks back; it waits at the head of the queue and recomputes its
   * prompt and generated tokens when readmitted. */
  #preempt(victim: Entry): void {
    const seq = victim.seq;
    this.#running.splice(this.#running.indexOf(victim), 1);
    this.#pool.release(seq.blocks);
    seq.blocks = [];
    seq.computed = 0;
    this.preemptions++;
    callNativeSync(() => this.model.removeSequence(seq.id));
    this.#waiting.unshift(victim);
  }

  async #step(plan: Planned[]): Promise<void> {
    const now = performance.now();
    const inputs = plan.map(({ entry: { seq }, tokens, speculate }) => {
      seq.markStarted(now);
      const ids = new Uint32Array(tokens);
      for (let i = 0; i < tokens; i++) ids[i] = seq.tokenAt(seq.computed + i);
      const last = seq.computed + tokens === seq.promptIds.length + seq.generated.length;
      return {
        seqId: seq.id,
        tokens: ids,
        startPos: seq.computed,
        blockTable: Uint32Array.from(seq.blocks),
        sample: last && !seq.logitsOnly,
        returnLogits: last && seq.logitsOnly,
        decodeOrder: seq.computed >= seq.promptIds.length,
        speculate,
      };
    });
    let outputs: Binding.StepOutput[];
    try {
      outputs = await callNative(() => this.model.step(inputs));
    } catch (error) {
      // A step that fails fails its sequences only; the others keep running.
      for (const { entry } of plan) {
        this.#running.splice(this.#running.indexOf(entry), 1);
        this.#fail(entry, error);
      }
      return;
    }
    plan.forEach(({ entry, tokens }, i) => {
      const seq = entry.seq;
      const out = outputs[i]!;
      const kept = out.accepted ?? [];
      // Kept proposals are in the cache behind the fed tokens; anything after them is stale
      // and is overwritten by the next step.
      seq.computed += tokens + kept.length;
      seq.draws = out.draws;
      this.#registerComputed(seq);
      if (out.proposed > 0) {
        this.speculation.steps++;
        this.speculation.proposed += out.proposed;
        this.speculation.accepted += kept.length;
        seq.recordSpeculation(out.proposed, kept.length);
      }
      if (out.error) {
        // This sequence failed (its grammar allows nothing more, or the model's logits for it
        // are not finite); the others go on.
        this.#running.splice(this.#running.indexOf(entry), 1);
        this.#fail(entry, stepFailure(out.error, out.errorCode));
        return;
      }
      if (seq.logitsOnly && out.logits) {
        seq.logits = out.logits;
        seq.finish('length');
      } else if (out.token !== undefined && out.token !== null) {
        for (const k of kept) if (!seq.done) seq.accept(k.token, logprobOf(k), []);
        if (!seq.done) seq.accept(out.token, logprobOf(out), out.forced ?? []);
      }
      if (seq.done) {
        this.#running.splice(this.#running.indexOf(entry), 1);
        this.#complete(entry);
      }
    });
  }

  #release(seq: Sequence): void {
    this.#pool.release(seq.blocks);
    seq.blocks = [];
    try {
      callNativeSync(() => this.model.removeSequence(seq.id));
    } catch {
      // Never registered (it failed before admission): nothing to remove.
    }
  }

  #complete(entry: Entry): void {
    this.#release(entry.seq);
    entry.resolve();
  }

  #fail(entry: Entry, error: unknown): void {
    this.#release(entry.seq);
    entry.reject(error);
  }
}

/** A token's log-probabilities as the step returned them, when asked for. */
function logprobOf(t: {
  logprob?: number | null;
  topLogprobs?: Binding.TokenLogprob[] | null;
}): { logprob: number; top: Binding.TokenLogprob[] } | undefined {
  return t.logprob !== undefined && t.logprob !== null ? { logprob: t.logprob, top: t.topLogprobs ?? [] } : undefined;
}

/** The error of a sequence that failed in a step: a grammar that allows nothing is the
 * request's doing; logits that are not finite are the model's (nothing is sampled). */
function stepFailure(message: string, code: string | null | undefined): Error {
  if (code === 'NonFiniteLogitsError') return new EngineError('ModelOutputError', message);
  return new MistralrsError('InvalidArgumentError', `constrained generation failed: ${message}`);
}
