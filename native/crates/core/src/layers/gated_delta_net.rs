//! The gated delta rule (Qwen 3 Next's linear attention), one token of one sequence at a time,
//! summed in the order of ggml's fused `gated_delta_net` on AVX2 (llama.cpp runs it for prompts
//! and single tokens alike, so one sequential kernel matches both).
//!
//! Each value head keeps a state `S` (`[k_dim, v_dim]`), stored transposed (`M[j][i] = S[i][j]`,
//! one row per value dimension) so that every product below runs over contiguous rows. Per
//! token: `S ← e^g · S`; `d = β · (v − Sᵀk)`; `S ← S + k dᵀ`; `o = Sᵀq / √k_dim`.

use mistralrs_common::numerics::VecDotF16Acc;

/// The heads: `n_k_heads` query/key heads of `k_dim`, `n_v_heads` value heads of `v_dim`;
/// value head `h` reads key head `h / (n_v_heads / n_k_heads)` (the checkpoint groups the
/// value heads of each key head together).
#[derive(Clone, Copy, Debug)]
pub struct DeltaShape {
    pub n_k_heads: usize,
    pub n_v_heads: usize,
    pub k_dim: usize,
    pub v_dim: usize,
}

impl DeltaShape {
    /// Floats of state per layer.
    pub fn state_len(&self) -> usize {
        self.n_v_heads * self.v_dim * self.k_dim
    }
}

/// One token's inputs: `q` and `k` (`[n_k_heads · k_dim]`, L2-normed), `v`
/// (`[n_v_heads · v_dim]`), and per value head the log-decay `g` (≤ 0) and the step `beta`.
pub struct DeltaToken<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub g: &'a [f32],
    pub beta: &'a [f32],
}

/// Runs one token through every head: `state` (`[n_v_heads, v_dim, k_dim]`) is updated in
/// place, the output (`[n_v_heads · v_dim]`) written to `out`; `delta` is scratch.
pub fn gated_delta_token(
    shape: DeltaShape,
    token: DeltaToken<'_>,
    state: &mut [f32],
    out: &mut [f32],
    delta: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::cpu_features().fma {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe { delta_fma(shape, token, state, out, delta) };
        return;
    }
    delta_body(shape, token, state, out, delta);
}

/// `mul_add` as one instruction, and the 32-element chunks in vector registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn delta_fma(
    shape: DeltaShape,
    token: DeltaToken<'_>,
    state: &mut [f32],
    out: &mut [f32],
    delta: &mut Vec<f32>,
) {
    delta_body(shape, token, state, out, delta);
}

#[inline(always)]
fn delta_body(
    shape: DeltaShape,
    token: DeltaToken<'_>,
    state: &mut [f32],
    out: &mut [f32],
    delta: &mut Vec<f32>,
) {
    let DeltaShape {
        n_k_heads,
        n_v_heads,
        k_dim,
        v_dim,
    } = shape;
    let per_key = n_v_heads / n_k_heads;
    let scale = 1.0 / (k_dim as f32).sqrt();
    delta.resize(v_dim, 0.0);
    for h in 0..n_v_heads {
        let kh = h / per_key;
        let (q, k) = (
            &token.q[kh * k_dim..(kh + 1) * k_dim],
            &token.k[kh * k_dim..(kh + 1) * k_dim],
        );
        let v = &token.v[h * v_dim..(h + 1) * v_dim];
        let beta = token.beta[h];
        let m = &mut state[h * v_dim * k_dim..(h + 1) * v_dim * k_dim];
        let decay = token.g[h].exp();
        m.iter_mut().for_each(|s| *s *= decay);
        for ((d, row), &vj) in delta.iter_mut().zip(m.chunks_exact(k_dim)).zip(v) {
            *d = (vj - dot(row, k)) * beta;
        }
        for (row, &d) in m.chunks_exact_mut(k_dim).zip(delta.iter()) {
            for (s, &ki) in row.iter_mut().zip(k) {
                *s = ki.mul_add(d, *s);
            }
        }
        let o = &mut out[h * v_dim..(h + 1) * v_dim];
        for (oj, row) in o.iter_mut().zip(m.chunks_exact(k_dim)) {
            *oj = dot(row, q) * scale;
        }
    }
}

