//! Acceptance of proposed tokens against the target's logits. Row `i` of the verify pass is
//! the target's next-token distribution after the fed tokens and the first `i` proposals; it
//! is processed exactly as a one-token step would process it (grammar mask, bias, penalties
//! over the history so far, truncation, temperature).
//!
//! - Greedy: a proposal is kept while it equals the target's argmax; the first that differs
//!   is replaced by the argmax. The output is the target's greedy output, token for token.
//! - Sampling: proposal `x`, drawn with probability `q(x)` (1 for a deterministic proposer),
//!   is kept with probability `min(1, p(x)/q(x))`; otherwise the token is drawn from
//!   `max(0, p − q)` renormalised and the run ends. Each output token then has the target's
//!   distribution `p` exactly.
//!
//! After the last kept proposal (or when all are kept) the target's own next token follows,
//! so a verify step of k proposals yields between 1 and k + 1 tokens.

use std::collections::HashMap;

use crate::grammar::Constraint;
use crate::model_error::ModelError;
use crate::sampler::{argmax, pick, Sampled, Sampler};

use super::Proposal;

/// What a verify step produced for one sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verified {
    /// Proposals kept, in order (already in the cache and in the history).
    pub accepted: Vec<Sampled>,
    /// The token after them: the target's own, or a kept proposal after which the grammar
    /// forces tokens (fed next step with them, like any sampled token).
    pub last: Sampled,
    /// Tokens the grammar forces after `last`.
    pub forced: Vec<u32>,
}

/// Why a verify step stopped a sequence.
#[derive(Debug)]
pub enum VerifyError {
    /// Row `i`, reached by keeping the proposals before it, holds NaN or infinities (rows
    /// after a refused proposal are never looked at, as a one-token step never computes them).
    NonFinite(usize),
    /// The grammar allows no token.
    Grammar(ModelError),
}

impl From<ModelError> for VerifyError {
    fn from(e: ModelError) -> Self {
        VerifyError::Grammar(e)
    }
}

type Result<T> = std::result::Result<T, VerifyError>;

/// Checks `proposal` against `rows` (`proposal.tokens.len() + 1` rows of `vocab` logits, in
/// place), advancing `history` past the kept proposals and the grammar past every output.
pub fn verify(
    sampler: &mut Sampler,
    mut constraint: Option<&mut Constraint>,
    history: &mut Vec<u32>,
    rows: &mut [f32],
    vocab: usize,
    proposal: &Proposal,
) -> Result<Verified> {
    let mut accepted = Vec::new();
    for (i, row) in rows.chunks_exact_mut(vocab).enumerate() {
        if row.iter().any(|v| !v.is_finite()) {
            return Err(VerifyError::NonFinite(i));
        }
        if let Some(c) = constraint.as_deref_mut() {
            c.mask_logits(row)?;
        }
        sampler.process(row, history);
        let Some(&x) = proposal.tokens.get(i) else {
            // Every proposal kept: the target's own next token.
            let token = sampler.choose(row);
            return finish(sampler, constraint, row, token, accepted);
        };
        if let Some(other) = decide(sampler, row, x, proposal.dists.get(i)) {
            return finish(sampler, constraint, row, other, accepted);
        }
        let kept = sampler.sampled(row, x);
        let forced = match constraint.as_deref_mut() {
            Some(c) => c.accept(x)?,
            None => Vec::new(),
        };
        if !forced.is_empty() {
            // The grammar now dictates the next tokens: end the run here, as a one-token step
            // would (it feeds them with this token).
            return Ok(Verified {
                accepted,
                last: kept,
                forced,
            });
        }
        history.push(x);
        accepted.push(kept);
    }
    // Rows are one more than the proposals, so the loop always returns.
    Ok(Verified::default())
}

/// None to keep proposal `x`, or the token to output instead. `q` is the distribution the
/// proposer drew `x` from (None: it chose `x` for certain).
fn decide(sampler: &mut Sampler, row: &[f32], x: u32, q: Option<&Vec<(u32, f64)>>) -> Option<u32> {
    if sampler.is_greedy() {
        let best = argmax(row);
        return (best != x).then_some(best);
    }
    let p = sampler.candidates(row);
    if p.is_empty() {
        return Some(argmax(row));
    }
    let q = q.map_or(&[][..], |d| &d[..]);
    let qx = if q.is_empty() { 1.0 } else { probability(q, x) };
    // Keep with probability min(1, p/q): u < p/q, written without the division.
    if qx > 0.0 && sampler.draw() * qx < probability(&p, x) {
        return None;
    }
    Some(pick(&residual(&p, q, x), sampler.draw()))
}

/// `max(0, p − q)` renormalised: a deterministic proposer's q (empty) is 1 on `x` alone.
/// Falls back to `p` if nothing is left (p equal to q up to rounding).
fn residual(p: &[(u32, f64)], q: &[(u32, f64)], x: u32) -> Vec<(u32, f64)> {
    // Both may hold the whole vocabulary: q by token, not a search per token of p.
    let q_by_token: HashMap<u32, f64> = if q.is_empty() {
        HashMap::from([(x, 1.0)])
    } else {
        q.iter().copied().collect()
    };
    let mut r: Vec<(u32, f64)> = p
        .iter()
        .map(|&(t, pt)| {
            (
                t,
                (pt - q_by_token.get(&t).copied().unwrap_or(0.0)).max(0.0),
            )
        })
        .filter(|c| c.1 > 0.0)
        .collect();
    let total: f64 = r.iter().map(|c| c.1).sum();
    if total <= 0.0 {
        return p.to_vec();
    }
    for c in &mut r {
        c.1 /= total;
    }
    r
}

