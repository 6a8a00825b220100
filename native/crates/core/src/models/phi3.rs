//! `phi3`: Phi 3 / Phi 4 mini. The Llama decoder with Q, K and V fused in one matrix, the
//! gate and up projections fused in another (separate ones are read too, as llama.cpp does),
//! NeoX rotation, no biases, and queries scaled before attention. LongRoPE (the 128k-context
//! checkpoints): the short or long frequency set by the context a sequence may hold, as
//! llama.cpp picks it.

use crate::hf_config::HfDefaults;
use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, HF_LAYER, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS};

const PHI3: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Neox,
    prescale_queries: true,
    qkv_bias: Need::Absent,
    fused_gate_up: true,
    ..LLAMA
};

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[
        &[
            ("attn_qkv", "self_attn.qkv_proj"),
            ("ffn_up", "mlp.gate_up_proj"),
        ],
        HF_LAYER,
    ],
    experts: None,
    norm_offset: 0.0,
    defaults: HfDefaults::new(),
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, PHI3)
}
