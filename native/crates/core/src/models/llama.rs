//! `llama`: Llama 2/3.x, SmolLM2, Mistral-style GGUFs. Pre-norm decoder: RMSNorm → GQA
//! attention with RoPE → residual → RMSNorm → SwiGLU MLP → residual. Other architectures
//! reuse it as a variant: optional Q/K/V biases (Qwen 2), per-head Q/K RMS norms (Qwen 3),
//! and a mixture of experts in place of the MLP wherever the file has one (Mixtral, Qwen 3
//! MoE).

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};

use crate::layers::activations::swiglu;
use crate::layers::attention::paged_attention;
use crate::layers::{
    add_rows, rms_norm, rms_norm_inplace, Embedding, Linear, Moe, Rope, RopeScaling, RopeStyle,
};
use crate::model_config::ModelConfig;
use crate::model_error::Result;
use crate::models::{
    check_batch, file_rope_scaling, flatten_batch, isolate_logit_rows, last_token_logits,
    set_rope_context, ForwardScratch, Model, SeqInput,
};
use crate::weights::Weights;

struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    /// Biases of Q, K and V (Qwen 2).
    qkv_bias: Option<[Vec<f32>; 3]>,
    /// RMS norms of each query and key head before RoPE (Qwen 3).
    qk_norm: Option<[Vec<f32>; 2]>,
    wo: Linear,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
}

enum Ffn {
    /// SwiGLU: gate, up, down.
    Dense(Linear, Linear, Linear),
    Sparse(Moe),
}

pub struct Llama {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    /// Kept to rebuild `rope` once the context is known (LongRoPE).
    rope_scaling: RopeScaling,
    /// Mistral v0.1's window (from `config.json`; llama.cpp's GGUFs of it carry none).
    sliding_window: Option<usize>,
    prescale_queries: bool,
}

/// What distinguishes the architectures that reuse the Llama decoder.
#[derive(Clone, Copy)]
pub(crate) struct LlamaVariant {
    /// Rotation on GGUF weights (Llama's converter permutes Q/K rows for adjacent pairs).
    pub rope_style: RopeStyle,
    /// Queries are multiplied by 1/√head_dim before attention rather than the scores after
    /// (Phi 3, as llama.cpp computes it: the roundings differ).
    pub prescale_queries: bool,
}

impl Default for LlamaVariant {
    fn default() -> Self {
        LlamaVariant {
            rope_style: RopeStyle::Normal,
            prescale_queries: false,
        }
    }
}

