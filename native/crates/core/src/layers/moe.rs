//! A sparse mixture-of-experts feed-forward block (Mixtral, Qwen 3 MoE): a router scores the
//! experts per token, the `n_used` best run a SwiGLU MLP each, and their outputs are summed
//! with the router's weights, as llama.cpp computes it:
//!
//! - probabilities are a softmax over all experts, and the experts chosen are the `n_used`
//!   most probable;
//! - with `norm_topk`, the chosen weights are divided by their sum (at least 2⁻¹⁴);
//! - each expert's output is scaled by its weight, then they are added in rank order.
//!
//! Each expert runs once per step over the rows routed to it, each row on its own (as llama.cpp
//! multiplies them), so a sequence's results never depend on what else is in the step.

use mistralrs_common::ThreadPool;
use mistralrs_quant::matmul::MatmulScratch;

use crate::layers::activations::swiglu;
use crate::layers::Linear;
use crate::model_error::Result;

/// The router's configuration, read from the model's metadata.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoeConfig {
    pub n_experts: usize,
    /// Experts each token uses.
    pub n_used: usize,
    /// Each expert's hidden size.
    pub expert_ff: usize,
    /// Renormalise the chosen experts' weights to sum to one.
    pub norm_topk: bool,
}

impl MoeConfig {
    /// Refuses what cannot be routed: no experts, more used than exist, no hidden size.
    pub fn checked(
        n_experts: usize,
        n_used: usize,
        expert_ff: usize,
        norm_topk: bool,
        source: &str,
    ) -> Result<MoeConfig> {
        if n_experts == 0 || n_experts > 1024 || n_used == 0 || n_used > n_experts || expert_ff == 0
        {
            return Err(crate::model_error::ModelError::Unsupported(format!(
                "{source}: a mixture of {n_experts} experts using {n_used} of hidden size {expert_ff} cannot be routed"
            )));
        }
        Ok(MoeConfig {
            n_experts,
            n_used,
            expert_ff,
            norm_topk,
        })
    }
}

pub struct Expert {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

pub struct Moe {
    /// `[n_experts, dim]`.
    pub router: Linear,
    pub experts: Vec<Expert>,
    pub cfg: MoeConfig,
}

/// The smallest sum the chosen weights are divided by (llama.cpp clamps to 2⁻¹⁴).
const MIN_WEIGHT_SUM: f32 = 6.103_515_6e-5;

impl Moe {
    /// `out[r] = Σ_k w[r,k] · expert_k(x[r])` for every row of `x` (`[n, dim]`).
    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        out: &mut [f32],
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        let d = self.router.in_features();
        let n = x.len() / d;
        let (n_exp, k, ff) = (self.cfg.n_experts, self.cfg.n_used, self.cfg.expert_ff);

        let mut scores = vec![0f32; n * n_exp];
        self.router.forward(pool, x, &mut scores, matmul)?;
        // chosen[r * k + j]: the j-th best expert of row r, with its weight.
        let mut chosen = vec![(0usize, 0f32); n * k];
        for (row, picks) in scores
            .chunks_exact_mut(n_exp)
            .zip(chosen.chunks_exact_mut(k))
        {
            softmax(row);
            route(row, picks, self.cfg.norm_topk);
        }

        // Every routed row is multiplied on its own: llama.cpp's expert products take the
        // single-row order (it never groups rows there), and a row's result then depends on
        // nothing else in the step.
        let seq_rows = std::mem::take(&mut matmul.sequence_rows);
        // y[pick * d ..]: each pick's expert output, before weighting.
        let mut y = vec![0f32; n * k * d];
        let mut xe = Vec::new();
        let (mut gate, mut up, mut down) = (Vec::new(), Vec::new(), Vec::new());
        // The picks (`r * k + j`: row r's j-th expert) routed to each expert, in row order.
        let mut routed_to = vec![Vec::new(); n_exp];
        for (pick, &(e, _)) in chosen.iter().enumerate() {
            routed_to[e].push(pick);
        }
        for (expert, routed) in self.experts.iter().zip(&routed_to) {
            if routed.is_empty() {
                continue;
            }
            let m = routed.len();
            xe.clear();
            for &pick in routed {
                let r = pick / k;
                xe.extend_from_slice(&x[r * d..(r + 1) * d]);
            }
            matmul.sequence_rows.clear();
            matmul.sequence_rows.resize(m, 1);
            gate.resize(m * ff, 0.0);
            up.resize(m * ff, 0.0);
            down.resize(m * d, 0.0);
            expert.gate.forward(pool, &xe, &mut gate, matmul)?;
            expert.up.forward(pool, &xe, &mut up, matmul)?;
            swiglu(&mut gate, &up);
            expert.down.forward(pool, &gate, &mut down, matmul)?;
            for (row, &pick) in down.chunks_exact(d).zip(routed) {
                y[pick * d..(pick + 1) * d].copy_from_slice(row);
            }
        }
        matmul.sequence_rows = seq_rows;

        // Weighted, then summed in rank order.
        for r in 0..n {
            let o = &mut out[r * d..(r + 1) * d];
            for j in 0..k {
                let w = chosen[r * k + j].1;
                let yj = &y[(r * k + j) * d..(r * k + j + 1) * d];
                if j == 0 {
                    o.iter_mut().zip(yj).for_each(|(a, b)| *a = b * w);
                } else {
                    o.iter_mut().zip(yj).for_each(|(a, b)| *a += b * w);
                }
            }
        }
        Ok(())
    }
}

/// In place, with the sum taken in f64 (as ggml's softmax does).
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let scale = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= scale);
}

/// The `picks.len()` most probable experts (ties to the lower index) and their weights.
fn route(probs: &[f32], picks: &mut [(usize, f32)], norm: bool) {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    for (p, &e) in picks.iter_mut().zip(&order) {
        *p = (e, probs[e]);
    }
    if norm {
        let sum = picks.iter().map(|p| p.1).sum::<f32>().max(MIN_WEIGHT_SUM);
        picks.iter_mut().for_each(|p| p.1 /= sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_to_the_most_probable_and_renormalises() {
        let mut row = vec![0.0, 2.0, 1.0, 2.0];
        softmax(&mut row);
        let mut picks = vec![(0, 0.0); 2];
        route(&row, &mut picks, true);
        assert_eq!(
            (picks[0].0, picks[1].0),
            (1, 3),
            "ties go to the lower index"
        );
        assert!((picks[0].1 - 0.5).abs() < 1e-6 && (picks[1].1 - 0.5).abs() < 1e-6);
        route(&row, &mut picks, false);
        assert!((picks[0].1 - row[1]).abs() < 1e-7);
    }
}
