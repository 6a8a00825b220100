//! `starcoder2`: Starcoder 2. A GPT-style sequential block: LayerNorm (with bias) → attention
//! with biased Q/K/V/O and NeoX rotation → residual → LayerNorm → GELU MLP with biases →
//! residual; tied or separate output head. A checkpoint's `sliding_window` is honoured
//! (llama.cpp's GGUFs carry none).

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};

use crate::layers::attention::paged_attention;
use crate::layers::gpt::{BiasedLinear, GeluMlp, LayerNorm, Qkv};
use crate::layers::{Embedding, Linear, Rope, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::Result;
use crate::models::phi2::gpt_head_logits;
use crate::models::{check_batch, flatten_batch, ForwardScratch, Model, SeqInput};
use crate::weights::Weights;

struct Layer {
    attn_norm: LayerNorm,
    qkv: Qkv,
    wo: BiasedLinear,
    ffn_norm: LayerNorm,
    mlp: GeluMlp,
}

pub struct Starcoder2 {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: LayerNorm,
    output: BiasedLinear,
    rope: Rope,
    sliding_window: Option<usize>,
}

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    let cfg = w.config(RopeStyle::Neox)?;
    let (d, hd) = (cfg.hidden_size, cfg.head_dim);
    let (q_dim, kv_dim) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
    let eps = w.layer_norm_eps()?;
    let layers = (0..cfg.n_layers)
        .map(|i| {
            Ok(Layer {
                attn_norm: LayerNorm::load(w, &format!("blk.{i}.attn_norm"), d, eps)?,
                qkv: Qkv::load(w, i, d, q_dim, kv_dim)?,
                wo: BiasedLinear::load(w, &format!("blk.{i}.attn_output"), q_dim, d)?,
                ffn_norm: LayerNorm::load(w, &format!("blk.{i}.ffn_norm"), d, eps)?,
                mlp: GeluMlp::load(w, i, d, cfg.intermediate_size)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
    let output = if w.has("output.weight") {
        BiasedLinear::load(w, "output", d, cfg.vocab_size)?
    } else {
        BiasedLinear {
            linear: Linear::new(embed.ty(), cfg.vocab_size, d, embed.bytes().clone())?,
            bias: None,
        }
    };
    Ok(Box::new(Starcoder2 {
        embed,
        layers,
        output_norm: LayerNorm::load(w, "output_norm", d, eps)?,
        output,
        rope: cfg.rope(cfg.rope_scaling.clone()),
        sliding_window: w.sliding_window()?,
        cfg,
    }))
}

impl Model for Starcoder2 {
    fn config(&self) -> &ModelConfig {
        &self.cfg
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
        let (d, hd, ff) = (c.hidden_size, c.head_dim, c.intermediate_size);
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
            n * ff,
        ]);
        let [x, h, q, k, v, attn, hidden] = &mut bufs[..] else {
            unreachable!("take returns one buffer per length")
        };
        self.embed.lookup(&tokens, 1.0, x)?;
        let params = AttentionParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: None,
            sliding_window: self.sliding_window,
            single_token_step: false,
        };
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
            paged_attention(pool, cache, li, batch, &positions, q, k, v, &params, attn)?;
            layer.wo.forward(pool, attn, h, &mut scratch.matmul)?;
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
            layer.ffn_norm.forward(x, h);
            let out = &mut attn[..n * d];
            layer
                .mlp
                .forward(pool, h, hidden, out, &mut scratch.matmul)?;
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
