//! `phi`: Phi 2 (GGUF and `-a`: `phi2`). A GPT-style parallel block: one LayerNorm (with bias) feeds both attention
//! and a GELU MLP, whose outputs are added to the residual together; Q/K/V and every
//! projection carry biases, so does the output head; NeoX rotation of the first 40 % of each
//! head (`partial_rotary_factor`); queries scaled by 1/√head_dim before attention.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{AttentionParams, KvCache};
use mistralrs_quant::matmul::MatmulScratch;

use crate::hf_config::HfDefaults;
use crate::layers::attention::{paged_attention, StepBatch};
use crate::layers::gpt::{BiasedLinear, GeluMlp, LayerNorm, Qkv};
use crate::layers::{Embedding, Rope, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::Result;
use crate::models::llama::HF_LAYER;
use crate::models::parts;
use crate::models::{
    begin_forward, end_forward, group_rows_by_sequence, head_logits, isolate_logit_rows,
    ForwardScratch, Model, SeqInput,
};
use crate::weights::{Need, Weights};
use crate::weights_hf::HfCheckpoint;

/// `dense` for the attention output, `fc1`/`fc2` for the MLP, `final_layernorm` at the end.
pub(crate) const HF: HfCheckpoint = HfCheckpoint {
    globals: &[
        ("token_embd", "model.embed_tokens"),
        ("output_norm", "model.final_layernorm"),
        ("output", "lm_head"),
    ],
    layer_parts: &[
        &[
            ("attn_output", "self_attn.dense"),
            ("ffn_up", "mlp.fc1"),
            ("ffn_down", "mlp.fc2"),
        ],
        HF_LAYER,
    ],
    experts: None,
    norm_offset: 0.0,
    // PhiConfig's default: half of each head rotates.
    defaults: HfDefaults {
        partial_rotary_factor: 0.5,
        ..HfDefaults::new()
    },
};

struct Layer {
    norm: LayerNorm,
    qkv: Qkv,
    wo: BiasedLinear,
    mlp: GeluMlp,
}

pub struct Phi2 {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    output_norm: LayerNorm,
    output: BiasedLinear,
    rope: Rope,
}

pub fn load(w: &dyn Weights) -> Result<Box<dyn Model>> {
    let cfg = w.config(RopeStyle::Neox)?;
    let (d, hd) = (cfg.hidden_size, cfg.head_dim);
    let (q_dim, kv_dim) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
    let eps = w.layer_norm_eps()?;
    // Every projection, the MLP and the head carry biases (llama.cpp requires them too).
    let bias = Need::Required;
    if w.hparam_bool("qk_layernorm")? == Some(true) {
        return Err(crate::ModelError::Unsupported(format!(
            "{}: qk_layernorm (Phi 2 with query/key LayerNorms) is not supported",
            w.source()
        )));
    }
    let layers = (0..cfg.n_layers)
        .map(|i| {
            Ok(Layer {
                norm: parts::layer_norm(w, &format!("blk.{i}.attn_norm"), d, eps)?,
                qkv: parts::qkv(w, i, [d, q_dim, kv_dim], bias)?,
                wo: parts::biased_linear(w, &format!("blk.{i}.attn_output"), [q_dim, d], bias)?,
                mlp: parts::gelu_mlp(w, i, [d, cfg.intermediate_size], bias)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(Phi2 {
        embed: w.embedding("token_embd.weight", d, cfg.vocab_size)?,
        layers,
        output_norm: parts::layer_norm(w, "output_norm", d, eps)?,
        output: parts::biased_linear(w, "output", [d, cfg.vocab_size], bias)?,
        rope: cfg.rope(cfg.rope_scaling.clone()),
        cfg,
    }))
}

impl Model for Phi2 {
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
        let (d, hd, ff) = (c.hidden_size, c.head_dim, c.intermediate_size);
        let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
        let mut bufs = scratch.take(&[
            n * d,
            n * d,
            n * q_dim,
            n * kv_dim,
            n * kv_dim,
            n * q_dim,
            n * ff,
            n * d,
        ]);
        let [x, h, q, k, v, attn, hidden, mlp_out] = &mut bufs[..] else {
            unreachable!("take returns one buffer per length")
        };
        self.embed.lookup(&tokens, 1.0, x)?;
        let params = AttentionParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            scale: 1.0, // queries are scaled before attention
            softcap: None,
            sliding_window: None,
            sinks: None,
            single_token_step: false,
        };
        let q_scale = 1.0 / (hd as f32).sqrt();
        let step = StepBatch::new(pool, batch, &positions);
        for (li, layer) in self.layers.iter().enumerate() {
            layer.norm.forward(x, h);
            let heads = [c.n_heads, c.n_kv_heads];
            let qkv = [&mut q[..], &mut k[..], &mut v[..]];
            layer
                .qkv
                .forward(&step, h, qkv, &self.rope, heads, &mut scratch.matmul)?;
            q.iter_mut().for_each(|v| *v *= q_scale);
            paged_attention(&step, cache, li, (q, k, v), &params, attn)?;
            // The MLP reads the same normed input as attention.
            let last = li + 1 == self.layers.len();
            if last {
                isolate_logit_rows(batch, &mut scratch.matmul);
            }
            layer
                .mlp
                .forward(pool, h, hidden, mlp_out, &mut scratch.matmul)?;
            if last {
                // The output projection comes before llama.cpp's row selection.
                group_rows_by_sequence(batch, &mut scratch.matmul);
            }
            layer.wo.forward(pool, attn, h, &mut scratch.matmul)?;
            // (attention + MLP) + residual, in llama.cpp's order.
            for ((xv, &a), &m) in x.iter_mut().zip(h.iter()).zip(mlp_out.iter()) {
                *xv += a + m;
            }
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

/// The final LayerNorm and the (biased) output head for the last token of each sequence
/// that wants logits.
pub(crate) fn gpt_head_logits(
    pool: &ThreadPool,
    batch: &[SeqInput<'_>],
    x: &[f32],
    norm: &LayerNorm,
    output: &BiasedLinear,
    scratch: &mut ForwardScratch,
    logits: &mut Vec<f32>,
) -> Result<()> {
    let vocab = output.linear.out_features();
    let norm_rows = |rows: &[f32], out: &mut [f32]| norm.forward(rows, out);
    let head =
        |rows: &[f32], y: &mut [f32], m: &mut MatmulScratch| output.forward(pool, rows, y, m);
    head_logits(
        batch,
        (x, norm.weight.len()),
        vocab,
        (norm_rows, head),
        scratch,
        logits,
    )
}
