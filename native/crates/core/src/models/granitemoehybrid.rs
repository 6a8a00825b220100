//! `granitemoehybrid`: IBM Granite 4.0 H (Micro, Tiny, Small). A hybrid decoder: most layers
//! are Mamba-2 mixers, a few are GQA attention (without positions in the released models;
//! `rope.scaling.finetuned` / `position_embedding_type: rope` turns RoPE on). Every layer is
//! RMS norm → mixer → scaled residual → RMS norm → SwiGLU MLP, or a softmax-routed mixture of
//! experts plus a shared expert → scaled residual. Granite's multipliers: the embeddings are
//! scaled, attention uses its own scale, and the logits are divided by `logits_scaling`.
//!
//! The Mamba-2 mixer: `in_proj` gives the gate z, the convolved part xBC and the step sizes
//! dt; xBC goes through a causal depthwise convolution (with bias, then SiLU) and splits into
//! x, B and C; the selective scan runs a state of `d_state` per channel; `D · x` is added, the
//! result gated by SiLU(z), RMS-normed per group and projected back. Its recurrent state per
//! sequence (the convolution's last inputs and the scan's state) is carried by the runner.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::AttentionParams;

use crate::hf_config::HfDefaults;
use crate::layers::activations::swiglu;
use crate::layers::attention::Attend;
use crate::layers::moe::Expert;
use crate::layers::ssm::{causal_conv, mamba2_scan_token, silu, ScanShape, ScanToken};
use crate::layers::{rms_norm, Embedding, Linear, Moe, Rope, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::parts::{self, output_head};
use crate::models::{ForwardScratch, HybridDecoder, Model, SeqInput};
use crate::weights::{Need, Weights};
use crate::weights_hf::{ExpertStack, HfCheckpoint, HfExperts, DECODER_GLOBALS};

/// A Mamba-2 mixer's weights.
struct Mamba2 {
    /// `d` → z (`d_inner`), xBC (`conv_dim`), dt (`n_heads`).
    in_proj: Linear,
    /// `[conv_dim, d_conv]` and `[conv_dim]`.
    conv: Vec<f32>,
    conv_bias: Vec<f32>,
    dt_bias: Vec<f32>,
    /// The decay rates A (negative), one per head.
    a: Vec<f32>,
    /// The skip D, one per head.
    d: Vec<f32>,
    /// `[d_inner]`: each group's RMS norm weights, group after group.
    norm: Vec<f32>,
    out_proj: Linear,
    /// Where this layer's convolution and scan states start in a sequence's state.
    state_offset: usize,
}

struct Attention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    kv_layer: usize,
}

enum Mixer {
    Mamba(Mamba2),
    Attention(Attention),
}

enum Ffn {
    Dense(Expert),
    Sparse(Moe, Option<Expert>),
}

struct Layer {
    attn_norm: Vec<f32>,
    mixer: Mixer,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
}

/// Mamba-2's sizes.
#[derive(Clone, Copy)]
struct SsmShape {
    d_inner: usize,
    d_conv: usize,
    scan: ScanShape,
}

impl SsmShape {
    /// Channels the convolution runs over: x, B and C.
    fn conv_dim(&self) -> usize {
        self.d_inner + 2 * self.scan.n_groups * self.scan.d_state
    }

    /// Floats of state per Mamba layer: the convolution's last `d_conv − 1` inputs, then the
    /// scan's `[n_heads, head_dim, d_state]`.
    fn state_len(&self) -> usize {
        (self.d_conv - 1) * self.conv_dim() + self.d_inner * self.scan.d_state
    }
}

/// Granite's multipliers (1 where the file has none).
#[derive(Clone, Copy)]
struct Scales {
    embedding: f32,
    residual: f32,
    /// The attention scores' scale (`attention_multiplier`), in place of 1/√head_dim.
    attention: f32,
    /// The logits are multiplied by its reciprocal.
    logits: f32,
}

pub struct GraniteMoeHybrid {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    rope: Option<Rope>,
    ssm: SsmShape,
    scales: Scales,
    n_attention: usize,
    n_mamba: usize,
    /// The widest SwiGLU hidden layer (the work buffers' width).
    ffn_width: usize,
}

