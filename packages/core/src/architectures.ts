/**
 * The text architectures of mistral.rs's support matrix, keyed by the Hugging Face
 * `model_type` the native registry uses as their id. Every name an architecture goes by
 * (`model_type`s, GGUF `general.architecture`, mistral.rs's `-a`) and whether it runs come
 * from the native registry (`runtimeInfo().architectureTable`), never from this table; the
 * table says what each architecture is, and `architectureMatrix()` renders both as the
 * Markdown table in docs/architectures.md (a test keeps the two equal).
 */
import { runtimeInfo, type ArchitectureEntry } from './runtime-info.js';

export interface ArchitectureRow {
  /** transformers' `model_type`: the native registry's id. */
  id: string;
  /** The family and versions it covers. */
  models: string;
  /** What differs from the Llama decoder. */
  traits: string;
}

export const ARCHITECTURES: readonly ArchitectureRow[] = [
  { id: 'llama', models: 'Llama 2, 3.1, 3.2; SmolLM2', traits: 'the reference decoder; Llama 3 RoPE factors' },
  { id: 'mistral', models: 'Mistral v0.1–v0.3', traits: 'sliding window (from config.json; its GGUFs are `llama`, named by `-a mistral`)' },
  { id: 'gemma', models: 'Gemma', traits: 'scaled embeddings, GeGLU, norms +1' },
  { id: 'gemma2', models: 'Gemma 2', traits: 'sandwich norms, alternating windows, soft-capped scores and logits' },
  { id: 'gemma3', models: 'Gemma 3 (text)', traits: 'QK-norm, 5 local : 1 global layers, two RoPE bases' },
  { id: 'qwen2', models: 'Qwen 2, 2.5', traits: 'Q/K/V biases (required), YaRN' },
  { id: 'qwen3', models: 'Qwen 3', traits: 'per-head Q/K norms (required)' },
  {
    id: 'phi3',
    models: 'Phi 3, Phi 4 mini',
    traits: 'fused QKV and gate/up, LongRoPE (short or long factors by context, as llama.cpp picks)',
  },
  {
    id: 'phi',
    models: 'Phi 2',
    traits: 'LayerNorm with bias, parallel attention and GELU MLP, biased projections and head, partial rotary',
  },
  { id: 'mixtral', models: 'Mixtral', traits: 'mixture of experts: softmax router, top-2 of 8, weights renormalised' },
  {
    id: 'phimoe',
    models: 'Phi 3.5 MoE',
    traits:
      'Phi 3 attention with biases, 16 experts (top 2), biased norms and head; computed as llama.cpp does (RMS norms plus bias, softmax router renormalised), not as transformers (LayerNorm, sparsemixer)',
  },
  {
    id: 'starcoder2',
    models: 'Starcoder 2',
    traits: 'LayerNorm with bias, GELU MLP, biased projections, sliding window (from config.json)',
  },
  {
    id: 'deepseek_v2',
    models: 'DeepSeek V2, V2-Lite, V2.5',
    traits:
      'latent attention (MLA, absorbed: one cached latent head), leading dense layers, softmax router with scale and groups, shared experts, YaRN with `mscale_all_dim`',
  },
  {
    id: 'deepseek_v3',
    models: 'DeepSeek V3, R1',
    traits:
      'V2 with low-rank queries, a sigmoid router with a selection bias, group routing (top-2 sums), renormalised and scaled; multi-token-prediction layers skipped',
  },
  {
    id: 'qwen3_moe',
    models: 'Qwen 3 MoE',
    traits: 'Qwen 3 with a mixture of experts in every layer (top-8 of 128, `moe_intermediate_size`)',
  },
  { id: 'smollm3', models: 'SmolLM3', traits: 'every fourth layer without RoPE (NoPE; `no_rope_layers` in config.json)' },
  {
    id: 'glm4',
    models: 'GLM-4 (0414), GLM-Z1',
    traits: 'norms after attention and after the MLP too, Q/K/V biases, fused gate/up, RoPE over half of each head in adjacent pairs',
  },
  {
    id: 'glm4_moe',
    models: 'GLM-4.5, 4.6, 4.7, 4.5-Air',
    traits:
      'leading dense layers, then a sigmoid router with a selection bias (renormalised, scaled) plus shared experts; Q/K/V biases, optional Q/K norms, NeoX RoPE over half of each head; multi-token-prediction layer skipped',
  },
  {
    id: 'glm4_moe_lite',
    models: 'GLM-4.7-Flash',
    traits:
      'DeepSeek V3 shaped: latent attention, low-rank queries, sigmoid router with a selection bias, shared experts; dense layers listed in `mlp_layer_types`; its GGUFs are `deepseek2` (a sigmoid router told by shape when the file does not say)',
  },
  {
    id: 'gpt_oss',
    models: 'gpt-oss 20B, 120B',
    traits:
      'attention sinks, windowed and full layers alternating, biases on Q/K/V, output, router and experts; experts chosen by logits and weighted by a softmax over the chosen; clamped SwiGLU; YaRN (without truncation from config.json, as transformers); experts in MXFP4 (GGUF and checkpoint), F16, BF16 or Q8_0',
  },
  {
    id: 'hunyuan_v1_dense',
    models: 'Hunyuan 0.5B–7B (dense)',
    traits: 'per-head Q/K norms after RoPE, NTK-aware `alpha` (the base scaled by alpha^(d/(d−2)))',
  },
  {
    id: 'hunyuan_v1_moe',
    models: 'Hunyuan-A13B',
    traits: 'Hunyuan dense attention; 64 experts (top 8, renormalised) plus a shared expert in every layer',
  },
  {
    id: 'granitemoehybrid',
    models: 'Granite 4.0 H (Micro, Tiny, Small)',
    traits:
      'hybrid: Mamba-2 layers (causal convolution, selective scan; a recurrent state per sequence) in most layers, GQA without RoPE in the others; dense MLP or softmax-routed experts plus a shared expert; embedding, residual, attention and logit multipliers; no prefix caching or speculation',
  },
  {
    id: 'lfm2',
    models: 'LFM2 350M–2.6B, LFM2.5',
    traits:
      'hybrid: gated short convolutions (3 taps; a recurrent state per sequence) in most layers, GQA with Q/K norms before NeoX RoPE in the others; final norm `embedding_norm`; no prefix caching or speculation',
  },
  {
    id: 'lfm2_moe',
    models: 'LFM2-8B-A1B, LFM2-24B-A2B',
    traits: "LFM2's hybrid layers; dense leading layers, then a sigmoid router with a selection bias over experts (renormalised)",
  },
  {
    id: 'qwen3_next',
    models: 'Qwen3-Next 80B-A3B (Instruct, Thinking)',
    traits:
      'hybrid: gated delta nets (linear attention: causal convolution, L2-normed q/k, decay and step per value head; a recurrent state per sequence) in three layers of four, gated attention (an output gate per head, Q/K norms, NeoX RoPE on a quarter of each head) in the fourth; softmax-routed experts plus a shared expert under a sigmoid gate; no prefix caching or speculation',
  },
];

const code = (names: readonly string[]) => names.map((n) => `\`${n}\``).join(', ');

/** The matrix as Markdown: names and whether it runs (from the native registry), formats,
 * checks and traits. */
export function architectureMatrix(table: readonly ArchitectureEntry[] = runtimeInfo().architectureTable): string {
  const lines = [
    '| `model_type` | `-a` | GGUF `general.architecture` | models | runs | formats | checked against llama.cpp | what differs from Llama |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const row of ARCHITECTURES) {
    const entry = table.find((e) => e.id === row.id);
    const cli = entry ? (entry.cliNames.length > 0 ? entry.cliNames : [entry.id]) : [];
    const gguf = entry ? `\`${entry.gguf}\`${entry.ggufMatch ? ` ${entry.ggufMatch}` : ''}` : '';
    lines.push(
      `| ${code([row.id, ...(entry?.modelTypes ?? [])])} | ${code(cli)} | ${gguf} | ${row.models} | ${entry ? 'yes' : 'not yet'} | ` +
        `${entry ? 'GGUF, safetensors' : ''} | ${entry ? 'F16, Q8_0, Q4_K tiny models' : ''} | ${row.traits} |`,
    );
  }
  return lines.join('\n');
}
