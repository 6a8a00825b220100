//! `deepseek_v2`: DeepSeek V2, V2-Lite, V2.5, and the decoder `deepseek_v3` shares (GGUF:
//! `deepseek2` for both, llama.cpp's one architecture; V3 differs in configuration only).
//! Pre-norm decoder with:
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

use crate::hf_config::HfDefaults;
use crate::layers::attention::{paged_attention, StepBatch};
use crate::layers::{rms_norm, rms_norm_inplace, Embedding, Expert, Linear, Moe, Rope, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::llama::HF_LAYER;
use crate::models::parts::{self, output_head};
use crate::models::{
    begin_forward, end_forward, isolate_logit_rows, last_token_logits, ForwardScratch, Model,
    SeqInput,
};
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS, MLP_EXPERTS};

/// The latent attention, the router's selection bias and the shared experts; Llama's names
/// for the rest.
const HF_MLA: &[(&str, &str)] = &[
    ("attn_q_a", "self_attn.q_a_proj"),
    ("attn_q_a_norm", "self_attn.q_a_layernorm"),
    ("attn_q_b", "self_attn.q_b_proj"),
    ("attn_kv_a_mqa", "self_attn.kv_a_proj_with_mqa"),
    ("attn_kv_a_norm", "self_attn.kv_a_layernorm"),
    ("attn_kv_b", "self_attn.kv_b_proj"),
    ("exp_probs_b.bias", "mlp.gate.e_score_correction_bias"),
    ("ffn_gate_inp", "mlp.gate"),
    ("ffn_gate_shexp", "mlp.shared_experts.gate_proj"),
    ("ffn_up_shexp", "mlp.shared_experts.up_proj"),
    ("ffn_down_shexp", "mlp.shared_experts.down_proj"),
];

pub(crate) const fn hf_checkpoint(defaults: HfDefaults) -> HfCheckpoint {
    HfCheckpoint {
        globals: DECODER_GLOBALS,
        layer_parts: &[HF_MLA, HF_LAYER],
        experts: Some(MLP_EXPERTS),
        norm_offset: 0.0,
        defaults,
    }
}

