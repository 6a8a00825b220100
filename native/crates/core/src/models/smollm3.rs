//! `smollm3`: SmolLM3. The Llama decoder in which every fourth layer attends without
//! positions (NoPE): its queries and keys are not rotated. llama.cpp fixes the interval at 4;
//! a checkpoint lists the rotating layers in `no_rope_layers`.

use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, LLAMA};
use crate::models::Model;
use crate::weights::Weights;

const SMOLLM3: LlamaVariant = LlamaVariant {
    no_rope_interval: Some(4),
    ..LLAMA
};

/// Llama's names.
pub(crate) use crate::models::llama::HF;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, SMOLLM3)
}
