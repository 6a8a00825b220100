/**
 * Batching of embedding requests: inputs of every waiting request join one native pass, up
 * to a token budget, one pass at a time (the model is one; passes queue here). A request's
 * inputs may span passes; it settles when its last input is done. A pass that fails is run
 * again request by request, so only the request at fault fails. Each input is computed
 * alone within a pass (attention never crosses inputs, matrix rows are independent), so a
 * request's embeddings do not depend on what shared its pass.
 */
import { callNative, MistralrsError } from '@mistralrs/napi-support';

import { EngineError } from '../engine/engine-error.js';
import type { Binding } from '../native.js';

export interface BatcherLimits {
  /** Tokens per pass at most (an input longer than this runs alone). */
  maxBatchTokens: number;
  /** Inputs waiting at most; a request that would exceed it is refused (`OverloadedError`). */
  maxWaitingInputs: number;
}

interface Job {
  inputs: readonly Uint32Array[];
  out: Float32Array[];
  /** Inputs not yet handed to a pass. */
  next: number;
  /** Inputs handed to a pass but not finished. */
  inFlight: number;
  resolve: (embeddings: Float32Array[]) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  settled: boolean;
}

export class EmbeddingBatcher {
  readonly #queue: Job[] = [];
  #running: Promise<void> | undefined;
  #closed = false;
  #waitingInputs = 0;

  constructor(
    private readonly model: Binding.EmbeddingModelHandle,
    private readonly limits: BatcherLimits,
  ) {}

  /** Inputs waiting for a pass. */
  get waiting(): number {
    return this.#waitingInputs;
  }

  /** Embeds `inputs` (token ids, checked by the caller) in passes shared with other requests. */
  embed(inputs: readonly Uint32Array[], signal?: AbortSignal): Promise<Float32Array[]> {
    if (this.#closed) return Promise.reject(new EngineError('EngineClosedError', 'the embedding model was closed'));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (inputs.length === 0) return Promise.resolve([]);
    if (this.#waitingInputs > 0 && this.#waitingInputs + inputs.length > this.limits.maxWaitingInputs) {
      return Promise.reject(
        new EngineError('OverloadedError', `${this.#waitingInputs} inputs are already waiting to be embedded; try again later`),
      );
    }
    return new Promise((resolve, reject) => {
      const job: Job = { inputs, out: new Array(inputs.length), next: 0, inFlight: 0, resolve, reject, signal, settled: false };
      this.#queue.push(job);
      this.#waitingInputs += inputs.length;
      signal?.addEventListener('abort', () => this.#fail(job, abortError(signal)), { once: true });
      this.#running ??= this.#drain().finally(() => {
        this.#running = undefined;
      });
    });
  }

  /** Refuses new requests and fails the waiting ones; resolves when the pass in flight ends. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of [...this.#queue]) this.#fail(job, new EngineError('EngineClosedError', 'the embedding model was closed'));
    await this.#running;
  }

  async #drain(): Promise<void> {
    for (;;) {
      const pass = this.#takePass();
      if (pass.length === 0) return;
      await this.#run(pass);
    }
  }

  /** The next pass: inputs in arrival order while the token budget lasts (at least one). */
  #takePass(): Array<{ job: Job; index: number }> {
    const pass: Array<{ job: Job; index: number }> = [];
    let tokens = 0;
    for (const job of this.#queue) {
      while (job.next < job.inputs.length) {
        const length = job.inputs[job.next]!.length;
        if (pass.length > 0 && tokens + length > this.limits.maxBatchTokens) return pass;
        pass.push({ job, index: job.next });
        tokens += length;
        job.next++;
        job.inFlight++;
        this.#waitingInputs--;
      }
    }
    return pass;
  }

  async #run(pass: Array<{ job: Job; index: number }>): Promise<void> {
    try {
      const out = await callNative(() => this.model.embed(pass.map((p) => p.job.inputs[p.index]!)));
      for (const [i, p] of pass.entries()) this.#done(p.job, p.index, out[i]!);
    } catch (error) {
      const jobs = [...new Set(pass.map((p) => p.job))];
      if (jobs.length === 1) {
        this.#fail(jobs[0]!, asEngineError(error));
        return;
      }
      // Another request's input may be at fault: run each request's part alone.
      for (const job of jobs) await this.#run(pass.filter((p) => p.job === job));
    }
  }

  #done(job: Job, index: number, embedding: Float32Array): void {
    job.out[index] = embedding;
    job.inFlight--;
    if (!job.settled && job.next === job.inputs.length && job.inFlight === 0) {
      job.settled = true;
      this.#remove(job);
      job.resolve(job.out);
    }
  }

  #fail(job: Job, error: unknown): void {
    if (job.settled) return;
    job.settled = true;
    this.#waitingInputs -= job.inputs.length - job.next;
    job.next = job.inputs.length;
    this.#remove(job);
    job.reject(error);
  }

  #remove(job: Job): void {
    const at = this.#queue.indexOf(job);
    if (at >= 0) this.#queue.splice(at, 1);
  }
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** A native failure as the engine reports it: bad input stays an `InvalidArgumentError`. */
function asEngineError(error: unknown): unknown {
  if (error instanceof MistralrsError && error.code === 'InvalidArgumentError')
    return new EngineError('InvalidArgumentError', error.message);
  return error;
}
