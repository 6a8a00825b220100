//! `phi3`: Phi 3 / Phi 4 mini. The Llama decoder with Q, K and V fused in one matrix, the
//! gate and up projections fused in another, NeoX rotation, and queries scaled before
//! attention. LongRoPE (the 128k-context checkpoints): the short or long frequency set by the
//! context a sequence may hold, as llama.cpp picks it.

use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant};
use crate::models::Model;
use crate::weights::Weights;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(
        w,
        LlamaVariant {
            rope_style: RopeStyle::Neox,
            prescale_queries: true,
        },
    )
}
