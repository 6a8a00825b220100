//! `starcoder2`: Starcoder 2. A GPT-style sequential block: LayerNorm (with bias) → attention
//! with biased Q/K/V/O and NeoX rotation → residual → LayerNorm → GELU MLP with biases →
//! residual; tied or separate output head. A checkpoint's `sliding_window` is honoured
//! (llama.cpp's GGUFs carry none). Phi 3.5 MoE (`phimoe`) reuses the decoder with its own norms and
//! feed-forward block.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};

use crate::hf_config::HfDefaults;
use crate::layers::attention::{paged_attention, StepBatch};
use crate::layers::gpt::{BiasedLinear, GeluMlp, LayerNorm, Qkv};
use crate::layers::{Embedding, Linear, Moe, Rope, RopeScaling, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::Result;
use crate::models::llama::HF_LAYER;
use crate::models::parts;
use crate::models::phi::gpt_head_logits;
use crate::models::{
    begin_forward, end_forward, file_rope_scaling, isolate_logit_rows, set_rope_context,
    ForwardScratch, Model, SeqInput,
};
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS};

/// `c_fc` and `c_proj` for the MLP; Llama's names otherwise.
pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[
        &[("ffn_up", "mlp.c_fc"), ("ffn_down", "mlp.c_proj")],
        HF_LAYER,
    ],
    experts: None,
    norm_offset: 0.0,
    defaults: HfDefaults::new(),
};

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

/// What distinguishes the architectures on the sequential GPT decoder, beyond their layers.
pub(crate) struct GptVariant {
    /// Queries are multiplied by 1/√head_dim before the scores (Phi 3's order).
    pub prescale_queries: bool,
    /// The bias of a separate output head.
    pub head_bias: Need,
}

impl SequentialGpt {
    /// The decoder around `layers`, with the file's embeddings, final norm (`norm` loads it),
    /// output head (tied when the file has none) and rotation.
    pub fn load(
        w: &dyn Weights,
        cfg: ModelConfig,
        layers: Vec<Layer>,
        norm: impl Fn(&str) -> Result<LayerNorm>,
        variant: GptVariant,
    ) -> Result<SequentialGpt> {
        let d = cfg.hidden_size;
        let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
        let output = if w.has("output.weight") {
            parts::biased_linear(w, "output", [d, cfg.vocab_size], variant.head_bias)?
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
            prescale_queries: variant.prescale_queries,
            cfg,
        })
    }
}

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    let cfg = w.config(RopeStyle::Neox)?;
    let (d, hd) = (cfg.hidden_size, cfg.head_dim);
    let (q_dim, kv_dim) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
    let eps = w.layer_norm_eps()?;
    let norm = |name: &str| parts::layer_norm(w, name, d, eps);
    // Biased projections and MLP unless the checkpoint's `use_bias` says otherwise (llama.cpp
    // requires them).
    let bias = Need::from_flag(w.hparam_bool("use_bias")?, Need::Required);
    let layers = (0..cfg.n_layers)
        .map(|i| {
            Ok(Layer {
                attn_norm: norm(&format!("blk.{i}.attn_norm"))?,
                qkv: parts::qkv(w, i, [d, q_dim, kv_dim], bias)?,
                wo: parts::biased_linear(w, &format!("blk.{i}.attn_output"), [q_dim, d], bias)?,
                ffn_norm: norm(&format!("blk.{i}.ffn_norm"))?,
                ffn: Ffn::Gelu(parts::gelu_mlp(w, i, [d, cfg.intermediate_size], bias)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let variant = GptVariant {
        prescale_queries: false,
        head_bias: Need::Absent,
    };
    Ok(Box::new(SequentialGpt::load(
        w, cfg, layers, norm, variant,
    )?))
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
        let (tokens, positions) = begin_forward(c, cache, batch, scratch)?;
        let n = tokens.len();
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
            sinks: None,
            single_token_step: false,
        };
        let step = StepBatch::new(pool, batch, &positions);
        for (li, layer) in self.layers.iter().enumerate() {
            layer.attn_norm.forward(x, h);
            let heads = [c.n_heads, c.n_kv_heads];
            let qkv = [&mut q[..], &mut k[..], &mut v[..]];
            layer
                .qkv
                .forward(&step, h, qkv, &self.rope, heads, &mut scratch.matmul)?;
            if self.prescale_queries {
                let s = 1.0 / (hd as f32).sqrt();
                q.iter_mut().for_each(|v| *v *= s);
            }
            paged_attention(&step, cache, li, (q, k, v), &params, attn)?;
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
        end_forward(scratch, bufs, positions);
        Ok(())
    }
}
