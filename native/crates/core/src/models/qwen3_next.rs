//! `qwen3_next`: Qwen3-Next (80B-A3B). A hybrid decoder: three of every four layers are gated
//! delta nets (linear attention with a per-sequence state), the fourth is gated attention.
//! Every layer is RMS norm → mixer → residual → RMS norm → a softmax-routed mixture of
//! experts plus a shared expert scaled by its own sigmoid gate → residual. GGUF: `qwen3next`.
//!
//! - Gated delta net: `q, k, v` (one projection, convolved by a causal depthwise convolution
//!   of `d_conv` taps, then SiLU) and the gate `z`; `q` and `k` L2-normed per key head; per
//!   value head the step `β = σ(b)` and the decay `g = A · softplus(a + dt_bias)`; the rule in
//!   [`crate::layers::gated_delta_net`]; the output RMS-normed per head, gated by SiLU(z).
//! - Gated attention: the query projection gives each head's query and its output gate; Q/K
//!   RMS norms, partial NeoX RoPE (a quarter of each head); the output times σ(gate).
//! - The checkpoint stores norm weights as offsets from 1 (the delta net's own norm as
//!   applied); its `in_proj_qkvz` (and `in_proj_ba`) group the rows per key head, which
//!   llama.cpp's converter regroups into `attn_qkv` and `attn_gate` (legacy files: `ssm_in`).
//!
//! Unlike the other decoders, llama.cpp runs this one's last layer for every row (the logit
//! rows are picked after the final norm), so its products keep the whole prompt's grouping.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::AttentionParams;

use crate::hf_config::HfDefaults;
use crate::layers::activations::{sigmoid, swiglu};
use crate::layers::attention::Attend;
use crate::layers::gated_delta_net::{gated_delta_token, DeltaShape, DeltaToken};
use crate::layers::moe::Expert;
use crate::layers::ssm::{causal_conv, silu};
use crate::layers::{rms_norm, rms_norm_inplace, Embedding, Linear, Moe, Rope, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::parts::{self, output_head};
use crate::models::{ForwardScratch, HybridDecoder, Model, SeqInput};
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS, MLP_EXPERTS};

/// The delta net's input projection.
enum QkvzProj {
    /// `attn_qkv` (q, k, v: every key head's q, then k, then every value head's v) and
    /// `attn_gate` (z), as llama.cpp's converter writes them.
    Split { qkv: Linear, z: Linear },
    /// The checkpoint's `in_proj_qkvz`: per key head its q, k, then its value heads' v and z.
    Grouped(Linear),
}

struct DeltaNet {
    qkvz: QkvzProj,
    /// `[2 · n_v_heads]` rows, per key head its value heads' β rows then their α rows.
    ba: Linear,
    /// `[conv_dim, d_conv]`.
    conv: Vec<f32>,
    dt_bias: Vec<f32>,
    /// The decay rates A (negative), one per value head.
    a: Vec<f32>,
    /// `[v_dim]`, shared by the heads.
    norm: Vec<f32>,
    out: Linear,
    /// Where this layer's convolution and delta states start in a sequence's state.
    state_offset: usize,
}

struct GatedAttention {
    /// `d` → each head's query then its output gate.
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    kv_layer: usize,
}

enum Mixer {
    Delta(DeltaNet),
    Attention(GatedAttention),
}

struct SharedExpert {
    mlp: Expert,
    /// `d` → 1: the expert's output is scaled by σ of it.
    gate: Linear,
}

struct Layer {
    attn_norm: Vec<f32>,
    mixer: Mixer,
    post_attention_norm: Vec<f32>,
    moe: Moe,
    shared: Option<SharedExpert>,
}

/// The delta nets' sizes.
#[derive(Clone, Copy)]
struct LinearShape {
    d_conv: usize,
    heads: DeltaShape,
}

