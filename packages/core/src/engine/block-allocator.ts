/**
 * Hands out KV-cache block ids from the native pool. The scheduler speaks block ids; the
 * memory itself lives natively.
 */
export class BlockAllocator {
  readonly #free: number[];

  constructor(readonly totalBlocks: number) {
    // Lowest ids first, so small workloads touch the start of the pool.
    this.#free = Array.from({ length: totalBlocks }, (_, i) => totalBlocks - 1 - i);
  }

  get freeBlocks(): number {
    return this.#free.length;
  }

  /** `n` block ids, or undefined when the pool cannot supply them (nothing is taken then). */
  allocate(n: number): number[] | undefined {
    if (n > this.#free.length) return undefined;
    return this.#free.splice(this.#free.length - n, n).reverse();
  }

  release(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) this.#free.push(blocks[i]!);
  }
}