/// The probability of `t` in a `(token, probability)` list (0 when absent).
fn probability(dist: &[(u32, f64)], t: u32) -> f64 {
    dist.iter().find(|c| c.0 == t).map_or(0.0, |c| c.1)
}

fn finish(
    sampler: &mut Sampler,
    constraint: Option<&mut Constraint>,
    row: &[f32],
    token: u32,
    accepted: Vec<Sampled>,
) -> Result<Verified> {
    let forced = match constraint {
        Some(c) => c.accept(token)?,
        None => Vec::new(),
    };
    Ok(Verified {
        accepted,
        last: sampler.sampled(row, token),
        forced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplingParams;

    const VOCAB: usize = 6;

    fn sampler(temperature: f32, seed: u64) -> Sampler {
        Sampler::new(SamplingParams {
            temperature,
            seed: Some(seed),
            ..Default::default()
        })
    }

    /// Logits whose softmax at temperature 1 is `probs`.
    fn logits_of(probs: &[f64]) -> Vec<f32> {
        probs.iter().map(|p| p.ln() as f32).collect()
    }

    #[test]
    fn greedy_keeps_the_agreeing_prefix_then_the_targets_token() {
        // Rows' argmaxes: 2, 3, 1, 4.
        let mut rows: Vec<f32> = [2usize, 3, 1, 4]
            .iter()
            .flat_map(|&best| (0..VOCAB).map(move |t| if t == best { 5.0 } else { 0.0 }))
            .collect();
        let proposal = Proposal {
            tokens: vec![2, 3, 5],
            dists: Vec::new(),
        };
        let mut history = vec![7];
        let v = verify(
            &mut sampler(0.0, 1),
            None,
            &mut history,
            &mut rows,
            VOCAB,
            &proposal,
        )
        .unwrap();
        let kept: Vec<u32> = v.accepted.iter().map(|s| s.token).collect();
        assert_eq!(kept, [2, 3]);
        assert_eq!(v.last.token, 1);
        assert_eq!(history, [7, 2, 3]);

        // All kept: the bonus token is the last row's argmax.
        let mut rows2 = rows.clone();
        let all = Proposal {
            tokens: vec![2, 3, 1],
            dists: Vec::new(),
        };
        let v = verify(
            &mut sampler(0.0, 1),
            None,
            &mut vec![],
            &mut rows2,
            VOCAB,
            &all,
        )
        .unwrap();
        assert_eq!(v.accepted.len(), 3);
        assert_eq!(v.last.token, 4);
    }

    /// Pearson's χ² of `counts` against `probs` over `n` draws.
    fn chi_square(counts: &[u64], probs: &[f64], n: u64) -> f64 {
        counts
            .iter()
            .zip(probs)
            .map(|(&c, &p)| {
                let e = p * n as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum()
    }

    /// The first output token of a verify step has the target's distribution p, whatever the
    /// proposer's q: 100 000 steps with fixed seeds, against p by Pearson's χ² with 5 degrees
    /// of freedom, whose 99.9th percentile is 20.52. Each case also checks that a proposer
    /// far from p is refused often (so the test exercises the residual draw).
    #[test]
    fn rejection_sampling_keeps_the_targets_distribution() {
        const N: u64 = 100_000;
        const CHI2_999_DF5: f64 = 20.52;
        let p = [0.05, 0.4, 0.1, 0.25, 0.15, 0.05];
        let qs: [&[f64]; 3] = [
            &[0.3, 0.1, 0.3, 0.1, 0.1, 0.1],     // a poor draft model
            &[0.05, 0.4, 0.1, 0.25, 0.15, 0.05], // a perfect one: everything kept
            &[],                                 // a deterministic proposer (always token 2)
        ];
        for (case, q) in qs.iter().enumerate() {
            let mut counts = [0u64; VOCAB];
            let mut kept = 0u64;
            let mut s = sampler(1.0, 42 + case as u64);
            let mut proposer_rng = crate::sampler::Rng::new(1000 + case as u64);
            let dist: Vec<(u32, f64)> = q.iter().enumerate().map(|(t, &v)| (t as u32, v)).collect();
            for _ in 0..N {
                let x = if q.is_empty() {
                    2
                } else {
                    pick(&dist, proposer_rng.next_f64())
                };
                let proposal = Proposal {
                    tokens: vec![x],
                    dists: if q.is_empty() {
                        vec![]
                    } else {
                        vec![dist.clone()]
                    },
                };
                let mut rows: Vec<f32> =
                    logits_of(&p).into_iter().cycle().take(2 * VOCAB).collect();
                let v = verify(&mut s, None, &mut vec![], &mut rows, VOCAB, &proposal).unwrap();
                let first = match v.accepted.first() {
                    Some(a) => {
                        kept += 1;
                        a.token
                    }
                    None => v.last.token,
                };
                counts[first as usize] += 1;
            }
            let chi2 = chi_square(&counts, &p, N);
            assert!(
                chi2 < CHI2_999_DF5,
                "case {case}: χ² {chi2:.2} ≥ {CHI2_999_DF5} (counts {counts:?})"
            );
            let kept_rate = kept as f64 / N as f64;
            // Expected keep rate Σ min(p, q): 0.5, 1.0 and p(2) = 0.1.
            let expected = [0.5, 1.0, 0.1][case];
            assert!(
                (kept_rate - expected).abs() < 0.01,
                "case {case}: kept {kept_rate:.4}, expected {expected}"
            );
        }
    }
}
