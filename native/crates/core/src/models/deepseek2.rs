//! `deepseek2`: DeepSeek V2, V2-Lite, V2.5 and V3 (llama.cpp's one architecture for all; V3
//! differs in configuration only). Pre-norm decoder with:
//!
//! - **multi-head latent attention (MLA)**, in its absorbed form: keys and values are one
//!   shared latent vector per token (`kv_lora_rank`, RMS-normed) plus a small rotated key part
//!   (`qk_rope_head_dim`); each head's query is taken into the latent space by `k_b`, so the
//!   cache holds one "head" of `rank + rope` per token, and each head's latent output is
//!   expanded by `v_b` before the output projection;
//! - queries from one matrix (V2-Lite) or a low-rank pair with an RMS norm between;
//! - RoPE on adjacent pairs (both the checkpoints and the GGUFs interleave), YaRN with
//!   `mscale_all_dim` moved into the score scale;
//! - a SwiGLU MLP in the `leading_dense_block_count` first layers, then a mixture of experts
//!   (softmax or sigmoid router, selection bias, expert groups, scale) plus shared experts.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};
use mistralrs_quant::matmul::MatmulScratch;

use crate::layers::attention::paged_attention;
use crate::layers::{rms_norm, rms_norm_inplace, Embedding, Expert, Linear, Moe, Rope, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::{
    check_batch, flatten_batch, isolate_logit_rows, last_token_logits, ForwardScratch, Model,
    SeqInput,
};
use crate::weights::Weights;

/// Sizes of the latent attention.
#[derive(Clone, Copy, Debug)]
struct Mla {
    /// Query/key dimensions per head without rotation.
    nope: usize,
    /// Rotated dimensions, shared by all heads on the key side.
    rope: usize,
    v_dim: usize,
    /// The latent KV size.
    rank: usize,
}

enum Query {
    Full(Linear),
    /// `b(rms_norm(a(x)))`.
    LowRank {
        a: Linear,
        norm: Vec<f32>,
        b: Linear,
    },
}

enum Ffn {
    Dense(Expert),
    Sparse { moe: Moe, shared: Option<Expert> },
}

struct Layer {
    attn_norm: Vec<f32>,
    q: Query,
    /// `[rank + rope, dim]`: the latent vector, then the rotated key part.
    kv_a: Linear,
    kv_a_norm: Vec<f32>,
    /// Per head, `[rank, nope]` and `[v_dim, rank]`.
    k_b: Vec<Linear>,
    v_b: Vec<Linear>,
    wo: Linear,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
}

pub struct DeepSeek2 {
    cfg: ModelConfig,
    mla: Mla,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    /// Multiplies q·k: YaRN's squared magnitude correction over √(nope + rope).
    score_scale: f32,
}

/// A hyperparameter under its GGUF name or its `config.json` name (each source has only its
/// own).
fn hparam(w: &dyn Weights, gguf: &str, hf: &str) -> Result<Option<usize>> {
    Ok(w.hparam_u32(gguf)?
        .or(w.hparam_u32(hf)?)
        .map(|v| v as usize))
}

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    let source = w.source();
    let missing = |what: &str| ModelError::Unsupported(format!("{source}: missing `{what}`"));
    let mut cfg = w.config(RopeStyle::Normal)?;
    let rank = hparam(w, "attention.kv_lora_rank", "kv_lora_rank")?
        .filter(|&r| r > 0)
        .ok_or_else(|| missing("kv_lora_rank"))?;
    let q_rank = hparam(w, "attention.q_lora_rank", "q_lora_rank")?.filter(|&r| r > 0);
    let rope = hparam(w, "rope.dimension_count", "qk_rope_head_dim")?
        .ok_or_else(|| missing("qk_rope_head_dim"))?;
    // A GGUF gives the whole query/key head; a checkpoint its unrotated part.
    let qk_dim = match (
        w.hparam_u32("attention.key_length_mla")?,
        w.hparam_u32("qk_nope_head_dim")?,
    ) {
        (Some(k), _) => k as usize,
        (None, Some(nope)) => nope as usize + rope,
        (None, None) => {
            return Err(ModelError::Unsupported(format!(
                "{source}: an older DeepSeek conversion without MLA (`attention.key_length_mla`); convert the model again"
            )))
        }
    };
    let v_dim = hparam(w, "attention.value_length_mla", "v_head_dim")?
        .ok_or_else(|| missing("v_head_dim"))?;
    if qk_dim <= rope || !rope.is_multiple_of(2) || rank > 1 << 14 || v_dim == 0 || v_dim > 1 << 12
    {
        return Err(ModelError::Unsupported(format!(
            "{source}: attention sizes (query/key {qk_dim}, rotated {rope}, value {v_dim}, latent {rank}) do not fit"
        )));
    }
    if w.hparam_f32("attention.temperature_scale")?
        .is_some_and(|t| t != 0.0)
    {
        return Err(ModelError::Unsupported(format!(
            "{source}: attention temperature tuning (Mistral Large 3) is not supported"
        )));
    }
    let mla = Mla {
        nope: qk_dim - rope,
        rope,
        v_dim,
        rank,
    };
    // The cache holds one latent "head" per token.
    cfg.n_kv_heads = 1;
    cfg.head_dim = rank + rope;
    cfg.rope_dims = rope;
    cfg.rope_style = RopeStyle::Normal;

    let (d, heads) = (cfg.hidden_size, cfg.n_heads);
    let n_dense = hparam(w, "leading_dense_block_count", "first_k_dense_replace")?.unwrap_or(0);
    let n_shared = hparam(w, "expert_shared_count", "n_shared_experts")?.unwrap_or(0);
    let moe = w.moe()?;
    let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
    let layers = (0..cfg.n_layers)
        .map(|i| {
            let p = |t: &str| format!("blk.{i}.{t}.weight");
            let swiglu = |suffix: &str, ff: usize| -> Result<Expert> {
                Ok(Expert {
                    gate: w.linear(&p(&format!("ffn_gate{suffix}")), d, ff)?,
                    up: w.linear(&p(&format!("ffn_up{suffix}")), d, ff)?,
                    down: w.linear(&p(&format!("ffn_down{suffix}")), ff, d)?,
                })
            };
            let q = match q_rank {
                None => Query::Full(w.linear(&p("attn_q"), d, heads * qk_dim)?),
                Some(r) => Query::LowRank {
                    a: w.linear(&p("attn_q_a"), d, r)?,
                    norm: w.vector(&p("attn_q_a_norm"), r)?,
                    b: w.linear(&p("attn_q_b"), r, heads * qk_dim)?,
                },
            };
            let (k_b, v_b) = w.mla_kv_b(i, heads, mla.nope, v_dim, rank)?;
            let ffn = match moe {
                Some(m) if i >= n_dense => Ffn::Sparse {
                    moe: Moe::load(w, i, d, m)?,
                    shared: if n_shared > 0 {
                        Some(swiglu("_shexp", m.expert_ff * n_shared)?)
                    } else {
                        None
                    },
                },
                _ => Ffn::Dense(swiglu("", cfg.intermediate_size)?),
            };
            Ok(Layer {
                attn_norm: w.vector(&p("attn_norm"), d)?,
                q,
                kv_a: w.linear(&p("attn_kv_a_mqa"), d, rank + rope)?,
                kv_a_norm: w.vector(&p("attn_kv_a_norm"), rank)?,
                k_b,
                v_b,
                wo: w.linear(&p("attn_output"), heads * v_dim, d)?,
                ffn_norm: w.vector(&p("ffn_norm"), d)?,
                ffn,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let output = if w.has("output.weight") {
        w.linear("output.weight", d, cfg.vocab_size)?
    } else {
        Linear::new(embed.ty(), cfg.vocab_size, d, embed.bytes().clone())?
    };
    let mscale = cfg.rope_scaling.attention_mscale();
    let rope = Rope::new(
        RopeStyle::Normal,
        rope,
        rope,
        cfg.rope_base,
        cfg.rope_scaling.clone(),
    );
    Ok(Box::new(DeepSeek2 {
        output_norm: w.vector("output_norm.weight", d)?,
        output,
        embed,
        layers,
        rope,
        score_scale: mscale * mscale / (qk_dim as f32).sqrt(),
        mla,
        cfg,
    }))
}

/// `out[t, h] = per_head[h](x[t, h])` for `x` `[n, heads, x_stride]` (each head's first `in`
/// values) into `out` `[n, heads, out_stride]` (its first `out` values): one matrix per head,
/// each token's row multiplied on its own (as llama.cpp multiplies these 3-D weights).
/// `gathered` and `products` are work space of at least `n · in` and `n · out` values.
#[allow(clippy::too_many_arguments)]
fn per_head(
    pool: &ThreadPool,
    matrices: &[Linear],
    (x, x_stride): (&[f32], usize),
    (out, out_stride): (&mut [f32], usize),
    n: usize,
    gathered: &mut [f32],
    products: &mut [f32],
    matmul: &mut MatmulScratch,
) -> Result<()> {
    let heads = matrices.len();
    let seq_rows = std::mem::take(&mut matmul.sequence_rows);
    matmul.sequence_rows.resize(n, 1);
    for (h, m) in matrices.iter().enumerate() {
        let (inp, outp) = (m.in_features(), m.out_features());
        let (xin, y) = (&mut gathered[..n * inp], &mut products[..n * outp]);
        for (t, row) in xin.chunks_exact_mut(inp).enumerate() {
            let at = (t * heads + h) * x_stride;
            row.copy_from_slice(&x[at..at + inp]);
        }
        m.forward(pool, xin, y, matmul)?;
        for (t, row) in y.chunks_exact(outp).enumerate() {
            let at = (t * heads + h) * out_stride;
            out[at..at + outp].copy_from_slice(row);
        }
    }
    matmul.sequence_rows = seq_rows;
    Ok(())
}

impl Model for DeepSeek2 {
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
        let Mla {
            nope,
            rope,
            v_dim,
            rank,
        } = self.mla;
        let (d, heads) = (c.hidden_size, c.n_heads);
        let (qk_dim, latent) = (nope + rope, rank + rope);

        let tokens = flatten_batch(batch, scratch);
        let positions = std::mem::take(&mut scratch.positions);
        let max_ff = self
            .layers
            .iter()
            .map(|l| match &l.ffn {
                Ffn::Dense(e) => e.gate.out_features(),
                Ffn::Sparse { .. } => 0,
            })
            .max()
            .unwrap_or(0);
        let q_rank = self
            .layers
            .iter()
            .map(|l| match &l.q {
                Query::LowRank { a, .. } => a.out_features(),
                Query::Full(_) => 0,
            })
            .max()
            .unwrap_or(0);
        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            n * heads * qk_dim,
            n * latent,
            n * heads * latent,
            n * heads * latent,
            n * heads * rope,
            n * heads * v_dim,
            n * d,
            n * max_ff,
            n * max_ff,
            n * q_rank,
            n * rope,
            n * d,
            n * nope.max(rank),
            n * rank.max(v_dim),
        ]);
        let [x, h, q, kv, q_lat, attn, q_pe, o, ffn_out, gate, up, qa, k_pe, shared_out, gathered, products] =
            &mut bufs[..]
        else {
            unreachable!("take returns one buffer per length")
        };

        self.embed.lookup(&tokens, 1.0, x)?;
        let params = AttentionParams {
            n_heads: heads,
            n_kv_heads: 1,
            head_dim: latent,
            scale: self.score_scale,
            softcap: None,
            sliding_window: None,
            single_token_step: false, // set per sequence
        };
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(x, &layer.attn_norm, c.rms_norm_eps, h);
            match &layer.q {
                Query::Full(wq) => wq.forward(pool, h, q, &mut scratch.matmul)?,
                Query::LowRank { a, norm, b } => {
                    let qa = &mut qa[..n * a.out_features()];
                    a.forward(pool, h, qa, &mut scratch.matmul)?;
                    rms_norm_inplace(qa, norm, c.rms_norm_eps);
                    b.forward(pool, qa, q, &mut scratch.matmul)?;
                }
            }
            // kv: [n, rank + rope]; the latent part normed, the key part rotated.
            layer.kv_a.forward(pool, h, kv, &mut scratch.matmul)?;
            for (row, k) in kv.chunks_exact_mut(latent).zip(k_pe.chunks_exact_mut(rope)) {
                let (lat, pe) = row.split_at_mut(rank);
                rms_norm_inplace(lat, &layer.kv_a_norm, c.rms_norm_eps);
                k.copy_from_slice(pe);
            }
            self.rope.apply(k_pe, &positions, 1);
            for (row, pe) in kv.chunks_exact_mut(latent).zip(k_pe.chunks_exact(rope)) {
                row[rank..].copy_from_slice(pe);
            }

            // Queries: [latent of the unrotated part | rotated part] per head.
            for (dst, src) in q_pe.chunks_exact_mut(rope).zip(q.chunks_exact(qk_dim)) {
                dst.copy_from_slice(&src[nope..]);
            }
            self.rope.apply(q_pe, &positions, heads);
            per_head(
                pool,
                &layer.k_b,
                (q, qk_dim),
                (q_lat, latent),
                n,
                gathered,
                products,
                &mut scratch.matmul,
            )?;
            for (dst, pe) in q_lat.chunks_exact_mut(latent).zip(q_pe.chunks_exact(rope)) {
                dst[rank..].copy_from_slice(pe);
            }

            // One latent head of keys, its first `rank` values doubling as the values.
            paged_attention(
                pool, cache, li, batch, &positions, q_lat, kv, kv, &params, attn,
            )?;
            per_head(
                pool,
                &layer.v_b,
                (attn, latent),
                (o, v_dim),
                n,
                gathered,
                products,
                &mut scratch.matmul,
            )?;
            layer.wo.forward(pool, o, h, &mut scratch.matmul)?;
            if li + 1 == self.layers.len() {
                isolate_logit_rows(batch, &mut scratch.matmul);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);

            rms_norm(x, &layer.ffn_norm, c.rms_norm_eps, h);
            match &layer.ffn {
                Ffn::Dense(mlp) => mlp.forward(pool, h, ffn_out, gate, up, &mut scratch.matmul)?,
                Ffn::Sparse { moe, shared } => {
                    moe.forward(pool, h, ffn_out, &mut scratch.matmul)?;
                    if let Some(shared) = shared {
                        shared.forward(pool, h, shared_out, gate, up, &mut scratch.matmul)?;
                        ffn_out
                            .iter_mut()
                            .zip(shared_out.iter())
                            .for_each(|(a, b)| *a += b);
                    }
                }
            }
            x.iter_mut().zip(ffn_out.iter()).for_each(|(a, b)| *a += b);
        }

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
