//! `phimoe`: Phi 3.5 MoE. Phi 3's attention (NeoX rotation, LongRoPE, queries scaled before
//! the scores) with biased Q/K/V/O, a norm with a bias before each block, a mixture of 16
//! experts (top 2) in every layer, and a biased output head.
//!
//! Computed as llama.cpp computes it, from GGUF and checkpoint alike: the norms are RMSNorms
//! plus the bias, and the router is a softmax whose two best weights are renormalised.
//! transformers' reference differs on both: true LayerNorms, and its `sparsemixer` weights
//! (each chosen expert's softmax among the experts within a relative 2·jitter of it).

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};

use crate::layers::attention::paged_attention;
use crate::layers::gpt::{BiasedLinear, LayerNorm, Qkv};
use crate::layers::{Embedding, Moe, Rope, RopeScaling, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::phi2::gpt_head_logits;
use crate::models::{
    check_batch, file_rope_scaling, flatten_batch, set_rope_context, ForwardScratch, Model,
    SeqInput,
};
use crate::weights::Weights;

struct Layer {
    attn_norm: LayerNorm,
    qkv: Qkv,
    wo: BiasedLinear,
    ffn_norm: LayerNorm,
    moe: Moe,
}

pub struct PhiMoe {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: LayerNorm,
    output: BiasedLinear,
    rope: Rope,
    rope_scaling: RopeScaling,
    sliding_window: Option<usize>,
}

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
    let layers = (0..cfg.n_layers)
        .map(|i| {
            Ok(Layer {
                attn_norm: LayerNorm::load_rms(w, &format!("blk.{i}.attn_norm"), d, eps)?,
                qkv: Qkv::load(w, i, d, q_dim, kv_dim)?,
                wo: BiasedLinear::load(w, &format!("blk.{i}.attn_output"), q_dim, d)?,
                ffn_norm: LayerNorm::load_rms(w, &format!("blk.{i}.ffn_norm"), d, eps)?,
                moe: Moe::load(w, i, d, moe)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rope_scaling = file_rope_scaling(w, &cfg)?;
    Ok(Box::new(PhiMoe {
        embed: w.embedding("token_embd.weight", d, cfg.vocab_size)?,
        layers,
        output_norm: LayerNorm::load_rms(w, "output_norm", d, eps)?,
        output: BiasedLinear::load(w, "output", d, cfg.vocab_size)?,
        rope: cfg.rope(rope_scaling.clone()),
        rope_scaling,
        sliding_window: w.sliding_window()?,
        cfg,
    }))
}

impl Model for PhiMoe {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn set_context(&mut self, tokens: usize) {
        set_rope_context(&self.cfg, &mut self.rope_scaling, &mut self.rope, tokens);
    }

    fn forward(
        &self,
        pool: &ThreadPool,
        cache: &mut KvCache,
        batch: &[SeqInput<'_>],
        scratch: &mut ForwardScratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let c = &self.cfg;
        check_batch(c, cache, batch)?;
        let n: usize = batch.iter().map(|s| s.tokens.len()).sum();
        let (d, hd) = (c.hidden_size, c.head_dim);
        let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
        let tokens = flatten_batch(batch, scratch);
        let positions = std::mem::take(&mut scratch.positions);
        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            n * q_dim,
            n * kv_dim,
            n * kv_dim,
            n * q_dim,
            n * d,
        ]);
        let [x, h, q, k, v, attn, out] = &mut bufs[..] else {
            unreachable!("take returns one buffer per length")
        };
        self.embed.lookup(&tokens, 1.0, x)?;
        let params = AttentionParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            // The queries carry the scale (as in Phi 3).
            scale: 1.0,
            softcap: None,
            sliding_window: self.sliding_window,
            single_token_step: false,
        };
        let query_scale = 1.0 / (hd as f32).sqrt();
        for (li, layer) in self.layers.iter().enumerate() {
            layer.attn_norm.forward(x, h);
            let heads = [c.n_heads, c.n_kv_heads];
            let qkv = [&mut q[..], &mut k[..], &mut v[..]];
            layer.qkv.forward(
                pool,
                h,
                qkv,
                &self.rope,
                &positions,
                heads,
                &mut scratch.matmul,
            )?;
            q.iter_mut().for_each(|v| *v *= query_scale);
            paged_attention(pool, cache, li, batch, &positions, q, k, v, &params, attn)?;
            layer.wo.forward(pool, attn, h, &mut scratch.matmul)?;
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
            layer.ffn_norm.forward(x, h);
            layer.moe.forward(pool, h, out, &mut scratch.matmul)?;
            x.iter_mut().zip(out.iter()).for_each(|(a, b)| *a += b);
        }
        gpt_head_logits(
            pool,
            batch,
            x,
            &self.output_norm,
            &self.output,
            scratch,
            logits,
        )?;
        scratch.give_back(bufs);
        scratch.positions = positions;
        Ok(())
    }
}
