/** The architecture matrix in docs/architectures.md is the one the code's registry generates,
 * and TypeScript resolves names through the native registry's table. */
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';

import { ARCHITECTURES, architectureMatrix, resolveArchitecture, runtimeInfo } from '../../src/index.js';

const docPath = new URL('../../../../docs/architectures.md', import.meta.url);

describe('the architecture matrix', () => {
  it('in the docs equals the generated one', () => {
    const doc = readFileSync(docPath, 'utf8');
    const table = /<!-- architecture-matrix:start -->\n([\s\S]*?)\n<!-- architecture-matrix:end -->/.exec(doc)?.[1];
    expect(table).toBe(architectureMatrix());
  });

  it('has one row for every architecture the native registry builds, keyed by its id', () => {
    const ids = runtimeInfo().architectures;
    expect(ARCHITECTURES.map((r) => r.id).sort()).toEqual([...ids].sort());
    expect(runtimeInfo().architectureTable.map((e) => e.id)).toEqual(ids);
  });
});

describe('architecture names', () => {
  it('are the Hugging Face model_type as transformers writes it', () => {
    // transformers' configuration classes (models/<model_type>/configuration_*.py).
    expect(runtimeInfo().architectures.sort()).toEqual(
      [
        'deepseek_v2',
        'deepseek_v3',
        'gemma',
        'gemma2',
        'gemma3',
        'llama',
        'mistral',
        'mixtral',
        'phi',
        'phi3',
        'phimoe',
        'qwen2',
        'qwen3',
        'qwen3_moe',
        'starcoder2',
        'smollm3',
        'glm4',
        'glm4_moe',
        'glm4_moe_lite',
        'gpt_oss',
        'hunyuan_v1_dense',
        'hunyuan_v1_moe',
        'granitemoehybrid',
        'lfm2',
        'lfm2_moe',
        'qwen3_next',
      ].sort(),
    );
  });

  it('resolve every alias of the table to its id', () => {
    for (const e of runtimeInfo().architectureTable) {
      for (const name of [e.id, ...e.modelTypes, ...e.cliNames]) expect([name, resolveArchitecture(name)]).toEqual([name, e.id]);
      // A GGUF name several rows share means the first of them.
      const first = runtimeInfo().architectureTable.find((f) => f.gguf === e.gguf)!;
      expect([e.gguf, resolveArchitecture(e.gguf)]).toEqual([e.gguf, first.id]);
    }
  });

  it('include mistral.rs -a names, GGUF names and other model_types', () => {
    const cases: Array<[string, string]> = [
      ['phi3.5moe', 'phimoe'],
      ['deepseekv2', 'deepseek_v2'],
      ['deepseekv3', 'deepseek_v3'],
      ['qwen3moe', 'qwen3_moe'],
      ['qwen3next', 'qwen3_next'],
      ['phi2', 'phi'],
      ['gemma3_text', 'gemma3'],
      ['deepseek2', 'deepseek_v2'],
      ['Mistral', 'mistral'],
      ['hunyuan-dense', 'hunyuan_v1_dense'],
      ['glm4moe', 'glm4_moe'],
      ['glm4moelite', 'glm4_moe_lite'],
      ['gptoss', 'gpt_oss'],
      ['gpt-oss', 'gpt_oss'],
    ];
    for (const [name, id] of cases) expect([name, resolveArchitecture(name)]).toEqual([name, id]);
    expect(resolveArchitecture('gpt2')).toBeUndefined();
  });
});
