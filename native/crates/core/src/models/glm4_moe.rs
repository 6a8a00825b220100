//! `glm4_moe`: GLM-4.5, GLM-4.6, GLM-4.7 (and GLM-4.5-Air). GQA attention with Q/K/V biases,
//! optional per-head Q/K norms before RoPE, NeoX rotation over half of each head; a dense MLP
//! in the leading layers, then experts chosen by a sigmoid router with a selection bias
//! (renormalised and scaled as the file says) plus shared experts. Its multi-token-prediction
//! layer is skipped.

use crate::hf_config::HfDefaults;
use crate::layers::RopeStyle;
use crate::model_error::Result;
use crate::models::llama::{Llama, LlamaVariant, SharedExpert, HF_LAYER, LLAMA};
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS, MLP_EXPERTS};

const GLM4_MOE: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Neox,
    qk_norm: Need::Optional,
    experts: Need::Required,
    shared_expert: SharedExpert::Experts,
    selection_bias: Need::Required,
    leading_dense: true,
    ffn_norm: "post_attention_norm",
    mtp_layers: true,
    ..LLAMA
};

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[
        &[
            ("post_attention_norm", "post_attention_layernorm"),
            ("ffn_gate_inp", "mlp.gate"),
            ("exp_probs_b.bias", "mlp.gate.e_score_correction_bias"),
            ("ffn_gate_shexp", "mlp.shared_experts.gate_proj"),
            ("ffn_up_shexp", "mlp.shared_experts.up_proj"),
            ("ffn_down_shexp", "mlp.shared_experts.down_proj"),
        ],
        HF_LAYER,
    ],
    experts: Some(MLP_EXPERTS),
    norm_offset: 0.0,
    defaults: HfDefaults {
        partial_rotary_factor: 0.5,
        scoring_func: "sigmoid",
        topk_method: "noaux_tc",
        norm_topk_prob: true,
        ..HfDefaults::new()
    },
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, GLM4_MOE)
}