impl Llama {
    pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
        // The GGUF converter permutes Llama's Q/K rows so that ggml's adjacent-pair rotation
        // applies.
        Llama::load_variant(w, LlamaVariant::default())
    }

    /// The Llama decoder as other architectures use it (Qwen 2: NeoX rotation, and Q/K/V
    /// biases wherever the file has them).
    pub(crate) fn load_variant(w: &dyn Weights, variant: LlamaVariant) -> Result<Box<dyn Model>> {
        let cfg = w.config(variant.rope_style)?;
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let q_dim = cfg.n_heads * hd;
        let kv_dim = cfg.n_kv_heads * hd;
        let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
        let moe = w.moe()?;
        let layers = (0..cfg.n_layers)
            .map(|i| {
                let p = |t: &str| format!("blk.{i}.{t}.weight");
                // Phi 3 fuses Q, K and V into one matrix, and the gate and up projections.
                let fused_qkv = w.has(&p("attn_qkv"));
                let (wq, wk, wv) = if fused_qkv {
                    let total = q_dim + 2 * kv_dim;
                    (
                        w.linear_rows(&p("attn_qkv"), d, total, 0..q_dim)?,
                        w.linear_rows(&p("attn_qkv"), d, total, q_dim..q_dim + kv_dim)?,
                        w.linear_rows(&p("attn_qkv"), d, total, q_dim + kv_dim..total)?,
                    )
                } else {
                    (
                        w.linear(&p("attn_q"), d, q_dim)?,
                        w.linear(&p("attn_k"), d, kv_dim)?,
                        w.linear(&p("attn_v"), d, kv_dim)?,
                    )
                };
                let ff = cfg.intermediate_size;
                let ffn = if let Some(m) = moe {
                    Ffn::Sparse(Moe::load(w, i, d, m)?)
                } else if w.has(&p("ffn_gate")) {
                    Ffn::Dense(
                        w.linear(&p("ffn_gate"), d, ff)?,
                        w.linear(&p("ffn_up"), d, ff)?,
                        w.linear(&p("ffn_down"), ff, d)?,
                    )
                } else {
                    Ffn::Dense(
                        w.linear_rows(&p("ffn_up"), d, 2 * ff, 0..ff)?,
                        w.linear_rows(&p("ffn_up"), d, 2 * ff, ff..2 * ff)?,
                        w.linear(&p("ffn_down"), ff, d)?,
                    )
                };
                Ok(Layer {
                    attn_norm: w.vector(&p("attn_norm"), d)?,
                    wq,
                    wk,
                    wv,
                    qkv_bias: match (
                        w.vector_opt(&format!("blk.{i}.attn_q.bias"), q_dim)?,
                        w.vector_opt(&format!("blk.{i}.attn_k.bias"), kv_dim)?,
                        w.vector_opt(&format!("blk.{i}.attn_v.bias"), kv_dim)?,
                    ) {
                        (Some(q), Some(k), Some(v)) => Some([q, k, v]),
                        _ => None,
                    },
                    qk_norm: match (
                        w.vector_opt(&p("attn_q_norm"), hd)?,
                        w.vector_opt(&p("attn_k_norm"), hd)?,
                    ) {
                        (Some(q), Some(k)) => Some([q, k]),
                        _ => None,
                    },
                    wo: w.linear(&p("attn_output"), q_dim, d)?,
                    ffn_norm: w.vector(&p("ffn_norm"), d)?,
                    ffn,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = if w.has("output.weight") {
            w.linear("output.weight", d, cfg.vocab_size)?
        } else {
            // Tied embeddings: the same [vocab, dim] table read as a linear layer.
            Linear::new(embed.ty(), cfg.vocab_size, d, embed.bytes().clone())?
        };
        let scaling = file_rope_scaling(w, &cfg)?;
        let rope = cfg.rope(scaling.clone());
        Ok(Box::new(Llama {
            output_norm: w.vector("output_norm.weight", d)?,
            output,
            embed,
            layers,
            rope,
            rope_scaling: scaling,
            sliding_window: w.sliding_window()?,
            prescale_queries: variant.prescale_queries,
            cfg,
        }))
    }
}

impl Model for Llama {
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
            // Also the experts' output ([n, d]) in sparse models.
            n * ff.max(d),
        ]);
        let [x, h, q, k, v, attn, gate, up] = &mut bufs[..] else {
            unreachable!("take returns one buffer per length")
        };

        self.embed.lookup(&tokens, 1.0, x)?; // x: [n, d]
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
            single_token_step: false, // set per sequence
        };
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(x, &layer.attn_norm, c.rms_norm_eps, h); // h: [n, d]
            layer.wq.forward(pool, h, q, &mut scratch.matmul)?; // q: [n, n_heads, hd]
            layer.wk.forward(pool, h, k, &mut scratch.matmul)?; // k: [n, n_kv_heads, hd]
            layer.wv.forward(pool, h, v, &mut scratch.matmul)?; // v: [n, n_kv_heads, hd]
            if let Some([bq, bk, bv]) = &layer.qkv_bias {
                add_rows(q, bq);
                add_rows(k, bk);
                add_rows(v, bv);
            }
            if let Some([nq, nk]) = &layer.qk_norm {
                rms_norm_inplace(q, nq, c.rms_norm_eps);
                rms_norm_inplace(k, nk, c.rms_norm_eps);
            }
            self.rope.apply(q, &positions, c.n_heads);
            self.rope.apply(k, &positions, c.n_kv_heads);
            if self.prescale_queries {
                let s = 1.0 / (hd as f32).sqrt();
                q.iter_mut().for_each(|v| *v *= s);
            }

            // [n, n_heads, hd] attention output, keys and values stored first.
            paged_attention(pool, cache, li, batch, &positions, q, k, v, &params, attn)?;

            layer.wo.forward(pool, attn, h, &mut scratch.matmul)?; // h: [n, d]
            if li + 1 == self.layers.len() {
                isolate_logit_rows(batch, &mut scratch.matmul);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);

            rms_norm(x, &layer.ffn_norm, c.rms_norm_eps, h);
            match &layer.ffn {
                Ffn::Dense(w_gate, w_up, w_down) => {
                    w_gate.forward(pool, h, gate, &mut scratch.matmul)?; // gate: [n, ff]
                    let up = &mut up[..n * ff];
                    w_up.forward(pool, h, up, &mut scratch.matmul)?; // up: [n, ff]
                    swiglu(gate, up);
                    w_down.forward(pool, gate, h, &mut scratch.matmul)?; // h: [n, d]
                }
                Ffn::Sparse(moe) => {
                    let out = &mut up[..n * d];
                    moe.forward(pool, h, out, &mut scratch.matmul)?;
                    h.copy_from_slice(out);
                }
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
        }

        // Final norm and the output head, only for the rows whose logits are wanted.
        last_token_logits(
            pool,
            batch,
            x,
            &self.output_norm,
            c.rms_norm_eps,
            &self.output,
            scratch,
            logits,
        )?;
        scratch.give_back(bufs);
        scratch.positions = positions;
        Ok(())
    }
}
