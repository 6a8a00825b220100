//! `starcoder2`: Starcoder 2. A GPT-style sequential block: LayerNorm (with bias) → attention
//! with biased Q/K/V/O and NeoX rotation → residual → LayerNorm → GELU MLP with biases →
//! residual; tied or separate output head. A checkpoint's `sliding_window` is honoured
//! (llama.cpp's GGUFs carry none). Phi 3.5 MoE reuses the decoder with its own norms and
//! feed-forward block.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};

use crate::layers::attention::paged_attention;
use crate::layers::gpt::{BiasedLinear, GeluMlp, LayerNorm, Qkv};
use crate::layers::{Embedding, Linear, Moe, Rope, RopeScaling, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::Result;
use crate::models::phi2::gpt_head_logits;
use crate::models::{
    check_batch, file_rope_scaling, flatten_batch, isolate_logit_rows, set_rope_context,
    ForwardScratch, Model, SeqInput,
};
use crate::weights::Weights;

pub(crate) struct Layer {
    pub attn_norm: LayerNorm,
    pub qkv: Qkv,
    pub wo: BiasedLinear,
    pub ffn_norm: LayerNorm,
    pub ffn: Ffn,
}

pub(crate) enum Ffn {
    Gelu(GeluMlp),
    Sparse(Moe),
}

/// The sequential GPT-style decoder.
pub(crate) struct SequentialGpt {
    pub cfg: ModelConfig,
    pub embed: Embedding,
    pub layers: Vec<Layer>,
    pub output_norm: LayerNorm,
    pub output: BiasedLinear,
    pub rope: Rope,
    pub rope_scaling: RopeScaling,
    pub sliding_window: Option<usize>,
    /// Queries are multiplied by 1/√head_dim before the scores (Phi 3's order).
    pub prescale_queries: bool,
}

impl SequentialGpt {
    /// The decoder around `layers`, with the file's embeddings, final norm (`norm` loads it),
    /// output head (tied when the file has none) and rotation.
    pub fn load(
        w: &dyn Weights,
        cfg: ModelConfig,
        layers: Vec<Layer>,
        norm: impl Fn(&str) -> Result<LayerNorm>,
        prescale_queries: bool,
    ) -> Result<SequentialGpt> {
        let d = cfg.hidden_size;
        let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
        let output = if w.has("output.weight") {
            BiasedLinear::load(w, "output", d, cfg.vocab_size)?
        } else {
            BiasedLinear {
                linear: Linear::new(embed.ty(), cfg.vocab_size, d, embed.bytes().clone())?,
                bias: None,
            }
        };
        let rope_scaling = file_rope_scaling(w, &cfg)?;
        Ok(SequentialGpt {
            embed,
            layers,
            output_norm: norm("output_norm")?,
            output,
            rope: cfg.rope(rope_scaling.clone()),
            rope_scaling,
            sliding_window: w.sliding_window()?,
            prescale_queries,
            cfg,
        })
    }
}

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    let cfg = w.config(RopeStyle::Neox)?;
    let (d, hd) = (cfg.hidden_size, cfg.head_dim);
    let (q_dim, kv_dim) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
    let eps = w.layer_norm_eps()?;
    let norm = |name: &str| LayerNorm::load(w, name, d, eps);
    let layers = (0..cfg.n_layers)
        .map(|i| {
            Ok(Layer {
                attn_norm: norm(&format!("blk.{i}.attn_norm"))?,
                qkv: Qkv::load(w, i, d, q_dim, kv_dim)?,
                wo: BiasedLinear::load(w, &format!("blk.{i}.attn_output"), q_dim, d)?,
                ffn_norm: norm(&format!("blk.{i}.ffn_norm"))?,
                ffn: Ffn::Gelu(GeluMlp::load(w, i, d, cfg.intermediate_size)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(SequentialGpt::load(w, cfg, layers, norm, false)?))
}

impl Model for SequentialGpt {
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
        let ff = self
            .layers
            .iter()
            .map(|l| match &l.ffn {
                Ffn::Gelu(mlp) => mlp.up.linear.out_features(),
                Ffn::Sparse(_) => 0,
            })
            .max()
            .unwrap_or(0);
        let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
        let tokens = flatten_batch(batch, scratch);
        let positions = std::mem::take(&mut scratch.positions);
        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            n * q_dim,
            n * kv_dim,
            n * kv_dim,
            n * q_dim.max(d),
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
            scale: if self.prescale_queries {
                1.0
            } else {
                1.0 / (hd as f32).sqrt()
            },
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
            if self.prescale_queries {
                let s = 1.0 / (hd as f32).sqrt();
                q.iter_mut().for_each(|v| *v *= s);
            }
            paged_attention(pool, cache, li, batch, &positions, q, k, v, &params, attn)?;
            layer.wo.forward(pool, attn, h, &mut scratch.matmul)?;
            if li + 1 == self.layers.len() {
                isolate_logit_rows(batch, &mut scratch.matmul);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
            layer.ffn_norm.forward(x, h);
            let out = &mut attn[..n * d];
            match &layer.ffn {
                Ffn::Gelu(mlp) => mlp.forward(pool, h, hidden, out, &mut scratch.matmul)?,
                Ffn::Sparse(moe) => moe.forward(pool, h, out, &mut scratch.matmul)?,
            }
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
