import type { GenerationChunk, GenerationResult } from './sampling.js';

/**
 * A running generation: iterate it for chunks as they come (`for await`), and/or await
 * `result` for the whole. It runs whether or not anyone iterates; chunks are buffered.
 */
export class Generation implements AsyncIterable<GenerationChunk> {
  readonly result: Promise<GenerationResult>;
  readonly #chunks: GenerationChunk[] = [];
  #waiting: (() => void) | undefined;
  #done = false;
  #error: unknown;

  constructor(run: (emit: (chunk: GenerationChunk) => void) => Promise<GenerationResult>) {
    this.result = run((chunk) => {
      this.#chunks.push(chunk);
      this.#wake();
    }).then(
      (r) => {
        this.#finish();
        return r;
      },
      (e: unknown) => {
        this.#error = e;
        this.#finish();
        throw e;
      },
    );
    // The error also reaches iterators; an unobserved `result` must not crash the process.
    this.result.catch(() => undefined);
  }

  #wake(): void {
    const wake = this.#waiting;
    this.#waiting = undefined;
    wake?.();
  }

  #finish(): void {
    this.#done = true;
    this.#wake();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    for (;;) {
      const chunk = this.#chunks.shift();
      if (chunk) {
        yield chunk;
        continue;
      }
      if (this.#done) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#waiting = resolve));
    }
  }
}
