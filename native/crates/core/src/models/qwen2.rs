//! `qwen2`: Qwen 2 / 2.5. The Llama decoder with biases on Q, K and V (required) and NeoX
//! rotation (the GGUF converter does not permute Qwen's Q/K rows).

use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};

const QWEN2: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Neox,
    qkv_bias: Need::Required,
    ..LLAMA
};

/// Llama's names.
pub(crate) use crate::models::llama::HF;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, QWEN2)
}
