//! `glm4`: GLM-4 (0414) dense models. The Llama decoder with a norm after attention and
//! another after the MLP (each before its residual add), Q/K/V biases, the gate and up
//! projections in one matrix, and RoPE over the first half of each head in adjacent pairs
//! (the checkpoint's own rotation: neither converter permutes the rows).

use crate::hf_config::HfDefaults;
use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, HF_LAYER, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS};

const GLM4: LlamaVariant = LlamaVariant {
    fused_gate_up: true,
    post_norms: Need::Required,
    mtp_layers: true,
    ..LLAMA
};

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[
        &[
            ("post_attention_norm", "post_self_attn_layernorm"),
            ("post_ffw_norm", "post_mlp_layernorm"),
            ("ffn_up", "mlp.gate_up_proj"),
        ],
        HF_LAYER,
    ],
    experts: None,
    norm_offset: 0.0,
    defaults: HfDefaults {
        partial_rotary_factor: 0.5,
        rope_style: RopeStyle::Normal,
        ..HfDefaults::new()
    },
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, GLM4)
}
