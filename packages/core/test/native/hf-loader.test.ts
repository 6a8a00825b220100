/**
 * The same weights through both loaders: each architecture's tiny model (fixtures/tiny-model.ts)
 * written as a GGUF the way llama.cpp's converter lays it out (Llama's Q/K rows permuted,
 * Gemma's norms shifted by 1, Llama 3 scaling as a `rope_freqs` tensor) and as a Hugging Face
 * folder (config.json, sharded safetensors, tokenizer.json) must give the same model: logits
 * within float rounding (the rotation pairs elements in another order) and the same tokens.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Engine } from '../../src/index.js';
import { hfTokenizerDir, vocabPath, writeTinyGguf, writeTinyHf, type TinySpec } from '../fixtures/tiny-model.js';

const fixtures = needsFixtures('the tiny models', [vocabPath, join(hfTokenizerDir, 'tokenizer.json')]);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hf-loader-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** [name, spec, the architecture id both loaders report (GGUF, HF)]. */
const CASES: Array<[string, TinySpec, [string, string]]> = [
  ['llama', { arch: 'llama' }, ['llama', 'llama']],
  // llama.cpp's Mistral GGUFs say `llama`; the folder says what it is.
  ['mistral (window 4)', { arch: 'mistral', slidingWindow: 4 }, ['llama', 'mistral']],
  ['qwen2', { arch: 'qwen2' }, ['qwen2', 'qwen2']],
  ['qwen3', { arch: 'qwen3' }, ['qwen3', 'qwen3']],
  // GGUF `llama` with experts is Mixtral.
  ['mixtral (4 experts, top 2)', { arch: 'mixtral' }, ['mixtral', 'mixtral']],
  ['qwen3_moe (4 experts, top 2)', { arch: 'qwen3moe' }, ['qwen3_moe', 'qwen3_moe']],
  ['phi3', { arch: 'phi3' }, ['phi3', 'phi3']],
  ['phi (Phi 2)', { arch: 'phi2' }, ['phi', 'phi']],
  ['starcoder2', { arch: 'starcoder2' }, ['starcoder2', 'starcoder2']],
  ['gemma', { arch: 'gemma' }, ['gemma', 'gemma']],
  ['gemma2 (window 4, soft-caps)', { arch: 'gemma2', slidingWindow: 4 }, ['gemma2', 'gemma2']],
  ['gemma3 (window 4)', { arch: 'gemma3', slidingWindow: 4 }, ['gemma3', 'gemma3']],
  [
    'llama, Llama 3 scaling',
    { arch: 'llama', ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 64 } },
    ['llama', 'llama'],
  ],
  ['qwen2, YaRN', { arch: 'qwen2', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64 } }, ['qwen2', 'qwen2']],
  ['phi3, LongRoPE', { arch: 'phi3', ropeScaling: { type: 'longrope', originalContext: 64 } }, ['phi3', 'phi3']],
  ['phimoe', { arch: 'phimoe' }, ['phimoe', 'phimoe']],
  ['deepseek_v2', { arch: 'deepseekv2' }, ['deepseek_v2', 'deepseek_v2']],
  ['deepseek_v3', { arch: 'deepseekv3' }, ['deepseek_v3', 'deepseek_v3']],
  [
    'deepseek_v2, YaRN with mscale_all_dim',
    { arch: 'deepseekv2', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64, mscaleAllDim: 0.75 } },
    ['deepseek_v2', 'deepseek_v2'],
  ],
  // config.json as transformers 4 wrote it (top-level rope_theta, rope_scaling,
  // partial_rotary_factor, rope_local_base_freq): most checkpoints on the hub.
  [
    'llama, Llama 3 scaling, transformers 4 config',
    {
      arch: 'llama',
      hfConfigFormat: 'v4',
      ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 64 },
    },
    ['llama', 'llama'],
  ],
  [
    'qwen2, YaRN, transformers 4 config',
    { arch: 'qwen2', hfConfigFormat: 'v4', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64 } },
    ['qwen2', 'qwen2'],
  ],
  [
    'phi3, LongRoPE, transformers 4 config',
    { arch: 'phi3', hfConfigFormat: 'v4', ropeScaling: { type: 'longrope', originalContext: 64 } },
    ['phi3', 'phi3'],
  ],
  ['phi (Phi 2), transformers 4 config', { arch: 'phi2', hfConfigFormat: 'v4' }, ['phi', 'phi']],
  ['gemma3 (window 4), transformers 4 config', { arch: 'gemma3', slidingWindow: 4, hfConfigFormat: 'v4' }, ['gemma3', 'gemma3']],
  ['deepseek_v3, transformers 4 config', { arch: 'deepseekv3', hfConfigFormat: 'v4' }, ['deepseek_v3', 'deepseek_v3']],
  ['smollm3 (NoPE every 4th layer)', { arch: 'smollm3' }, ['smollm3', 'smollm3']],
  ['glm4 (post norms, half rotary in pairs)', { arch: 'glm4' }, ['glm4', 'glm4']],
  ['glm4, transformers 4 config', { arch: 'glm4', hfConfigFormat: 'v4' }, ['glm4', 'glm4']],
  ['hunyuan_v1_dense (QK norms after RoPE, alpha)', { arch: 'hunyuan' }, ['hunyuan_v1_dense', 'hunyuan_v1_dense']],
  ['hunyuan_v1_dense, transformers 4 config', { arch: 'hunyuan', hfConfigFormat: 'v4' }, ['hunyuan_v1_dense', 'hunyuan_v1_dense']],
  ['glm4_moe (dense layer, sigmoid router, shared expert)', { arch: 'glm4moe' }, ['glm4_moe', 'glm4_moe']],
  ['glm4_moe, transformers 4 config', { arch: 'glm4moe', hfConfigFormat: 'v4' }, ['glm4_moe', 'glm4_moe']],
  ['glm4_moe_lite (MLA, mlp_layer_types)', { arch: 'glm4moelite' }, ['deepseek_v3', 'glm4_moe_lite']],
  ['gpt_oss (sinks, window 4 on even layers, stacked experts)', { arch: 'gptoss', slidingWindow: 4 }, ['gpt_oss', 'gpt_oss']],
  ['gpt_oss, transformers 4 config', { arch: 'gptoss', slidingWindow: 4, hfConfigFormat: 'v4' }, ['gpt_oss', 'gpt_oss']],
  ['hunyuan_v1_moe (shared expert)', { arch: 'hunyuanmoe' }, ['hunyuan_v1_moe', 'hunyuan_v1_moe']],
  ['hunyuan_v1_moe, per-layer lists', { arch: 'hunyuanmoe', hfConfigFormat: 'v4' }, ['hunyuan_v1_moe', 'hunyuan_v1_moe']],
  ['lfm2 (short convolutions, layer_types, MLP width ⅔ of intermediate_size)', { arch: 'lfm2' }, ['lfm2', 'lfm2']],
  ['lfm2, transformers 4 config (full_attn_idxs, block_ff_dim)', { arch: 'lfm2', hfConfigFormat: 'v4' }, ['lfm2', 'lfm2']],
  ['lfm2_moe (dense layer, sigmoid router with expert_bias)', { arch: 'lfm2moe' }, ['lfm2_moe', 'lfm2_moe']],
  ['granitemoehybrid (Mamba-2 with A_log, fused shared_mlp)', { arch: 'granite' }, ['granitemoehybrid', 'granitemoehybrid']],
  ['granitemoehybrid with experts (stacked input_linear)', { arch: 'granitemoe' }, ['granitemoehybrid', 'granitemoehybrid']],
  // As released: MXFP4 experts (blocks and scales; the GGUF's experts are MXFP4 too).
  ['gpt_oss with MXFP4 experts (blocks and scales)', { arch: 'gptoss', expertType: 'MXFP4' }, ['gpt_oss', 'gpt_oss']],
  ['qwen3_next (in_proj_qkvz grouped per key head, norms as offsets, layer_types)', { arch: 'qwen3next' }, ['qwen3_next', 'qwen3_next']],
  [
    'qwen3_next, transformers 4 config (full_attention_interval)',
    { arch: 'qwen3next', hfConfigFormat: 'v4' },
    ['qwen3_next', 'qwen3_next'],
  ],
];

