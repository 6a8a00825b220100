//! `lfm2`: Liquid AI's LFM2 and LFM2.5. A hybrid decoder: most layers mix tokens with a gated
//! short convolution, the others with GQA attention (per-head Q/K RMS norms before NeoX RoPE).
//! Every layer is RMS norm → mixer → residual → RMS norm → SwiGLU MLP (LFM2-MoE: experts after
//! its leading dense layers) → residual; the final norm is the checkpoint's `embedding_norm`.
//!
//! The short convolution: `in_proj` gives B, C and x; B·x goes through a depthwise causal
//! convolution of `L` taps (`conv_L_cache`), and C gates its output before `out_proj`. Its
//! state is each sequence's last `L − 1` B·x rows per convolution layer, carried from step to
//! step by the runner (see [`Model::forward_recurrent`]); only attention layers have KV.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::AttentionParams;

use crate::hf_config::HfDefaults;
use crate::layers::activations::swiglu;
use crate::layers::attention::Attend;
use crate::layers::moe::Expert;
use crate::layers::ssm::causal_conv;
use crate::layers::{rms_norm, rms_norm_inplace, Embedding, Linear, Moe, Rope, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::parts::{self, output_head};
use crate::models::{ForwardScratch, HybridDecoder, Model, SeqInput};
use crate::weights::{Need, Weights};
use crate::weights_hf::{ExpertStack, HfCheckpoint, HfExperts};

/// The gated short convolution of a layer.
struct ShortConv {
    /// `d` → `3d`: B, C and x, in that order.
    in_proj: Linear,
    /// `[d, L]`: each channel's taps, oldest input first.
    taps: Vec<f32>,
    out_proj: Linear,
    /// Where this layer's rows start in a sequence's state.
    state_offset: usize,
}

struct Attention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Linear,
    /// The layer's index in the KV cache (attention layers only).
    kv_layer: usize,
}

enum Mixer {
    Conv(ShortConv),
    Attention(Attention),
}

enum Ffn {
    Dense(Expert),
    Sparse(Moe),
}

struct Layer {
    operator_norm: Vec<f32>,
    mixer: Mixer,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
}

pub struct Lfm2 {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    /// Taps of every short convolution (`L`).
    taps: usize,
    n_attention: usize,
    n_conv: usize,
    /// The widest SwiGLU hidden layer (the work buffers' width).
    ffn_width: usize,
}

/// The checkpoint's names (LFM2-MoE's experts are `feed_forward.experts.E.w1/w3/w2`).
pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: &[
        ("token_embd", "model.embed_tokens"),
        ("token_embd_norm", "model.embedding_norm"),
        ("output", "lm_head"),
    ],
    layer_parts: &[&[
        ("attn_norm", "operator_norm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.out_proj"),
        ("attn_q_norm", "self_attn.q_layernorm"),
        ("attn_k_norm", "self_attn.k_layernorm"),
        ("shortconv.conv", "conv.conv"),
        ("shortconv.in_proj", "conv.in_proj"),
        ("shortconv.out_proj", "conv.out_proj"),
        ("ffn_norm", "ffn_norm"),
        ("ffn_gate", "feed_forward.w1"),
        ("ffn_up", "feed_forward.w3"),
        ("ffn_down", "feed_forward.w2"),
        ("ffn_gate_inp", "feed_forward.gate"),
        ("exp_probs_b.bias", "feed_forward.expert_bias"),
    ]],
    experts: Some(HfExperts {
        block: "feed_forward",
        names: ["w1", "w3", "w2"],
        stack: ExpertStack::PerExpert,
    }),
    norm_offset: 0.0,
    defaults: HfDefaults {
        scoring_func: "sigmoid",
        topk_method: "noaux_tc",
        norm_topk_prob: true,
        ..HfDefaults::new()
    },
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    Lfm2::load(w, false)
}

