//! `qwen3_moe`: Qwen 3 mixture-of-experts models (30B-A3B, 235B-A22B). Qwen 3's decoder (NeoX
//! rotation, per-head Q/K RMS norms, both required) with a mixture of experts in every layer
//! (required: softmax router, top-8 of 128, renormalised as `norm_topk_prob` says,
//! `moe_intermediate_size` per expert). GGUF: `qwen3moe`.

use crate::hf_config::HfDefaults;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, HF_LAYER};
use crate::models::qwen3::QWEN3;
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS, MLP_EXPERTS};

const QWEN3_MOE: LlamaVariant = LlamaVariant {
    experts: Need::Required,
    ..QWEN3
};

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[&[("ffn_gate_inp", "mlp.gate")], HF_LAYER],
    experts: Some(MLP_EXPERTS),
    norm_offset: 0.0,
    defaults: HfDefaults::new(),
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, QWEN3_MOE)
}