/// V2's router: a softmax, its group method in `topk_method` (`greedy` by default).
pub(crate) const HF: HfCheckpoint = hf_checkpoint(HfDefaults::new());

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
    let mut cfg = w.config(RopeStyle::Normal)?;
    parts::skip_mtp_layers(w, &mut cfg)?;
    if w.hparam_bool("rope_interleave")? == Some(false) {
        return Err(ModelError::Unsupported(format!(
            "{source}: rope_interleave false (rotating halves) is not supported for DeepSeek"
        )));
    }
    let mla = mla_sizes(w)?;
    let (rank, rope, v_dim, qk_dim) = (mla.rank, mla.rope, mla.v_dim, mla.nope + mla.rope);
    let q_rank = hparam(w, "attention.q_lora_rank", "q_lora_rank")?.filter(|&r| r > 0);
    // The cache holds one latent "head" per token.
    cfg.n_kv_heads = 1;
    cfg.head_dim = rank + rope;
    cfg.rope_dims = rope;
    cfg.rope_style = RopeStyle::Normal;

    let (d, heads) = (cfg.hidden_size, cfg.n_heads);
    let n_dense = w.leading_dense_layers()?.unwrap_or(0);
    let n_shared = hparam(w, "expert_shared_count", "n_shared_experts")?.unwrap_or(0);
    let moe = w.moe()?;
    let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
    let layers = (0..cfg.n_layers)
        .map(|i| {
            let p = |t: &str| format!("blk.{i}.{t}.weight");
            let swiglu = |suffix: &str, ff: usize| parts::swiglu(w, i, suffix, [d, ff]);
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
                    // V3's selection bias; llama.cpp reads it when present.
                    moe: parts::moe(w, i, d, m, Need::Optional)?,
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
    let output = output_head(w, &embed, d, cfg.vocab_size)?;
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

/// The latent attention's sizes, checked: a GGUF gives the whole query/key head, a
/// checkpoint its unrotated part.
fn mla_sizes(w: &dyn Weights) -> Result<Mla> {
    let source = w.source();
    let missing = |what: &str| ModelError::Unsupported(format!("{source}: missing `{what}`"));
    let rank = hparam(w, "attention.kv_lora_rank", "kv_lora_rank")?
        .filter(|&r| r > 0)
        .ok_or_else(|| missing("kv_lora_rank"))?;
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
    Ok(Mla {
        nope: qk_dim - rope,
        rope,
        v_dim,
        rank,
    })
}

/// `out[t, h] = per_head[h](x[t, h])` for `x` `[n, heads, x_stride]` (each head's first `in`
/// values) into `out` `[n, heads, out_stride]` (its first `out` values): one matrix per head,
/// each token's row multiplied on its own (as llama.cpp multiplies these 3-D weights).
/// `gathered` and `products` are work space of at least `n · in` and `n · out` values.
fn per_head(
    pool: &ThreadPool,
    matrices: &[Linear],
    (x, x_stride): (&[f32], usize),
    (out, out_stride): (&mut [f32], usize),
    n: usize,
    (gathered, products): (&mut [f32], &mut [f32]),
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

/// One step's buffers, each holding `n` token rows.
struct Buffers<'a> {
    /// `[n, d]`: the residual stream, and the normed input of each block.
    x: &'a mut [f32],
    h: &'a mut [f32],
    /// `[n, heads, nope + rope]` queries, `[n, rank + rope]` latent keys and values.
    q: &'a mut [f32],
    kv: &'a mut [f32],
    /// `[n, heads, rank + rope]`: queries in the latent space, and attention's latent output.
    q_lat: &'a mut [f32],
    attn: &'a mut [f32],
    /// `[n, heads, rope]` and `[n, rope]`: the rotated parts.
    q_pe: &'a mut [f32],
    k_pe: &'a mut [f32],
    /// `[n, heads, v_dim]`: each head's value.
    o: &'a mut [f32],
    /// `[n, d]`, `[n, ff]`, `[n, ff]`, `[n, q_rank]`, `[n, d]` (the MLP sizes its own two).
    ffn_out: &'a mut [f32],
    gate: &'a mut Vec<f32>,
    up: &'a mut Vec<f32>,
    qa: &'a mut [f32],
    shared_out: &'a mut [f32],
    /// `per_head`'s work space.
    gathered: &'a mut [f32],
    products: &'a mut [f32],
}

impl DeepSeek2 {
    /// The lengths of [`Buffers`]' fields, in order, for `n` tokens.
    fn buffer_lengths(&self, n: usize) -> [usize; 16] {
        let c = &self.cfg;
        let Mla {
            nope,
            rope,
            v_dim,
            rank,
        } = self.mla;
        let (d, heads, latent) = (c.hidden_size, c.n_heads, rank + rope);
        let widest = |f: &dyn Fn(&Layer) -> usize| self.layers.iter().map(f).max().unwrap_or(0);
        let max_ff = widest(&|l| match &l.ffn {
            Ffn::Dense(e) => e.gate.out_features(),
            Ffn::Sparse { .. } => 0,
        });
        let q_rank = widest(&|l| match &l.q {
            Query::LowRank { a, .. } => a.out_features(),
            Query::Full(_) => 0,
        });
        [
            n * d,
            n * d,
            n * heads * (nope + rope),
            n * latent,
            n * heads * latent,
            n * heads * latent,
            n * heads * rope,
            n * rope,
            n * heads * v_dim,
            n * d,
            n * max_ff,
            n * max_ff,
            n * q_rank,
            n * d,
            n * nope.max(rank),
            n * rank.max(v_dim),
        ]
    }

    /// Latent attention of layer `li` on `b.x`, its output added to `b.x`.
    fn attention(
        &self,
        step: &StepBatch<'_, '_>,
        cache: &mut KvCache,
        li: usize,
        b: &mut Buffers<'_>,
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        let (c, layer, pool) = (&self.cfg, &self.layers[li], step.pool);
        let n = step.positions.len();
        let Mla {
            nope,
            rope,
            v_dim,
            rank,
        } = self.mla;
        let (heads, qk_dim, latent) = (c.n_heads, nope + rope, rank + rope);
        rms_norm(b.x, &layer.attn_norm, c.rms_norm_eps, b.h);
        match &layer.q {
            Query::Full(wq) => wq.forward(pool, b.h, b.q, matmul)?,
            Query::LowRank { a, norm, b: wb } => {
                let qa = &mut b.qa[..n * a.out_features()];
                a.forward(pool, b.h, qa, matmul)?;
                rms_norm_inplace(qa, norm, c.rms_norm_eps);
                wb.forward(pool, qa, b.q, matmul)?;
            }
        }
        // kv: [n, rank + rope]; the latent part normed, the key part rotated.
        layer.kv_a.forward(pool, b.h, b.kv, matmul)?;
        for (row, k) in
            b.kv.chunks_exact_mut(latent)
                .zip(b.k_pe.chunks_exact_mut(rope))
        {
            let (lat, pe) = row.split_at_mut(rank);
            rms_norm_inplace(lat, &layer.kv_a_norm, c.rms_norm_eps);
            k.copy_from_slice(pe);
        }
        self.rope.apply(b.k_pe, step.positions, 1);
        for (row, pe) in b.kv.chunks_exact_mut(latent).zip(b.k_pe.chunks_exact(rope)) {
            row[rank..].copy_from_slice(pe);
        }

        // Queries: [latent of the unrotated part | rotated part] per head.
        for (dst, src) in b.q_pe.chunks_exact_mut(rope).zip(b.q.chunks_exact(qk_dim)) {
            dst.copy_from_slice(&src[nope..]);
        }
        self.rope.apply(b.q_pe, step.positions, heads);
        let work = (&mut *b.gathered, &mut *b.products);
        per_head(
            pool,
            &layer.k_b,
            (b.q, qk_dim),
            (b.q_lat, latent),
            n,
            work,
            matmul,
        )?;
        for (dst, pe) in b
            .q_lat
            .chunks_exact_mut(latent)
            .zip(b.q_pe.chunks_exact(rope))
        {
            dst[rank..].copy_from_slice(pe);
        }

        // One latent head of keys, its first `rank` values doubling as the values.
        let params = AttentionParams {
            n_heads: heads,
            n_kv_heads: 1,
            head_dim: latent,
            scale: self.score_scale,
            softcap: None,
            sliding_window: None,
            sinks: None,
            single_token_step: false, // set per sequence
        };
        let qkv = (&*b.q_lat, &*b.kv, &*b.kv);
        paged_attention(step, cache, li, qkv, &params, b.attn)?;
        let work = (&mut *b.gathered, &mut *b.products);
        per_head(
            pool,
            &layer.v_b,
            (b.attn, latent),
            (b.o, v_dim),
            n,
            work,
            matmul,
        )?;
        layer.wo.forward(pool, b.o, b.h, matmul)?;
        if li + 1 == self.layers.len() {
            isolate_logit_rows(step.batch, matmul);
        }
        b.x.iter_mut().zip(b.h.iter()).for_each(|(a, h)| *a += h);
        Ok(())
    }

    /// The dense MLP or the experts (and shared experts) of `layer` on `b.x`, added to `b.x`.
    fn feed_forward(
        &self,
        pool: &ThreadPool,
        layer: &Layer,
        b: &mut Buffers<'_>,
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        rms_norm(b.x, &layer.ffn_norm, self.cfg.rms_norm_eps, b.h);
        match &layer.ffn {
            Ffn::Dense(mlp) => mlp.forward(pool, b.h, b.ffn_out, b.gate, b.up, matmul)?,
            Ffn::Sparse { moe, shared } => {
                moe.forward(pool, b.h, b.ffn_out, matmul)?;
                if let Some(shared) = shared {
                    shared.forward(pool, b.h, b.shared_out, b.gate, b.up, matmul)?;
                    let shared_out = &*b.shared_out;
                    b.ffn_out
                        .iter_mut()
                        .zip(shared_out)
                        .for_each(|(a, s)| *a += s);
                }
            }
        }
        b.x.iter_mut()
            .zip(b.ffn_out.iter())
            .for_each(|(a, f)| *a += f);
        Ok(())
    }
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
        let (tokens, positions) = begin_forward(c, cache, batch, scratch)?;
        let n = tokens.len();
        let mut bufs = scratch.take(&self.buffer_lengths(n));
        let [x, h, q, kv, q_lat, attn, q_pe, k_pe, o, ffn_out, gate, up, qa, shared_out, gathered, products] =
            &mut bufs[..]
        else {
            unreachable!("take returns one buffer per length")
        };
        let mut b = Buffers {
            x,
            h,
            q,
            kv,
            q_lat,
            attn,
            q_pe,
            k_pe,
            o,
            ffn_out,
            gate,
            up,
            qa,
            shared_out,
            gathered,
            products,
        };
        let step = StepBatch::new(pool, batch, &positions);

        self.embed.lookup(&tokens, 1.0, b.x)?;
        for (li, layer) in self.layers.iter().enumerate() {
            self.attention(&step, cache, li, &mut b, &mut scratch.matmul)?;
            self.feed_forward(pool, layer, &mut b, &mut scratch.matmul)?;
        }

        last_token_logits(
            pool,
            batch,
            b.x,
            (&self.output_norm, c.rms_norm_eps),
            &self.output,
            scratch,
            logits,
        )?;
        end_forward(scratch, bufs, positions);
        Ok(())
    }
}
