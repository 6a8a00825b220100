//! `llama`: Llama 2/3.x, SmolLM2. Pre-norm decoder: RMSNorm → GQA attention with RoPE →
//! residual → RMSNorm → SwiGLU MLP → residual. Other architectures reuse it as a
//! [`LlamaVariant`] that says what they require of a file: Q/K/V biases (Qwen 2), per-head Q/K
//! RMS norms (Qwen 3), a mixture of experts in place of the MLP (Mixtral, Qwen 3 MoE), fused
//! projections (Phi 3). A file that lacks what its architecture requires is refused naming the
//! tensor; one with tensors its architecture would ignore is refused by the registry.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};

use crate::hf_config::HfDefaults;
use crate::layers::activations::swiglu;
use crate::layers::attention::Attend;
use crate::layers::gpt::Qkv;
use crate::layers::moe::{Expert, ExpertActivation, Gating};
use crate::layers::{
    add_rows, rms_norm, rms_norm_inplace, Embedding, Linear, Moe, MoeConfig, Rope, RopeScaling,
    RopeStyle,
};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::parts::{self, output_head};
use crate::models::{
    encode_layers, file_rope_scaling, forward_layers, set_rope_context, ForwardScratch, Model,
    SeqInput,
};
use crate::weights::{Need, Weights};
use crate::weights_hf::{HfCheckpoint, DECODER_GLOBALS};

struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    /// Biases of Q, K and V (Qwen 2).
    qkv_bias: Option<[Vec<f32>; 3]>,
    /// RMS norms of each query and key head (Qwen 3, HunYuan).
    qk_norm: Option<[Vec<f32>; 2]>,
    wo: Linear,
    /// After attention and after the MLP (GLM 4).
    post_norms: Option<[Vec<f32>; 2]>,
    /// The attention output's bias and each head's sink logit (gpt-oss).
    o_bias: Option<Vec<f32>>,
    sinks: Option<Vec<f32>>,
    /// Tokens the layer's attention sees, when windowed.
    window: Option<usize>,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
    /// Whether the layer rotates queries and keys (SmolLM3's NoPE layers do not).
    rope: bool,
}

enum Ffn {
    /// SwiGLU: gate, up, down.
    Dense(Linear, Linear, Linear),
    /// The experts, and a shared SwiGLU expert every token also runs (HunYuan MoE).
    Sparse(Moe, Option<Expert>),
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
    prescale_queries: bool,
    qk_norm_after_rope: bool,
    /// The widest SwiGLU hidden layer (dense MLPs, shared experts): the work buffers' width.
    ffn_width: usize,
}

/// What distinguishes the architectures that reuse the Llama decoder, and what each requires
/// of a file.
#[derive(Clone, Copy)]
pub(crate) struct LlamaVariant {
    /// Rotation on GGUF weights (Llama's converter permutes Q/K rows for adjacent pairs).
    pub rope_style: RopeStyle,
    /// Queries are multiplied by 1/√head_dim before attention rather than the scores after
    /// (Phi 3, as llama.cpp computes it: the roundings differ).
    pub prescale_queries: bool,
    /// Biases of Q, K and V (Qwen 2 requires them; llama.cpp reads Llama's when present). A
    /// checkpoint's `attention_bias` decides where the config has one.
    pub qkv_bias: Need,
    /// RMS norms of each query and key head before RoPE (Qwen 3).
    pub qk_norm: Need,
    /// A mixture of experts in every layer instead of the MLP (Mixtral, Qwen 3 MoE).
    pub experts: Need,
    /// Whether the chosen experts' weights are renormalised, whatever the file says (Mixtral
    /// always, gpt-oss never, as llama.cpp computes them); `None`: as the file says.
    pub renormalise: Option<bool>,
    /// The gate and up projections may come as one matrix (Phi 3's `gate_up_proj`).
    pub fused_gate_up: bool,
    /// RMS norms after attention and after the MLP too, before each joins the residual
    /// (GLM 4).
    pub post_norms: Need,
    /// The per-head Q/K norms follow RoPE instead of preceding it (HunYuan).
    pub qk_norm_after_rope: bool,
    /// Every `n`-th layer attends without positions (SmolLM3's NoPE layers: llama.cpp fixes
    /// `n` at 4; a checkpoint lists the layers in `no_rope_layers`).
    pub no_rope_interval: Option<usize>,
    /// A shared expert beside the routed ones, and how wide it is.
    pub shared_expert: SharedExpert,
    /// The routed experts' selection bias (`exp_probs_b`, GLM 4 MoE's sigmoid router).
    pub selection_bias: Need,
    /// The first `leading_dense_block_count` (`first_k_dense_replace`) layers of a sparse
    /// model have a dense MLP (GLM 4 MoE).
    pub leading_dense: bool,
    /// The GGUF name of the MLP's pre-norm (GLM 4 MoE's converter writes
    /// `post_attention_norm`).
    pub ffn_norm: &'static str,
    /// Multi-token-prediction layers may follow the decoder's (GLM 4, GLM 4 MoE): never run.
    pub mtp_layers: bool,
    /// A sink logit per head in every attention softmax (`blk.N.attn_sinks`, gpt-oss).
    pub attn_sinks: Need,
    /// A bias on the attention output projection (gpt-oss).
    pub o_bias: Need,
    /// Windowed and full layers alternate: a checkpoint's `layer_types`, else every layer
    /// `i` with `i % n < n − 1` is windowed, as llama.cpp lays out gpt-oss's (`n` = 2).
    pub sliding_pattern: Option<usize>,
    /// The router's and the experts' biases (gpt-oss).
    pub expert_biases: Need,
    /// The router's gating whatever the file says (gpt-oss: softmax over the chosen logits),
    /// and the experts' activation.
    pub gating: Option<Gating>,
    pub activation: ExpertActivation,
}

