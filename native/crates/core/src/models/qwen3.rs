//! `qwen3`: Qwen 3 dense models. The Llama decoder with NeoX rotation and an RMS norm over
//! each query and key head before RoPE (required); no Q/K/V biases unless the checkpoint's
//! `attention_bias` says so.

use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};

pub(crate) const QWEN3: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Neox,
    qkv_bias: Need::Absent,
    qk_norm: Need::Required,
    ..LLAMA
};

/// Llama's names (`self_attn.q_norm`, `self_attn.k_norm` among them).
pub(crate) use crate::models::llama::HF;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, QWEN3)
}
