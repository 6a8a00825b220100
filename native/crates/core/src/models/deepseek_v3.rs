//! `deepseek_v3`: DeepSeek V3 and R1. DeepSeek V2's decoder ([`super::deepseek_v2`]) with
//! low-rank queries, a sigmoid router with a selection bias, group routing by the sum of each
//! group's two best experts, renormalised and scaled. transformers' configuration class has no
//! `scoring_func` or `topk_method` for it (it is always `sigmoid` and `noaux_tc`); GGUF:
//! `deepseek2`, told from V2 by its sigmoid gating.

use crate::hf_config::HfDefaults;
use crate::weights_hf::HfCheckpoint;

pub(crate) use crate::models::deepseek_v2::load;

pub(crate) const HF: HfCheckpoint = crate::models::deepseek_v2::hf_checkpoint(HfDefaults {
    scoring_func: "sigmoid",
    topk_method: "noaux_tc",
    norm_topk_prob: true,
    ..HfDefaults::new()
});
