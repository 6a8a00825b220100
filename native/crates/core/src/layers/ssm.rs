//! The recurrent mixers of hybrid models, one sequence at a time, summed in ggml's order: a
//! depthwise causal convolution over a state of past inputs (LFM2's short convolutions,
//! Mamba-2's), and Mamba-2's selective scan over a state per head.

use mistralrs_common::numerics::{expf_ggml, VecDotF16Acc};

/// Depthwise causal convolution of `input` (`[n, channels]`) with `taps` (`[channels, L]`,
/// oldest input's tap first) into `out` (`[n, channels]`), the `L − 1` rows of `state`
/// (`[L − 1, channels]`, oldest first) before the first input; `state` is left holding the
/// last `L − 1` inputs. `window` is scratch. Each output sums oldest first from zero, as
/// ggml's `ssm_conv` is compiled: the taps of whole groups of four as products added in turn
/// (Mamba-2's 4), the others as fused multiply-adds (LFM2's 3); both checked bit for bit
/// against llama.cpp.
pub fn causal_conv(
    taps: (&[f32], usize),
    state: &mut [f32],
    input: &[f32],
    out: &mut [f32],
    window: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::cpu_features().fma {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe { causal_conv_fma(taps, state, input, out, window) };
        return;
    }
    causal_conv_body(taps, state, input, out, window);
}

/// `mul_add` as one instruction (a library call without FMA enabled).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn causal_conv_fma(
    taps: (&[f32], usize),
    state: &mut [f32],
    input: &[f32],
    out: &mut [f32],
    window: &mut Vec<f32>,
) {
    causal_conv_body(taps, state, input, out, window);
}

#[inline(always)]
fn causal_conv_body(
    (taps, channels): (&[f32], usize),
    state: &mut [f32],
    input: &[f32],
    out: &mut [f32],
    window: &mut Vec<f32>,
) {
    let n_taps = taps.len() / channels;
    let whole = n_taps / 4 * 4;
    let n = input.len() / channels;
    window.clear();
    window.extend_from_slice(state);
    window.extend_from_slice(input);
    for t in 0..n {
        let row = &mut out[t * channels..(t + 1) * channels];
        for (ch, o) in row.iter_mut().enumerate() {
            let tp = &taps[ch * n_taps..(ch + 1) * n_taps];
            let mut sum = 0f32;
            for (k, &w) in tp.iter().enumerate() {
                let a = window[(t + k) * channels + ch];
                sum = if k < whole {
                    sum + a * w
                } else {
                    a.mul_add(w, sum)
                };
            }
            *o = sum;
        }
    }
    state.copy_from_slice(&window[n * channels..]);
}

/// `x = silu(x)` in place, as ggml's vectorised SiLU (`x / (1 + e^−x)` with its exp
/// approximation; rows of a multiple of 8 elements, as the callers' are).
pub fn silu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v /= 1.0 + expf_ggml(-*v);
    }
}

/// Mamba-2's sizes: heads of `head_dim` channels, a state of `d_state` per channel, B and C
/// shared by the heads of each of `n_groups` groups.
#[derive(Clone, Copy, Debug)]
pub struct ScanShape {
    pub n_heads: usize,
    pub head_dim: usize,
    pub d_state: usize,
    pub n_groups: usize,
}

/// One token's inputs to the scan: `x` (`[n_heads · head_dim]`), `dt` (`[n_heads]`, biased,
/// before the softplus), `b` and `c` (`[n_groups · d_state]`).
pub struct ScanToken<'a> {
    pub x: &'a [f32],
    pub dt: &'a [f32],
    pub b: &'a [f32],
    pub c: &'a [f32],
}

/// One token of Mamba-2's selective scan: for each head `h`, `Δ = softplus(dt_h)`, and for
/// each channel `state = state · e^(Δ·A_h) + B · x · Δ`, `y = state · C`, into `y`
/// (`[n_heads · head_dim]`); `state` is `[n_heads, head_dim, d_state]`, `a` holds `A` (the
/// negative decay rates). Computed as ggml's `ssm_scan` is on AVX2 (its build contracts the
/// state update into `fma(state, e^(Δ·A), B · x · Δ)`): the dot product with C in four
/// 8-lane accumulators of fused multiply-adds over whole 32-element chunks, the tail after
/// the reduction.
pub fn mamba2_scan_token(
    shape: ScanShape,
    a: &[f32],
    token: ScanToken<'_>,
    state: &mut [f32],
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::cpu_features().fma {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe { scan_fma(shape, a, token, state, y) };
        return;
    }
    scan_body(shape, a, token, state, y);
}

/// `mul_add` as one instruction, and the 32-element chunks in vector registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn scan_fma(
    shape: ScanShape,
    a: &[f32],
    token: ScanToken<'_>,
    state: &mut [f32],
    y: &mut [f32],
) {
    scan_body(shape, a, token, state, y);
}

#[inline(always)]
fn scan_body(shape: ScanShape, a: &[f32], token: ScanToken<'_>, state: &mut [f32], y: &mut [f32]) {
    let ScanShape {
        n_heads,
        head_dim,
        d_state,
        n_groups,
    } = shape;
    let whole = d_state / 32 * 32;
    let heads_per_group = n_heads / n_groups;
    for (h, (&dt, &a)) in token.dt.iter().zip(a).enumerate().take(n_heads) {
        let delta = if dt > 20.0 { dt } else { (1.0 + dt.exp()).ln() };
        let decay = (delta * a).exp();
        let g = h / heads_per_group;
        let (b, c) = (
            &token.b[g * d_state..(g + 1) * d_state],
            &token.c[g * d_state..(g + 1) * d_state],
        );
        for i in 0..head_dim {
            let channel = h * head_dim + i;
            let x_dt = token.x[channel] * delta;
            let s = &mut state[channel * d_state..(channel + 1) * d_state];
            let mut acc = VecDotF16Acc::new();
            let lanes = acc.lanes_mut();
            let chunks = s[..whole]
                .chunks_exact_mut(32)
                .zip(b[..whole].chunks_exact(32))
                .zip(c[..whole].chunks_exact(32));
            for ((s, b), c) in chunks {
                // Fixed-size arrays: no bounds checks, so each accumulator is one vector FMA.
                let (s, b, c): (&mut [f32; 32], &[f32; 32], &[f32; 32]) =
                    match (s.try_into(), b.try_into(), c.try_into()) {
                        (Ok(s), Ok(b), Ok(c)) => (s, b, c),
                        _ => unreachable!("chunks_exact(32) yields 32 elements"),
                    };
                for (j, lane) in lanes.iter_mut().enumerate() {
                    for (l, slot) in lane.iter_mut().enumerate() {
                        let k = 8 * j + l;
                        let next = s[k].mul_add(decay, b[k] * x_dt);
                        *slot = next.mul_add(c[k], *slot);
                        s[k] = next;
                    }
                }
            }
            let mut sum = acc.sum();
            for k in whole..d_state {
                let next = s[k].mul_add(decay, b[k] * x_dt);
                sum = next.mul_add(c[k], sum);
                s[k] = next;
            }
            y[channel] = sum;
        }
    }
}
