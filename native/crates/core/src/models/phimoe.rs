//! `phimoe`: Phi 3.5 MoE. Phi 3's attention (NeoX rotation, LongRoPE, queries scaled before
//! the scores) with biased Q/K/V/O, a norm with a bias before each block, a mixture of 16
//! experts (top 2) in every layer, and a biased output head.
//!
//! Computed as llama.cpp computes it, from GGUF and checkpoint alike: the norms are RMSNorms
//! plus the bias, and the router is a softmax whose two best weights are renormalised.
//! transformers' reference differs on both: true LayerNorms, and its `sparsemixer` weights
//! (each chosen expert's softmax among the experts within a relative 2·jitter of it).

use crate::layers::{MoeConfig, RopeStyle};
use crate::model_error::{ModelError, Result};
use crate::models::parts;
use crate::models::starcoder2::{Ffn, GptVariant, Layer, SequentialGpt};
use crate::models::Model;
use crate::weights::{Need, Weights};
use crate::weights_hf::HfCheckpoint;

/// Mixtral's router and expert names, Llama's for the rest: Mixtral's checkpoint layout.
pub(crate) const HF: HfCheckpoint = crate::models::mixtral::HF;

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    let cfg = w.config(RopeStyle::Neox)?;
    let (d, hd) = (cfg.hidden_size, cfg.head_dim);
    let (q_dim, kv_dim) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
    let eps = cfg.rms_norm_eps;
    let moe = w.moe()?.ok_or_else(|| {
        ModelError::Unsupported(format!(
            "{}: a Phi 3.5 MoE model needs its experts (num_local_experts / expert_count)",
            w.source()
        ))
    })?;
    // Renormalised as llama.cpp does (see above), whatever the config says.
    let moe = MoeConfig {
        norm_topk: true,
        ..moe
    };
    // Biased attention projections (Phi 3.5 MoE's `attention_bias: true`; llama.cpp requires
    // the output's).
    let bias = Need::from_flag(w.hparam_bool("attention_bias")?, Need::Required);
    let norm = |name: &str| parts::rms_norm_with_bias(w, name, d, eps);
    let layers = (0..cfg.n_layers)
        .map(|i| {
            Ok(Layer {
                attn_norm: norm(&format!("blk.{i}.attn_norm"))?,
                qkv: parts::qkv(w, i, [d, q_dim, kv_dim], bias)?,
                wo: parts::biased_linear(w, &format!("blk.{i}.attn_output"), [q_dim, d], bias)?,
                ffn_norm: norm(&format!("blk.{i}.ffn_norm"))?,
                ffn: Ffn::Sparse(parts::moe(w, i, d, moe, Need::Absent)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let variant = GptVariant {
        // Queries scaled before the scores, as in Phi 3.
        prescale_queries: true,
        head_bias: Need::from_flag(w.hparam_bool("lm_head_bias")?, Need::Required),
    };
    Ok(Box::new(SequentialGpt::load(
        w, cfg, layers, norm, variant,
    )?))
}
