/**
 * The text architectures of mistral.rs's support matrix, and which of them this build runs.
 * Whether a row works comes from the native model registry (`runtimeInfo().architectures`),
 * never from this table; the table says what each row is and how it is checked, and
 * `architectureMatrix()` renders both as the Markdown table in docs/architectures.md (a test
 * keeps the two equal).
 */
import { runtimeInfo } from './runtime-info.js';

export interface ArchitectureRow {
  /** The seed's `-a/--arch` name. */
  arch: string;
  /** The family and versions it covers. */
  models: string;
  /** The native registry id that runs it (`general.architecture` / `model_type`). */
  registryId: string;
  /** What differs from the Llama decoder. */
  traits: string;
}

export const ARCHITECTURES: readonly ArchitectureRow[] = [
  { arch: 'llama', models: 'Llama 2, 3.1, 3.2; SmolLM2', registryId: 'llama', traits: 'the reference decoder; Llama 3 RoPE factors' },
  { arch: 'mistral', models: 'Mistral v0.1–v0.3', registryId: 'llama', traits: 'sliding window (from config.json)' },
  { arch: 'gemma', models: 'Gemma', registryId: 'gemma', traits: 'scaled embeddings, GeGLU, norms +1' },
  { arch: 'gemma2', models: 'Gemma 2', registryId: 'gemma2', traits: 'sandwich norms, alternating windows, soft-capped scores and logits' },
  { arch: 'gemma3', models: 'Gemma 3 (text)', registryId: 'gemma3', traits: 'QK-norm, 5 local : 1 global layers, two RoPE bases' },
  { arch: 'qwen2', models: 'Qwen 2, 2.5', registryId: 'qwen2', traits: 'Q/K/V biases, YaRN' },
  { arch: 'qwen3', models: 'Qwen 3', registryId: 'qwen3', traits: 'per-head Q/K norms' },
  { arch: 'phi3', models: 'Phi 3, Phi 4 mini', registryId: 'phi3', traits: 'fused QKV and gate/up, LongRoPE (short or long factors by context, as llama.cpp picks)' },
  { arch: 'phi2', models: 'Phi 2', registryId: 'phi2', traits: 'LayerNorm with bias, parallel attention and GELU MLP, biased projections and head, partial rotary (HF `model_type: phi`)' },
  { arch: 'mixtral', models: 'Mixtral', registryId: 'mixtral', traits: 'mixture of experts: softmax router, top-2 of 8, weights renormalised (GGUF: `llama` with experts)' },
  { arch: 'phi3.5moe', models: 'Phi 3.5 MoE', registryId: 'phimoe', traits: 'Phi 3 attention with biases, 16 experts (top 2), biased norms and head; computed as llama.cpp does (RMS norms plus bias, softmax router renormalised), not as transformers (LayerNorm, sparsemixer)' },
  { arch: 'starcoder2', models: 'Starcoder 2', registryId: 'starcoder2', traits: 'LayerNorm with bias, GELU MLP, biased projections, sliding window (from config.json)' },
  { arch: 'deepseekv2', models: 'DeepSeek V2, V2-Lite, V2.5', registryId: 'deepseek2', traits: 'latent attention (MLA, absorbed: one cached latent head), leading dense layers, softmax router with scale and groups, shared experts, YaRN with `mscale_all_dim`' },
  { arch: 'deepseekv3', models: 'DeepSeek V3, R1', registryId: 'deepseek2', traits: 'V2 with low-rank queries, a sigmoid router with a selection bias, group routing (top-2 sums), renormalised and scaled (GGUF: `deepseek2`, as V2)' },
  { arch: 'qwen3moe', models: 'Qwen 3 MoE', registryId: 'qwen3moe', traits: 'Qwen 3 with a mixture of experts in every layer (top-8 of 128, `moe_intermediate_size`)' },
];

/** The matrix as Markdown: works or not (from the native registry), formats and checks. */
export function architectureMatrix(supported: readonly string[] = runtimeInfo().architectures): string {
  const lines = [
    '| `-a` | models | runs | formats | checked against llama.cpp | what differs from Llama |',
    '|---|---|---|---|---|---|',
  ];
  for (const row of ARCHITECTURES) {
    const runs = supported.includes(row.registryId);
    lines.push(
      `| \`${row.arch}\` | ${row.models} | ${runs ? 'yes' : 'not yet'} | ${runs ? 'GGUF, safetensors' : ''} | ` +
        `${runs ? 'F16, Q8_0, Q4_K tiny models' : ''} | ${row.traits} |`,
    );
  }
  return lines.join('\n');
}
