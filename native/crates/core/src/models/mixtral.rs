//! `mixtral`: Mixtral 8x7B / 8x22B. The Llama decoder with a mixture of experts in place of
//! each MLP (softmax router, top-2, weights renormalised). llama.cpp's converter writes it as
//! `llama` with `llama.expert_count`, so GGUF files load through [`Llama`]; this id serves
//! Hugging Face folders (`model_type: mixtral`) and `-a mixtral`.

use crate::model_error::Result;
use crate::models::llama::Llama;
use crate::models::Model;
use crate::weights::Weights;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    if w.moe()?.is_none() {
        return Err(crate::ModelError::Unsupported(format!(
            "{}: a Mixtral model needs its experts (num_local_experts / expert_count)",
            w.source()
        )));
    }
    Llama::load(w)
}
