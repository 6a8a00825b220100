import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { quantize, writeGguf } from '@mistralrs/quant';

const bin = new URL('../bin/mistralrs-server.js', import.meta.url).pathname;
let dir: string;
let model: string;

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cli-inspect-'));
  model = join(dir, 'tiny.gguf');
  const weights = Float32Array.from({ length: 64 * 4 }, (_, i) => Math.sin(i));
  await writeGguf(model, {
    metadata: [
      { key: 'general.architecture', type: 'string', value: 'llama' },
      { key: 'general.name', type: 'string', value: 'Tiny Test' },
      { key: 'llama.block_count', type: 'u32', value: 1 },
      { key: 'tokenizer.ggml.tokens', type: 'array', value: { itemType: 'string', items: ['a', 'b', 'c'] } },
    ],
    tensors: [{ name: 'token_embd.weight', dims: [64, 4], type: 'Q8_0', data: await quantize('Q8_0', weights) }],
  });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('mistralrs-server inspect', () => {
  it('prints the header as tables', () => {
    const { code, stdout } = cli('inspect', model);
    expect(code).toBe(0);
    expect(stdout).toContain('GGUF v3');
    expect(stdout).toContain('Tiny Test, architecture llama');
    expect(stdout).toMatch(/llama\.block_count\s+u32\s+1/);
    expect(stdout).toMatch(/tokenizer\.ggml\.tokens\s+string\[3\]\s+\["a", "b", "c"\]/);
    expect(stdout).toMatch(/token_embd\.weight\s+Q8_0\s+\[64, 4\]\s+256/);
  });

  it('prints one JSON object with --json', () => {
    const { code, stdout } = cli('inspect', model, '--json');
    expect(code).toBe(0);
    const parsed = JSON.parse(stdout);
    expect(parsed).toMatchObject({ format: 'gguf', version: 3, alignment: 32 });
    expect(parsed.tensors).toEqual([{ name: 'token_embd.weight', dims: [64, 4], type: 'Q8_0', offset: 0, nElements: 256, sizeBytes: 272 }]);
    expect(parsed.metadata[3]).toEqual({
      key: 'tokenizer.ggml.tokens',
      type: 'array',
      value: { itemType: 'string', items: ['a', 'b', 'c'] },
    });
  });

  it('exits 1 with a message naming the file when it is not a valid GGUF', () => {
    const bad = join(dir, 'bad.gguf');
    writeFileSync(bad, 'GGUF\x03\x00\x00\x00garbage');
    const { code, stdout, stderr } = cli('inspect', bad);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain(`mistralrs-server inspect: ${bad}:`);
    const missing = cli('inspect', join(dir, 'missing.gguf'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('missing.gguf');
  });

  it('rejects unknown commands and options', () => {
    expect(cli('frobnicate').code).toBe(1);
    expect(cli('inspect', model, '--bogus').code).toBe(1);
  });
});

describe('mistralrs-server inspect on safetensors', () => {
  it('prints the tensor table of a .safetensors file, and JSON', async () => {
    const { writeSafetensors } = await import('@mistralrs/quant');
    const path = join(dir, 'w.safetensors');
    await writeSafetensors(path, [{ name: 'lm_head.weight', dtype: 'BF16', shape: [2, 4], data: new Uint8Array(16) }], {
      format: 'pt',
    });
    const text = cli('inspect', path);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/lm_head\.weight\s+BF16\s+\[2, 4\]\s+16 B/);
    const json = JSON.parse(cli('inspect', path, '--json').stdout);
    expect(json).toMatchObject({ format: 'safetensors', metadata: { format: 'pt' } });
    expect(json.tensors[0]).toMatchObject({ name: 'lm_head.weight', dtype: 'BF16', shape: [2, 4], sizeBytes: 16 });
  });
});