/// The checkpoint's names: the Mamba mixer under `mamba`, the MLP (and the shared expert)
/// as one `input_linear` of gate rows then up rows, the experts stacked likewise.
pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[&[
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ssm_in", "mamba.in_proj"),
        ("ssm_conv1d", "mamba.conv1d"),
        ("ssm_dt.bias", "mamba.dt_bias"),
        ("ssm_a_log.weight", "mamba.A_log"),
        ("ssm_d.weight", "mamba.D"),
        ("ssm_norm", "mamba.norm"),
        ("ssm_out", "mamba.out_proj"),
        ("ffn_up", "shared_mlp.input_linear"),
        ("ffn_down", "shared_mlp.output_linear"),
        ("ffn_up_shexp", "shared_mlp.input_linear"),
        ("ffn_down_shexp", "shared_mlp.output_linear"),
        ("ffn_gate_inp", "block_sparse_moe.router.layer"),
    ]],
    experts: Some(HfExperts {
        block: "block_sparse_moe",
        names: ["input_linear", "input_linear", "output_linear"],
        stack: ExpertStack::GateUpRows,
    }),
    norm_offset: 0.0,
    defaults: HfDefaults {
        norm_topk_prob: true,
        ..HfDefaults::new()
    },
};

/// A hyperparameter under its GGUF name, else its checkpoint name.
fn either_f32(w: &dyn Weights, gguf: &str, hf: &str) -> Result<Option<f32>> {
    Ok(match w.hparam_f32(gguf)? {
        Some(v) => Some(v),
        None => w.hparam_f32(hf)?,
    })
}

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    let cfg = w.config(RopeStyle::Normal)?;
    let source = w.source();
    let bad = |what: String| ModelError::Unsupported(format!("{source}: {what}"));
    let d = cfg.hidden_size;
    let need = |gguf: &str, hf: &str| -> Result<usize> {
        parts::either_u32(w, gguf, hf)?
            .filter(|&v| v > 0)
            .ok_or_else(|| bad(format!("needs a positive `{gguf}` (`{hf}`)")))
    };
    let n_heads = need("ssm.time_step_rank", "mamba_n_heads")?;
    let d_inner = match w.hparam_u32("ssm.inner_size")? {
        Some(v) => v as usize,
        None => w.hparam_u32("mamba_expand")?.unwrap_or(2) as usize * d,
    };
    let ssm = SsmShape {
        d_inner,
        d_conv: need("ssm.conv_kernel", "mamba_d_conv")?,
        scan: ScanShape {
            n_heads,
            head_dim: d_inner / n_heads,
            d_state: need("ssm.state_size", "mamba_d_state")?,
            n_groups: need("ssm.group_count", "mamba_n_groups")?,
        },
    };
    if d_inner % n_heads != 0
        || n_heads % ssm.scan.n_groups != 0
        || d_inner % ssm.scan.n_groups != 0
        || ssm.d_conv < 2
        || ssm.d_conv > 64
        || ssm.scan.d_state > 1024
    {
        return Err(bad(format!(
            "Mamba-2 sizes that do not fit: inner size {d_inner}, {n_heads} heads, {} groups, state {}, convolution of {}",
            ssm.scan.n_groups, ssm.scan.d_state, ssm.d_conv
        )));
    }
    if w.hparam_bool("mamba_conv_bias")? == Some(false)
        || w.hparam_bool("mamba_proj_bias")? == Some(true)
    {
        return Err(bad(
            "Mamba layers without a convolution bias, or with projection biases, are not supported (Granite 4 has neither)".into(),
        ));
    }
    let attention = w.attention_layers(cfg.n_layers)?.ok_or_else(|| {
        bad("needs to know which layers attend: `layer_types` in config.json, a per-layer `attention.head_count_kv` in a GGUF".into())
    })?;
    // RoPE where the file says so (`rope.scaling.finetuned`, `position_embedding_type`).
    let rope = match (
        w.hparam_bool("rope.scaling.finetuned")?,
        w.hparam_str("position_embedding_type")?,
    ) {
        (Some(r), _) => r,
        (None, Some(kind)) => kind == "rope",
        (None, None) => false,
    };
    // Dense checkpoints say `num_local_experts: 0`.
    let moe = match parts::either_u32(w, "expert_count", "num_local_experts")? {
        Some(0) | None => None,
        Some(_) => w.moe()?,
    };
    let shared_ff = match moe {
        None => 0,
        Some(_) => parts::either_u32(
            w,
            "expert_shared_feed_forward_length",
            "shared_intermediate_size",
        )?
        .unwrap_or(0),
    };
    // A dense checkpoint's MLP is its `shared_mlp` (a GGUF states the width it was given).
    let dense_ff = w
        .hparam_u32("shared_intermediate_size")?
        .map_or(cfg.intermediate_size, |f| f as usize);
    let scale = |gguf: &str, hf: &str| -> Result<f32> {
        let v = either_f32(w, gguf, hf)?.unwrap_or(0.0);
        if !v.is_finite() || v < 0.0 {
            return Err(bad(format!("`{gguf}` (`{hf}`) is {v}")));
        }
        Ok(if v == 0.0 { 1.0 } else { v })
    };
    let scales = Scales {
        embedding: scale("embedding_scale", "embedding_multiplier")?,
        residual: scale("residual_scale", "residual_multiplier")?,
        attention: match either_f32(w, "attention.scale", "attention_multiplier")? {
            Some(s) if s > 0.0 && s.is_finite() => s,
            _ => 1.0 / (cfg.head_dim as f32).sqrt(),
        },
        logits: scale("logit_scale", "logits_scaling")?,
    };

    let (q_dim, kv_dim) = (cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim);
    let (mut n_attention, mut n_mamba) = (0, 0);
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for (i, &attends) in attention.iter().enumerate() {
        let p = |t: &str| format!("blk.{i}.{t}.weight");
        let mixer = if attends {
            n_attention += 1;
            Mixer::Attention(Attention {
                wq: w.linear(&p("attn_q"), d, q_dim)?,
                wk: w.linear(&p("attn_k"), d, kv_dim)?,
                wv: w.linear(&p("attn_v"), d, kv_dim)?,
                wo: w.linear(&p("attn_output"), q_dim, d)?,
                kv_layer: n_attention - 1,
            })
        } else {
            n_mamba += 1;
            Mixer::Mamba(load_mamba(w, i, d, ssm, (n_mamba - 1) * ssm.state_len())?)
        };
        let ffn = match moe {
            Some(m) => {
                let shared = match shared_ff {
                    0 => None,
                    ff => Some(swiglu_mlp(w, i, "_shexp", [d, ff])?),
                };
                Ffn::Sparse(parts::moe(w, i, d, m, Need::Absent)?, shared)
            }
            None => Ffn::Dense(swiglu_mlp(w, i, "", [d, dense_ff])?),
        };
        layers.push(Layer {
            attn_norm: w.vector(&p("attn_norm"), d)?,
            mixer,
            ffn_norm: w.vector(&p("ffn_norm"), d)?,
            ffn,
        });
    }
    let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
    let output = output_head(w, &embed, d, cfg.vocab_size)?;
    let ffn_width = match moe {
        Some(m) => m.expert_ff.max(shared_ff),
        None => dense_ff,
    };
    Ok(Box::new(GraniteMoeHybrid {
        output_norm: w.vector("output_norm.weight", d)?,
        output,
        embed,
        layers,
        rope: rope.then(|| cfg.rope(cfg.rope_scaling.clone())),
        ssm,
        scales,
        n_attention,
        n_mamba,
        ffn_width,
        cfg,
    }))
}

