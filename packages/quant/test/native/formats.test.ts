import { describe, expect, it } from '@jest/globals';
import { dequantize, ggmlType, ggmlTypes, MistralrsError, quantize } from '../../src/index.js';

describe('ggml types', () => {
  it('lists every type with its geometry and marks what this build computes', () => {
    const q4k = ggmlType('q4_k');
    expect(q4k).toMatchObject({ name: 'Q4_K', id: 12, blockSize: 256, typeSize: 144, supported: true });
    expect(ggmlType('IQ2_XXS')).toMatchObject({ id: 16, supported: false, quantizable: false });
    const names = ggmlTypes().map((t) => t.name);
    expect(new Set(names).size).toBe(names.length);
    for (const name of ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K']) {
      expect(ggmlType(name)?.quantizable).toBe(true);
    }
  });
});

describe('quantize and dequantize', () => {
  const values = Float32Array.from({ length: 512 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));

  it.each(['Q8_0', 'Q4_0', 'Q4_K', 'Q6_K'] as const)('round trips %s within its step size', async (type) => {
    const bytes = await quantize(type, values);
    const info = ggmlType(type)!;
    expect(bytes.length).toBe((values.length / info.blockSize) * info.typeSize);
    const back = await dequantize(type, bytes);
    expect(back.length).toBe(values.length);
    // Worst case per element: half a step of the coarsest scale, with 7 as the largest |x|.
    const bound = { Q8_0: 7 / 127, Q4_0: 7 / 8, Q4_K: 7 / 15, Q6_K: 7 / 31 }[type];
    let maxError = 0;
    for (const [i, v] of back.entries()) maxError = Math.max(maxError, Math.abs(v - values[i]!));
    expect(maxError).toBeLessThanOrEqual(bound);
    expect(maxError).toBeGreaterThan(0);
  });

  it('rejects a length that is not whole blocks, with a typed error', async () => {
    await expect(quantize('Q4_0', new Float32Array(33))).rejects.toMatchObject({
      name: 'MistralrsError',
      code: 'InvalidArgumentError',
    });
    await expect(dequantize('Q4_0', new Uint8Array(19))).rejects.toBeInstanceOf(MistralrsError);
  });

  it('names an unknown or unsupported type', async () => {
    await expect(dequantize('Q9_9' as never, new Uint8Array(4))).rejects.toThrow(/unknown tensor type "Q9_9"/);
    await expect(dequantize('IQ2_XXS', new Uint8Array(66))).rejects.toMatchObject({
      code: 'UnsupportedTypeError',
    });
  });
});
