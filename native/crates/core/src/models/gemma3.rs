//! `gemma3`: Gemma 3 text models, and the Gemma decoder that `gemma` and `gemma2` share. Differences
//! from `llama`: embeddings scaled by √d, norms after attention and after the MLP as well as
//! before, GeGLU, NeoX RoPE, queries scaled before attention, sliding-window layers in a fixed
//! pattern, output tied to the embeddings. Gemma 3 adds an RMS norm per query and key head
//! and another RoPE base on its local layers (five local, then one global); Gemma 2 has no
//! QK-norm, alternates local and global layers, and soft-caps attention scores and logits;
//! Gemma (1) has neither post-norms nor windows.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};

use crate::hf_config::HfDefaults;
use crate::layers::activations::{geglu, geglu_f32};
use crate::layers::attention::Attend;
use crate::layers::{rms_norm, rms_norm_inplace, Embedding, Linear, Rope, RopeScaling, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::Result;
use crate::models::llama::HF_LAYER;
use crate::models::parts::output_head;
use crate::models::{encode_layers, forward_layers, ForwardScratch, Model, SeqInput};
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS};

/// What distinguishes the Gemma generations on the shared decoder.
pub(crate) struct GemmaVariant {
    /// Per-head RMS norms of queries and keys (Gemma 3 requires them).
    pub qk_norm: Need,
    /// Norms after attention and after the MLP too (Gemma 2 and 3), not only before.
    pub post_norms: bool,
    /// Every `sliding_pattern`-th layer attends globally; the others see the window (when the
    /// source does not list the layers).
    pub sliding_pattern: usize,
    /// RoPE base of the local layers (None: the global one).
    pub local_rope_base: Option<f32>,
    /// Soft-caps of attention scores and of the final logits: `cap · tanh(x / cap)`.
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Layer count of the model whose queries are scaled by `1/√(d/heads)` rather than
    /// `1/√head_dim` when the source does not give `query_pre_attn_scalar` (the 27B).
    pub wide_query_scale_layers: usize,
    /// The window when the source gives none.
    pub default_window: Option<usize>,
}

const GEMMA3: GemmaVariant = GemmaVariant {
    qk_norm: Need::Required,
    post_norms: true,
    sliding_pattern: 6,
    local_rope_base: Some(10_000.0),
    attn_softcap: None,
    final_softcap: None,
    wide_query_scale_layers: 62,
    default_window: None,
};

/// Gemma 2 and 3 norm around both blocks: their `post_attention_layernorm` follows attention,
/// where Llama's (and Gemma 1's) is the MLP's pre-norm.
const HF_SANDWICH: &[(&str, &str)] = &[
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
];

/// Gemma 2 and 3 checkpoints; every Gemma stores its norm weights as offsets from 1.
pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[HF_SANDWICH, HF_LAYER],
    experts: None,
    norm_offset: 1.0,
    defaults: HfDefaults::new(),
};

struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    /// Per-head RMS norms of queries and keys (Gemma 3).
    qk_norm: Option<[Vec<f32>; 2]>,
    wo: Linear,
    /// Norms after attention and after the MLP (Gemma 2 and 3).
    post_norms: Option<[Vec<f32>; 2]>,
    ffn_norm: Vec<f32>,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
    sliding: bool,
}

pub struct Gemma3 {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    rope_global: Rope,
    rope_local: Rope,
    sliding_window: Option<usize>,
    q_scale: f32,
    attn_softcap: Option<f32>,
    final_softcap: Option<f32>,
}

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Gemma3::load_variant(w, &GEMMA3)
}