/// The shared expert of a sparse layer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharedExpert {
    Absent,
    /// As wide as `expert_shared_feed_forward_length` in a GGUF, `intermediate_size ×
    /// num_shared_expert` in a checkpoint (HunYuan MoE).
    Mlp,
    /// `expert_shared_count` (`n_shared_experts`) experts' width; none when 0 (GLM 4 MoE).
    Experts,
}

/// Llama itself, and what the variants change.
pub(crate) const LLAMA: LlamaVariant = LlamaVariant {
    rope_style: RopeStyle::Normal,
    prescale_queries: false,
    qkv_bias: Need::Optional,
    qk_norm: Need::Absent,
    experts: Need::Absent,
    renormalise: None,
    fused_gate_up: false,
    post_norms: Need::Absent,
    qk_norm_after_rope: false,
    no_rope_interval: None,
    shared_expert: SharedExpert::Absent,
    selection_bias: Need::Absent,
    leading_dense: false,
    ffn_norm: "ffn_norm",
    mtp_layers: false,
    attn_sinks: Need::Absent,
    o_bias: Need::Absent,
    sliding_pattern: None,
    expert_biases: Need::Absent,
    gating: None,
    activation: ExpertActivation::Swiglu,
};

/// The checkpoint names of the Llama decoder's layers, shared by its family.
pub(crate) const HF_LAYER: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: DECODER_GLOBALS,
    layer_parts: &[HF_LAYER],
    experts: None,
    norm_offset: 0.0,
    defaults: HfDefaults::new(),
};

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    // The GGUF converter permutes Llama's Q/K rows so that ggml's adjacent-pair rotation
    // applies.
    Llama::load_variant(w, LLAMA)
}

struct LayerShapes {
    d: usize,
    hd: usize,
    q_dim: usize,
    kv_dim: usize,
    ff: usize,
    /// The shared expert's hidden width.
    shared_ff: usize,
}

