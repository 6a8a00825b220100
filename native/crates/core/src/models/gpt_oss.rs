//! `gpt_oss`: gpt-oss 20B and 120B. GQA attention with Q/K/V and output biases, a learned
//! sink logit per head in every softmax, NeoX RoPE (YaRN), windowed and full layers
//! alternating (the even layers windowed); in every layer a mixture of experts: the router's
//! logits plus a bias choose the experts, a softmax over the chosen ones weights them, and
//! each expert (with biases) runs gpt-oss's clamped SwiGLU, `g · σ(1.702 g) · (u + 1)`.
//! Expert matrices in MXFP4 (the released files' type: a GGUF's, or a checkpoint's `*_blocks`
//! and `*_scales`), F16, BF16 or Q8_0.

use crate::hf_config::HfDefaults;
use crate::layers::moe::{ExpertActivation, Gating};
use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{ExpertStack, HfCheckpoint, HfExperts, DECODER_GLOBALS};

const GPT_OSS: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Neox,
    qkv_bias: Need::Required,
    o_bias: Need::Required,
    attn_sinks: Need::Required,
    experts: Need::Required,
    renormalise: Some(false),
    expert_biases: Need::Required,
    gating: Some(Gating::SoftmaxWeight),
    activation: ExpertActivation::SwigluOai {
        alpha: 1.702,
        limit: 7.0,
    },
    ffn_norm: "post_attention_norm",
    sliding_pattern: Some(2),
    ..LLAMA
};

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[&[
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("attn_sinks.weight", "self_attn.sinks"),
        ("post_attention_norm", "post_attention_layernorm"),
        ("ffn_gate_inp", "mlp.router"),
    ]],
    experts: Some(HfExperts {
        block: "mlp",
        names: ["gate_up_proj", "gate_up_proj", "down_proj"],
        stack: ExpertStack::GptOss,
    }),
    norm_offset: 0.0,
    defaults: HfDefaults::new(),
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, GPT_OSS)
}
