//! `gemma2`: Gemma 2. The Gemma decoder (see `gemma3`) without QK-norm, with local and global
//! layers alternating (window 4096 unless the model says otherwise) and soft-capped attention
//! scores (50) and logits (30).

use crate::model_error::Result;
use crate::models::gemma3::{Gemma3, GemmaVariant};

/// Gemma 3's names (the same sandwich norms, offsets from 1).
pub(crate) use crate::models::gemma3::HF;
use crate::models::Model;
use crate::weights::{Need, Weights};

const GEMMA2: GemmaVariant = GemmaVariant {
    qk_norm: Need::Absent,
    post_norms: true,
    sliding_pattern: 2,
    local_rope_base: None,
    attn_softcap: Some(50.0),
    final_softcap: Some(30.0),
    wide_query_scale_layers: 46,
    default_window: Some(4096),
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Gemma3::load_variant(w, &GEMMA2)
}
