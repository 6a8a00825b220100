//! The shared layers read from named tensors (GGUF names; each source maps them). Whether an
//! optional part (a bias, a fused matrix) is read is the architecture's decision, passed in as
//! a [`Need`]: a required part the file lacks is refused naming the tensor, and a part the
//! architecture does not read stays unread, which the registry refuses after loading.

use crate::layers::gpt::{BiasedLinear, GeluMlp, LayerNorm, Qkv};
use crate::layers::moe::MoeBiases;
use crate::layers::{Expert, Linear, Moe, MoeConfig};
use crate::model_error::{ModelError, Result};
use crate::weights::{Need, Weights};

/// `{name}.weight` and `{name}.bias` as a LayerNorm.
pub(crate) fn layer_norm(w: &dyn Weights, name: &str, dim: usize, eps: f32) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: w.vector(&format!("{name}.weight"), dim)?,
        bias: w.vector(&format!("{name}.bias"), dim)?,
        eps,
        centered: true,
    })
}

/// The same weights applied as an RMSNorm plus the bias (llama.cpp's Phi 3.5 MoE).
pub(crate) fn rms_norm_with_bias(
    w: &dyn Weights,
    name: &str,
    dim: usize,
    eps: f32,
) -> Result<LayerNorm> {
    Ok(LayerNorm {
        centered: false,
        ..layer_norm(w, name, dim, eps)?
    })
}

/// `{name}.weight` `[out, in]` and `{name}.bias` as `bias` says.
pub(crate) fn biased_linear(
    w: &dyn Weights,
    name: &str,
    [in_features, out_features]: [usize; 2],
    bias: Need,
) -> Result<BiasedLinear> {
    Ok(BiasedLinear {
        linear: w.linear(&format!("{name}.weight"), in_features, out_features)?,
        bias: w.vector_as(&format!("{name}.bias"), out_features, bias)?,
    })
}

/// Layer `layer`'s Q, K and V (`q_dim`, `kv_dim` rows of `dim`): three matrices, or the fused
/// `attn_qkv` (older Phi 2 files, Phi 3) cut into three in place; biases as `bias` says.
pub(crate) fn qkv(
    w: &dyn Weights,
    layer: usize,
    [dim, q_dim, kv_dim]: [usize; 3],
    bias: Need,
) -> Result<Qkv> {
    let fused = format!("blk.{layer}.attn_qkv");
    if !w.has(&format!("{fused}.weight")) {
        let part =
            |p: &str, out: usize| biased_linear(w, &format!("blk.{layer}.{p}"), [dim, out], bias);
        return Ok(Qkv([
            part("attn_q", q_dim)?,
            part("attn_k", kv_dim)?,
            part("attn_v", kv_dim)?,
        ]));
    }
    let total = q_dim + 2 * kv_dim;
    let fused_bias = w.vector_as(&format!("{fused}.bias"), total, bias)?;
    let ranges = [0..q_dim, q_dim..q_dim + kv_dim, q_dim + kv_dim..total];
    let parts = ranges.map(|r| -> Result<BiasedLinear> {
        Ok(BiasedLinear {
            linear: w.linear_rows(&format!("{fused}.weight"), dim, total, r.clone())?,
            bias: fused_bias.as_ref().map(|b| b[r].to_vec()),
        })
    });
    let [q, k, v] = parts;
    Ok(Qkv([q?, k?, v?]))
}

/// Layer `layer`'s plain GELU MLP (`ffn_up`, `ffn_down`), biases as `bias` says.
pub(crate) fn gelu_mlp(
    w: &dyn Weights,
    layer: usize,
    [dim, ff]: [usize; 2],
    bias: Need,
) -> Result<GeluMlp> {
    Ok(GeluMlp {
        up: biased_linear(w, &format!("blk.{layer}.ffn_up"), [dim, ff], bias)?,
        down: biased_linear(w, &format!("blk.{layer}.ffn_down"), [ff, dim], bias)?,
    })
}

/// A SwiGLU MLP from `blk.N.ffn_gate{suffix}`, `ffn_up{suffix}` and `ffn_down{suffix}`.
pub(crate) fn swiglu(
    w: &dyn Weights,
    layer: usize,
    suffix: &str,
    [dim, ff]: [usize; 2],
) -> Result<Expert> {
    let p = |t: &str| format!("blk.{layer}.{t}{suffix}.weight");
    Ok(Expert {
        gate: w.linear(&p("ffn_gate"), dim, ff)?,
        up: w.linear(&p("ffn_up"), dim, ff)?,
        down: w.linear(&p("ffn_down"), ff, dim)?,
    })
}

