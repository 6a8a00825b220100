/**
 * The paged KV cache's native storage and attention from TypeScript, against a plain
 * reference written here: the stored values are the inputs rounded to f16 exactly; attention
 * over any block table equals the same sequence in contiguous blocks bit for bit, and a
 * double-precision reference of llama.cpp's arithmetic (f16 query, keys, values and
 * probabilities, as its non-flash CPU path rounds them) within REFERENCE_TOLERANCE.
 */
import { describe, expect, it } from '@jest/globals';

import { MistralrsError } from '@mistralrs/napi-support';

import { PagedKvCache, type AttentionOptions } from '../../src/index.js';

/**
 * max |ours - reference| / max |reference|. The kernels compute the probabilities in f32
 * (ggml's exp, then one multiply by 1/sum) before rounding them to f16, the reference in
 * f64: where the two straddle an f16 rounding boundary, a probability moves by one f16 step
 * (2^-11 of itself at most), so an output moves by at most 2^-11 of the largest value.
 * Measured here: 2.8e-5 (plain), 3.9e-6 (soft-capped), 7.5e-8 (windowed).
 */
const REFERENCE_TOLERANCE = 2 ** -11;

/** Round to the nearest f16 (ties to even), as the cache stores values. */
function f16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const exponent = Math.max(Math.floor(Math.log2(Math.abs(x))), -14);
  const step = 2 ** (exponent - 10);
  const q = x / step;
  const floor = Math.floor(q);
  const rounded = q - floor === 0.5 ? (floor % 2 === 0 ? floor : floor + 1) : Math.round(q);
  return rounded * step;
}

/** A seeded generator (mulberry32), values in [-1, 1). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

const SHAPE = { nLayers: 2, nKvHeads: 2, headDim: 32, blockSize: 4, nBlocks: 16 } as const;
const N_HEADS = 4; // two query heads per KV head

function fill(n: number, rand: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rand() * scale);
}

/** llama.cpp's attention in f64 over f16-rounded operands; `keys`/`values` as the cache holds them. */
function reference(q: Float32Array, keys: Float32Array, values: Float32Array, startPos: number, options: AttentionOptions): Float64Array {
  const { nKvHeads, headDim } = SHAPE;
  const nHeads = options.nHeads;
  const n = q.length / (nHeads * headDim);
  const scale = options.scale ?? 1 / Math.sqrt(headDim);
  const out = new Float64Array(q.length);
  for (let t = 0; t < n; t++) {
    const pos = startPos + t;
    const first = options.slidingWindow ? Math.max(0, pos - options.slidingWindow + 1) : 0;
    for (let h = 0; h < nHeads; h++) {
      const kvHead = Math.floor(h / (nHeads / nKvHeads));
      const scores: number[] = [];
      for (let p = first; p <= pos; p++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) {
          dot += f16(q[(t * nHeads + h) * headDim + d]!) * keys[(p * nKvHeads + kvHead) * headDim + d]!;
        }
        let s = dot * scale;
        if (options.softcap) s = options.softcap * Math.tanh(s / options.softcap);
        scores.push(s);
      }
      const sink = options.sinks?.[h];
      const max = Math.max(...scores, sink ?? -Infinity);
      const exps = scores.map((s) => Math.exp(s - max));
      const sum = exps.reduce((a, b) => a + b, 0) + (sink === undefined ? 0 : Math.exp(sink - max));
      for (let i = 0; i < exps.length; i++) {
        const prob = f16(exps[i]! / sum);
        const p = first + i;
        for (let d = 0; d < headDim; d++) {
          out[(t * nHeads + h) * headDim + d]! += prob * values[(p * nKvHeads + kvHead) * headDim + d]!;
        }
      }
    }
  }
  return out;
}

