//! The pieces of GPT-style decoders (Phi 2, Starcoder 2): LayerNorm with a bias, projections
//! with biases, and a plain GELU MLP (up, GELU, down), each computed as llama.cpp computes it.

use mistralrs_common::ThreadPool;
use mistralrs_quant::matmul::MatmulScratch;

use crate::layers::activations::gelu;
use crate::layers::norm::{layer_norm, rms_norm};
use crate::layers::{add_rows, Linear, Rope};
use crate::model_error::Result;
use crate::weights::Weights;

/// `y = (x − mean) / sqrt(var + eps) · w + b` per row; or, not `centered`, an RMSNorm with
/// a bias, `x / sqrt(mean(x²) + eps) · w + b` (llama.cpp's Phi 3.5 MoE).
pub struct LayerNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f32,
    pub centered: bool,
}

impl LayerNorm {
    /// `{name}.weight` and `{name}.bias`.
    pub fn load(w: &dyn Weights, name: &str, dim: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: w.vector(&format!("{name}.weight"), dim)?,
            bias: w.vector(&format!("{name}.bias"), dim)?,
            eps,
            centered: true,
        })
    }

    /// The same weights applied as an RMSNorm with a bias.
    pub fn load_rms(w: &dyn Weights, name: &str, dim: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            centered: false,
            ..LayerNorm::load(w, name, dim, eps)?
        })
    }

    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        if self.centered {
            layer_norm(x, &self.weight, &self.bias, self.eps, out);
        } else {
            rms_norm(x, &self.weight, self.eps, out);
            add_rows(out, &self.bias);
        }
    }
}

/// `y = x·Wᵀ + b`, the bias optional.
pub struct BiasedLinear {
    pub linear: Linear,
    pub bias: Option<Vec<f32>>,
}

impl BiasedLinear {
    /// `{name}.weight` `[out, in]` and, if present, `{name}.bias`.
    pub fn load(
        w: &dyn Weights,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<BiasedLinear> {
        Ok(BiasedLinear {
            linear: w.linear(&format!("{name}.weight"), in_features, out_features)?,
            bias: w.vector_opt(&format!("{name}.bias"), out_features)?,
        })
    }

    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        y: &mut [f32],
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        self.linear.forward(pool, x, y, matmul)?;
        if let Some(b) = &self.bias {
            add_rows(y, b);
        }
        Ok(())
    }
}

/// Q, K and V with their biases, rotated.
pub struct Qkv([BiasedLinear; 3]);

impl Qkv {
    /// Three matrices, or the fused `attn_qkv` of older Phi 2 files cut into three in place.
    pub fn load(
        w: &dyn Weights,
        layer: usize,
        dim: usize,
        q_dim: usize,
        kv_dim: usize,
    ) -> Result<Qkv> {
        load_qkv(w, layer, dim, q_dim, kv_dim).map(Qkv)
    }

    /// `h` `[n, dim]` → rotated `q` `[n, n_heads, hd]`, rotated `k` and `v` `[n, n_kv_heads, hd]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        pool: &ThreadPool,
        h: &[f32],
        [q, k, v]: [&mut [f32]; 3],
        rope: &Rope,
        positions: &[usize],
        [n_heads, n_kv_heads]: [usize; 2],
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        let [wq, wk, wv] = &self.0;
        wq.forward(pool, h, q, matmul)?;
        wk.forward(pool, h, k, matmul)?;
        wv.forward(pool, h, v, matmul)?;
        rope.apply(q, positions, n_heads);
        rope.apply(k, positions, n_kv_heads);
        Ok(())
    }
}

fn load_qkv(
    w: &dyn Weights,
    layer: usize,
    dim: usize,
    q_dim: usize,
    kv_dim: usize,
) -> Result<[BiasedLinear; 3]> {
    let fused = format!("blk.{layer}.attn_qkv");
    if !w.has(&format!("{fused}.weight")) {
        let part =
            |p: &str, out: usize| BiasedLinear::load(w, &format!("blk.{layer}.{p}"), dim, out);
        return Ok([
            part("attn_q", q_dim)?,
            part("attn_k", kv_dim)?,
            part("attn_v", kv_dim)?,
        ]);
    }
    let total = q_dim + 2 * kv_dim;
    let bias = w.vector_opt(&format!("{fused}.bias"), total)?;
    let ranges = [0..q_dim, q_dim..q_dim + kv_dim, q_dim + kv_dim..total];
    let parts = ranges.map(|r| -> Result<BiasedLinear> {
        Ok(BiasedLinear {
            linear: w.linear_rows(&format!("{fused}.weight"), dim, total, r.clone())?,
            bias: bias.as_ref().map(|b| b[r].to_vec()),
        })
    });
    let [q, k, v] = parts;
    Ok([q?, k?, v?])
}

/// `down(gelu(up(x) + b_up)) + b_down`.
pub struct GeluMlp {
    pub up: BiasedLinear,
    pub down: BiasedLinear,
}

impl GeluMlp {
    pub fn load(w: &dyn Weights, layer: usize, dim: usize, ff: usize) -> Result<GeluMlp> {
        Ok(GeluMlp {
            up: BiasedLinear::load(w, &format!("blk.{layer}.ffn_up"), dim, ff)?,
            down: BiasedLinear::load(w, &format!("blk.{layer}.ffn_down"), ff, dim)?,
        })
    }

    /// `hidden` is `[n, ff]` scratch.
    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        hidden: &mut [f32],
        out: &mut [f32],
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        self.up.forward(pool, x, hidden, matmul)?;
        gelu(hidden);
        self.down.forward(pool, hidden, out, matmul)
    }
}
