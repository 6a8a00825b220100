/**
 * The KV cache's blocks as the scheduler sees them: ids into the native pool, reference
 * counts, and automatic prefix caching. A full block is known by a hash of every token up to
 * its end (a chain: the previous block's hash and its own tokens), so a later request whose
 * prompt starts with the same tokens (a system prompt, the earlier turns of a chat) shares the
 * blocks instead of computing them again. Blocks nobody holds keep their contents until the
 * pool needs them (least recently used first).
 */
import { createHash } from 'node:crypto';

export interface BlockPoolOptions {
  /** Keep full prompt blocks for reuse by later requests with the same prefix. */
  prefixCaching: boolean;
}

export interface PrefixCacheStats {
  /** Full prompt blocks looked up, and how many were found. */
  queriedBlocks: number;
  hitBlocks: number;
  /** Cached blocks given up to make room. */
  evictedBlocks: number;
}

export class BlockPool {
  /** Blocks holding nothing, lowest id on top. */
  readonly #free: number[];
  readonly #refs = new Map<number, number>();
  readonly #byHash = new Map<string, number>();
  readonly #hashOf = new Map<number, string>();
  /** Cached blocks nobody holds, least recently used first (insertion order). */
  readonly #evictable = new Set<number>();
  readonly stats: PrefixCacheStats = { queriedBlocks: 0, hitBlocks: 0, evictedBlocks: 0 };

  constructor(
    readonly totalBlocks: number,
    readonly blockSize: number,
    readonly options: BlockPoolOptions,
  ) {
    this.#free = Array.from({ length: totalBlocks }, (_, i) => totalBlocks - 1 - i);
  }

  /** Blocks that can be handed out now (free, or cached and unused). */
  get freeBlocks(): number {
    return this.#free.length + this.#evictable.size;
  }

  /** Blocks holding a cached prefix (in use or not). */
  get cachedBlocks(): number {
    return this.#byHash.size;
  }

  /** `n` fresh blocks, or undefined when the pool cannot supply them (nothing taken then). */
  allocate(n: number): number[] | undefined {
    if (n > this.freeBlocks) return undefined;
    const out: number[] = [];
    while (out.length < n && this.#free.length > 0) out.push(this.#free.pop()!);
    for (const block of this.#evictable) {
      if (out.length === n) break;
      this.#forget(block);
      this.stats.evictedBlocks++;
      out.push(block);
    }
    for (const block of out) this.#refs.set(block, 1);
    return out;
  }

  /** Drops one reference to each block; unreferenced cached blocks stay for reuse. */
  release(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) {
      const block = blocks[i]!;
      const refs = (this.#refs.get(block) ?? 1) - 1;
      if (refs > 0) {
        this.#refs.set(block, refs);
        continue;
      }
      this.#refs.delete(block);
      if (this.#hashOf.has(block)) this.#evictable.add(block);
      else this.#free.push(block);
    }
  }

  /** The chain hashes of the full blocks of `tokens` (the first `count` of them). */
  hashes(tokens: ArrayLike<number>, count: number): string[] {
    const out: string[] = [];
    let previous = '';
    for (let b = 0; b < count; b++) {
      const ids = Uint32Array.from({ length: this.blockSize }, (_, i) => tokens[b * this.blockSize + i]!);
      previous = createHash('sha256').update(previous).update(new Uint8Array(ids.buffer)).digest('hex');
      out.push(previous);
    }
    return out;
  }

  /**
   * The cached blocks for the longest prefix of `hashes`, each now referenced for the
   * caller (release them like allocated ones).
   */
  acquireCached(hashes: readonly string[]): number[] {
    if (!this.options.prefixCaching) return [];
    const out: number[] = [];
    this.stats.queriedBlocks += hashes.length;
    for (const hash of hashes) {
      const block = this.#byHash.get(hash);
      if (block === undefined) break;
      this.#evictable.delete(block);
      this.#refs.set(block, (this.#refs.get(block) ?? 0) + 1);
      out.push(block);
    }
    this.stats.hitBlocks += out.length;
    return out;
  }

  /** Records that `block` (held by the caller, full, never written again) holds the tokens
   * `hash` stands for. A hash already cached elsewhere keeps its block. */
  register(block: number, hash: string): void {
    if (!this.options.prefixCaching || this.#byHash.has(hash) || this.#hashOf.has(block)) return;
    this.#byHash.set(hash, block);
    this.#hashOf.set(block, hash);
  }

  #forget(block: number): void {
    this.#evictable.delete(block);
    const hash = this.#hashOf.get(block);
    if (hash !== undefined) this.#byHash.delete(hash);
    this.#hashOf.delete(block);
  }
}