impl Gemma3 {
    pub(crate) fn load_variant(w: &dyn Weights, variant: &GemmaVariant) -> Result<Box<dyn Model>> {
        let cfg = w.config(RopeStyle::Neox)?;
        let sliding_window = w.sliding_window()?.or(variant.default_window);
        // Which layers see the window: the checkpoint's `layer_types` when it has them,
        // otherwise five local layers, then a global one (as llama.cpp assumes for GGUFs).
        let sliding_layers = match w.sliding_layers()? {
            Some(layers) if layers.len() != cfg.n_layers => {
                return Err(crate::model_error::ModelError::Unsupported(format!(
                    "{}: {} layer types for {} layers",
                    w.source(),
                    layers.len(),
                    cfg.n_layers
                )))
            }
            Some(layers) => layers,
            None => (0..cfg.n_layers)
                .map(|i| i % variant.sliding_pattern < variant.sliding_pattern - 1)
                .collect(),
        };
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let (q_dim, kv_dim) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
        let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
        let layers = (0..cfg.n_layers)
            .map(|i| {
                let p = |t: &str| format!("blk.{i}.{t}.weight");
                Ok(Layer {
                    attn_norm: w.vector(&p("attn_norm"), d)?,
                    wq: w.linear(&p("attn_q"), d, q_dim)?,
                    wk: w.linear(&p("attn_k"), d, kv_dim)?,
                    wv: w.linear(&p("attn_v"), d, kv_dim)?,
                    qk_norm: match (
                        w.vector_as(&p("attn_q_norm"), hd, variant.qk_norm)?,
                        w.vector_as(&p("attn_k_norm"), hd, variant.qk_norm)?,
                    ) {
                        (Some(q), Some(k)) => Some([q, k]),
                        _ => None,
                    },
                    wo: w.linear(&p("attn_output"), q_dim, d)?,
                    post_norms: if variant.post_norms {
                        Some([
                            w.vector(&p("post_attention_norm"), d)?,
                            w.vector(&p("post_ffw_norm"), d)?,
                        ])
                    } else {
                        None
                    },
                    ffn_norm: w.vector(&p("ffn_norm"), d)?,
                    w_gate: w.linear(&p("ffn_gate"), d, cfg.intermediate_size)?,
                    w_up: w.linear(&p("ffn_up"), d, cfg.intermediate_size)?,
                    w_down: w.linear(&p("ffn_down"), cfg.intermediate_size, d)?,
                    sliding: sliding_window.is_some() && sliding_layers[i],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = output_head(w, &embed, d, cfg.vocab_size)?;
        let source = w.source();
        let positive = |key: &str, v: Option<f32>| crate::model_config::positive(&source, key, v);
        let local_rope_base = w.local_rope_base()?.or(variant.local_rope_base);
        Ok(Box::new(Gemma3 {
            output_norm: w.vector("output_norm.weight", d)?,
            output,
            rope_global: Rope::new(
                RopeStyle::Neox,
                hd,
                cfg.rope_dims,
                cfg.rope_base,
                // Only the global layers scale (Gemma 3 4B and up: linear, 8).
                cfg.rope_scaling.clone(),
            ),
            rope_local: Rope::new(
                RopeStyle::Neox,
                hd,
                cfg.rope_dims,
                local_rope_base.unwrap_or(cfg.rope_base),
                RopeScaling::None,
            ),
            q_scale: 1.0 / query_pre_attn_scalar(w, &cfg, variant)?.sqrt(),
            attn_softcap: positive(
                "attn_logit_softcapping",
                w.hparam_f32("attn_logit_softcapping")?,
            )?
            .or(variant.attn_softcap),
            final_softcap: positive(
                "final_logit_softcapping",
                w.hparam_f32("final_logit_softcapping")?,
            )?
            .or(variant.final_softcap),
            embed,
            layers,
            sliding_window,
            cfg,
        }))
    }
}

impl Model for Gemma3 {
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
        forward_layers(
            &self.cfg,
            (pool, cache, batch),
            (&self.output_norm, self.cfg.rms_norm_eps),
            &self.output,
            (scratch, logits),
            |tokens, positions, attend, scratch| {
                self.layers_forward(pool, tokens, positions, attend, scratch)
            },
        )?;
        if let Some(cap) = self.final_softcap {
            // As llama.cpp: scale by the reciprocal, tanh, scale back.
            let inv = 1.0 / cap;
            logits.iter_mut().for_each(|l| *l = (*l * inv).tanh() * cap);
        }
        Ok(())
    }

    fn encodes(&self) -> bool {
        true
    }

    fn encode(
        &self,
        pool: &ThreadPool,
        batch: &[&[u32]],
        bidirectional: bool,
        scratch: &mut ForwardScratch,
        hidden: &mut Vec<f32>,
    ) -> Result<()> {
        encode_layers(
            &self.cfg,
            (pool, batch, bidirectional),
            (&self.output_norm, self.cfg.rms_norm_eps),
            scratch,
            hidden,
            |tokens, positions, attend, scratch| {
                self.layers_forward(pool, tokens, positions, attend, scratch)
            },
        )
    }
}

impl Gemma3 {
    /// The scaled embeddings of `tokens` through every layer; the residual stream (`[n, d]`)
    /// is the first of the buffers returned (give them back to the scratch after use).
    fn layers_forward(
        &self,
        pool: &ThreadPool,
        tokens: &[u32],
        positions: &[usize],
        attend: &mut Attend<'_, '_, '_>,
        scratch: &mut ForwardScratch,
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let n = tokens.len();
        let (d, hd, ff, eps) = (
            c.hidden_size,
            c.head_dim,
            c.intermediate_size,
            c.rms_norm_eps,
        );
        let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);

        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            n * q_dim,
            n * kv_dim,
            n * kv_dim,
            n * q_dim,
            n * ff,
            n * ff,
            n * d,
        ]);
        let [x, h, q, k, v, attn, gate, up, o] = &mut bufs[..] else {
            unreachable!("take returns one buffer per length")
        };

        self.embed.lookup(tokens, (d as f32).sqrt(), x)?; // x: [n, d]
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(x, &layer.attn_norm, eps, h); // h: [n, d]
            layer.wq.forward(pool, h, q, &mut scratch.matmul)?; // q: [n, n_heads, hd]
            layer.wk.forward(pool, h, k, &mut scratch.matmul)?; // k: [n, n_kv_heads, hd]
            layer.wv.forward(pool, h, v, &mut scratch.matmul)?; // v: [n, n_kv_heads, hd]
            if let Some([nq, nk]) = &layer.qk_norm {
                rms_norm_inplace(q, nq, eps);
                rms_norm_inplace(k, nk, eps);
            }
            let rope = if layer.sliding {
                &self.rope_local
            } else {
                &self.rope_global
            };
            rope.apply(q, positions, c.n_heads);
            rope.apply(k, positions, c.n_kv_heads);
            q.iter_mut().for_each(|v| *v *= self.q_scale);

            let params = AttentionParams {
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: hd,
                scale: 1.0,
                softcap: self.attn_softcap,
                sliding_window: if layer.sliding {
                    self.sliding_window
                } else {
                    None
                },
                sinks: None,
                single_token_step: false, // set per sequence
            };
            attend.run(li, (q, k, v), &params, attn)?;
            layer.wo.forward(pool, attn, o, &mut scratch.matmul)?; // o: [n, d]
            if li + 1 == self.layers.len() {
                attend.before_last_layer_products(&mut scratch.matmul);
            }
            add_block_output(x, o, h, layer.post_norms.as_ref().map(|n| &n[0][..]), eps);

            rms_norm(x, &layer.ffn_norm, eps, h);
            layer.w_gate.forward(pool, h, gate, &mut scratch.matmul)?; // gate: [n, ff]
            layer.w_up.forward(pool, h, up, &mut scratch.matmul)?; // up: [n, ff]
            if attend.f32_exact() {
                geglu_f32(gate, up);
            } else {
                geglu(gate, up);
            }
            layer.w_down.forward(pool, gate, o, &mut scratch.matmul)?; // o: [n, d]
            add_block_output(x, o, h, layer.post_norms.as_ref().map(|n| &n[1][..]), eps);
        }
        Ok(bufs)
    }
}

/// The residual update `x += norm(o)` (or `x += o` without a post-norm); `h` is scratch.
fn add_block_output(x: &mut [f32], o: &[f32], h: &mut [f32], post_norm: Option<&[f32]>, eps: f32) {
    let out = match post_norm {
        Some(norm) => {
            rms_norm(o, norm, eps, h);
            &*h
        }
        None => o,
    };
    x.iter_mut().zip(out).for_each(|(a, b)| *a += b);
}

/// What queries are divided by the square root of: the checkpoint's `query_pre_attn_scalar`,
/// or as llama.cpp decides for GGUFs (head size; hidden size per head for the 27B models).
fn query_pre_attn_scalar(
    w: &dyn Weights,
    cfg: &ModelConfig,
    variant: &GemmaVariant,
) -> Result<f32> {
    let source = w.source();
    let key = "query_pre_attn_scalar";
    if let Some(s) = crate::model_config::positive(&source, key, w.hparam_f32(key)?)? {
        return Ok(s);
    }
    Ok(if cfg.n_layers == variant.wide_query_scale_layers {
        (cfg.hidden_size / cfg.n_heads) as f32
    } else {
        cfg.head_dim as f32
    })
}