impl LinearShape {
    fn key_dim(&self) -> usize {
        self.heads.n_k_heads * self.heads.k_dim
    }

    fn value_dim(&self) -> usize {
        self.heads.n_v_heads * self.heads.v_dim
    }

    /// Channels the convolution runs over: q, k and v.
    fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }

    /// Floats of state per delta-net layer: the convolution's last `d_conv − 1` inputs, then
    /// the delta rule's state.
    fn state_len(&self) -> usize {
        (self.d_conv - 1) * self.conv_dim() + self.heads.state_len()
    }
}

pub struct Qwen3Next {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    linear: LinearShape,
    attention_scale: f32,
    n_attention: usize,
    n_delta: usize,
    /// The widest SwiGLU hidden layer (the work buffers' width).
    ffn_width: usize,
}

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[&[
        ("attn_norm", "input_layernorm"),
        ("post_attention_norm", "post_attention_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("attn_q_norm", "self_attn.q_norm"),
        ("attn_k_norm", "self_attn.k_norm"),
        ("ssm_in", "linear_attn.in_proj_qkvz"),
        ("ssm_ba", "linear_attn.in_proj_ba"),
        ("ssm_conv1d", "linear_attn.conv1d"),
        ("ssm_dt.bias", "linear_attn.dt_bias"),
        ("ssm_a_log.weight", "linear_attn.A_log"),
        ("ssm_norm", "linear_attn.norm"),
        ("ssm_out", "linear_attn.out_proj"),
        ("ffn_gate_inp", "mlp.gate"),
        ("ffn_gate_inp_shexp", "mlp.shared_expert_gate"),
        ("ffn_gate_shexp", "mlp.shared_expert.gate_proj"),
        ("ffn_up_shexp", "mlp.shared_expert.up_proj"),
        ("ffn_down_shexp", "mlp.shared_expert.down_proj"),
    ]],
    experts: Some(MLP_EXPERTS),
    norm_offset: 1.0,
    defaults: HfDefaults {
        partial_rotary_factor: 0.25,
        norm_topk_prob: true,
        ..HfDefaults::new()
    },
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    let mut cfg = w.config(RopeStyle::Neox)?;
    parts::skip_mtp_layers(w, &mut cfg)?;
    let source = w.source();
    let bad = |what: String| ModelError::Unsupported(format!("{source}: {what}"));
    let d = cfg.hidden_size;
    let need = |gguf: &str, hf: &str| -> Result<usize> {
        parts::either_u32(w, gguf, hf)?
            .filter(|&v| v > 0)
            .ok_or_else(|| bad(format!("needs a positive `{gguf}` (`{hf}`)")))
    };
    let n_v_heads = need("ssm.time_step_rank", "linear_num_value_heads")?;
    let k_dim = need("ssm.state_size", "linear_key_head_dim")?;
    let v_dim = match w.hparam_u32("ssm.inner_size")? {
        Some(inner) => inner as usize / n_v_heads,
        None => need("ssm.inner_size", "linear_value_head_dim")?,
    };
    let linear = LinearShape {
        d_conv: need("ssm.conv_kernel", "linear_conv_kernel_dim")?,
        heads: DeltaShape {
            n_k_heads: need("ssm.group_count", "linear_num_key_heads")?,
            n_v_heads,
            k_dim,
            v_dim,
        },
    };
    if n_v_heads % linear.heads.n_k_heads != 0
        || v_dim == 0
        || linear.d_conv < 2
        || linear.d_conv > 64
        || k_dim > 1024
        || v_dim > 1024
    {
        return Err(bad(format!(
            "linear-attention sizes that do not fit: {} key heads of {k_dim}, {n_v_heads} value heads of {v_dim}, a convolution of {}",
            linear.heads.n_k_heads, linear.d_conv
        )));
    }
    // The layers that attend: listed, else every `full_attention_interval`-th (4 by default).
    let attention = match w.attention_layers(cfg.n_layers)? {
        Some(layers) => layers,
        None => {
            let every = w.hparam_u32("full_attention_interval")?.unwrap_or(4) as usize;
            if every == 0 {
                return Err(bad("`full_attention_interval` is 0".into()));
            }
            (0..cfg.n_layers).map(|i| (i + 1) % every == 0).collect()
        }
    };
    let moe = w
        .moe()?
        .ok_or_else(|| bad("needs experts (`expert_count`, `num_experts`)".into()))?;
    let shared_ff = parts::either_u32(
        w,
        "expert_shared_feed_forward_length",
        "shared_expert_intermediate_size",
    )?
    .unwrap_or(0);
    let attention_scale = match w.hparam_f32("attention.scale")? {
        Some(s) if s > 0.0 && s.is_finite() => s,
        _ => 1.0 / (cfg.head_dim as f32).sqrt(),
    };

    let (q_dim, kv_dim) = (cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim);
    let (mut n_attention, mut n_delta) = (0, 0);
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for (i, &attends) in attention.iter().enumerate() {
        let p = |t: &str| format!("blk.{i}.{t}.weight");
        let mixer = if attends {
            n_attention += 1;
            Mixer::Attention(GatedAttention {
                wq: w.linear(&p("attn_q"), d, 2 * q_dim)?,
                wk: w.linear(&p("attn_k"), d, kv_dim)?,
                wv: w.linear(&p("attn_v"), d, kv_dim)?,
                wo: w.linear(&p("attn_output"), q_dim, d)?,
                q_norm: w.vector(&p("attn_q_norm"), cfg.head_dim)?,
                k_norm: w.vector(&p("attn_k_norm"), cfg.head_dim)?,
                kv_layer: n_attention - 1,
            })
        } else {
            n_delta += 1;
            Mixer::Delta(load_delta(
                w,
                i,
                d,
                linear,
                (n_delta - 1) * linear.state_len(),
            )?)
        };
        let shared = match shared_ff {
            0 => None,
            ff => Some(SharedExpert {
                mlp: parts::swiglu(w, i, "_shexp", [d, ff])?,
                gate: w.linear(&p("ffn_gate_inp_shexp"), d, 1)?,
            }),
        };
        layers.push(Layer {
            attn_norm: w.vector(&p("attn_norm"), d)?,
            mixer,
            post_attention_norm: w.vector(&p("post_attention_norm"), d)?,
            moe: parts::moe(w, i, d, moe, Need::Absent)?,
            shared,
        });
    }
    let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
    let output = output_head(w, &embed, d, cfg.vocab_size)?;
    Ok(Box::new(Qwen3Next {
        output_norm: w.vector("output_norm.weight", d)?,
        output,
        embed,
        layers,
        rope: cfg.rope(cfg.rope_scaling.clone()),
        linear,
        attention_scale,
        n_attention,
        n_delta,
        ffn_width: moe.expert_ff.max(shared_ff),
        cfg,
    }))
}