impl Lfm2 {
    /// LFM2, or LFM2-MoE (`sparse`: experts after the leading dense layers).
    pub(crate) fn load(w: &dyn Weights, sparse: bool) -> Result<Box<dyn Model>> {
        let mut cfg = w.config(RopeStyle::Neox)?;
        // The checkpoint's `norm_eps` and MLP width rule (the GGUF stores the result).
        if let Some(eps) = w.hparam_f32("norm_eps")? {
            cfg.rms_norm_eps = eps;
        }
        cfg.intermediate_size = mlp_width(w, cfg.intermediate_size)?;
        if w.hparam_bool("conv_bias")? == Some(true) {
            return Err(ModelError::Unsupported(format!(
                "{}: `conv_bias` (biased short convolutions) is not supported; the released LFM2 models have none",
                w.source()
            )));
        }
        let taps = match w.hparam_u32("shortconv.l_cache")? {
            Some(t) => Some(t),
            None => w.hparam_u32("conv_L_cache")?,
        }
        .map_or(3, |t| t as usize);
        if !(2..=64).contains(&taps) {
            return Err(ModelError::Unsupported(format!(
                "{}: the short convolution's length (`conv_L_cache`, `shortconv.l_cache`) is {taps}; it must be 2 to 64",
                w.source()
            )));
        }
        let attention = w.attention_layers(cfg.n_layers)?.ok_or_else(|| {
            ModelError::Unsupported(format!(
                "{}: `{}` needs to know which layers attend: `layer_types` (or `full_attn_idxs`) in config.json, a per-layer `attention.head_count_kv` in a GGUF",
                w.source(),
                cfg.architecture
            ))
        })?;
        let moe = if sparse {
            Some(w.moe()?.ok_or_else(|| {
                ModelError::Unsupported(format!(
                    "{}: `{}` is a mixture of experts, but the file gives no expert count",
                    w.source(),
                    cfg.architecture
                ))
            })?)
        } else {
            None
        };
        let n_dense = match sparse {
            true => w.leading_dense_layers()?.unwrap_or(0),
            false => cfg.n_layers,
        };
        let d = cfg.hidden_size;
        let (hd, q_dim, kv_dim) = (
            cfg.head_dim,
            cfg.n_heads * cfg.head_dim,
            cfg.n_kv_heads * cfg.head_dim,
        );
        let (mut n_attention, mut n_conv) = (0, 0);
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for (i, &attends) in attention.iter().enumerate() {
            let p = |t: &str| format!("blk.{i}.{t}.weight");
            let mixer = if attends {
                n_attention += 1;
                Mixer::Attention(Attention {
                    wq: w.linear(&p("attn_q"), d, q_dim)?,
                    wk: w.linear(&p("attn_k"), d, kv_dim)?,
                    wv: w.linear(&p("attn_v"), d, kv_dim)?,
                    q_norm: w.vector(&p("attn_q_norm"), hd)?,
                    k_norm: w.vector(&p("attn_k_norm"), hd)?,
                    wo: w.linear(&p("attn_output"), q_dim, d)?,
                    kv_layer: n_attention - 1,
                })
            } else {
                n_conv += 1;
                Mixer::Conv(ShortConv {
                    in_proj: w.linear(&p("shortconv.in_proj"), d, 3 * d)?,
                    taps: w.vector_2d(&p("shortconv.conv"), d, taps)?,
                    out_proj: w.linear(&p("shortconv.out_proj"), d, d)?,
                    state_offset: (n_conv - 1) * (taps - 1) * d,
                })
            };
            let ffn = match moe {
                Some(m) if i >= n_dense => Ffn::Sparse(parts::moe(w, i, d, m, Need::Optional)?),
                _ => Ffn::Dense(parts::swiglu(w, i, "", [d, cfg.intermediate_size])?),
            };
            layers.push(Layer {
                operator_norm: w.vector(&p("attn_norm"), d)?,
                mixer,
                ffn_norm: w.vector(&p("ffn_norm"), d)?,
                ffn,
            });
        }
        let embed = w.embedding("token_embd.weight", d, cfg.vocab_size)?;
        let output = output_head(w, &embed, d, cfg.vocab_size)?;
        let ffn_width = match (n_dense, moe) {
            (0, Some(m)) => m.expert_ff,
            _ => cfg.intermediate_size,
        };
        Ok(Box::new(Lfm2 {
            output_norm: w.vector("token_embd_norm.weight", d)?,
            output,
            embed,
            layers,
            rope: cfg.rope(cfg.rope_scaling.clone()),
            taps,
            n_attention,
            n_conv,
            ffn_width,
            cfg,
        }))
    }
}

/// The MLP's width: a GGUF stores it; a checkpoint's `block_auto_adjust_ff_dim` turns its
/// `intermediate_size` (`block_ff_dim`) into ⅔ of it, times `block_ffn_dim_multiplier`,
/// rounded up to `block_multiple_of`, as transformers and the converter do.
fn mlp_width(w: &dyn Weights, ff: usize) -> Result<usize> {
    if w.hparam_bool("block_auto_adjust_ff_dim")? != Some(true) {
        return Ok(ff);
    }
    let mut ff = (2 * ff) / 3;
    if let Some(m) = w.hparam_f32("block_ffn_dim_multiplier")? {
        ff = (m as f64 * ff as f64) as usize;
    }
    let multiple = w.hparam_u32("block_multiple_of")?.unwrap_or(256).max(1) as usize;
    Ok(ff.div_ceil(multiple) * multiple)
}

impl HybridDecoder for Lfm2 {
    fn cfg(&self) -> &ModelConfig {
        &self.cfg
    }

    fn n_attention_layers(&self) -> usize {
        // The short convolutions keep no keys or values.
        self.n_attention
    }

