//! `hunyuan_v1_moe`: Hunyuan-A13B. HunYuan dense's attention (Q/K norms after RoPE, the
//! NTK-aware `alpha`) with a mixture of experts in every layer: a softmax router whose chosen
//! weights are renormalised, plus a shared SwiGLU expert every token runs, added to the
//! routed experts' sum.

use crate::hf_config::HfDefaults;
use crate::model_error::Result;
use crate::models::hunyuan_v1_dense::{HF_QK_NORMS, HUNYUAN};
use crate::models::llama::{Llama, LlamaVariant, SharedExpert, HF_LAYER};
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS, MLP_EXPERTS};

const HUNYUAN_MOE: LlamaVariant = LlamaVariant {
    experts: Need::Required,
    renormalise: Some(true),
    shared_expert: SharedExpert::Mlp,
    ..HUNYUAN
};

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[
        &[
            ("ffn_gate_inp", "mlp.gate.wg"),
            ("ffn_gate_shexp", "mlp.shared_mlp.gate_proj"),
            ("ffn_up_shexp", "mlp.shared_mlp.up_proj"),
            ("ffn_down_shexp", "mlp.shared_mlp.down_proj"),
        ],
        HF_QK_NORMS,
        HF_LAYER,
    ],
    experts: Some(MLP_EXPERTS),
    norm_offset: 0.0,
    defaults: HfDefaults {
        norm_topk_prob: true,
        ..HfDefaults::new()
    },
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Llama::load_variant(w, HUNYUAN_MOE)
}
