//! `gemma`: Gemma (1). The Gemma decoder (see `gemma3`) in its first form: embeddings scaled
//! by √d, GeGLU, NeoX RoPE, queries scaled by 1/√head_dim, norms only before attention and
//! the MLP, no windows, no soft-caps.

use crate::model_error::Result;
use crate::models::gemma3::{Gemma3, GemmaVariant};
use crate::models::Model;
use crate::weights::Weights;

const GEMMA: GemmaVariant = GemmaVariant {
    qk_norm: false,
    post_norms: false,
    sliding_pattern: 2,
    local_rope_base: None,
    attn_softcap: None,
    final_softcap: None,
    wide_query_scale_layers: 0,
    default_window: None,
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Gemma3::load_variant(w, &GEMMA)
}
