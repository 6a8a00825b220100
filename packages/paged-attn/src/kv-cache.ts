/**
 * The paged KV cache's storage and attention from TypeScript: the same native code the engine's
 * forward passes run (`native/crates/paged-attn`), for callers with their own tensors. Keys and
 * values live in blocks of `blockSize` tokens; a sequence is a block table (block ids in
 * order), so token `p` sits in block `table[floor(p / blockSize)]` at slot `p % blockSize`.
 */
import { callNative, callNativeSync } from '@mistralrs/napi-support';

import { binding, type Binding } from './native.js';

export interface KvCacheConfig {
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  /** Tokens per block. */
  blockSize: number;
  /** Blocks in the pool, shared by every sequence. */
  nBlocks: number;
  /** `f16` (default: llama.cpp's cache) or `q8_0` (about half the memory, slightly less exact). */
  dtype?: 'f16' | 'q8_0';
}

export interface AttentionOptions {
  /** Query heads; a multiple of the cache's KV heads (grouped-query attention). */
  nHeads: number;
  /** Multiplies q·k (default 1/√headDim). */
  scale?: number;
  /** `cap · tanh(s / cap)` on the scores (Gemma 2). */
  softcap?: number;
  /** Keys more than `slidingWindow - 1` positions behind a query are masked. */
  slidingWindow?: number;
  /** A logit per query head that joins every softmax's denominator and attends to nothing
   * (gpt-oss's attention sinks). */
  sinks?: Float32Array;
}

export class PagedKvCache {
  private constructor(
    private readonly handle: Binding.KvCacheHandle,
    readonly config: Readonly<KvCacheConfig>,
  ) {}

  /** Allocates the pool; throws a `MistralrsError` (`InvalidArgumentError`) for a bad shape. */
  static create(config: KvCacheConfig): PagedKvCache {
    const handle = callNativeSync(() => new binding.KvCacheHandle(config));
    return new PagedKvCache(handle, Object.freeze({ ...config }));
  }

  /** Bytes the pool holds. */
  get sizeBytes(): number {
    return callNativeSync(() => this.handle.sizeBytes);
  }

  /**
   * Stores `keys` and `values` (`[n, nKvHeads, headDim]` each) at positions
   * `startPos..startPos + n` of the sequence whose blocks are `blockTable`. The table is checked
   * whole first: a bad one writes nothing.
   */
  write(layer: number, blockTable: Uint32Array, startPos: number, keys: Float32Array, values: Float32Array): void {
    callNativeSync(() => this.handle.write(layer, blockTable, startPos, keys, values));
  }

  /** Keys (or values) of positions `startPos..startPos + length` as stored: `[length, nKvHeads, headDim]`. */
  read(layer: number, blockTable: Uint32Array, startPos: number, length: number, which: 'keys' | 'values'): Float32Array {
    return callNativeSync(() => this.handle.read(layer, blockTable, startPos, length, which === 'values'));
  }

  /** Copies a block's keys and values (every layer) to another block (copy-on-write). */
  copyBlock(from: number, to: number): void {
    callNativeSync(() => this.handle.copyBlock(from, to));
  }

  /**
   * Causal attention of `queries` (`[n, nHeads, headDim]` at positions `startPos..startPos + n`,
   * their own keys and values already written) over the sequence of `blockTable`, off the
   * JavaScript thread: `[n, nHeads, headDim]`.
   */
  attend(
    layer: number,
    blockTable: Uint32Array,
    queries: Float32Array,
    startPos: number,
    options: AttentionOptions,
  ): Promise<Float32Array> {
    return callNative(() => this.handle.attend(layer, blockTable, queries, startPos, options));
  }
}