fn load_delta(
    w: &dyn Weights,
    i: usize,
    d: usize,
    s: LinearShape,
    state_offset: usize,
) -> Result<DeltaNet> {
    let p = |t: &str| format!("blk.{i}.{t}");
    let (conv_dim, value_dim, n_v) = (s.conv_dim(), s.value_dim(), s.heads.n_v_heads);
    let qkvz = if w.has(&p("attn_qkv.weight")) {
        QkvzProj::Split {
            qkv: w.linear(&p("attn_qkv.weight"), d, conv_dim)?,
            z: w.linear(&p("attn_gate.weight"), d, value_dim)?,
        }
    } else {
        QkvzProj::Grouped(w.linear(&p("ssm_in.weight"), d, conv_dim + value_dim)?)
    };
    // A has no `.weight` in a GGUF; a checkpoint stores log(−A).
    let a = if w.has(&p("ssm_a")) {
        w.vector(&p("ssm_a"), n_v)?
    } else {
        let log = w.vector(&p("ssm_a_log.weight"), n_v)?;
        log.iter().map(|v| -v.exp()).collect()
    };
    Ok(DeltaNet {
        qkvz,
        ba: w.linear(&p("ssm_ba.weight"), d, 2 * n_v)?,
        conv: w.vector_2d(&p("ssm_conv1d.weight"), conv_dim, s.d_conv)?,
        dt_bias: w.vector(&p("ssm_dt.bias"), n_v)?,
        a,
        norm: w.vector(&p("ssm_norm.weight"), s.heads.v_dim)?,
        out: w.linear(&p("ssm_out.weight"), value_dim, d)?,
        state_offset,
    })
}

