//! Q8_1: Q8_0 plus `s = d·Σq`, so that a dot with an offset format (Q4_1, Q5_1: `x = d·q + m`)
//! gets its `m·Σy` term from one stored number instead of a second pass over the quants.
//!
//! Q8_1 is the activation format of Q4_1 and Q5_1; its quantization is Q8_0's (same bytes
//! for `d` and `qs`, AVX2 path included) plus the sum.

use mistralrs_common::Isa;

use super::q8_0::quantize_block_scalar;
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

pub const QK8_1: usize = 32;

/// `d` (f16), `s = d·Σqs` (f16, computed from the unrounded `d`), then 32 signed quants.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_1 {
    pub d: [u8; 2],
    pub s: [u8; 2],
    pub qs: [i8; QK8_1],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q8_1,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_1,
    vec_dot,
};

/// `s` plays no part: it is a by-product for dot products.
fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ8_1] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK8_1)) {
        let d = f16_le(b.d);
        for (o, &q) in out.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// ggml's `quantize_row_q8_1_ref`: Q8_0's block, then `s = f16(d·Σq)`.
/// Activation rows by ggml's run-time rule (see `q8_0::quantize_activation`); `s = d·Σq`
/// with the unrounded `d`, as ggml stores it.
pub fn quantize_activation(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK8_1]] = bytemuck::cast_slice(src);
    let blocks: &mut [BlockQ8_1] = as_blocks_mut(dst);
    for (x, b) in rows.iter().zip(blocks.iter_mut()) {
        let (d, sum) = super::q8_0::quantize_block_runtime(x, &mut b.qs);
        b.d = f16_to_le(d);
        b.s = f16_to_le(d * sum as f32);
    }
}

fn quantize(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK8_1]] = bytemuck::cast_slice(src);
    let blocks: &mut [BlockQ8_1] = as_blocks_mut(dst);
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::selected_isa() >= Isa::Avx2 {
        for (x, b) in rows.iter().zip(blocks.iter_mut()) {
            // SAFETY: selected_isa never exceeds what this CPU supports, so AVX2, FMA and
            // F16C are present.
            let (d, sum) = unsafe { super::q8_0::x86::quantize_block_avx2(x, &mut b.qs) };
            (b.d, b.s) = (f16_to_le(d), f16_to_le(sum as f32 * d));
        }
        return;
    }
    for (x, b) in rows.iter().zip(blocks.iter_mut()) {
        let (d, sum) = quantize_block_scalar(x, &mut b.qs);
        (b.d, b.s) = (f16_to_le(d), f16_to_le(sum as f32 * d));
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let nb = n / QK8_1;
    assert!(
        n.is_multiple_of(QK8_1) && weights.len() == nb * 36 && activation.len() == nb * 36,
        "q8_1 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ8_1], &[BlockQ8_1]) = (as_blocks(weights), as_blocks(activation));
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns tiers whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { simd::vec_dot_vnni(w, a) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::vec_dot_avx2(w, a) },
        _ => vec_dot_scalar(w, a),
    }
}

/// The reference: exact i32 sum per block, then one float scale per block. Neither `s`
/// is needed when both sides are Q8_1.
fn vec_dot_scalar(w: &[BlockQ8_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let sumi: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
        sum += sumi as f32 * f16_le(x.d) * f16_le(y.d);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::q8_0::x86::*;
    use super::BlockQ8_1;
    use std::arch::x86_64::*;

    macro_rules! tier {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            pub(super) fn $name(w: &[BlockQ8_1], a: &[BlockQ8_1]) -> f32 {
                #[inline]
                #[target_feature(enable = $features)]
                fn step(x: &BlockQ8_1, y: &BlockQ8_1, acc: __m256) -> __m256 {
                    // The weights carry the sign, as in Q8_0 × Q8_0.
                    let p = $dot(load_i8(&x.qs), load_i8(&y.qs));
                    let d = _mm256_set1_ps(f16_to_f32(x.d) * f16_to_f32(y.d));
                    _mm256_fmadd_ps(p, d, acc)
                }
                sum_blocks!(w, a, step)
            }
        };
    }
    tier!(vec_dot_avx2, "avx2,fma,f16c", dot_i8_avx2);
    tier!(
        vec_dot_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        dot_i8_vnni
    );
}

/// Helper shared by the tests of the offset formats (Q4_1, Q5_1), whose activations are Q8_1.
#[cfg(test)]
pub(crate) mod test_support {
    use super::super::q8_0::test_support::{
        assert_tiers_match, dequant, dot_and_abs, rounding_tol,
    };
    use super::super::testing::{assert_close, tiers};
    use super::super::{as_blocks, f16_le, TypeTraits};
    use super::{BlockQ8_1, TRAITS as Q8_1};

