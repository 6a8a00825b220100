//! `smollm3`: SmolLM3. The Llama decoder in which every fourth layer attends without
//! positions (NoPE): its queries and keys are not rotated. llama.cpp fixes the interval at 4;
//! a checkpoint lists the rotating layers in `no_rope_layers`.

use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant};
use crate::models::Model;
use crate::weights::{Need, Weights};

const SMOLLM3: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Normal,
    prescale_queries: false,
    qkv_bias: Need::Optional,
    qk_norm: Need::Absent,
    experts: Need::Absent,
    always_renormalise: false,
    fused_gate_up: false,
    post_norms: Need::Absent,
    qk_norm_after_rope: false,
    no_rope_interval: Some(4),
    shared_expert: Need::Absent,
};

/// Llama's names.
pub(crate) use crate::models::llama::HF;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, SMOLLM3)
}
