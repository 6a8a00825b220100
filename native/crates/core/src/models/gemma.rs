//! `gemma`: Gemma (1). The Gemma decoder (see `gemma3`) in its first form: embeddings scaled
//! by √d, GeGLU, NeoX RoPE, queries scaled by 1/√head_dim, norms only before attention and
//! the MLP, no windows, no soft-caps.

use crate::hf_config::HfDefaults;
use crate::model_error::Result;
use crate::models::gemma3::{Gemma3, GemmaVariant};
use crate::models::llama::HF_LAYER;
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS};

const GEMMA: GemmaVariant = GemmaVariant {
    qk_norm: Need::Absent,
    post_norms: false,
    sliding_pattern: 2,
    local_rope_base: None,
    attn_softcap: None,
    final_softcap: None,
    wide_query_scale_layers: 0,
    default_window: None,
};

/// Llama's names (`post_attention_layernorm` is the MLP's pre-norm), norms as offsets from 1.
pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[HF_LAYER],
    experts: None,
    norm_offset: 1.0,
    defaults: HfDefaults::new(),
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Gemma3::load_variant(w, &GEMMA)
}
