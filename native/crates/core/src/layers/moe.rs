//! A sparse mixture-of-experts feed-forward block (Mixtral, Qwen 3 MoE, DeepSeek V2/V3): a
//! router scores the experts per token, the `n_used` best run a SwiGLU MLP each, and their
//! outputs are summed with the router's weights, as llama.cpp computes it:
//!
//! - probabilities are a softmax over all experts (a sigmoid of each in DeepSeek V3; in
//!   gpt-oss the logits, plus a bias, choose the experts and a softmax over the chosen ones
//!   weights them);
//! - the experts chosen are the `n_used` most probable, after adding a per-expert selection
//!   bias (DeepSeek V3) and, with expert groups, among the best groups only;
//! - with `norm_topk`, the chosen weights are divided by their sum (at least 2⁻¹⁴), then
//!   multiplied by `scale`;
//! - each expert's output is scaled by its weight, then they are added in rank order.
//!
//! Each expert runs once per step over the rows routed to it, each row on its own (as llama.cpp
//! multiplies them), so a sequence's results never depend on what else is in the step.

use mistralrs_common::numerics::{expf_ggml, hsum8};
use mistralrs_common::ThreadPool;
use mistralrs_quant::matmul::MatmulScratch;

use crate::layers::activations::{sigmoid, swiglu};
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
    pub gating: Gating,
    /// Multiplies the chosen weights (DeepSeek's `routed_scaling_factor`).
    pub scale: f32,
    /// Experts picked among the best groups only (DeepSeek).
    pub groups: Option<ExpertGroups>,
    pub activation: ExpertActivation,
}

/// The experts' gated activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpertActivation {
    /// `silu(gate) · up`.
    Swiglu,
    /// gpt-oss's: `g · sigmoid(alpha · g) · (u + 1)` with the gate `g` clamped above at
    /// `limit` and the up projection `u` to ±`limit`.
    SwigluOai { alpha: f32, limit: f32 },
}

/// How router scores become expert probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    Softmax,
    /// Each expert's own sigmoid (DeepSeek V3).
    Sigmoid,
    /// The raw logits choose; a softmax over the chosen ones weights them (gpt-oss).
    SoftmaxWeight,
}

/// Group-limited routing: the experts split into `n_groups` equal groups, each group scored,
/// and the experts chosen only from the `n_used` best groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpertGroups {
    pub n_groups: usize,
    pub n_used: usize,
    pub score: GroupScore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupScore {
    /// The group's best expert (DeepSeek V2's `group_limited_greedy`).
    Max,
    /// Its two best experts' sum (DeepSeek V3's `noaux_tc`; llama.cpp scores every model so).
    TopTwoSum,
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
            gating: Gating::Softmax,
            scale: 1.0,
            groups: None,
            activation: ExpertActivation::Swiglu,
        })
    }

    /// Adds group-limited routing, refusing groups that do not divide the experts evenly or
    /// cannot hold `n_used` experts.
    pub fn with_groups(
        mut self,
        n_groups: usize,
        n_used: usize,
        score: GroupScore,
        source: &str,
    ) -> Result<MoeConfig> {
        if n_groups <= 1 {
            return Ok(self);
        }
        let per_group = self.n_experts / n_groups;
        if !self.n_experts.is_multiple_of(n_groups)
            || n_used == 0
            || n_used > n_groups
            || n_used * per_group < self.n_used
            || (score == GroupScore::TopTwoSum && per_group < 2)
        {
            return Err(crate::model_error::ModelError::Unsupported(format!(
                "{source}: {} experts in {n_groups} groups, {n_used} used, cannot route {} per token",
                self.n_experts, self.n_used
            )));
        }
        self.groups = Some(ExpertGroups {
            n_groups,
            n_used,
            score,
        });
        Ok(self)
    }
}

/// A SwiGLU MLP: an expert, or a dense feed-forward block of the same form.
pub struct Expert {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Expert {
    /// `out = down(silu(gate(x)) · up(x))` for every row of `x`; `gate` and `up` are work
    /// buffers, resized here.
    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        out: &mut [f32],
        gate: &mut Vec<f32>,
        up: &mut Vec<f32>,
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        let work = [gate, up];
        self.forward_with(None, ExpertActivation::Swiglu, pool, (x, out), work, matmul)
    }

