import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SafetensorsFile, writeSafetensors } from '../../src/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'safetensors-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const f32 = Float32Array.from([1, -2.5, 3.25, 0, 1e-3, 65504]);
// The same values as bf16 (round to nearest even of the top 16 bits) and f16.
const bf16 = Uint16Array.from([0x3f80, 0xc020, 0x4050, 0x0000, 0x3a83, 0x477f]);
const f16 = Uint16Array.from([0x3c00, 0xc100, 0x4280, 0x0000, 0x1419, 0x7bff]);

describe('safetensors', () => {
  it('writes and reads back tensors, metadata and conversions to f32', async () => {
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(
      path,
      [
        { name: 'a.f32', dtype: 'F32', shape: [2, 3], data: new Uint8Array(f32.buffer) },
        { name: 'b.bf16', dtype: 'BF16', shape: [6], data: new Uint8Array(bf16.buffer) },
        { name: 'c.f16', dtype: 'F16', shape: [3, 2], data: new Uint8Array(f16.buffer) },
        { name: 'd.i8', dtype: 'I8', shape: [2], data: Uint8Array.from([1, 255]) },
      ],
      { format: 'pt' },
    );
    const file = await SafetensorsFile.open(path);
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.tensors.map((t) => [t.name, t.dtype, t.shape, t.sizeBytes])).toEqual([
      ['a.f32', 'F32', [2, 3], 24],
      ['b.bf16', 'BF16', [6], 12],
      ['c.f16', 'F16', [3, 2], 12],
      ['d.i8', 'I8', [2], 2],
    ]);
    expect(await file.toFloat32('a.f32')).toEqual(f32);
    expect(Array.from(await file.toFloat32('b.bf16'))).toEqual([1, -2.5, 3.25, 0, 0.00099945068359375, 65280]);
    expect(Array.from(await file.toFloat32('c.f16'))).toEqual([1, -2.5, 3.25, 0, 0.0010004043579101562, 65504]);
    expect(await file.tensorBytes('d.i8')).toEqual(Uint8Array.from([1, 255]));
    await expect(file.toFloat32('d.i8')).rejects.toBeDefined();
    await expect(file.toFloat32('nope')).rejects.toThrow(/no tensor named "nope"/);
    file.close();
  });

  it('opens a sharded model folder through its index', async () => {
    const model = join(dir, 'sharded');
    mkdirSync(model);
    const one = Float32Array.from([1, 2]);
    const two = Float32Array.from([3, 4, 5]);
    await writeSafetensors(join(model, 'model-00001-of-00002.safetensors'), [
      { name: 'x', dtype: 'F32', shape: [2], data: new Uint8Array(one.buffer) },
    ]);
    await writeSafetensors(join(model, 'model-00002-of-00002.safetensors'), [
      { name: 'y', dtype: 'F32', shape: [3], data: new Uint8Array(two.buffer) },
    ]);
    writeFileSync(
      join(model, 'model.safetensors.index.json'),
      JSON.stringify({
        metadata: { total_size: 20 },
        weight_map: { x: 'model-00001-of-00002.safetensors', y: 'model-00002-of-00002.safetensors' },
      }),
    );
    const file = await SafetensorsFile.open(model);
    expect(file.files).toHaveLength(2);
    expect(file.tensors.map((t) => t.name).sort()).toEqual(['x', 'y']);
    expect(await file.toFloat32('y')).toEqual(two);
    file.close();
  });

  it('rejects a header that lies, naming the file', async () => {
    const path = join(dir, 'liar.safetensors');
    const header = Buffer.from(JSON.stringify({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 1000] } }));
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(path, Buffer.concat([length, header, Buffer.alloc(16)]));
    await expect(SafetensorsFile.open(path)).rejects.toMatchObject({
      code: 'FormatError',
      message: expect.stringContaining('liar.safetensors'),
    });
    const hugeHeader = join(dir, 'huge.safetensors');
    const claim = Buffer.alloc(8);
    claim.writeBigUInt64LE(2n ** 62n);
    writeFileSync(hugeHeader, Buffer.concat([claim, Buffer.from('{}')]));
    await expect(SafetensorsFile.open(hugeHeader)).rejects.toMatchObject({ code: 'FormatError' });
  });
});
