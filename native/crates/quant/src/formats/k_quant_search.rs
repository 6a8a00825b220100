//! Scale searches behind the K-quant quantizers.
//!
//! These follow the approach of ggml's reference quantizers (`make_qkx2_quants`,
//! `make_qx_quants`, `make_q3_quants` in `ggml-quants.c`): start from the scale that maps the
//! largest value onto the end of the range, then try nearby scales (and, for the asymmetric
//! formats, refit scale and minimum by weighted least squares), keeping whichever gives the
//! smallest weighted error. The outputs are close to ggml's but not guaranteed bit-identical.

use super::q4_k::pack_scale_min_k4;
use super::q8_k::QK_K;
use super::{f16_le, f16_to_le};

/// Below this magnitude a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Nearest integer, ties to even (as ggml's `nearest_int`); saturates instead of wrapping.
#[inline(always)]
pub(crate) fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// The trial inverse scales of [`fit_scale_min`] (`(nmax + rmin + rdelta * k) / (max - min)`
/// for `k` in `0..=nstep`), and whether the error is absolute rather than squared.
#[derive(Clone, Copy)]
pub(crate) struct ScaleSearch {
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
    pub use_mad: bool,
}

/// Fits `x[i] ≈ scale * levels[i] - min` with `levels` in `0..=nmax` and `min >= 0`, minimising
/// the `weights`-weighted squared (or, with `use_mad`, absolute) error. The first guess spreads
/// `[min(x, 0), max(x)]` over the levels; then `nstep + 1` inverse scales
/// `(nmax + rmin + rdelta * k) / (max - min)` are tried, each followed by a least-squares refit of
/// scale and minimum. Returns `(scale, min)`.
pub(crate) fn fit_scale_min(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    levels: &mut [u8],
    search: ScaleSearch,
) -> (f32, f32) {
    let ScaleSearch {
        rmin,
        rdelta,
        nstep,
        use_mad,
    } = search;
    let n = x.len();
    let mut lo = x[0];
    let mut hi = x[0];
    let (mut sum_w, mut sum_x) = (0.0f32, 0.0f32);
    for (&v, &w) in x.iter().zip(weights) {
        lo = lo.min(v);
        hi = hi.max(v);
        sum_w += w;
        sum_x += w * v;
    }
    lo = lo.min(0.0);
    if hi == lo {
        levels[..n].fill(0);
        return (0.0, -lo);
    }
    let error_of = |scale: f32, min: f32, ls: &[u8]| -> f32 {
        x.iter()
            .zip(weights)
            .zip(ls)
            .map(|((&v, &w), &l)| {
                let diff = scale * l as f32 + min - v;
                w * if use_mad { diff.abs() } else { diff * diff }
            })
            .sum()
    };
    let quantize_with = |iscale: f32, min: f32, ls: &mut [u8]| {
        for (l, &v) in ls.iter_mut().zip(x) {
            *l = nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
        }
    };

    let mut min = lo;
    let mut iscale = nmax as f32 / (hi - lo);
    let mut scale = 1.0 / iscale;
    quantize_with(iscale, min, &mut levels[..n]);
    let mut best = error_of(scale, min, &levels[..n]);

    let mut trial = [0u8; 32];
    let trial = &mut trial[..n];
    for k in 0..=nstep {
        // Like ggml, later trials start from the best minimum found so far.
        iscale = (rmin + rdelta * k as f32 + nmax as f32) / (hi - min);
        quantize_with(iscale, min, trial);
        let (mut sl, mut sl2, mut sxl) = (0.0f32, 0.0f32, 0.0f32);
        for ((&l, &w), &v) in trial.iter().zip(weights).zip(x) {
            let l = l as f32;
            sl += w * l;
            sl2 += w * l * l;
            sxl += w * l * v;
        }
        let det = sum_w * sl2 - sl * sl;
        if det > 0.0 {
            let mut this_scale = (sum_w * sxl - sum_x * sl) / det;
            let mut this_min = (sl2 * sum_x - sl * sxl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sxl / sl2;
            }
            let err = error_of(this_scale, this_min, trial);
            if err < best {
                levels[..n].copy_from_slice(trial);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// The value of largest magnitude in `x`, sign kept (the first one on ties), and its magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Symmetric fit `x[i] ≈ scale * (levels[i] - nmax)` with levels in `0..2 * nmax`, weighted by
/// `x²`: the scale putting the extreme value on `-nmax` and 18 neighbours
/// `-(nmax ± 0.1k) / max`, keeping the one whose least-squares rescale explains most of `x`.
/// Returns the (possibly negative) scale; 0 for an all-zero group.
pub(crate) fn fit_symmetric(x: &[f32], nmax: i32, levels: &mut [u8]) -> f32 {
    let n = x.len();
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        levels[..n].fill(0);
        return 0.0;
    }
    let sums = |iscale: f32| -> (f32, f32) {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let fill = |iscale: f32, levels: &mut [u8]| {
        for (l, &v) in levels.iter_mut().zip(x) {
            *l = (nearest_int(iscale * v).clamp(-nmax, nmax - 1) + nmax) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    fill(iscale, &mut levels[..n]);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for k in (-9..=9).filter(|&k| k != 0) {
        let iscale = -(nmax as f32 + 0.1 * k as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(iscale, &mut levels[..n]);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric fit for 3-bit groups: levels `-nmax..nmax` (stored `+ nmax`), starting from the
/// extreme value on `-nmax`, then up to 5 sweeps moving single levels to where the `x²`-weighted
/// least-squares fit improves. Returns the scale; 0 for an all-zero group.
pub(crate) fn fit_symmetric_refined(x: &[f32], nmax: i32, levels: &mut [u8]) -> f32 {
    let n = x.len();
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        levels[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l = [0i32; 16];
    let l = &mut l[..n];
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (li, &v) in l.iter_mut().zip(x) {
        *li = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        let w = v * v;
        sumlx += w * v * *li as f32;
        suml2 += w * (*li * *li) as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (li, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let slx = sumlx - w * v * *li as f32;
            if slx > 0.0 {
                let sl2 = suml2 - w * (*li * *li) as f32;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li {
                    let slx = slx + w * v * new_l as f32;
                    let sl2 = sl2 + w * (new_l * new_l) as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (dst, &li) in levels.iter_mut().zip(l.iter()) {
        *dst = (li + nmax) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// What Q4_K and Q5_K share: per 32-element sub-block a [`fit_scale_min`] with weights
/// `rms + |x|`, the 8 scales and 8 minimums quantized to 6 bits against their maxima, then every
/// value requantized against the stored (f16-rounded) scales. Returns `(d, dmin, scales, L)`.
pub(crate) fn quantize_scale_min_block(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> ([u8; 2], [u8; 2], [u8; 12], [u8; QK_K]) {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut weights = [0.0f32; 32];
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let rms = (xs.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = rms + v.abs();
        }
        let ls = &mut levels[32 * j..32 * j + 32];
        (scales[j], mins[j]) = fit_scale_min(
            xs,
            &weights,
            nmax,
            ls,
            ScaleSearch {
                rmin,
                rdelta: 0.1,
                nstep,
                use_mad: false,
            },
        );
    }
    let max_scale = scales
        .iter()
        .fold(0.0f32, |m, &s| if s > m { s } else { m });
    let max_min = mins.iter().fold(0.0f32, |m, &s| if s > m { s } else { m });
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        ls[j] = nearest_int(inv_scale * scales[j]).clamp(0, 63) as u8;
        lm[j] = nearest_int(inv_min * mins[j]).clamp(0, 63) as u8;
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = f16_to_le(max_scale / 63.0);
    let dmin = f16_to_le(max_min / 63.0);
    let (df, dminf) = (f16_le(d), f16_le(dmin));
    for j in 0..8 {
        let step = df * ls[j] as f32;
        if step == 0.0 {
            continue;
        }
        let offset = dminf * lm[j] as f32;
        for (l, &v) in levels[32 * j..32 * j + 32]
            .iter_mut()
            .zip(&x[32 * j..32 * j + 32])
        {
            *l = nearest_int((v + offset) / step).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, levels)
}