impl Llama {
    /// The Llama decoder as `variant` shapes it.
    pub(crate) fn load_variant(w: &dyn Weights, variant: LlamaVariant) -> Result<Box<dyn Model>> {
        let mut cfg = w.config(variant.rope_style)?;
        if variant.mtp_layers {
            parts::skip_mtp_layers(w, &mut cfg)?;
        }
        // `attention_bias` decides where the architecture's class reads it (Qwen 2's always
        // has the biases).
        let variant = LlamaVariant {
            qkv_bias: match variant.qkv_bias {
                Need::Required => Need::Required,
                need => Need::from_flag(w.hparam_bool("attention_bias")?, need),
            },
            ..variant
        };
        let shapes = LayerShapes {
            d: cfg.hidden_size,
            hd: cfg.head_dim,
            q_dim: cfg.n_heads * cfg.head_dim,
            kv_dim: cfg.n_kv_heads * cfg.head_dim,
            ff: cfg.intermediate_size,
            shared_ff: 0,
        };
        let moe = match (variant.experts, w.moe()?) {
            (Need::Absent, _) | (Need::Optional, None) => None,
            (_, Some(m)) => Some(MoeConfig {
                norm_topk: variant.renormalise.unwrap_or(m.norm_topk),
                gating: variant.gating.unwrap_or(m.gating),
                activation: variant.activation,
                ..m
            }),
            (Need::Required, None) => {
                return Err(ModelError::Unsupported(format!(
                    "{}: `{}` is a mixture of experts, but the file gives no expert count (`expert_count`, `num_local_experts` or `num_experts`)",
                    w.source(),
                    cfg.architecture
                )))
            }
        };
        let hparam = |gguf: &str, hf: &str| -> Result<Option<usize>> {
            Ok(w.hparam_u32(gguf)?
                .or(w.hparam_u32(hf)?)
                .map(|v| v as usize))
        };
        let shapes = LayerShapes {
            shared_ff: match (variant.shared_expert, moe) {
                (SharedExpert::Absent, _) | (_, None) => 0,
                (SharedExpert::Mlp, _) => {
                    match w.hparam_u32("expert_shared_feed_forward_length")? {
                        Some(f) => f as usize,
                        None => {
                            let count = w.hparam_u32("num_shared_expert")?.unwrap_or(1);
                            cfg.intermediate_size * count as usize
                        }
                    }
                }
                (SharedExpert::Experts, Some(m)) => {
                    m.expert_ff * hparam("expert_shared_count", "n_shared_experts")?.unwrap_or(0)
                }
            },
            ..shapes
        };
        let n_dense = if variant.leading_dense {
            w.leading_dense_layers()?.unwrap_or(0)
        } else {
            0
        };
        let windows = layer_windows(w, cfg.n_layers, variant.sliding_pattern, &cfg.architecture)?;
        let embed = w.embedding("token_embd.weight", shapes.d, cfg.vocab_size)?;
        let rope_layers = rope_layers(w, cfg.n_layers, variant.no_rope_interval)?;
        let layers = (0..cfg.n_layers)
            .map(|i| {
                let moe = moe.filter(|_| i >= n_dense);
                load_layer(w, i, &shapes, &variant, moe, (rope_layers[i], windows[i]))
            })
            .collect::<Result<Vec<_>>>()?;
        let output = output_head(w, &embed, shapes.d, cfg.vocab_size)?;
        let scaling = file_rope_scaling(w, &cfg)?;
        let rope = cfg.rope(scaling.clone());
        Ok(Box::new(Llama {
            output_norm: w.vector("output_norm.weight", shapes.d)?,
            output,
            embed,
            layers,
            rope,
            rope_scaling: scaling,
            prescale_queries: variant.prescale_queries,
            qk_norm_after_rope: variant.qk_norm_after_rope,
            ffn_width: shapes.ff.max(shapes.shared_ff),
            cfg,
        }))
    }
}

/// Which layers rotate queries and keys: all, or (NoPE) those a checkpoint's `no_rope_layers`
/// marks 1, else all but every `interval`-th.
fn rope_layers(w: &dyn Weights, n_layers: usize, interval: Option<usize>) -> Result<Vec<bool>> {
    let Some(interval) = interval else {
        return Ok(vec![true; n_layers]);
    };
    if let Some(list) = w.hparam_list("no_rope_layers")? {
        if list.len() != n_layers || list.iter().any(|&v| v > 1) {
            return Err(ModelError::Unsupported(format!(
                "{}: `no_rope_layers` must hold a 0 or 1 for each of the {n_layers} layers; it is {list:?}",
                w.source()
            )));
        }
        return Ok(list.into_iter().map(|v| v == 1).collect());
    }
    let interval = match w.hparam_u32("no_rope_layer_interval")? {
        Some(0) => {
            return Err(ModelError::Unsupported(format!(
                "{}: `no_rope_layer_interval` is 0",
                w.source()
            )))
        }
        Some(n) => n as usize,
        None => interval,
    };
    Ok((0..n_layers).map(|i| (i + 1) % interval != 0).collect())
}

