//! `qwen3`: Qwen 3 dense models. The Llama decoder with NeoX rotation and an RMS norm over
//! each query and key head before RoPE (no Q/K/V biases).

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
            prescale_queries: false,
        },
    )
}
