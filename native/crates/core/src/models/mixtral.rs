//! `mixtral`: Mixtral 8x7B / 8x22B. The Llama decoder with a mixture of experts in place of
//! each MLP (required: softmax router, top-2, weights always renormalised). llama.cpp's
//! converter writes it as `llama` with `llama.expert_count`, which the registry recognises.

use crate::hf_config::HfDefaults;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, HF_LAYER, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{ExpertStack, HfCheckpoint, HfExperts, DECODER_GLOBALS};

const MIXTRAL: LlamaVariant = LlamaVariant {
    qkv_bias: Need::Absent,
    experts: Need::Required,
    renormalise: Some(true),
    ..LLAMA
};

/// The router and experts under `block_sparse_moe` (`w1` gate, `w3` up, `w2` down).
const HF_MOE: &[(&str, &str)] = &[("ffn_gate_inp", "block_sparse_moe.gate")];
const HF_EXPERTS: HfExperts = HfExperts {
    block: "block_sparse_moe",
    names: ["w1", "w3", "w2"],
    stack: ExpertStack::PerExpert,
};

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[HF_MOE, HF_LAYER],
    experts: Some(HF_EXPERTS),
    norm_offset: 0.0,
    defaults: HfDefaults::new(),
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, MIXTRAL)
}