/// Each layer's window: one for every layer or none (Mistral's `sliding_window`), unless the
/// variant alternates windowed and full layers.
fn layer_windows(
    w: &dyn Weights,
    n_layers: usize,
    pattern: Option<usize>,
    arch: &str,
) -> Result<Vec<Option<usize>>> {
    let window = w.sliding_window()?;
    let types = w.sliding_layers()?;
    if let Some(types) = &types {
        let mixed = types.iter().any(|&sliding| sliding != window.is_some());
        if types.len() != n_layers || (mixed && pattern.is_none()) {
            return Err(ModelError::Unsupported(format!(
                "{}: layer_types ({} entries for {n_layers} layers) mixes windowed and full layers (or names windowed ones without a sliding_window), which `{arch}` does not run",
                w.source(),
                types.len()
            )));
        }
    }
    Ok(match (pattern, types) {
        (None, _) => vec![window; n_layers],
        (Some(_), Some(types)) => types.iter().map(|&s| window.filter(|_| s)).collect(),
        (Some(n), None) => (0..n_layers)
            .map(|i| window.filter(|_| i % n < n - 1))
            .collect(),
    })
}

fn load_layer(
    w: &dyn Weights,
    i: usize,
    s: &LayerShapes,
    variant: &LlamaVariant,
    moe: Option<MoeConfig>,
    (rope, window): (bool, Option<usize>),
) -> Result<Layer> {
    let p = |t: &str| format!("blk.{i}.{t}.weight");
    // Q, K and V as three matrices or one (Phi 3 and some GGUFs), biases as required.
    let Qkv([q, k, v]) = parts::qkv(w, i, [s.d, s.q_dim, s.kv_dim], variant.qkv_bias)?;
    let qkv_bias = match (q.bias, k.bias, v.bias) {
        (Some(q), Some(k), Some(v)) => Some([q, k, v]),
        (None, None, None) => None,
        _ => {
            return Err(ModelError::Unsupported(format!(
                "{}: layer {i} has some of the Q, K and V biases but not all",
                w.source()
            )))
        }
    };
    let ffn = if let Some(m) = moe {
        let shared = match s.shared_ff {
            0 => None,
            ff => Some(parts::swiglu(w, i, "_shexp", [s.d, ff])?),
        };
        let mut experts = parts::moe(w, i, s.d, m, variant.selection_bias)?;
        experts.biases = parts::moe_biases(w, i, s.d, &m, variant.expert_biases)?;
        Ffn::Sparse(experts, shared)
    } else if variant.fused_gate_up && !w.has(&p("ffn_gate")) {
        Ffn::Dense(
            w.linear_rows(&p("ffn_up"), s.d, 2 * s.ff, 0..s.ff)?,
            w.linear_rows(&p("ffn_up"), s.d, 2 * s.ff, s.ff..2 * s.ff)?,
            w.linear(&p("ffn_down"), s.ff, s.d)?,
        )
    } else {
        Ffn::Dense(
            w.linear(&p("ffn_gate"), s.d, s.ff)?,
            w.linear(&p("ffn_up"), s.d, s.ff)?,
            w.linear(&p("ffn_down"), s.ff, s.d)?,
        )
    };
    Ok(Layer {
        attn_norm: w.vector(&p("attn_norm"), s.d)?,
        wq: q.linear,
        wk: k.linear,
        wv: v.linear,
        qkv_bias,
        qk_norm: match (
            w.vector_as(&p("attn_q_norm"), s.hd, variant.qk_norm)?,
            w.vector_as(&p("attn_k_norm"), s.hd, variant.qk_norm)?,
        ) {
            (Some(q), Some(k)) => Some([q, k]),
            _ => None,
        },
        wo: w.linear(&p("attn_output"), s.q_dim, s.d)?,
        post_norms: match (
            w.vector_as(&p("post_attention_norm"), s.d, variant.post_norms)?,
            w.vector_as(&p("post_ffw_norm"), s.d, variant.post_norms)?,
        ) {
            (Some(a), Some(f)) => Some([a, f]),
            _ => None,
        },
        ffn_norm: w.vector(&p(variant.ffn_norm), s.d)?,
        ffn,
        rope,
        o_bias: w.vector_as(&format!("blk.{i}.attn_output.bias"), s.d, variant.o_bias)?,
        sinks: w.vector_as(&p("attn_sinks"), s.q_dim / s.hd, variant.attn_sinks)?,
        window,
    })
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
        forward_layers(
            &self.cfg,
            (pool, cache, batch),
            (&self.output_norm, self.cfg.rms_norm_eps),
            &self.output,
            (scratch, logits),
            |tokens, positions, attend, scratch| {
                self.layers_forward(pool, tokens, positions, attend, scratch)
            },
        )
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

impl Llama {
    /// The embeddings of `tokens` through every layer; the residual stream (`[n, d]`) is the
    /// first of the buffers returned (give them back to the scratch after use).
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
        let (d, hd, ff) = (c.hidden_size, c.head_dim, c.intermediate_size);
        let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
        let sparse = self.layers.iter().any(|l| matches!(l.ffn, Ffn::Sparse(..)));

        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            n * q_dim,
            n * kv_dim,
            n * kv_dim,
            n * q_dim,
            n * self.ffn_width,
            n * self.ffn_width,
            // The routed experts' output.
            if sparse { n * d } else { 0 },
        ]);
        let [x, h, q, k, v, attn, gate, up, experts_out] = &mut bufs[..] else {
            unreachable!("take returns one buffer per length")
        };

        self.embed.lookup(tokens, 1.0, x)?; // x: [n, d]
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
            sliding_window: None, // set per layer
            sinks: None,
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
            let qk_norm = |q: &mut Vec<f32>, k: &mut Vec<f32>| {
                if let Some([nq, nk]) = &layer.qk_norm {
                    rms_norm_inplace(q, nq, c.rms_norm_eps);
                    rms_norm_inplace(k, nk, c.rms_norm_eps);
                }
            };
            if !self.qk_norm_after_rope {
                qk_norm(q, k);
            }
            if layer.rope {
                self.rope.apply(q, positions, c.n_heads);
                self.rope.apply(k, positions, c.n_kv_heads);
            }
            if self.qk_norm_after_rope {
                qk_norm(q, k);
            }
            if self.prescale_queries {
                let s = 1.0 / (hd as f32).sqrt();
                q.iter_mut().for_each(|v| *v *= s);
            }

            // [n, n_heads, hd] attention output (generation stores keys and values first).
            let params = AttentionParams {
                sliding_window: layer.window,
                sinks: layer.sinks.as_deref(),
                ..params
            };
            attend.run(li, (q, k, v), &params, attn)?;

            layer.wo.forward(pool, attn, h, &mut scratch.matmul)?; // h: [n, d]
            if let Some(b) = &layer.o_bias {
                add_rows(h, b);
            }
            if li + 1 == self.layers.len() {
                attend.before_last_layer_products(&mut scratch.matmul);
            }
            if let Some([after_attn, _]) = &layer.post_norms {
                rms_norm_inplace(h, after_attn, c.rms_norm_eps);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);

            rms_norm(x, &layer.ffn_norm, c.rms_norm_eps, h);
            match &layer.ffn {
                Ffn::Dense(w_gate, w_up, w_down) => {
                    let (gate, up) = (&mut gate[..n * ff], &mut up[..n * ff]);
                    w_gate.forward(pool, h, gate, &mut scratch.matmul)?; // gate: [n, ff]
                    w_up.forward(pool, h, up, &mut scratch.matmul)?; // up: [n, ff]
                    swiglu(gate, up);
                    w_down.forward(pool, gate, h, &mut scratch.matmul)?; // h: [n, d]
                }
                Ffn::Sparse(moe, shared) => {
                    moe.forward(pool, h, experts_out, &mut scratch.matmul)?;
                    match shared {
                        None => h.copy_from_slice(experts_out),
                        Some(e) => {
                            let sf = e.gate.out_features();
                            let (gate, up) = (&mut gate[..n * sf], &mut up[..n * sf]);
                            e.gate.forward(pool, h, gate, &mut scratch.matmul)?;
                            e.up.forward(pool, h, up, &mut scratch.matmul)?;
                            swiglu(gate, up);
                            e.down.forward(pool, gate, h, &mut scratch.matmul)?; // h: [n, d]
                                                                                 // The routed experts' sum plus the shared one's, as llama.cpp adds.
                            h.iter_mut()
                                .zip(experts_out.iter())
                                .for_each(|(s, r)| *s += *r);
                        }
                    }
                }
            }
            if let Some([_, after_ffn]) = &layer.post_norms {
                rms_norm_inplace(h, after_ffn, c.rms_norm_eps);
            }
            x.iter_mut().zip(h.iter()).for_each(|(a, b)| *a += b);
        }
        Ok(bufs)
    }
}
