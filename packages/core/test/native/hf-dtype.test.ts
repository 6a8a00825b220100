/**
 * `dtype` (`--dtype`) on a Hugging Face folder: the float matrices are stored in the type asked
 * for, converted once at load (round to nearest even, as PyTorch's `.to()`).
 *
 * Exact checks: a checkpoint converted at load must be the checkpoint written in that type. An
 * F32 folder loaded as f16 (bf16) gives the same logits, bit for bit, as the same weights
 * written as F16 (BF16) by the fixture's own rounding; an F16 (BF16) folder loaded as f32 gives
 * the logits of an F32 folder holding the rounded values. Covered: plain matrices (Llama),
 * fused ones split by rows (Phi 3's QKV), experts (Mixtral) and DeepSeek's transposed key rows.
 *
 * Rounding: against the F32 checkpoint itself, storing the weights in f16 (unit roundoff
 * u = 2^-11) or bf16 (u = 2^-8) moves the tiny Llama's logits by at most 4u times their largest
 * magnitude (measured: 1.09e-3 = 2.2u for f16, 6.24e-3 = 1.6u for bf16, on logits up to 3.34:
 * each weight's relative rounding of at most u, compounded through two layers; activations stay
 * f32). Memory: f16 and bf16 matrices take exactly half of f32's bytes.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Engine, type WeightDtype } from '../../src/index.js';
import { hfTokenizerDir, vocabPath, writeTinyGguf, writeTinyHf, type TinyHfMatrices, type TinySpec } from '../fixtures/tiny-model.js';

const fixtures = needsFixtures('the tiny models', [vocabPath, join(hfTokenizerDir, 'tokenizer.json')]);

const PROMPT = [1, 910, 338, 263, 1243, 310, 278, 11262, 1788];
/** max |Δ logit| / max |logit| allowed after rounding f32 weights: 4u (see the header). */
const ROUNDING = { f16: 4 * 2 ** -11, bf16: 4 * 2 ** -8 };

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hf-dtype-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function folder(spec: TinySpec, matrices: TinyHfMatrices): Promise<string> {
  const path = join(dir, `${spec.arch}-${matrices.type ?? 'F16'}-${matrices.roundedTo ?? 'exact'}`);
  if (!existsSync(path)) await writeTinyHf(path, spec, matrices);
  return path;
}

async function load(path: string, dtype?: WeightDtype): Promise<{ logits: Float32Array; weightBytes: number }> {
  const engine = await Engine.load({ model: path, kvTokens: 64, ...(dtype ? { dtype } : {}) });
  try {
    return { logits: await engine.nextTokenLogits(PROMPT), weightBytes: engine.info.weightBytes! };
  } finally {
    engine.close();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (const [i, v] of a.entries()) max = Math.max(max, Math.abs(v - b[i]!));
  return max;
}

const EXACT: Array<[string, TinySpec]> = [
  ['llama', { arch: 'llama' }],
  ['phi3 (fused QKV)', { arch: 'phi3' }],
  ['mixtral (experts)', { arch: 'mixtral' }],
  ['deepseekv2 (transposed key rows)', { arch: 'deepseekv2' }],
];

fixtures.describe.each(EXACT)('%s', (_name, spec) => {
  it('converted at load equals written in that type', async () => {
    const f32 = await folder(spec, { type: 'F32' });
    for (const [dtype, type] of [
      ['f16', 'F16'],
      ['bf16', 'BF16'],
    ] as const) {
      const converted = await load(f32, dtype);
      const written = await load(await folder(spec, { type }));
      expect(maxAbsDiff(converted.logits, written.logits)).toBe(0);
      expect(converted.weightBytes).toBe(written.weightBytes);
      // And widened back: the F16/BF16 folder as f32 is an F32 folder of the rounded values.
      const widened = await load(await folder(spec, { type }), 'f32');
      const roundedF32 = await load(await folder(spec, { type: 'F32', roundedTo: type }));
      expect(maxAbsDiff(widened.logits, roundedF32.logits)).toBe(0);
      expect(widened.weightBytes).toBe(2 * written.weightBytes);
    }
  }, 300_000);
});

fixtures.describe('rounding and memory', () => {
  it('f16 and bf16 storage move the logits by their rounding and halve the matrices', async () => {
    const path = await folder({ arch: 'llama' }, { type: 'F32' });
    const exact = await load(path);
    expect(await load(path, 'auto')).toEqual(exact);
    expect(await load(path, 'f32')).toEqual(exact);
    const scale = exact.logits.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const errors: Record<string, number> = {};
    for (const dtype of ['f16', 'bf16'] as const) {
      const narrow = await load(path, dtype);
      errors[dtype] = maxAbsDiff(narrow.logits, exact.logits) / scale;
      expect(narrow.weightBytes * 2).toBe(exact.weightBytes);
    }
    console.log(
      `max |Δ logit| / max |logit| (${scale.toFixed(2)}): f16 ${errors.f16!.toExponential(2)}, bf16 ${errors.bf16!.toExponential(2)}`,
    );
    expect(errors.f16).toBeGreaterThan(0);
    expect(errors.f16).toBeLessThan(ROUNDING.f16);
    expect(errors.bf16).toBeGreaterThan(errors.f16!);
    expect(errors.bf16).toBeLessThan(ROUNDING.bf16);
  }, 300_000);

  it('a GGUF refuses any dtype but auto; unknown names are refused', async () => {
    const gguf = join(dir, 'tiny-llama.gguf');
    await writeTinyGguf(gguf, { arch: 'llama' }, 'Q8_0');
    await expect(Engine.load({ model: gguf, dtype: 'f16' })).rejects.toThrow(
      /a GGUF's weights keep the types in the file, so dtype f16 cannot apply/,
    );
    const engine = await Engine.load({ model: gguf, dtype: 'auto', kvTokens: 64 });
    expect(engine.info.weightBytes).toBeUndefined();
    engine.close();
    const hf = await folder({ arch: 'llama' }, { type: 'F32' });
    await expect(Engine.load({ model: hf, dtype: 'fp8' as WeightDtype })).rejects.toThrow(/dtype must be one of auto, f32, f16, bf16/);
  }, 120_000);
});

fixtures.describe('the architecture the caller names (-a)', () => {
  it('must be the one the model has', async () => {
    const llama = await folder({ arch: 'llama' }, { type: 'F32' });
    await expect(Engine.load({ model: llama, architecture: 'qwen3', kvTokens: 64 })).rejects.toThrow(
      /the architecture requested \(`qwen3`, that is `qwen3`\) is not the folder's: model_type `llama`/,
    );
    await expect(Engine.load({ model: llama, architecture: 'llama4' })).rejects.toThrow(
      /unknown architecture "llama4" \(-a takes llama, mistral/,
    );
    // The registry knows model_type: a Llama folder is not Mistral, whatever loader they share.
    await expect(Engine.load({ model: llama, architecture: 'mistral', kvTokens: 64 })).rejects.toThrow(
      /not the folder's: model_type `llama`/,
    );
    for (const architecture of ['llama', 'LLAMA']) {
      const engine = await Engine.load({ model: llama, architecture, kvTokens: 64 });
      engine.close();
    }
    const phimoe = await folder({ arch: 'phimoe' }, { type: 'F16' });
    const engine = await Engine.load({ model: phimoe, architecture: 'phi3.5moe', kvTokens: 64 });
    expect(engine.info.architecture).toBe('phimoe');
    engine.close();
  }, 120_000);
});
