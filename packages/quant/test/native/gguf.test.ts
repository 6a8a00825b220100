import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures, sharedFixture } from '../../../../test-support/fixtures.js';
import { dequantize, GgufFile, quantize, writeGguf, type GgufMetadataEntry } from '../../src/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gguf-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const metadata: GgufMetadataEntry[] = [
  { key: 'general.architecture', type: 'string', value: 'llama' },
  { key: 'test.u8', type: 'u8', value: 255 },
  { key: 'test.i8', type: 'i8', value: -128 },
  { key: 'test.u16', type: 'u16', value: 65535 },
  { key: 'test.i16', type: 'i16', value: -32768 },
  { key: 'test.u32', type: 'u32', value: 4294967295 },
  { key: 'test.i32', type: 'i32', value: -2147483648 },
  { key: 'test.u64', type: 'u64', value: 18446744073709551615n },
  { key: 'test.i64', type: 'i64', value: -9223372036854775808n },
  { key: 'test.f32', type: 'f32', value: 1e-5 },
  { key: 'test.f32.nan', type: 'f32', value: NaN },
  { key: 'test.f64', type: 'f64', value: -Infinity },
  { key: 'test.bool', type: 'bool', value: true },
  { key: 'test.string', type: 'string', value: 'héllo ✓ 🦀' },
  { key: 'test.empty', type: 'array', value: { itemType: 'u64', items: [] } },
  { key: 'test.strings', type: 'array', value: { itemType: 'string', items: ['a', '', 'ß'] } },
  {
    key: 'test.nested',
    type: 'array',
    value: {
      itemType: 'array',
      items: [
        { itemType: 'i32', items: [1, -2] },
        { itemType: 'string', items: ['x'] },
      ],
    },
  },
];

describe('GGUF files', () => {
  it('round trips every metadata type and tensor data through writeGguf and GgufFile', async () => {
    const weights = Float32Array.from({ length: 512 }, (_, i) => Math.cos(i) * 2);
    const q4k = await quantize('Q4_K', weights);
    const norm = Float32Array.from([0.5, -1.25, 3, 4]);
    const path = join(dir, 'all-types.gguf');
    await writeGguf(path, {
      metadata,
      tensors: [
        { name: 'norm.weight', dims: [4], type: 'F32', data: new Uint8Array(norm.buffer) },
        { name: 'blk.0.w', dims: [256, 2], type: 'Q4_K', data: q4k },
      ],
    });

    const file = await GgufFile.open(path);
    expect(file.version).toBe(3);
    expect(file.alignment).toBe(32);
    expect(file.metadata.map((e) => e.key)).toEqual(metadata.map((e) => e.key));
    for (const entry of metadata) {
      const got = file.metadata.find((e) => e.key === entry.key)!;
      expect(got.type).toBe(entry.type);
      expect(got.value).toEqual(entry.value);
    }
    expect(file.architecture).toBe('llama');
    expect(file.getNumber('test.u32')).toBe(4294967295);
    expect(file.getNumber('test.u64')).toBeUndefined(); // not exact as a number
    expect(file.getArray('test.strings')).toEqual(['a', '', 'ß']);

    expect(file.tensors.map((t) => [t.name, t.type, t.dims, t.nElements, t.sizeBytes])).toEqual([
      ['norm.weight', 'F32', [4], 4, 16],
      ['blk.0.w', 'Q4_K', [256, 2], 512, 288],
    ]);
    expect(file.tensors[1]!.offset % 32).toBe(0);
    expect(await file.dequantize('norm.weight')).toEqual(norm);
    expect(await file.tensorBytes('blk.0.w')).toEqual(q4k);
    expect(await file.dequantize('blk.0.w')).toEqual(await dequantize('Q4_K', q4k));
    await expect(file.dequantize('missing')).rejects.toThrow(/no tensor named "missing"/);
    file.close();
    await expect(file.tensorBytes('blk.0.w')).rejects.toThrow(/closed/);
  });

  it('rejects bad files with an error that names the file and the problem', async () => {
    await expect(GgufFile.open(join(dir, 'nope.gguf'))).rejects.toMatchObject({
      code: 'IoError',
      message: expect.stringContaining('nope.gguf'),
    });
    const notGguf = join(dir, 'not.gguf');
    writeFileSync(notGguf, 'this is not a gguf file at all');
    await expect(GgufFile.open(notGguf)).rejects.toMatchObject({
      code: 'FormatError',
      message: expect.stringMatching(/not\.gguf: .*magic/i),
    });
    await writeGguf(join(dir, 'ok.gguf'), { metadata, tensors: [] });
    const bytes = readFileSync(join(dir, 'ok.gguf'));
    const truncated = join(dir, 'truncated.gguf');
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expect(GgufFile.open(truncated)).rejects.toMatchObject({
      code: 'FormatError',
      message: expect.stringContaining('truncated.gguf'),
    });
  });

  it('refuses to write inconsistent contents', async () => {
    const path = join(dir, 'bad.gguf');
    await expect(
      writeGguf(path, { metadata: [], tensors: [{ name: 'w', dims: [32], type: 'Q4_0', data: new Uint8Array(17) }] }),
    ).rejects.toMatchObject({ code: 'InvalidArgumentError' });
    await expect(writeGguf(path, { metadata: [{ key: 'k', type: 'u8', value: 256 }], tensors: [] })).rejects.toThrow(/metadata `k`/);
    expect(existsSync(path)).toBe(false);
  });
});

// The team's shared fixtures: vocabulary-only GGUFs of real tokenizers.
const vocabDir = sharedFixture('vocab');
const vocab = needsFixtures('the vocabulary GGUFs', [vocabDir]);
const vocabFiles = vocab.present ? readdirSync(vocabDir).filter((f) => f.endsWith('.gguf')) : [];

vocab.describe('vocab fixtures', () => {
  it('include GGUFs', () => expect(vocabFiles.length).toBeGreaterThan(10));

  for (const name of vocabFiles) {
    it(`${name} opens and its tokenizer metadata reads back consistently`, async () => {
      const file = await GgufFile.open(join(vocabDir, name));
      const tokens = file.getArray('tokenizer.ggml.tokens');
      expect(typeof file.getString('tokenizer.ggml.model')).toBe('string');
      expect(tokens?.length).toBeGreaterThan(100);
      for (const key of ['tokenizer.ggml.scores', 'tokenizer.ggml.token_type']) {
        const values = file.getArray(key);
        if (values) expect(values.length).toBe(tokens!.length);
      }
      file.close();
    });
  }
});