fixtures.describe.each(CASES)('%s weights through the GGUF and the Hugging Face loaders', (name, spec, [ggufArch, hfArch]) => {
  it('give the same logits and tokens', async () => {
    const slug = name.replace(/\W+/g, '-');
    const gguf = join(dir, `${slug}.gguf`);
    const hf = join(dir, slug);
    await writeTinyGguf(gguf, spec, 'F16');
    await writeTinyHf(hf, spec);
    const a = await Engine.load({ model: gguf, kvTokens: 128 });
    const b = await Engine.load({ model: hf, kvTokens: 128 });
    try {
      expect(a.info.architecture).toBe(ggufArch);
      expect(b.info.architecture).toBe(hfArch);
      for (const prompt of [
        [1, 450, 4996, 17354, 1701],
        [1, 910, 338, 263, 1243, 310, 278, 11262, 1788],
      ]) {
        const la = await a.nextTokenLogits(prompt);
        const lb = await b.nextTokenLogits(prompt);
        let maxAbs = 0;
        for (const [i, v] of la.entries()) maxAbs = Math.max(maxAbs, Math.abs(v - lb[i]!));
        expect(maxAbs).toBeLessThan(1e-3);
        const ga = await a.complete({ prompt, maxTokens: 12, ignoreEos: true }).result;
        const gb = await b.complete({ prompt, maxTokens: 12, ignoreEos: true }).result;
        expect(gb.tokenIds).toEqual(ga.tokenIds);
      }
    } finally {
      a.close();
      b.close();
    }
  }, 120_000);
});