impl HybridDecoder for Qwen3Next {
    fn cfg(&self) -> &ModelConfig {
        &self.cfg
    }

    fn n_attention_layers(&self) -> usize {
        // The delta nets keep no keys or values.
        self.n_attention
    }

    fn state_len(&self) -> usize {
        self.n_delta * self.linear.state_len()
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
        let s = self.linear;
        let (conv_dim, value_dim) = (s.conv_dim(), s.value_dim());
        let delta = self.n_delta > 0;
        let grouped = self.layers.iter().any(|l| {
            matches!(
                &l.mixer,
                Mixer::Delta(DeltaNet {
                    qkvz: QkvzProj::Grouped(_),
                    ..
                })
            )
        });
        let on = |yes: bool, len: usize| if yes { len } else { 0 };
        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            on(delta, n * conv_dim),
            on(delta, n * value_dim),
            on(grouped, n * (conv_dim + value_dim)),
            on(delta, n * 2 * s.heads.n_v_heads),
            on(delta, n * conv_dim),
            on(delta, n * value_dim),
            n * 2 * q_dim,
            n * q_dim,
            n * kv_dim,
            n * kv_dim,
            n * q_dim,
            n * self.ffn_width,
            n * self.ffn_width,
            n * d,
            n,
        ]);
        let [x, h, qkv, z, qkvz, ba, conv, y, q_gate, q, k, v, attn, gate, up, experts_out, shared_gate] =
            &mut bufs[..]
        else {
            unreachable!("take returns one buffer per length")
        };
        self.embed.lookup(tokens, 1.0, x)?;
        let params = AttentionParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            scale: self.attention_scale,
            softcap: None,
            sliding_window: None,
            sinks: None,
            single_token_step: false, // set per sequence
        };
        let seq_lens: Vec<usize> = batch.iter().map(|s| s.tokens.len()).collect();
        for layer in &self.layers {
            rms_norm(x, &layer.attn_norm, c.rms_norm_eps, h);
            match &layer.mixer {
                Mixer::Attention(a) => {
                    a.wq.forward(pool, h, q_gate, &mut scratch.matmul)?;
                    a.wk.forward(pool, h, k, &mut scratch.matmul)?;
                    a.wv.forward(pool, h, v, &mut scratch.matmul)?;
                    // Each head's query, then its output gate (left in `q_gate`).
                    for (qh, rows) in q.chunks_exact_mut(hd).zip(q_gate.chunks_exact(2 * hd)) {
                        qh.copy_from_slice(&rows[..hd]);
                    }
                    rms_norm_inplace(q, &a.q_norm, c.rms_norm_eps);
                    rms_norm_inplace(k, &a.k_norm, c.rms_norm_eps);
                    self.rope.apply(q, positions, c.n_heads);
                    self.rope.apply(k, positions, c.n_kv_heads);
                    attend.run(a.kv_layer, (q, k, v), &params, attn)?;
                    for (oh, rows) in attn.chunks_exact_mut(hd).zip(q_gate.chunks_exact(2 * hd)) {
                        oh.iter_mut()
                            .zip(&rows[hd..])
                            .for_each(|(o, &g)| *o *= sigmoid(g));
                    }
                    a.wo.forward(pool, attn, h, &mut scratch.matmul)?;
                }
                Mixer::Delta(net) => {
                    match &net.qkvz {
                        QkvzProj::Split { qkv: wqkv, z: wz } => {
                            wqkv.forward(pool, h, qkv, &mut scratch.matmul)?;
                            wz.forward(pool, h, z, &mut scratch.matmul)?;
                        }
                        QkvzProj::Grouped(w) => {
                            w.forward(pool, h, qkvz, &mut scratch.matmul)?;
                            self.ungroup_qkvz(qkvz, qkv, z);
                        }
                    }
                    net.ba.forward(pool, h, ba, &mut scratch.matmul)?;
                    self.delta_net(net, (qkv, z, ba), (conv, y), &seq_lens, states);
                    net.out.forward(pool, y, h, &mut scratch.matmul)?;
                }
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);

            rms_norm(x, &layer.post_attention_norm, c.rms_norm_eps, h);
            layer
                .moe
                .forward(pool, h, experts_out, &mut scratch.matmul)?;
            if let Some(shared) = &layer.shared {
                let e = &shared.mlp;
                let ff = e.gate.out_features();
                let (gate, up) = (&mut gate[..n * ff], &mut up[..n * ff]);
                shared
                    .gate
                    .forward(pool, h, shared_gate, &mut scratch.matmul)?;
                e.gate.forward(pool, h, gate, &mut scratch.matmul)?;
                e.up.forward(pool, h, up, &mut scratch.matmul)?;
                swiglu(gate, up);
                e.down.forward(pool, gate, h, &mut scratch.matmul)?;
                // The routed experts' sum plus the shared expert's, scaled by σ of its gate.
                for ((row, routed), &g) in h
                    .chunks_exact_mut(d)
                    .zip(experts_out.chunks_exact(d))
                    .zip(shared_gate.iter())
                {
                    let g = sigmoid(g);
                    for (s, &r) in row.iter_mut().zip(routed) {
                        *s = r + *s * g;
                    }
                }
            } else {
                h.copy_from_slice(experts_out);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
        }
        Ok(bufs)
    }
}

