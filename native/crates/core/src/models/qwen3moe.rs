//! `qwen3moe`: Qwen 3 mixture-of-experts models (30B-A3B, 235B-A22B). Qwen 3's decoder (NeoX
//! rotation, per-head Q/K RMS norms) with a mixture of experts in every layer (softmax
//! router, top-8 of 128, weights renormalised, `moe_intermediate_size` per expert).

use crate::layers::RopeStyle;
use crate::model_error::{ModelError, Result};
use crate::models::llama::{Llama, LlamaVariant};
use crate::models::Model;
use crate::weights::Weights;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    if w.moe()?.is_none() {
        return Err(ModelError::Unsupported(format!(
            "{}: a Qwen 3 MoE model needs its experts (num_experts / expert_count)",
            w.source()
        )));
    }
    Llama::load_variant(
        w,
        LlamaVariant {
            rope_style: RopeStyle::Neox,
            prescale_queries: false,
        },
    )
}
