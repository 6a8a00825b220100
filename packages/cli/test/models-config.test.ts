/** The multi-model config (`from-config -f`, `toml -f` with `[[models]]`): what it reads, and
 * every mistake named by file and key. */
import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { isModelsConfig, parseModelsConfig, readModelsConfig } from '../src/models-config.js';

const FILE = 'models.toml';

describe('reading a config', () => {
  it("reads [[models]] with per-model settings, [server]'s scheduling as every model's default, and the default model", () => {
    const config = parseModelsConfig(
      `
command = "serve"
default_model_id = "second"

[server]
port = 8080
api_key = "sk-x"
max_memory = "2gb"
max_running = 4

[[models]]
model = "org/repo-GGUF"
file = "model.Q4_K_M.gguf"
pa_ctxt_len = 1024
token_source = "env:HF_TOKEN"
revision = "v1"

[[models]]
id = "second"
model_id = "smollm2-135m-instruct-q4_1"
kind = "text"
max_running = 8
pa_gpu_mem = 64
pa_cache_type = "q8_0"
prefix_cache = false
load = false
`,
      FILE,
    );
    expect(config.defaultModel).toBe('second');
    expect(config.server).toEqual({ port: 8080, apiKey: 'sk-x', maxMemory: { text: '2gb', bytes: 2 * 1024 ** 3 } });
    expect(config.models).toEqual([
      {
        id: 'org/repo-GGUF',
        load: true,
        kind: 'auto',
        options: {
          model: 'org/repo-GGUF',
          file: 'model.Q4_K_M.gguf',
          kvTokens: 1024,
          maxRunning: 4,
          tokenSource: 'env:HF_TOKEN',
          revision: 'v1',
        },
      },
      {
        id: 'second',
        load: false,
        kind: 'text',
        options: { model: 'smollm2-135m-instruct-q4_1', maxRunning: 8, kvCacheMb: 64, kvCacheType: 'q8_0', prefixCaching: false },
      },
    ]);
  });

  it('reads the same shape from a .json file', () => {
    const config = parseModelsConfig(
      JSON.stringify({ server: { port: 0 }, models: [{ id: 'a', model: 'a.gguf', arch: 'llama', dtype: 'auto' }] }),
      'models.json',
    );
    expect(config.models).toEqual([
      { id: 'a', load: true, kind: 'auto', options: { model: 'a.gguf', architecture: 'llama', dtype: 'auto' } },
    ]);
  });

  it("reads a split GGUF's parts, the format and another tokenizer (tok_model_id)", () => {
    const config = parseModelsConfig(
      '[[models]]\nmodel = "org/m-GGUF"\nfile = ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]\nformat = "gguf"\ntok_model_id = "org/m"',
      FILE,
    );
    expect(config.models[0]!.options).toEqual({
      model: 'org/m-GGUF',
      file: ['m-00001-of-00002.gguf', 'm-00002-of-00002.gguf'],
      format: 'gguf',
      tokenizerModel: 'org/m',
    });
  });

  it('tells a [[models]] file from a single-model selector', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mistralrs-config-'));
    const multi = join(dir, 'multi.toml');
    const single = join(dir, 'single.toml');
    writeFileSync(multi, '[[models]]\nmodel = "a.gguf"\n');
    writeFileSync(single, 'model = "a.gguf"\n');
    expect(await isModelsConfig(multi)).toBe(true);
    expect(await isModelsConfig(single)).toBe(false);
    expect(await isModelsConfig(join(dir, 'missing.toml'))).toBe(false);
    await expect(readModelsConfig(join(dir, 'missing.toml'))).rejects.toThrow(`${join(dir, 'missing.toml')}: no such file`);
  });
});

