/** The scheduling and KV cache settings: flags and TOML keys, checked alike, flags over the file. */
import { describe, expect, it } from '@jest/globals';

import { engineSettings } from '../../src/engine-flags.js';
import { parseTomlSelector } from '../../src/toml-selector.js';

describe('engine flags', () => {
  it('maps each flag to its Engine.load option', () => {
    expect(
      engineSettings({ 'max-running': 2, 'max-waiting': 8, 'prefix-cache': false, 'pa-blk-size': 16, 'pa-gpu-mem-usage': 0.25 }),
    ).toEqual({ maxRunning: 2, maxWaiting: 8, prefixCaching: false, blockSize: 16, kvCacheFraction: 0.25 });
    expect(engineSettings({ 'pa-ctxt-len': 1024 })).toEqual({ kvTokens: 1024 });
    expect(engineSettings({ 'pa-gpu-mem': 1.5 })).toEqual({ kvCacheMb: 1.5 });
    expect(engineSettings({ 'pa-cache-type': 'q8_0' })).toEqual({ kvCacheType: 'q8_0' });
    expect(engineSettings({})).toEqual({});
  });

  it.each([
    [{ 'max-running': 0 }, '--max-running must be a positive integer, got 0'],
    [{ 'max-waiting': 1.5 }, '--max-waiting must be a positive integer, got 1.5'],
    [{ 'pa-blk-size': NaN }, '--pa-blk-size must be a positive integer'],
    [{ 'pa-ctxt-len': -1 }, '--pa-ctxt-len must be a positive integer, got -1'],
    [{ 'pa-gpu-mem': 0 }, '--pa-gpu-mem must be a positive number of MiB, got 0'],
    [{ 'pa-gpu-mem-usage': 2 }, '--pa-gpu-mem-usage must be a fraction greater than 0 and at most 1, got 2'],
    [{ 'pa-gpu-mem-usage': 0 }, '--pa-gpu-mem-usage must be a fraction greater than 0 and at most 1, got 0'],
    [{ 'pa-ctxt-len': 512, 'pa-gpu-mem': 64 }, '--pa-ctxt-len and --pa-gpu-mem each size the KV cache; give one of them'],
    [{ 'pa-cache-type': 'q4' }, '--pa-cache-type must be one of f16, q8_0, got q4'],
  ])('rejects %j', (args, message) => {
    expect(() => engineSettings(args)).toThrow(message);
  });

  it("puts the flags over a TOML file's settings; a flag sizing the KV cache replaces the file's size", () => {
    const toml = { maxRunning: 4, prefixCaching: false, blockSize: 16, kvCacheMb: 64 };
    expect(engineSettings({ 'max-running': 8, 'pa-ctxt-len': 512 }, toml)).toEqual({
      maxRunning: 8,
      prefixCaching: false,
      blockSize: 16,
      kvTokens: 512,
    });
    expect(engineSettings({ 'prefix-cache': true }, toml)).toEqual({ ...toml, prefixCaching: true });
  });
});

describe('engine settings in a TOML selector', () => {
  it('reads the scheduler from [server] and the KV cache from [model]', () => {
    const selector = parseTomlSelector(
      [
        '[model]',
        'quantized_model_id = "models/smollm2.gguf"',
        'pa_blk_size = 16',
        'pa_gpu_mem_usage = 0.5',
        'pa_cache_type = "q8_0"',
        '[server]',
        'port = 8080',
        'max_running = 4',
        'max_waiting = 32',
        'prefix_cache = false',
      ].join('\n'),
      'a.toml',
    );
    expect(selector.engine).toEqual({
      maxRunning: 4,
      maxWaiting: 32,
      prefixCaching: false,
      blockSize: 16,
      kvCacheFraction: 0.5,
      kvCacheType: 'q8_0',
    });
    expect(selector.server).toEqual({ port: 8080 });
  });

  it('reads the KV cache keys at the top level beside a short-form model', () => {
    expect(parseTomlSelector('model = "m.gguf"\npa_ctxt_len = 2048\n', 'b.toml').engine).toEqual({ kvTokens: 2048 });
    expect(parseTomlSelector('model = "m.gguf"\n', 'b.toml').engine).toEqual({});
  });

  it.each([
    ['[model]\nmodel_id = "m"\npa_blk_size = 0\n', 'c.toml: [model].pa_blk_size must be a positive integer, got 0'],
    ['[model]\nmodel_id = "m"\npa_cache_type = "f8"\n', 'c.toml: [model].pa_cache_type must be one of f16, q8_0'],
    [
      '[model]\nmodel_id = "m"\npa_gpu_mem_usage = 1.5\n',
      'c.toml: [model].pa_gpu_mem_usage must be a fraction greater than 0 and at most 1, got 1.5',
    ],
    ['model = "m"\npa_ctxt_len = 512\npa_gpu_mem = 64\n', 'c.toml: pa_ctxt_len and pa_gpu_mem each size the KV cache; give one of them'],
    ['pa_ctxt_len = 512\n[model]\nmodel_id = "m"\n', 'c.toml: pa_ctxt_len belongs in [model] when [model] is a table'],
    ['model = "m"\n[server]\nmax_running = "4"\n', 'c.toml: [server].max_running must be a positive integer, got "4"'],
    ['model = "m"\n[server]\nprefix_cache = 0\n', 'c.toml: [server].prefix_cache must be true or false'],
    ['model = "m"\n[server]\nmax_seqs = 4\n', 'c.toml: unknown key [server].max_seqs'],
  ])('rejects %j', (text, message) => {
    expect(() => parseTomlSelector(text, 'c.toml')).toThrow(message);
  });
});