impl Qwen3Next {
    /// A checkpoint's `in_proj_qkvz` rows (`[n, conv_dim + value_dim]`, per key head its q,
    /// k, v and z) into llama.cpp's order: `qkv` (`[n, conv_dim]`: every q, every k, every v)
    /// and `z` (`[n, value_dim]`).
    fn ungroup_qkvz(&self, grouped: &[f32], qkv: &mut [f32], z: &mut [f32]) {
        let s = self.linear;
        let (k_dim, nk) = (s.heads.k_dim, s.heads.n_k_heads);
        let vg = s.value_dim() / nk; // each key head's value (and gate) width
        let (key_dim, conv_dim, value_dim) = (s.key_dim(), s.conv_dim(), s.value_dim());
        let group = 2 * k_dim + 2 * vg;
        for ((row, qkv), z) in grouped
            .chunks_exact(conv_dim + value_dim)
            .zip(qkv.chunks_exact_mut(conv_dim))
            .zip(z.chunks_exact_mut(value_dim))
        {
            for (g, src) in row.chunks_exact(group).enumerate() {
                qkv[g * k_dim..(g + 1) * k_dim].copy_from_slice(&src[..k_dim]);
                qkv[key_dim + g * k_dim..key_dim + (g + 1) * k_dim]
                    .copy_from_slice(&src[k_dim..2 * k_dim]);
                qkv[2 * key_dim + g * vg..2 * key_dim + (g + 1) * vg]
                    .copy_from_slice(&src[2 * k_dim..2 * k_dim + vg]);
                z[g * vg..(g + 1) * vg].copy_from_slice(&src[2 * k_dim + vg..]);
            }
        }
    }

