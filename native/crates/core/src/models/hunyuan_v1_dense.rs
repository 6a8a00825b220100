//! `hunyuan_v1_dense`: Hunyuan dense models (0.5B–7B). The Llama decoder with NeoX rotation
//! and an RMS norm over each query and key head *after* RoPE. Their `dynamic` scaling with an
//! `alpha` is NTK-aware: a larger base for every context (llama.cpp's converter stores the
//! scaled base; a checkpoint's is computed from `alpha` at load).

use crate::hf_config::HfDefaults;
use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, HF_LAYER, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS};

pub(crate) const HUNYUAN: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Neox,
    qk_norm: Need::Required,
    qk_norm_after_rope: true,
    ..LLAMA
};

/// HunYuan's per-head norms are `query_layernorm` and `key_layernorm`.
pub(crate) const HF_QK_NORMS: &[(&str, &str)] = &[
    ("attn_q_norm", "self_attn.query_layernorm"),
    ("attn_k_norm", "self_attn.key_layernorm"),
];

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[HF_QK_NORMS, HF_LAYER],
    experts: None,
    norm_offset: 0.0,
    defaults: HfDefaults::new(),
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, HUNYUAN)
}