/** Files that are not what their architecture requires, or not what `architecture` (`-a`)
 * names, are refused with an error naming both sides. */
fixtures.describe('identity', () => {
  const load = (model: string, architecture?: string) => Engine.load({ model, kvTokens: 64, ...(architecture ? { architecture } : {}) });
  const refused = async (model: string, architecture: string | undefined, ...needles: string[]) => {
    const error = await load(model, architecture).then(
      (e) => {
        e.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'UnsupportedModelError' });
    for (const needle of needles) expect((error as Error).message).toContain(needle);
  };

  it('refuses a qwen3 file without Q/K norms and a qwen2 folder without biases, naming the tensor', async () => {
    const gguf = join(dir, 'qwen3-no-norms.gguf');
    await writeTinyGguf(gguf, { arch: 'qwen3', omitTensors: /attn_[qk]_norm/ }, 'F16');
    await refused(gguf, undefined, 'architecture `qwen3` requires tensor `blk.0.attn_q_norm.weight`');
    const hf = join(dir, 'qwen2-no-biases');
    await writeTinyHf(hf, { arch: 'qwen2', omitTensors: /\.bias$/ });
    await refused(hf, undefined, 'architecture `qwen2` requires tensor `model.layers.0.self_attn.q_proj.bias`');
  }, 120_000);

  it("refuses an architecture (-a) that is not the file's, naming both, and accepts one that is", async () => {
    const mixtral = join(dir, 'identity-mixtral.gguf');
    await writeTinyGguf(mixtral, { arch: 'mixtral' }, 'Q8_0');
    await refused(mixtral, 'llama', '`llama`', "not the file's: `mixtral`");
    const mistral = join(dir, 'identity-mistral.gguf');
    await writeTinyGguf(mistral, { arch: 'mistral' }, 'Q8_0');
    await refused(mistral, 'qwen2', '`qwen2`', "not the file's: `llama`");
    // A name the registry does not know is a usage error, found before the file is read.
    await expect(load(mistral, 'gpt2')).rejects.toMatchObject({
      code: 'InvalidArgumentError',
      message: expect.stringContaining('unknown architecture "gpt2"'),
    });
    const engine = await load(mistral, 'mistral');
    expect(engine.info.architecture).toBe('mistral');
    engine.close();
  }, 120_000);

  it('refuses the new architectures’ configs and files that cannot run, naming the key or tensor', async () => {
    const cases: Array<[string, TinySpec, string[]]> = [
      ['smollm3-short-nope-list', { arch: 'smollm3', hfConfig: { no_rope_layers: [1, 1] } }, ['`no_rope_layers`', '4 layers']],
      [
        'smollm3-nope-interval-0',
        { arch: 'smollm3', hfConfig: { no_rope_layers: undefined, no_rope_layer_interval: 0 } },
        ['no_rope_layer_interval'],
      ],
      ['glm4moelite-sparse-first', { arch: 'glm4moelite', hfConfig: { mlp_layer_types: ['sparse', 'dense'] } }, ['mlp_layer_types']],
      [
        'hunyuanmoe-mixed-topk',
        { arch: 'hunyuanmoe', hfConfigFormat: 'v4', hfConfig: { moe_topk: [2, 3] } },
        ['`moe_topk` differs between layers'],
      ],
      [
        'hunyuan-alpha-0',
        { arch: 'hunyuan', hfConfigFormat: 'v4', hfConfig: { rope_scaling: { type: 'dynamic', alpha: 0 } } },
        ['alpha 0'],
      ],
      ['gptoss-no-sinks', { arch: 'gptoss', slidingWindow: 4, omitTensors: /attn_sinks/ }, ['model.layers.0.self_attn.sinks']],
      ['lfm2-conv-bias', { arch: 'lfm2', hfConfig: { conv_bias: true } }, ['`conv_bias`']],
      ['lfm2-one-tap', { arch: 'lfm2', hfConfig: { conv_L_cache: 1 } }, ['`conv_L_cache`', 'is 1']],
      ['lfm2-unknown-layer-type', { arch: 'lfm2', hfConfig: { layer_types: ['conv', 'mixer', 'conv'] } }, ['layer type "mixer"']],
      ['lfm2-short-layer-types', { arch: 'lfm2', hfConfig: { layer_types: ['conv', 'full_attention'] } }, ['2 entries for 3 layers']],
      [
        'lfm2-attention-index-out',
        { arch: 'lfm2', hfConfigFormat: 'v4', hfConfig: { full_attn_idxs: [1, 7] } },
        ['full_attn_idxs names layer 7'],
      ],
      ['lfm2-no-layer-types', { arch: 'lfm2', hfConfigFormat: 'v4', hfConfig: { full_attn_idxs: undefined } }, ['which layers attend']],
      ['lfm2-no-conv-taps', { arch: 'lfm2', omitTensors: /shortconv\.conv/ }, ['model.layers.0.conv.conv.weight']],
      ['granite-groups', { arch: 'granite', hfConfig: { mamba_n_groups: 3 } }, ['Mamba-2 sizes', '3 groups']],
      ['granite-no-conv-bias', { arch: 'granite', hfConfig: { mamba_conv_bias: false } }, ['convolution bias']],
      ['granite-no-a-log', { arch: 'granite', omitTensors: /ssm_a$/ }, ['model.layers.0.mamba.A_log']],
      ['granite-nan-multiplier', { arch: 'granite', hfConfig: { residual_multiplier: -1 } }, ['residual_multiplier', '-1']],
      [
        'qwen3next-value-heads',
        { arch: 'qwen3next', hfConfig: { linear_num_value_heads: 3 } },
        ['linear-attention sizes', '3 value heads'],
      ],
      [
        'qwen3next-interval-0',
        { arch: 'qwen3next', hfConfigFormat: 'v4', hfConfig: { full_attention_interval: 0 } },
        ['full_attention_interval'],
      ],
      ['qwen3next-no-a-log', { arch: 'qwen3next', omitTensors: /ssm_a$/ }, ['model.layers.0.linear_attn.A_log']],
      ['qwen3next-no-shared-gate', { arch: 'qwen3next', omitTensors: /gate_inp_shexp/ }, ['model.layers.0.mlp.shared_expert_gate.weight']],
    ];
    for (const [name, spec, needles] of cases) {
      const hf = join(dir, name);
      await writeTinyHf(hf, spec);
      const error = await load(hf).then(
        (e) => {
          e.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect([name, (error as Error | undefined)?.message]).toEqual([name, expect.stringContaining(needles[0]!)]);
      for (const needle of needles) expect((error as Error).message).toContain(needle);
    }
  }, 120_000);

  it('refuses a hybrid GGUF whose per-layer KV head counts do not fit its layers', async () => {
    const gguf = join(dir, 'lfm2-head-counts.gguf');
    const heads = { key: 'lfm2.attention.head_count_kv', type: 'array' as const, value: { itemType: 'i32' as const, items: [0, 2] } };
    await writeTinyGguf(gguf, { arch: 'lfm2', ggufMetadata: [heads] }, 'F16');
    await refused(gguf, undefined, 'lfm2.attention.head_count_kv', '2 entries for 3 layers');
    const negative = { ...heads, value: { itemType: 'i32' as const, items: [0, -2, 0] } };
    await writeTinyGguf(gguf, { arch: 'lfm2', ggufMetadata: [negative] }, 'F16');
    await refused(gguf, undefined, 'lfm2.attention.head_count_kv', 'negative');
  }, 120_000);

  it('refuses a qwen3next GGUF whose recurrent-layer list is not booleans for its layers', async () => {
    const gguf = join(dir, 'qwen3next-recurrent-layers.gguf');
    const short = {
      key: 'qwen3next.attention.recurrent_layers',
      type: 'array' as const,
      value: { itemType: 'bool' as const, items: [true] },
    };
    await writeTinyGguf(gguf, { arch: 'qwen3next', ggufMetadata: [short] }, 'F16');
    await refused(gguf, undefined, 'qwen3next.attention.recurrent_layers', '1 entries for 3 layers');
    const numbers = { ...short, value: { itemType: 'u32' as const, items: [1, 1, 0] } };
    await writeTinyGguf(gguf, { arch: 'qwen3next', ggufMetadata: [numbers] }, 'F16');
    await refused(gguf, undefined, 'qwen3next.attention.recurrent_layers', 'not an array of booleans');
  }, 120_000);

  it('refuses the model_type llama.cpp and mistral.rs spell, which transformers never writes', async () => {
    const hf = join(dir, 'qwen3moe-misspelt');
    await writeTinyHf(hf, { arch: 'qwen3moe', hfConfig: { model_type: 'qwen3moe' } });
    await refused(hf, undefined, 'model_type `qwen3moe` is not supported');
  }, 120_000);
});
