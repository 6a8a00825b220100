//! `glm4_moe_lite`: GLM-4.7-Flash. DeepSeek V3's decoder ([`super::deepseek_v2`]): latent
//! attention with low-rank queries, a sigmoid router with a selection bias, renormalised and
//! scaled, shared experts. Its config lists the dense and sparse layers in `mlp_layer_types`;
//! llama.cpp's converter writes it as `deepseek2` (which runs as `deepseek_v3`; `-a
//! glm4moelite` names it), without `expert_gating_func`, a sigmoid router by its shape.

pub(crate) use crate::models::deepseek_v2::load;
/// DeepSeek V3's names and class defaults (sigmoid, `noaux_tc`, renormalised).
pub(crate) use crate::models::deepseek_v3::HF;
