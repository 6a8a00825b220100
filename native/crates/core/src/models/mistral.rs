//! `mistral`: Mistral 7B v0.1–v0.3. The Llama decoder (no biases, no experts) with a sliding
//! window when the checkpoint has one (v0.1's 4096). llama.cpp's GGUFs of it say `llama` and
//! carry no window; `-a mistral` accepts them.

use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};

const MISTRAL: LlamaVariant = LlamaVariant {
    qkv_bias: Need::Absent,
    ..LLAMA
};

/// Llama's names.
pub(crate) use crate::models::llama::HF;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, MISTRAL)
}
