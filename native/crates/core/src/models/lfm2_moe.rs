//! `lfm2_moe`: LFM2-8B-A1B and LFM2-24B-A2B. LFM2's hybrid of short convolutions and
//! attention, with its leading layers dense and the others a mixture of experts: a sigmoid
//! router whose selection bias (`expert_bias`) picks the experts, their weights renormalised.

use crate::model_error::Result;
use crate::models::lfm2::Lfm2;
use crate::models::Model;
use crate::weights::Weights;

/// LFM2's names; the experts are `feed_forward.experts.E.w1/w3/w2`.
pub(crate) use crate::models::lfm2::HF;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Lfm2::load(w, true)
}