    /// The same with biases (`[gate, up, down]`) added after each product and `activation`
    /// in place of SwiGLU, as llama.cpp runs gpt-oss's experts.
    pub fn forward_with(
        &self,
        biases: Option<&[Vec<f32>; 3]>,
        activation: ExpertActivation,
        pool: &ThreadPool,
        (x, out): (&[f32], &mut [f32]),
        [gate, up]: [&mut Vec<f32>; 2],
        matmul: &mut MatmulScratch,
    ) -> Result<()> {
        let rows = x.len() / self.gate.in_features();
        let ff = self.gate.out_features();
        gate.resize(rows * ff, 0.0);
        up.resize(rows * ff, 0.0);
        self.gate.forward(pool, x, gate, matmul)?;
        self.up.forward(pool, x, up, matmul)?;
        if let Some([bg, bu, _]) = biases {
            add_each_row(up, bu);
            add_each_row(gate, bg);
        }
        match activation {
            ExpertActivation::Swiglu => swiglu(gate, up),
            ExpertActivation::SwigluOai { alpha, limit } => {
                for (g, &u) in gate.iter_mut().zip(up.iter()) {
                    let x = g.min(limit);
                    let y = u.clamp(-limit, limit);
                    *g = x / (1.0 + (alpha * -x).exp()) * (y + 1.0);
                }
            }
        }
        self.down.forward(pool, gate, out, matmul)?;
        if let Some([_, _, bd]) = biases {
            add_each_row(out, bd);
        }
        Ok(())
    }
}

pub struct Moe {
    /// `[n_experts, dim]`.
    pub router: Linear,
    pub experts: Vec<Expert>,
    /// Added to the probabilities to choose experts, not to weight them (DeepSeek V3's
    /// `e_score_correction_bias`).
    pub selection_bias: Option<Vec<f32>>,
    /// The router's bias, and each expert's gate, up and down biases (gpt-oss).
    pub biases: Option<Box<MoeBiases>>,
    pub cfg: MoeConfig,
}

pub struct MoeBiases {
    /// `[n_experts]`, added to the router's logits.
    pub router: Vec<f32>,
    /// Per expert: `[expert_ff]`, `[expert_ff]`, `[dim]`.
    pub experts: Vec<[Vec<f32>; 3]>,
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
        let (n_exp, k) = (self.cfg.n_experts, self.cfg.n_used);