describe('a bad config names the file and the key', () => {
  it.each([
    ['invalid TOML', '[[models]\nmodel = 1', /^models\.toml: not valid TOML: /],
    ['no models', '[server]\nport = 1', 'models.toml: no models: list them in [[models]] tables (each with model = "…")'],
    ['models not tables', 'models = ["a"]', 'models.toml: models must be a non-empty list of tables: [[models]]'],
    ['an unknown top-level key', 'modles = 1\n[[models]]\nmodel = "a"', /^models\.toml: unknown key modles \(known: /],
    [
      'an unknown model key',
      '[[models]]\nmodel = "a"\n[[models]]\nmodel = "b"\npa_ctx_len = 5',
      /^models\.toml: unknown key models\[1\]\.pa_ctx_len \(known: /,
    ],
    ['a model key of the wrong type', '[[models]]\nmodel = 5', 'models.toml: models[0].model must be a string'],
    [
      'no model',
      '[[models]]\nid = "a"',
      'models.toml: models[0].model is required: a .gguf path, a folder, a registry id or a hub repository',
    ],
    [
      'model and model_id',
      '[[models]]\nmodel = "a"\nmodel_id = "b"',
      "models.toml: models[0].model and models[0].model_id name the same thing (model_id is mistral.rs's name); give one",
    ],
    ['a bad KV size', '[[models]]\nmodel = "a"\npa_ctxt_len = 0', 'models.toml: models[0].pa_ctxt_len must be a positive integer, got 0'],
    [
      'two KV sizes',
      '[[models]]\nmodel = "a"\npa_ctxt_len = 64\npa_gpu_mem = 8',
      'models.toml: models[0].pa_ctxt_len and models[0].pa_gpu_mem each size the KV cache; give one of them',
    ],
    [
      'a bad scheduling default',
      '[server]\nmax_running = -1\n[[models]]\nmodel = "a"',
      'models.toml: [server].max_running must be a positive integer, got -1',
    ],
    ['a bad load', '[[models]]\nmodel = "a"\nload = "no"', 'models.toml: models[0].load must be true or false'],
    [
      'a bad file list',
      '[[models]]\nmodel = "a"\nfile = ["x.gguf", 3]',
      'models.toml: models[0].file must be a file name or a list of them (the parts of a split GGUF)',
    ],
    ['a bad format', '[[models]]\nmodel = "a"\nformat = "onnx"', 'models.toml: models[0].format must be "gguf" or "plain", got "onnx"'],
    ['a bad dtype', '[[models]]\nmodel = "a"\ndtype = "f8"', 'models.toml: models[0].dtype must be one of auto, f32, f16, bf16, got "f8"'],
    ['an unknown arch', '[[models]]\nmodel = "a"\narch = "gpt5"', /^models\.toml: models\[0\]\.arch: .*gpt5/],
    [
      'a kind this server does not serve',
      '[[models]]\nmodel = "a"\nkind = "diffusion"',
      'models.toml: models[0].kind must be "text", "embedding" or "auto" (told by the model\'s files), got "diffusion"',
    ],
    [
      'two models with one id',
      '[[models]]\nmodel = "a"\nid = "x"\n[[models]]\nmodel = "b"\nid = "x"',
      'models.toml: models[0] and models[1] are both named "x"; give one an id',
    ],
    [
      'a default that is not listed',
      'default_model_id = "z"\n[[models]]\nmodel = "a"',
      'models.toml: default_model_id "z" is not one of the models\' ids (a)',
    ],
    ['command = "run"', 'command = "run"\n[[models]]\nmodel = "a"', /^models\.toml: command must be "serve"/],
    [
      'a bad max_memory',
      '[server]\nmax_memory = "lots"\n[[models]]\nmodel = "a"',
      /^models\.toml: \[server\]\.max_memory: "lots" is not a byte size/,
    ],
    [
      'an unknown [server] key',
      '[server]\nprot = 1\n[[models]]\nmodel = "a"',
      /^models\.toml: unknown key \[server\]\.prot \(known: .*max_memory\)$/,
    ],
  ])('%s', (_name, text, message) => {
    expect(() => parseModelsConfig(text, FILE)).toThrow(message);
  });

  it('invalid JSON in a .json file', () => {
    expect(() => parseModelsConfig('{"models": [', 'models.json')).toThrow(/^models\.json: not valid JSON: /);
  });
});
