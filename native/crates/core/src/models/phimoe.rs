//! `phimoe`: Phi 3.5 MoE. Phi 3's attention (NeoX rotation, LongRoPE, queries scaled before
//! the scores) with biased Q/K/V/O, a norm with a bias before each block, a mixture of 16
//! experts (top 2) in every layer, and a biased output head.
//!
//! Computed as llama.cpp computes it, from GGUF and checkpoint alike: the norms are RMSNorms
//! plus the bias, and the router is a softmax whose two best weights are renormalised.
//! transformers' reference differs on both: true LayerNorms, and its `sparsemixer` weights
//! (each chosen expert's softmax among the experts within a relative 2·jitter of it).

use crate::layers::gpt::{BiasedLinear, LayerNorm, Qkv};
use crate::layers::{Moe, RopeStyle};
use crate::model_error::{ModelError, Result};
use crate::models::starcoder2::{Ffn, Layer, SequentialGpt};
use crate::models::Model;
use crate::weights::Weights;

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
    let norm = |name: &str| LayerNorm::load_rms(w, name, d, eps);
    let layers = (0..cfg.n_layers)
        .map(|i| {
            Ok(Layer {
                attn_norm: norm(&format!("blk.{i}.attn_norm"))?,
                qkv: Qkv::load(w, i, d, q_dim, kv_dim)?,
                wo: BiasedLinear::load(w, &format!("blk.{i}.attn_output"), q_dim, d)?,
                ffn_norm: norm(&format!("blk.{i}.ffn_norm"))?,
                ffn: Ffn::Sparse(Moe::load(w, i, d, moe)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Queries scaled before the scores, as in Phi 3.
    Ok(Box::new(SequentialGpt::load(w, cfg, layers, norm, true)?))
}