function relativeError(ours: Float32Array, want: Float64Array): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(ours[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return err / scale;
}

describe('PagedKvCache', () => {
  const row = SHAPE.nKvHeads * SHAPE.headDim;
  const scattered = Uint32Array.from([9, 2, 14, 5, 0]); // 5 blocks: up to 20 tokens
  const contiguous = Uint32Array.from([10, 11, 12, 13, 15]);

  it('stores keys and values rounded to f16, through any block table', () => {
    const cache = PagedKvCache.create(SHAPE);
    const rand = random(1);
    const keys = fill(18 * row, rand, 3);
    const values = fill(18 * row, rand, 3);
    cache.write(1, scattered, 0, keys.subarray(0, 7 * row), values.subarray(0, 7 * row));
    cache.write(1, scattered, 7, keys.subarray(7 * row), values.subarray(7 * row));
    expect(Array.from(cache.read(1, scattered, 0, 18, 'keys'))).toEqual(Array.from(keys, f16));
    expect(Array.from(cache.read(1, scattered, 0, 18, 'values'))).toEqual(Array.from(values, f16));
    // Layer 0 of the same blocks was never written.
    expect(cache.read(0, scattered, 0, 18, 'keys').every((v) => v === 0)).toBe(true);
    expect(cache.sizeBytes).toBe(2 * SHAPE.nLayers * SHAPE.nBlocks * SHAPE.blockSize * row * 2);
  });

  it('copies a block with every layer', () => {
    const cache = PagedKvCache.create(SHAPE);
    const rand = random(2);
    for (const layer of [0, 1]) cache.write(layer, Uint32Array.of(3), 0, fill(4 * row, rand), fill(4 * row, rand));
    cache.copyBlock(3, 7);
    for (const layer of [0, 1]) {
      for (const which of ['keys', 'values'] as const) {
        expect(cache.read(layer, Uint32Array.of(7), 0, 4, which)).toEqual(cache.read(layer, Uint32Array.of(3), 0, 4, which));
      }
    }
  });

  const CASES: Array<[string, AttentionOptions]> = [
    ['plain', { nHeads: N_HEADS }],
    ['soft-capped scores', { nHeads: N_HEADS, softcap: 2, scale: 0.5 }],
    ['a 5-token sliding window', { nHeads: N_HEADS, slidingWindow: 5 }],
    // Sinks near the scores' size take a visible share of each softmax.
    ['sinks, and a 5-token window', { nHeads: N_HEADS, slidingWindow: 5, sinks: Float32Array.of(1.5, -0.5, 3, 0) }],
  ];

  it.each(CASES)('attention (%s): any block table gives the same bits, and the reference within tolerance', async (_name, options) => {
    const rand = random(3);
    const n = 18;
    const keys = fill(n * row, rand, 2);
    const values = fill(n * row, rand, 2);
    const q = fill(n * N_HEADS * SHAPE.headDim, rand, 2);
    const results: Float32Array[] = [];
    for (const table of [scattered, contiguous]) {
      const cache = PagedKvCache.create(SHAPE);
      cache.write(0, table, 0, keys, values);
      // A prompt of 17 tokens, then one decode step, as the engine runs them.
      const prompt = await cache.attend(0, table, q.subarray(0, 17 * N_HEADS * SHAPE.headDim), 0, options);
      const step = await cache.attend(0, table, q.subarray(17 * N_HEADS * SHAPE.headDim), 17, options);
      results.push(Float32Array.of(...prompt, ...step));
      const stored = { k: cache.read(0, table, 0, n, 'keys'), v: cache.read(0, table, 0, n, 'values') };
      const want = reference(q, stored.k, stored.v, 0, options);
      const err = relativeError(results.at(-1)!, want);
      console.log(`${_name}: max |ours - reference| / max |reference| = ${err.toExponential(2)}`);
      expect(err).toBeLessThan(REFERENCE_TOLERANCE);
    }
    expect(Array.from(results[1]!)).toEqual(Array.from(results[0]!));
  });

  it('a q8_0 cache stores 32 values per scale and attends through the same path', async () => {
    const cache = PagedKvCache.create({ ...SHAPE, dtype: 'q8_0' });
    const rand = random(4);
    const keys = fill(8 * row, rand);
    cache.write(0, scattered, 0, keys, fill(8 * row, rand));
    const stored = cache.read(0, scattered, 0, 8, 'keys');
    for (let i = 0; i < keys.length; i += 32) {
      const block = keys.subarray(i, i + 32);
      // ggml's rule: q = round(x · 127 / amax), stored with the scale amax / 127 rounded to
      // f16, so a value is off by half a step plus 127 times the scale's rounding.
      const d = Math.max(...Array.from(block, Math.abs)) / 127;
      const bound = d / 2 + 127 * Math.abs(f16(d) - d) + 1e-7;
      for (let j = 0; j < 32; j++) expect(Math.abs(stored[i + j]! - block[j]!)).toBeLessThanOrEqual(bound);
    }
    const out = await cache.attend(0, scattered, fill(8 * N_HEADS * SHAPE.headDim, rand), 0, { nHeads: N_HEADS });
    expect(out.every(Number.isFinite)).toBe(true);
  });

  describe('bad input is refused with a typed error and changes nothing', () => {
    const cache = PagedKvCache.create(SHAPE);
    const rand = random(5);
    cache.write(0, Uint32Array.of(1), 0, fill(row, rand), fill(row, rand));
    const before = cache.read(0, Uint32Array.of(1), 0, 1, 'keys');

    /** The error a call throws or its promise rejects with. */
    const refusal = async (call: () => unknown): Promise<unknown> => {
      try {
        await call();
      } catch (error) {
        return error;
      }
      return undefined;
    };

    it.each([
      ['a block id past the pool', () => cache.write(0, Uint32Array.of(1, 16), 3, fill(2 * row, rand), fill(2 * row, rand)), /block id 16/],
      ['a table too short', () => cache.write(0, Uint32Array.of(1), 3, fill(2 * row, rand), fill(2 * row, rand)), /block table has 1/],
      ['a layer past the cache', () => cache.write(2, Uint32Array.of(1), 0, fill(row, rand), fill(row, rand)), /layer 2/],
      ['keys of another shape', () => cache.write(0, Uint32Array.of(1), 0, fill(row - 1, rand), fill(row - 1, rand)), /KV heads/],
      ['reading past the table', () => cache.read(0, Uint32Array.of(1), 0, 5, 'keys'), /block table has 1/],
      ['copying to a block past the pool', () => cache.copyBlock(1, 99), /block id 99/],
      ['an odd dtype', () => PagedKvCache.create({ ...SHAPE, dtype: 'f8' as never }), /dtype/],
      [
        'a q8_0 cache whose head size is not a multiple of 32',
        () => PagedKvCache.create({ ...SHAPE, headDim: 48, dtype: 'q8_0' }),
        /multiple of 32/,
      ],
      [
        'attention with heads that do not share KV heads evenly',
        () => cache.attend(0, Uint32Array.of(1), fill(3 * 32, rand), 0, { nHeads: 3 }),
        /heads/,
      ],
      [
        'sinks that are not one per query head',
        () => cache.attend(0, Uint32Array.of(1), fill(N_HEADS * 32, rand), 0, { nHeads: N_HEADS, sinks: Float32Array.of(1, 2) }),
        /sinks must hold 4/,
      ],
      [
        'a sink that is not finite',
        () =>
          cache.attend(0, Uint32Array.of(1), fill(N_HEADS * 32, rand), 0, { nHeads: N_HEADS, sinks: Float32Array.of(0, Number.NaN, 0, 0) }),
        /sinks must hold 4 finite/,
      ],
    ])('%s', async (_name, call, message) => {
      const error = await refusal(call);
      expect(error).toBeInstanceOf(MistralrsError);
      expect(error).toMatchObject({ code: 'InvalidArgumentError', message: expect.stringMatching(message) });
      expect(cache.read(0, Uint32Array.of(1), 0, 1, 'keys')).toEqual(before);
    });
  });
});