    /// For `x = d·q + m` weights (Q4_1, Q5_1) against Q8_1; `parts` gives each weight block's
    /// (d, m, quants). A block's terms are `d·d_y·q·q_y` and `m·s_y`, so
    /// cond = Σ |d·d_y|·Σ|q·q_y| + |m·s_y| sets the tier tolerance. Against the f64 dot of the
    /// dequantized rows two more things differ: `d·q + m` is rounded to f32 when dequantized
    /// (≤ 2⁻²⁴ of each |w·a|), and the dot uses `s_y` where dequantized values give
    /// `d_y·Σq_y` (Q8_1 stores s from the unrounded d, then rounds it to f16), which moves
    /// the result by Σ |m|·|s_y - d_y·Σq_y|: the format's own approximation, added as is.
    pub fn check_offset_dot(
        what: &str,
        wt: &TypeTraits,
        n: usize,
        w: &[u8],
        a: &[u8],
        parts: &[(f32, f32, [i32; 32])],
    ) {
        let blocks: &[BlockQ8_1] = as_blocks(a);
        let (mut cond, mut s_error) = (0.0f64, 0.0f64);
        for ((d, m, q), y) in parts.iter().zip(blocks) {
            let (dy, sy) = (f16_le(y.d) as f64, f16_le(y.s) as f64);
            let abs_qq: f64 = q
                .iter()
                .zip(&y.qs)
                .map(|(&p, &v)| (p as f64 * v as f64).abs())
                .sum();
            cond += (*d as f64 * dy).abs() * abs_qq + (*m as f64 * sy).abs();
            let sum_q: f64 = y.qs.iter().map(|&v| v as f64).sum();
            s_error += (*m as f64).abs() * (sy - dy * sum_q).abs();
        }
        assert_tiers_match(what, wt, n, w, a, cond);
        let (exact, abs) = dot_and_abs(&dequant(wt, w, n), &dequant(&Q8_1, a, n));
        let tol = rounding_tol(n / 32 + 16, cond + abs) + s_error as f32;
        for isa in tiers() {
            let got = (wt.vec_dot)(isa, n, w, a);
            assert_close(
                &format!("{what} {isa} n={n} vs f64"),
                got,
                exact as f32,
                tol,
                0.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::q8_0::test_support::*;
    use super::super::testing::Rng;
    use super::*;

    /// Weights may hold -128 (they carry the sign in the SIMD dot); activations may not.
    const LAYOUT: Layout = Layout {
        type_size: 36,
        f16_at: &[0, 2],
        no_min_i8_at: None,
    };
    const ACT: Layout = Layout {
        type_size: 36,
        f16_at: &[0, 2],
        no_min_i8_at: Some(4),
    };

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockQ8_1>(), GgmlType::Q8_1.type_size());
        assert_eq!(QK8_1, GgmlType::Q8_1.block_size());
    }

    #[test]
    fn dequantize_hand_built_block_ignores_s() {
        let mut b = BlockQ8_1 {
            d: f16_to_le(-2.0),
            s: f16_to_le(1000.0),
            qs: [1; 32],
        };
        b.qs[5] = -127;
        b.qs[6] = -128;
        let out = dequant(&TRAITS, bytemuck::bytes_of(&b), 32);
        assert_eq!(out[0], -2.0);
        assert_eq!((out[5], out[6]), (254.0, 256.0));
        assert_eq!(out.iter().sum::<f32>(), -2.0 * 30.0 + 510.0);
    }

    fn check_dot(what: &str, n: usize, w: &[u8], a: &[u8]) {
        check_exact_dot(what, &TRAITS, &TRAITS, n, w, a);
    }

    #[test]
    fn vec_dot_tiers_agree_with_scalar_and_dequantized_dot() {
        let mut rng = Rng::new(90);
        for n in LENGTHS {
            let w = random_row(&mut rng, &LAYOUT, n / 32, 2.0);
            let a = random_row(&mut rng, &ACT, n / 32, 2.0);
            check_dot("random", n, &w, &a);
            let mut a = vec![0u8; n / 32 * 36];
            quantize(&rng.f32_vec(n, 3.0), &mut a);
            check_dot("quantized activation", n, &w, &a);
        }
        for salt in 0..4 {
            let (w, a) = (edge_row(&LAYOUT, salt), edge_row(&ACT, salt + 3));
            check_dot("edge", w.len() / 36 * 32, &w, &a);
        }
    }

    /// The quants and `d` are Q8_0's, so Q8_0's bound holds: |x - y| ≤ d/2 + 127·|d - d16|
    /// (+ a few ulps of amax); and `s` must be exactly f16(d·Σq) with the unrounded d.
    fn check_round_trip(what: &str, x: &[f32]) {
        let mut q = vec![0u8; x.len() / 32 * 36];
        quantize(x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        let blocks: &[BlockQ8_1] = as_blocks(&q);
        for ((xb, yb), b) in x.chunks(32).zip(y.chunks(32)).zip(blocks) {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let d16 = f16_le(f16_to_le(d));
            let bound = d / 2.0 + 127.0 * (d - d16).abs() + 4.0 * f32::EPSILON * amax;
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= bound, "{what}: {a} -> {b} (bound {bound})");
            }
            let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
            assert_eq!(b.s, f16_to_le(sum as f32 * d), "{what}: s");
        }
    }

    #[test]
    fn quantize_round_trip_within_bound() {
        let mut rng = Rng::new(91);
        check_round_trip("random", &rng.f32_vec(4096, 5.0));
        check_round_trip("constant", &[-0.3; 64]);
        let mut spike = vec![0.0f32; 64];
        spike[3] = 11.0;
        check_round_trip("spike", &spike);
        let mut q = vec![0u8; 72];
        quantize(&[0.0; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == 0.0));
        assert!(as_blocks::<BlockQ8_1>(&q)
            .iter()
            .all(|b| f16_le(b.s) == 0.0));
    }

    /// The dispatched quantize (AVX2 here when available) writes Q8_0's bytes plus `s`.
    #[test]
    fn quantize_matches_the_scalar_block() {
        let mut rng = Rng::new(92);
        let x = rng.f32_vec(32 * 64, 4.0);
        let mut q = vec![0u8; 64 * 36];
        quantize(&x, &mut q);
        let rows: &[[f32; 32]] = bytemuck::cast_slice(&x);
        for (row, b) in rows.iter().zip(as_blocks::<BlockQ8_1>(&q)) {
            let mut qs = [0i8; 32];
            let (d, sum) = quantize_block_scalar(row, &mut qs);
            assert_eq!(
                (b.d, b.s, b.qs),
                (f16_to_le(d), f16_to_le(sum as f32 * d), qs)
            );
        }
    }
}