    fn state_len(&self) -> usize {
        self.n_conv * (self.taps - 1) * self.cfg.hidden_size
    }

    fn head(&self) -> (&[f32], &Linear) {
        (&self.output_norm, &self.output)
    }

    /// The embeddings of `tokens` through every layer; the residual stream (`[n, d]`) is the
    /// first of the buffers returned.
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
        let sparse = self.layers.iter().any(|l| matches!(l.ffn, Ffn::Sparse(_)));
        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            n * 3 * d,
            n * q_dim,
            n * kv_dim,
            n * kv_dim,
            n * q_dim,
            n * self.ffn_width,
            n * self.ffn_width,
            if sparse { n * d } else { 0 },
        ]);
        let [x, h, bcx, q, k, v, attn, gate, up, experts_out] = &mut bufs[..] else {
            unreachable!("take returns one buffer per length")
        };
        self.embed.lookup(tokens, 1.0, x)?;
        let params = AttentionParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: None,
            sliding_window: None,
            sinks: None,
            single_token_step: false, // set per sequence
        };
        let seq_lens: Vec<usize> = batch.iter().map(|s| s.tokens.len()).collect();
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(x, &layer.operator_norm, c.rms_norm_eps, h);
            match &layer.mixer {
                Mixer::Attention(a) => {
                    a.wq.forward(pool, h, q, &mut scratch.matmul)?;
                    a.wk.forward(pool, h, k, &mut scratch.matmul)?;
                    a.wv.forward(pool, h, v, &mut scratch.matmul)?;
                    rms_norm_inplace(q, &a.q_norm, c.rms_norm_eps);
                    rms_norm_inplace(k, &a.k_norm, c.rms_norm_eps);
                    self.rope.apply(q, positions, c.n_heads);
                    self.rope.apply(k, positions, c.n_kv_heads);
                    attend.run(a.kv_layer, (q, k, v), &params, attn)?;
                    a.wo.forward(pool, attn, h, &mut scratch.matmul)?;
                }
                Mixer::Conv(conv) => {
                    conv.in_proj.forward(pool, h, bcx, &mut scratch.matmul)?;
                    self.short_conv(conv, bcx, &seq_lens, states, h);
                    conv.out_proj
                        .forward(pool, &bcx[..n * d], h, &mut scratch.matmul)?;
                }
            }
            if li + 1 == self.layers.len() {
                attend.before_last_layer_products(&mut scratch.matmul);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);

            rms_norm(x, &layer.ffn_norm, c.rms_norm_eps, h);
            match &layer.ffn {
                Ffn::Dense(mlp) => {
                    let ff = mlp.gate.out_features();
                    let (gate, up) = (&mut gate[..n * ff], &mut up[..n * ff]);
                    mlp.gate.forward(pool, h, gate, &mut scratch.matmul)?;
                    mlp.up.forward(pool, h, up, &mut scratch.matmul)?;
                    swiglu(gate, up);
                    mlp.down.forward(pool, gate, h, &mut scratch.matmul)?;
                }
                Ffn::Sparse(moe) => {
                    moe.forward(pool, h, experts_out, &mut scratch.matmul)?;
                    h.copy_from_slice(experts_out);
                }
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
        }
        Ok(bufs)
    }
}

impl Lfm2 {
    /// The gated short convolution of every sequence's rows: `bcx` (`[n, 3d]`: B, C, x per
    /// row) in, C · conv(B · x) out in its first `n · d` floats, each sequence's state read
    /// before its rows and left holding its last `L − 1` B·x rows. `work` is `[n, d]` scratch.
    fn short_conv(
        &self,
        conv: &ShortConv,
        bcx: &mut [f32],
        seq_lens: &[usize],
        states: &mut [Vec<f32>],
        work: &mut [f32],
    ) {
        let d = self.cfg.hidden_size;
        let keep = self.taps - 1;
        let (mut bx, mut window) = (Vec::new(), Vec::new());
        let mut t0 = 0;
        for (&len, state) in seq_lens.iter().zip(states.iter_mut()) {
            bx.clear();
            for row in bcx[t0 * 3 * d..(t0 + len) * 3 * d].chunks_exact(3 * d) {
                bx.extend(row[..d].iter().zip(&row[2 * d..]).map(|(b, x)| b * x));
            }
            let state = &mut state[conv.state_offset..conv.state_offset + keep * d];
            let out = &mut work[t0 * d..(t0 + len) * d];
            causal_conv((&conv.taps, d), state, &bx, out, &mut window);
            t0 += len;
        }
        // y = C · conv, packed into the front of `bcx` for the output projection.
        for t in 0..t0 {
            for ch in 0..d {
                bcx[t * d + ch] = bcx[t * 3 * d + d + ch] * work[t * d + ch];
            }
        }
    }
}
