//! `phi3`: Phi 3 / Phi 4 mini. The Llama decoder with Q, K and V fused in one matrix, the
//! gate and up projections fused in another, NeoX rotation, and queries scaled before
//! attention. LongRoPE checkpoints (the 128k-context ones) are refused for now.

use crate::layers::RopeStyle;
use crate::model_error::{ModelError, Result};
use crate::models::llama::{Llama, LlamaVariant};
use crate::models::Model;
use crate::weights::Weights;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    if w.has("rope_factors_long.weight") || w.has("blk.0.rope_factors_long.weight") {
        return Err(ModelError::Unsupported(format!(
            "{}: LongRoPE (Phi 3 128k) is not supported yet",
            w.source()
        )));
    }
    Llama::load_variant(
        w,
        LlamaVariant {
            rope_style: RopeStyle::Neox,
            prescale_queries: true,
        },
    )
}
