//! The pieces of GPT-style decoders (Phi 2, Starcoder 2): LayerNorm with a bias, projections
//! with biases, and a plain GELU MLP (up, GELU, down), each computed as llama.cpp computes it.

use mistralrs_common::ThreadPool;
use mistralrs_quant::matmul::MatmulScratch;

use crate::layers::activations::gelu;
use crate::layers::attention::StepBatch;
use crate::layers::norm::{layer_norm, rms_norm};
use crate::layers::{add_rows, Linear, Rope};
use crate::model_error::Result;

/// `y = (x − mean) / sqrt(var + eps) · w + b` per row; or, not `centered`, an RMSNorm with
/// a bias, `x / sqrt(mean(x²) + eps) · w + b` (llama.cpp's Phi 3.5 MoE).
pub struct LayerNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f32,
    pub centered: bool,
}

impl LayerNorm {
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
pub struct Qkv(pub [BiasedLinear; 3]);

impl Qkv {
    /// `h` `[n, dim]` → rotated `q` `[n, n_heads, hd]`, rotated `k` and `v` `[n, n_kv_heads, hd]`.
    pub fn forward(
        &self,
        step: &StepBatch<'_, '_>,
        h: &[f32],
        [q, k, v]: [&mut [f32]; 3],
        rope: &Rope,
        [n_heads, n_kv_heads]: [usize; 2],
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        let (pool, positions) = (step.pool, step.positions);
        let [wq, wk, wv] = &self.0;
        wq.forward(pool, h, q, matmul)?;
        wk.forward(pool, h, k, matmul)?;
        wv.forward(pool, h, v, matmul)?;
        rope.apply(q, positions, n_heads);
        rope.apply(k, positions, n_kv_heads);
        Ok(())
    }
}

/// `down(gelu(up(x) + b_up)) + b_down`.
pub struct GeluMlp {
    pub up: BiasedLinear,
    pub down: BiasedLinear,
}

impl GeluMlp {
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