/// A SwiGLU MLP from `ffn_gate{suffix}`, `ffn_up{suffix}`, `ffn_down{suffix}`; a checkpoint
/// fuses gate and up into one `input_linear` (gate rows first), read in place.
fn swiglu_mlp(w: &dyn Weights, i: usize, suffix: &str, [d, ff]: [usize; 2]) -> Result<Expert> {
    let p = |t: &str| format!("blk.{i}.{t}{suffix}.weight");
    if w.has(&p("ffn_gate")) {
        return parts::swiglu(w, i, suffix, [d, ff]);
    }
    Ok(Expert {
        gate: w.linear_rows(&p("ffn_up"), d, 2 * ff, 0..ff)?,
        up: w.linear_rows(&p("ffn_up"), d, 2 * ff, ff..2 * ff)?,
        down: w.linear(&p("ffn_down"), ff, d)?,
    })
}

fn load_mamba(
    w: &dyn Weights,
    i: usize,
    d: usize,
    s: SsmShape,
    state_offset: usize,
) -> Result<Mamba2> {
    let p = |t: &str| format!("blk.{i}.{t}");
    let (conv_dim, n_heads) = (s.conv_dim(), s.scan.n_heads);
    // A and D have no `.weight` in a GGUF; a checkpoint stores log(−A).
    let a = if w.has(&p("ssm_a")) {
        w.vector_2d(&p("ssm_a"), n_heads, 1)?
    } else {
        let log = w.vector(&p("ssm_a_log.weight"), n_heads)?;
        log.iter().map(|v| -v.exp()).collect()
    };
    let d_skip = if w.has(&p("ssm_d")) {
        w.vector_2d(&p("ssm_d"), n_heads, 1)?
    } else {
        w.vector(&p("ssm_d.weight"), n_heads)?
    };
    Ok(Mamba2 {
        in_proj: w.linear(
            &p("ssm_in.weight"),
            d,
            2 * s.d_inner + 2 * s.scan.n_groups * s.scan.d_state + n_heads,
        )?,
        conv: w.vector_2d(&p("ssm_conv1d.weight"), conv_dim, s.d_conv)?,
        conv_bias: w.vector(&p("ssm_conv1d.bias"), conv_dim)?,
        dt_bias: w.vector(&p("ssm_dt.bias"), n_heads)?,
        a,
        d: d_skip,
        norm: w.vector_2d(
            &p("ssm_norm.weight"),
            s.scan.n_groups,
            s.d_inner / s.scan.n_groups,
        )?,
        out_proj: w.linear(&p("ssm_out.weight"), s.d_inner, d)?,
        state_offset,
    })
}