/// `ggml_vec_dot_f32` on AVX2: four 8-lane accumulators of fused multiply-adds over whole
/// 32-element chunks, reduced, then the tail added one product at a time.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let whole = a.len() / 32 * 32;
    let mut acc = VecDotF16Acc::new();
    let lanes = acc.lanes_mut();
    for (ca, cb) in a[..whole].chunks_exact(32).zip(b[..whole].chunks_exact(32)) {
        // Fixed-size arrays: no bounds checks, so each accumulator is one vector FMA.
        let (ca, cb): (&[f32; 32], &[f32; 32]) = match (ca.try_into(), cb.try_into()) {
            (Ok(x), Ok(y)) => (x, y),
            _ => unreachable!("chunks_exact(32) yields 32 elements"),
        };
        for (j, lane) in lanes.iter_mut().enumerate() {
            for (l, slot) in lane.iter_mut().enumerate() {
                *slot = ca[8 * j + l].mul_add(cb[8 * j + l], *slot);
            }
        }
    }
    let mut sum = acc.sum();
    for (&x, &y) in a[whole..].iter().zip(&b[whole..]) {
        sum = x.mul_add(y, sum);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule in f64 from its definition (state not transposed).
    fn reference(shape: DeltaShape, tokens: &[DeltaToken<'_>]) -> Vec<Vec<f64>> {
        let DeltaShape {
            n_k_heads,
            n_v_heads,
            k_dim,
            v_dim,
        } = shape;
        let mut s = vec![vec![0f64; k_dim * v_dim]; n_v_heads];
        let mut outs = Vec::new();
        for t in tokens {
            let mut o = vec![0f64; n_v_heads * v_dim];
            for (h, s) in s.iter_mut().enumerate() {
                let kh = h / (n_v_heads / n_k_heads);
                let k = |i: usize| f64::from(t.k[kh * k_dim + i]);
                let q = |i: usize| f64::from(t.q[kh * k_dim + i]);
                let decay = f64::from(t.g[h]).exp();
                s.iter_mut().for_each(|x| *x *= decay);
                for j in 0..v_dim {
                    let sk: f64 = (0..k_dim).map(|i| s[i * v_dim + j] * k(i)).sum();
                    let d = f64::from(t.beta[h]) * (f64::from(t.v[h * v_dim + j]) - sk);
                    for i in 0..k_dim {
                        s[i * v_dim + j] += k(i) * d;
                    }
                }
                for j in 0..v_dim {
                    let sq: f64 = (0..k_dim).map(|i| s[i * v_dim + j] * q(i)).sum();
                    o[h * v_dim + j] = sq / (k_dim as f64).sqrt();
                }
            }
            outs.push(o);
        }
        outs
    }

    #[test]
    fn follows_the_rule_over_several_tokens_with_grouped_value_heads() {
        let shape = DeltaShape {
            n_k_heads: 2,
            n_v_heads: 4,
            k_dim: 40, // a whole chunk and a tail
            v_dim: 24,
        };
        let wave = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
        };
        let unit = |mut x: Vec<f32>| {
            for head in x.chunks_exact_mut(shape.k_dim) {
                let norm = head.iter().map(|v| v * v).sum::<f32>().sqrt();
                head.iter_mut().for_each(|v| *v /= norm);
            }
            x
        };
        let inputs: Vec<[Vec<f32>; 5]> = (0..5)
            .map(|t| {
                let t = t as f32;
                [
                    unit(wave(2 * 40, t)),
                    unit(wave(2 * 40, t + 7.0)),
                    wave(4 * 24, t + 3.0),
                    wave(4, t).iter().map(|v| -0.5 - 0.4 * v).collect(),
                    wave(4, t + 1.0).iter().map(|v| 0.5 + 0.4 * v).collect(),
                ]
            })
            .collect();
        let tokens: Vec<DeltaToken<'_>> = inputs
            .iter()
            .map(|[q, k, v, g, beta]| DeltaToken { q, k, v, g, beta })
            .collect();
        let want = reference(shape, &tokens);
        let mut state = vec![0f32; shape.state_len()];
        let (mut out, mut delta) = (vec![0f32; 4 * 24], Vec::new());
        for (t, token) in tokens.into_iter().enumerate() {
            gated_delta_token(shape, token, &mut state, &mut out, &mut delta);
            for (got, want) in out.iter().zip(&want[t]) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-5,
                    "token {t}: {got} vs {want}"
                );
            }
        }
    }
}
