//! `mistral`: Mistral 7B v0.1–v0.3. The Llama decoder (no biases, no experts) with a sliding
//! window when the checkpoint has one (v0.1's 4096). llama.cpp's GGUFs of it say `llama` and
//! carry no window; `-a mistral` accepts them.

use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant};
use crate::models::Model;
use crate::weights::{Need, Weights};

const MISTRAL: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Normal,
    prescale_queries: false,
    qkv_bias: Need::Absent,
    qk_norm: Need::Absent,
    experts: Need::Absent,
    always_renormalise: false,
    fused_gate_up: false,
    post_norms: Need::Absent,
    qk_norm_after_rope: false,
    no_rope_interval: None,
    shared_expert: Need::Absent,
};

/// Llama's names.
pub(crate) use crate::models::llama::HF;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, MISTRAL)
}