/// Layer `layer`'s router and experts (`blk.N.ffn_gate_inp`, `ffn_{gate,up,down}_exps`), and
/// its selection bias (`blk.N.exp_probs_b.bias`) as `selection_bias` says.
pub(crate) fn moe(
    w: &dyn Weights,
    layer: usize,
    dim: usize,
    cfg: MoeConfig,
    selection_bias: Need,
) -> Result<Moe> {
    let p = |t: &str| format!("blk.{layer}.{t}.weight");
    let (n, ff) = (cfg.n_experts, cfg.expert_ff);
    let gates = w.expert_linears(&p("ffn_gate_exps"), n, dim, ff)?;
    let ups = w.expert_linears(&p("ffn_up_exps"), n, dim, ff)?;
    let downs = w.expert_linears(&p("ffn_down_exps"), n, ff, dim)?;
    Ok(Moe {
        router: w.linear(&p("ffn_gate_inp"), dim, n)?,
        experts: gates
            .into_iter()
            .zip(ups)
            .zip(downs)
            .map(|((gate, up), down)| Expert { gate, up, down })
            .collect(),
        selection_bias: w.vector_as(&format!("blk.{layer}.exp_probs_b.bias"), n, selection_bias)?,
        biases: None,
        cfg,
    })
}

/// Layer `layer`'s router bias and each expert's gate, up and down biases
/// (`blk.N.ffn_gate_inp.bias`, `ffn_{gate,up,down}_exps.bias`), as `need` says (gpt-oss).
pub(crate) fn moe_biases(
    w: &dyn Weights,
    layer: usize,
    dim: usize,
    cfg: &MoeConfig,
    need: Need,
) -> Result<Option<Box<MoeBiases>>> {
    let p = |t: &str| format!("blk.{layer}.{t}.bias");
    let router = match w.vector_as(&p("ffn_gate_inp"), cfg.n_experts, need)? {
        None => return Ok(None),
        Some(r) => r,
    };
    let (n, ff) = (cfg.n_experts, cfg.expert_ff);
    let gate = w.expert_vectors(&p("ffn_gate_exps"), n, ff)?;
    let up = w.expert_vectors(&p("ffn_up_exps"), n, ff)?;
    let down = w.expert_vectors(&p("ffn_down_exps"), n, dim)?;
    Ok(Some(Box::new(MoeBiases {
        router,
        experts: gate
            .into_iter()
            .zip(up)
            .zip(down)
            .map(|((g, u), d)| [g, u, d])
            .collect(),
    })))
}

/// The output head: `output.weight`, or the embedding table read as a linear layer when the
/// file ties them (it has no head of its own).
pub(crate) fn output_head(
    w: &dyn Weights,
    embed: &crate::layers::Embedding,
    dim: usize,
    vocab: usize,
) -> Result<Linear> {
    if w.has("output.weight") {
        w.linear("output.weight", dim, vocab)
    } else {
        // Tied embeddings: the same [vocab, dim] table read as a linear layer.
        Ok(Linear::new(embed.ty(), vocab, dim, embed.bytes().clone())?)
    }
}

/// Drops the multi-token-prediction layers that follow the decoder's (llama.cpp's GGUFs count
/// them in `block_count` and give `nextn_predict_layers`; checkpoints hold them past
/// `num_hidden_layers`): their tensors are never read, nor run.
pub(crate) fn skip_mtp_layers(
    w: &dyn Weights,
    cfg: &mut crate::model_config::ModelConfig,
) -> Result<()> {
    let mtp_layers = w.hparam_u32("nextn_predict_layers")?.unwrap_or(0) as usize;
    if mtp_layers >= cfg.n_layers {
        return Err(ModelError::Unsupported(format!(
            "{}: {mtp_layers} multi-token-prediction layers leave no decoder layer of {}",
            w.source(),
            cfg.n_layers
        )));
    }
    cfg.n_layers -= mtp_layers;
    w.skip_layers_from(cfg.n_layers);
    Ok(())
}

/// An integer hyperparameter under its GGUF name, else its checkpoint name (the hybrids' sizes,
/// which the two formats name differently).
pub(crate) fn either_u32(w: &dyn Weights, gguf: &str, hf: &str) -> Result<Option<usize>> {
    Ok(match w.hparam_u32(gguf)? {
        Some(v) => Some(v as usize),
        None => w.hparam_u32(hf)?.map(|v| v as usize),
    })
}