impl HybridDecoder for GraniteMoeHybrid {
    fn cfg(&self) -> &ModelConfig {
        &self.cfg
    }

    fn n_attention_layers(&self) -> usize {
        // The Mamba layers keep no keys or values.
        self.n_attention
    }

    fn state_len(&self) -> usize {
        self.n_mamba * self.ssm.state_len()
    }

    fn head(&self) -> (&[f32], &Linear) {
        (&self.output_norm, &self.output)
    }

    fn layers_forward(
        &self,
        pool: &ThreadPool,
        (tokens, positions, batch): (&[u32], &[usize], &[SeqInput<'_>]),
        states: &mut [Vec<f32>],
        attend: &mut Attend<'_, '_, '_>,
        scratch: &mut ForwardScratch,
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let n = tokens.len();
        let (d, hd) = (c.hidden_size, c.head_dim);
        let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
        let s = self.ssm;
        let in_width = 2 * s.d_inner + 2 * s.scan.n_groups * s.scan.d_state + s.scan.n_heads;
        let sparse = self.layers.iter().any(|l| matches!(l.ffn, Ffn::Sparse(..)));
        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            if self.n_mamba > 0 { n * in_width } else { 0 },
            if self.n_mamba > 0 {
                n * s.conv_dim()
            } else {
                0
            },
            if self.n_mamba > 0 { n * s.d_inner } else { 0 },
            n * q_dim,
            n * kv_dim,
            n * kv_dim,
            n * q_dim,
            n * self.ffn_width,
            n * self.ffn_width,
            if sparse { n * d } else { 0 },
        ]);
        let [x, h, zxbcdt, xbc, y, q, k, v, attn, gate, up, experts_out] = &mut bufs[..] else {
            unreachable!("take returns one buffer per length")
        };
        self.embed.lookup(tokens, self.scales.embedding, x)?;
        let params = AttentionParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            scale: self.scales.attention,
            softcap: None,
            sliding_window: None,
            sinks: None,
            single_token_step: false, // set per sequence
        };
        let seq_lens: Vec<usize> = batch.iter().map(|s| s.tokens.len()).collect();
        let residual = self.scales.residual;
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(x, &layer.attn_norm, c.rms_norm_eps, h);
            match &layer.mixer {
                Mixer::Attention(a) => {
                    a.wq.forward(pool, h, q, &mut scratch.matmul)?;
                    a.wk.forward(pool, h, k, &mut scratch.matmul)?;
                    a.wv.forward(pool, h, v, &mut scratch.matmul)?;
                    if let Some(rope) = &self.rope {
                        rope.apply(q, positions, c.n_heads);
                        rope.apply(k, positions, c.n_kv_heads);
                    }
                    attend.run(a.kv_layer, (q, k, v), &params, attn)?;
                    a.wo.forward(pool, attn, h, &mut scratch.matmul)?;
                }
                Mixer::Mamba(m) => {
                    m.in_proj.forward(pool, h, zxbcdt, &mut scratch.matmul)?;
                    self.mamba(m, zxbcdt, (xbc, y), &seq_lens, states);
                    m.out_proj.forward(pool, y, h, &mut scratch.matmul)?;
                }
            }
            if li + 1 == self.layers.len() {
                attend.before_last_layer_products(&mut scratch.matmul);
            }
            if residual != 1.0 {
                h.iter_mut().for_each(|v| *v *= residual);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);