    /// The gated delta net of every sequence's rows: `qkv` (`[n, conv_dim]`), `z`
    /// (`[n, value_dim]`) and `ba` (`[n, 2 · n_v_heads]`) in, `y` (`[n, value_dim]`) out
    /// (normed and gated, before the output projection); `conv` is `[n, conv_dim]` scratch.
    /// Each sequence's convolution and delta states are read before its rows and left after
    /// them.
    fn delta_net(
        &self,
        net: &DeltaNet,
        (qkv, z, ba): (&[f32], &[f32], &[f32]),
        (conv, y): (&mut [f32], &mut [f32]),
        seq_lens: &[usize],
        states: &mut [Vec<f32>],
    ) {
        let s = self.linear;
        let DeltaShape {
            n_k_heads,
            n_v_heads,
            k_dim,
            v_dim,
        } = s.heads;
        let (key_dim, conv_dim, value_dim) = (s.key_dim(), s.conv_dim(), s.value_dim());
        let per_key = n_v_heads / n_k_heads;
        let eps = self.cfg.rms_norm_eps;
        // llama.cpp's L2 norm: an RMS norm with ε / k_dim, then a scale by 1 / √k_dim.
        let l2_eps = eps / k_dim as f32;
        let l2_scale = vec![1.0 / (k_dim as f32).sqrt(); k_dim];
        let conv_state_len = (s.d_conv - 1) * conv_dim;
        let (mut window, mut delta, mut gated) = (Vec::new(), Vec::new(), vec![0f32; v_dim]);
        let (mut g, mut beta) = (vec![0f32; n_v_heads], vec![0f32; n_v_heads]);
        let mut t0 = 0;
        for (&len, state) in seq_lens.iter().zip(states.iter_mut()) {
            let state = &mut state[net.state_offset..net.state_offset + s.state_len()];
            let (conv_state, delta_state) = state.split_at_mut(conv_state_len);
            let rows = t0 * conv_dim..(t0 + len) * conv_dim;
            let out = &mut conv[rows.clone()];
            causal_conv(
                (&net.conv, conv_dim),
                conv_state,
                &qkv[rows],
                out,
                &mut window,
            );
            for row in out.chunks_exact_mut(conv_dim) {
                silu(row);
                rms_norm_inplace(&mut row[..2 * key_dim], &l2_scale, l2_eps);
            }
            for t in t0..t0 + len {
                let ba_row = &ba[t * 2 * n_v_heads..(t + 1) * 2 * n_v_heads];
                for h in 0..n_v_heads {
                    let (kh, j) = (h / per_key, h % per_key);
                    beta[h] = sigmoid(ba_row[kh * 2 * per_key + j]);
                    let alpha = ba_row[kh * 2 * per_key + per_key + j] + net.dt_bias[h];
                    let softplus = if alpha > 20.0 {
                        alpha
                    } else {
                        (1.0 + alpha.exp()).ln()
                    };
                    g[h] = softplus * net.a[h];
                }
                let row = &conv[t * conv_dim..(t + 1) * conv_dim];
                let token = DeltaToken {
                    q: &row[..key_dim],
                    k: &row[key_dim..2 * key_dim],
                    v: &row[2 * key_dim..],
                    g: &g,
                    beta: &beta,
                };
                let out = &mut y[t * value_dim..(t + 1) * value_dim];
                gated_delta_token(s.heads, token, delta_state, out, &mut delta);
                // Each head RMS-normed, then gated by SiLU(z).
                let zt = &z[t * value_dim..(t + 1) * value_dim];
                for (head, zh) in out.chunks_exact_mut(v_dim).zip(zt.chunks_exact(v_dim)) {
                    gated.copy_from_slice(zh);
                    silu(&mut gated);
                    rms_norm_inplace(head, &net.norm, eps);
                    head.iter_mut().zip(&gated).for_each(|(o, g)| *o *= g);
                }
            }
            t0 += len;
        }
    }
}