        let mut scores = vec![0f32; n * n_exp];
        self.router.forward(pool, x, &mut scores, matmul)?;
        if let Some(b) = &self.biases {
            scores
                .chunks_exact_mut(n_exp)
                .for_each(|row| row.iter_mut().zip(&b.router).for_each(|(s, b)| *s += b));
        }
        // chosen[r * k + j]: the j-th best expert of row r, with its weight.
        let mut chosen = vec![(0usize, 0f32); n * k];
        let mut selection = vec![0f32; n_exp];
        for (row, picks) in scores
            .chunks_exact_mut(n_exp)
            .zip(chosen.chunks_exact_mut(k))
        {
            match self.cfg.gating {
                Gating::Softmax => softmax(row),
                Gating::Sigmoid => row.iter_mut().for_each(|v| *v = sigmoid(*v)),
                Gating::SoftmaxWeight => {}
            }
            selection.copy_from_slice(row);
            if let Some(bias) = &self.selection_bias {
                selection.iter_mut().zip(bias).for_each(|(s, b)| *s += b);
            }
            if let Some(groups) = &self.cfg.groups {
                mask_groups(&mut selection, groups);
            }
            route(row, &selection, picks, &self.cfg);
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
        for (e, (expert, routed)) in self.experts.iter().zip(&routed_to).enumerate() {
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
            down.resize(m * d, 0.0);
            expert.forward_with(
                self.biases.as_ref().map(|b| &b.experts[e]),
                self.cfg.activation,
                pool,
                (&xe, &mut down),
                [&mut gate, &mut up],
                matmul,
            )?;
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

/// In place, as ggml's `ggml_vec_soft_max_f32` computes it on AVX2: whole groups of 8 through
/// its vectorised exp, each group summed across its lanes; the rest through the C library's
/// `expf`, one at a time; the sum in f64. (Routers of fewer than 8 experts take only the
/// second path; Mixtral's 8 and Qwen 3 MoE's 128, the first.)
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    let whole = row.len() / 8 * 8;
    let (groups, rest) = row.split_at_mut(whole);
    for group in groups.chunks_exact_mut(8) {
        group.iter_mut().for_each(|v| *v = expf_ggml(*v - max));
        let lanes: &[f32; 8] = (&*group).try_into().expect("groups of 8");
        sum += f64::from(hsum8(lanes));
    }
    for v in rest.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let scale = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= scale);
}

fn add_each_row(x: &mut [f32], bias: &[f32]) {
    x.chunks_exact_mut(bias.len())
        .for_each(|row| row.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
}

/// Indices of `values` from the largest down, ties to the lower index (ggml's descending
/// argsort).
fn descending(values: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order
}

/// Sets the selection scores of every expert outside the best groups to −∞.
fn mask_groups(selection: &mut [f32], groups: &ExpertGroups) {
    let per_group = selection.len() / groups.n_groups;
    let scores: Vec<f32> = selection
        .chunks_exact(per_group)
        .map(|g| {
            let order = descending(g);
            match groups.score {
                GroupScore::Max => g[order[0]],
                GroupScore::TopTwoSum => g[order[0]] + g[order[1]],
            }
        })
        .collect();
    for &g in &descending(&scores)[groups.n_used..] {
        selection[g * per_group..(g + 1) * per_group].fill(f32::NEG_INFINITY);
    }
}

/// The `picks.len()` experts with the best `selection` scores (ties to the lower index), each
/// weighted by its probability, renormalised and scaled as `cfg` says.
fn route(probs: &[f32], selection: &[f32], picks: &mut [(usize, f32)], cfg: &MoeConfig) {
    for (p, &e) in picks.iter_mut().zip(&descending(selection)) {
        *p = (e, probs[e]);
    }
    if cfg.gating == Gating::SoftmaxWeight {
        let mut weights: Vec<f32> = picks.iter().map(|p| p.1).collect();
        softmax(&mut weights);
        picks.iter_mut().zip(weights).for_each(|(p, w)| p.1 = w);
    }
    if cfg.norm_topk {
        let sum = picks.iter().map(|p| p.1).sum::<f32>().max(MIN_WEIGHT_SUM);
        picks.iter_mut().for_each(|p| p.1 /= sum);
    }
    if cfg.scale != 0.0 && cfg.scale != 1.0 {
        picks.iter_mut().for_each(|p| p.1 *= cfg.scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(norm_topk: bool) -> MoeConfig {
        MoeConfig::checked(4, 2, 8, norm_topk, "test").expect("valid")
    }

    /// Whole groups of 8 take ggml's vectorised exp, the rest the C library's, as
    /// `ggml_vec_soft_max_f32` on AVX2 (on a tiny Mixtral of 8 experts, the probabilities then
    /// equal llama.cpp's, 48 of 48; with the C library's exp throughout, 23 of 48 differed).
    #[test]
    fn softmax_takes_ggmls_vectorised_exp_for_whole_groups_of_8() {
        let logits: Vec<f32> = (0..11)
            .map(|i| ((i * 37) % 11) as f32 * 0.731 - 3.1)
            .collect();
        let mut row = logits.clone();
        softmax(&mut row);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut exps: Vec<f32> = logits.iter().map(|&x| x - max).collect();
        exps[..8].iter_mut().for_each(|v| *v = expf_ggml(*v));
        exps[8..].iter_mut().for_each(|v| *v = v.exp());
        let lanes: &[f32; 8] = exps[..8].try_into().unwrap();
        let sum = f64::from(hsum8(lanes)) + exps[8..].iter().map(|&v| f64::from(v)).sum::<f64>();
        let scale = (1.0 / sum) as f32;
        for (got, e) in row.iter().zip(&exps) {
            assert_eq!(got.to_bits(), (e * scale).to_bits());
        }
        // The two exps do differ on these inputs: the test tells them apart.
        assert!(logits[..8]
            .iter()
            .any(|&x| expf_ggml(x - max) != (x - max).exp()));
    }

    #[test]
    fn routes_to_the_most_probable_and_renormalises() {
        let mut row = vec![0.0, 2.0, 1.0, 2.0];
        softmax(&mut row);
        let mut picks = vec![(0, 0.0); 2];
        route(&row, &row, &mut picks, &config(true));
        assert_eq!(
            (picks[0].0, picks[1].0),
            (1, 3),
            "ties go to the lower index"
        );
        assert!((picks[0].1 - 0.5).abs() < 1e-6 && (picks[1].1 - 0.5).abs() < 1e-6);
        route(&row, &row, &mut picks, &config(false));
        assert!((picks[0].1 - row[1]).abs() < 1e-7);
    }

    #[test]
    fn selection_bias_picks_but_probabilities_weigh_and_scale_applies() {
        let probs = [0.4f32, 0.3, 0.2, 0.1];
        let selection = [0.4f32, 0.3, 0.9, 0.1];
        let mut picks = vec![(0, 0.0); 2];
        let cfg = MoeConfig {
            scale: 2.5,
            ..config(false)
        };
        route(&probs, &selection, &mut picks, &cfg);
        assert_eq!(picks, vec![(2, 0.2 * 2.5), (0, 0.4 * 2.5)]);
    }

    #[test]
    fn group_routing_keeps_the_best_groups_only() {
        // Groups {0,1}, {2,3}, {4,5}: maxima 0.5, 0.6, 0.45; top-two sums 0.9, 0.6, 0.9.
        let values = [0.4f32, 0.5, 0.6, 0.0, 0.45, 0.45];
        let groups = |score| ExpertGroups {
            n_groups: 3,
            n_used: 1,
            score,
        };
        let mut max = values;
        mask_groups(&mut max, &groups(GroupScore::Max));
        assert_eq!(&max[2..4], &values[2..4]);
        assert!(max[..2].iter().chain(&max[4..]).all(|v| v.is_infinite()));
        let mut sum = values;
        mask_groups(&mut sum, &groups(GroupScore::TopTwoSum));
        assert_eq!(
            &sum[..2],
            &values[..2],
            "a tie between groups goes to the lower one"
        );
        assert!(sum[2..].iter().all(|v| v.is_infinite()));
    }
}