            rms_norm(x, &layer.ffn_norm, c.rms_norm_eps, h);
            let mlp = |e: &Expert,
                       h: &mut [f32],
                       gate: &mut [f32],
                       up: &mut [f32],
                       scratch: &mut ForwardScratch|
             -> Result<()> {
                let ff = e.gate.out_features();
                let (gate, up) = (&mut gate[..n * ff], &mut up[..n * ff]);
                e.gate.forward(pool, h, gate, &mut scratch.matmul)?;
                e.up.forward(pool, h, up, &mut scratch.matmul)?;
                swiglu(gate, up);
                e.down.forward(pool, gate, h, &mut scratch.matmul)?;
                Ok(())
            };
            match &layer.ffn {
                Ffn::Dense(e) => mlp(e, h, gate, up, scratch)?,
                Ffn::Sparse(moe, shared) => {
                    moe.forward(pool, h, experts_out, &mut scratch.matmul)?;
                    match shared {
                        None => h.copy_from_slice(experts_out),
                        Some(e) => {
                            mlp(e, h, gate, up, scratch)?;
                            // The routed experts' sum plus the shared expert's, as llama.cpp adds.
                            h.iter_mut()
                                .zip(experts_out.iter())
                                .for_each(|(s, r)| *s += *r);
                        }
                    }
                }
            }
            if residual != 1.0 {
                h.iter_mut().for_each(|v| *v *= residual);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
        }
        Ok(bufs)
    }

    fn finish_logits(&self, logits: &mut [f32]) {
        // llama.cpp multiplies by the reciprocal.
        let inverse = 1.0 / self.scales.logits;
        if inverse != 1.0 {
            logits.iter_mut().for_each(|v| *v *= inverse);
        }
    }
}

impl GraniteMoeHybrid {
    /// The Mamba-2 mixer of every sequence's rows: `zxbcdt` (`[n, in_width]`) in, `y`
    /// (`[n, d_inner]`) out (gated and normed, before `out_proj`); `xbc` is `[n, conv_dim]`
    /// scratch. Each sequence's convolution and scan states are read before its rows and
    /// left after them.
    fn mamba(
        &self,
        m: &Mamba2,
        zxbcdt: &[f32],
        (xbc, y): (&mut [f32], &mut [f32]),
        seq_lens: &[usize],
        states: &mut [Vec<f32>],
    ) {
        let s = self.ssm;
        let (d_inner, conv_dim, n_heads) = (s.d_inner, s.conv_dim(), s.scan.n_heads);
        let in_width = 2 * d_inner + 2 * s.scan.n_groups * s.scan.d_state + n_heads;
        let gs = s.scan.n_groups * s.scan.d_state;
        let conv_state_len = (s.d_conv - 1) * conv_dim;
        let (mut inputs, mut window) = (Vec::new(), Vec::new());
        let (mut dt, mut z) = (vec![0f32; n_heads], vec![0f32; d_inner]);
        let mut t0 = 0;
        for (&len, state) in seq_lens.iter().zip(states.iter_mut()) {
            let state = &mut state[m.state_offset..m.state_offset + s.state_len()];
            let (conv_state, scan_state) = state.split_at_mut(conv_state_len);
            inputs.clear();
            for row in zxbcdt[t0 * in_width..(t0 + len) * in_width].chunks_exact(in_width) {
                inputs.extend_from_slice(&row[d_inner..d_inner + conv_dim]);
            }
            let out = &mut xbc[t0 * conv_dim..(t0 + len) * conv_dim];
            causal_conv((&m.conv, conv_dim), conv_state, &inputs, out, &mut window);
            for row in out.chunks_exact_mut(conv_dim) {
                row.iter_mut().zip(&m.conv_bias).for_each(|(v, b)| *v += b);
                silu(row);
            }
            for t in 0..len {
                let row = &zxbcdt[(t0 + t) * in_width..(t0 + t + 1) * in_width];
                let conv = &xbc[(t0 + t) * conv_dim..(t0 + t + 1) * conv_dim];
                for (o, (&raw, &b)) in dt
                    .iter_mut()
                    .zip(row[in_width - n_heads..].iter().zip(&m.dt_bias))
                {
                    *o = raw + b;
                }
                let token = ScanToken {
                    x: &conv[..d_inner],
                    dt: &dt,
                    b: &conv[d_inner..d_inner + gs],
                    c: &conv[d_inner + gs..],
                };
                let out = &mut y[(t0 + t) * d_inner..(t0 + t + 1) * d_inner];
                mamba2_scan_token(s.scan, &m.a, token, scan_state, out);
                // y + D · x, then gated by SiLU(z).
                let head_dim = s.scan.head_dim;
                for (i, o) in out.iter_mut().enumerate() {
                    *o += conv[i] * m.d[i / head_dim];
                }
                z.copy_from_slice(&row[..d_inner]);
                swiglu(&mut z, out);
                // Each group's RMS norm.
                let group = d_inner / s.scan.n_groups;
                for ((dst, src), w) in out
                    .chunks_exact_mut(group)
                    .zip(z.chunks_exact(group))
                    .zip(m.norm.chunks_exact(group))
                {
                    rms_norm(src, w, self.cfg.rms_norm_eps, dst);
                }
            }
            t0 += len;
        }
    }
}
