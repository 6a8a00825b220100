//! `qwen2`: Qwen 2 / 2.5. The Llama decoder with biases on Q, K and V and NeoX rotation (the
//! GGUF converter does not permute Qwen's Q/K rows).

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
