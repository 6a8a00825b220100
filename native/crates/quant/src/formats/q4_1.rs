//! Q4_1: 32 values per block as unsigned 4-bit quants with an f16 scale and an f16 offset,
//! `x = d·q + m`. Pairs with Q8_1 activations, whose `s = d_y·Σq_y` turns the offset's share
//! of a block dot, `m·Σy`, into one product `m·s`.

use mistralrs_common::Isa;

use super::q8_1::BlockQ8_1;
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

pub const QK4_1: usize = 32;

/// `d`, `m` (f16), then 16 bytes of nibbles: byte j holds element j in its low nibble and
/// element j + 16 in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q4_1,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_1,
    vec_dot,
};

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ4_1] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK4_1)) {
        let (d, m) = (f16_le(b.d), f16_le(b.m));
        let (lo, hi) = out.split_at_mut(QK4_1 / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b.qs) {
            *l = (q & 0x0F) as f32 * d + m;
            *h = (q >> 4) as f32 * d + m;
        }
    }
}

/// ggml's `quantize_row_q4_1_ref`: `m = min`, `d = (max - min) / 15`, `q = round-half-up((x -
/// min) / d)` (at most 15).
fn quantize(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK4_1]] = bytemuck::cast_slice(src);
    for (x, b) in rows.iter().zip(as_blocks_mut::<BlockQ4_1>(dst)) {
        // NaN compares false and is skipped, as in ggml.
        let min = x.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
        let max = x.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        (b.d, b.m) = (f16_to_le(d), f16_to_le(min));
        // (x - min)·id + 0.5 ≥ 0.5, so truncation (C's (int8_t) cast) rounds half up.
        let q = |v: f32| (((v - min) * id + 0.5) as i8).clamp(0, 15) as u8;
        for (j, byte) in b.qs.iter_mut().enumerate() {
            *byte = q(x[j]) | q(x[j + 16]) << 4;
        }
    }
}

/// Consecutive weight rows against one activation row (decode steps), one call for the
/// run: bit-identical to one `vec_dot` per row.
pub fn vec_dot_rows(isa: Isa, n: usize, weights: &[u8], activation: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let simd: Option<super::VecDotRowsSimd<BlockQ4_1, BlockQ8_1>> = Some(simd::vec_dot_rows_avx2);
    #[cfg(not(target_arch = "x86_64"))]
    let simd: Option<super::VecDotRowsSimd<BlockQ4_1, BlockQ8_1>> = None;
    super::vec_dot_rows_with(isa, n, weights, activation, out, &TRAITS, simd)
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let nb = n / QK4_1;
    assert!(
        n.is_multiple_of(QK4_1) && weights.len() == nb * 20 && activation.len() == nb * 36,
        "q4_1 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ4_1], &[BlockQ8_1]) = (as_blocks(weights), as_blocks(activation));
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

/// The reference, per block: `d_x·d_y·Σ q_x·q_y + m_x·s_y` with the sum exact in i32.
fn vec_dot_scalar(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let (ylo, yhi) = y.qs.split_at(QK4_1 / 2);
        let mut sumi = 0i32;
        for ((&q, &l), &h) in x.qs.iter().zip(ylo).zip(yhi) {
            sumi += (q & 0x0F) as i32 * l as i32 + (q >> 4) as i32 * h as i32;
        }
        sum += f16_le(x.d) * f16_le(y.d) * sumi as f32 + f16_le(x.m) * f16_le(y.s);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::q8_0::x86::*;
    use super::{BlockQ4_1, BlockQ8_1};
    use std::arch::x86_64::*;

    macro_rules! tier {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            pub(super) fn $name(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
                #[inline]
                #[target_feature(enable = $features)]
                fn step(x: &BlockQ4_1, y: &BlockQ8_1, acc: __m256) -> __m256 {
                    // Nibbles are already unsigned: no sign trick, any activation byte works.
                    let p = $dot(unpack_nibbles(&x.qs), load_i8(&y.qs));
                    let d = _mm256_set1_ps(f16_to_f32(x.d) * f16_to_f32(y.d));
                    _mm256_fmadd_ps(p, d, acc)
                }
                /// The offset's share of the block dot: m·Σy = m·s_y.
                #[inline]
                #[target_feature(enable = $features)]
                fn min_term(x: &BlockQ4_1, y: &BlockQ8_1) -> f32 {
                    f16_to_f32(x.m) * f16_to_f32(y.s)
                }
                sum_blocks!(w, a, step, min_term)
            }
        };
    }
    tier!(vec_dot_avx2, "avx2,fma,f16c", dot_u8_avx2);
    rows_kernel!(vec_dot_rows_avx2, vec_dot_avx2, BlockQ4_1, BlockQ8_1);

    tier!(
        vec_dot_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        dot_u8_vnni
    );
}

#[cfg(test)]
mod tests {
    use super::super::q8_0::test_support::*;
    use super::super::q8_1::test_support::check_offset_dot;
    use super::super::q8_1::TRAITS as Q8_1;
    use super::super::testing::Rng;
    use super::*;

    const LAYOUT: Layout = Layout {
        type_size: 20,
        f16_at: &[0, 2],
        no_min_i8_at: None,
    };
    const ACT: Layout = Layout {
        type_size: 36,
        f16_at: &[0, 2],
        no_min_i8_at: None,
    };

    /// (d, m, quants) of each block, for the tolerance of [`check_offset_dot`].
    fn parts(w: &[u8]) -> Vec<(f32, f32, [i32; 32])> {
        let blocks: &[BlockQ4_1] = as_blocks(w);
        let q = |b: &BlockQ4_1, i: usize| {
            (if i < 16 {
                b.qs[i] & 0x0F
            } else {
                b.qs[i - 16] >> 4
            }) as i32
        };
        blocks
            .iter()
            .map(|b| (f16_le(b.d), f16_le(b.m), std::array::from_fn(|i| q(b, i))))
            .collect()
    }

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockQ4_1>(), GgmlType::Q4_1.type_size());
        assert_eq!(QK4_1, GgmlType::Q4_1.block_size());
    }

    #[test]
    fn dequantize_hand_built_block() {
        let b = BlockQ4_1 {
            d: f16_to_le(0.5),
            m: f16_to_le(-2.0),
            qs: std::array::from_fn(|j| (j | (15 - j) << 4) as u8),
        };
        let out = dequant(&TRAITS, bytemuck::bytes_of(&b), 32);
        for j in 0..16 {
            assert_eq!(out[j], j as f32 * 0.5 - 2.0);
            assert_eq!(out[j + 16], (15 - j) as f32 * 0.5 - 2.0);
        }
        assert_eq!((out[0], out[15], out[16]), (-2.0, 5.5, 5.5));
    }

    #[test]
    fn vec_dot_tiers_agree_with_scalar_and_dequantized_dot() {
        let mut rng = Rng::new(42);
        for n in LENGTHS {
            let w = random_row(&mut rng, &LAYOUT, n / 32, 2.0);
            let a = random_row(&mut rng, &ACT, n / 32, 2.0);
            check_offset_dot("random", &TRAITS, n, &w, &a, &parts(&w));
            let mut a = vec![0u8; n / 32 * 36];
            (Q8_1.quantize.expect("Q8_1 quantizes"))(&rng.f32_vec(n, 3.0), &mut a);
            check_offset_dot("quantized activation", &TRAITS, n, &w, &a, &parts(&w));
        }
        for salt in 0..4 {
            let (w, a) = (edge_row(&LAYOUT, salt), edge_row(&ACT, salt + 1));
            check_offset_dot("edge", &TRAITS, w.len() / 20 * 32, &w, &a, &parts(&w));
        }
    }

    /// t = (x - min)/d ∈ [0, 15] and q = round-half-up(t) ≤ 15, so |x - (min + q·d)| ≤ d/2;
    /// storing d and m as f16 adds q·|d - d16| ≤ 15·|d - d16| and |min - m16|:
    /// |x - y| ≤ d/2 + 15·|d - d16| + |min - m16| + a few ulps of max |x|.
    fn check_round_trip(what: &str, x: &[f32]) {
        let mut q = vec![0u8; x.len() / 32 * 20];
        quantize(x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let min = xb.iter().fold(f32::MAX, |m, &v| m.min(v));
            let max = xb.iter().fold(-f32::MAX, |m, &v| m.max(v));
            let d = (max - min) / 15.0;
            let (d16, m16) = (f16_le(f16_to_le(d)), f16_le(f16_to_le(min)));
            let amax = min.abs().max(max.abs());
            let bound = d / 2.0 + 15.0 * (d - d16).abs() + (min - m16).abs() + 1e-6 * amax;
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= bound, "{what}: {a} -> {b} (bound {bound})");
            }
        }
    }

    #[test]
    fn quantize_round_trip_within_bound() {
        let mut rng = Rng::new(43);
        check_round_trip("random", &rng.f32_vec(4096, 5.0));
        let shifted: Vec<f32> = rng.f32_vec(1024, 1.0).iter().map(|v| v + 3.0).collect();
        check_round_trip("shifted", &shifted);
        // A constant row has d = 0: every value becomes m16, exact when it is an f16.
        check_round_trip("constant", &[0.3; 64]);
        let mut q = vec![0u8; 40];
        quantize(&[-1.25; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == -1.25));
        let mut spike = vec![0.0f32; 64];
        spike[33] = 7.5;
        check_round_trip("spike", &spike);
        quantize(&spike, &mut q);
        let y = dequant(&TRAITS, &q, 64);
        assert!(y
            .iter()
            .enumerate()
            .all(|(i, &v)| if i == 33 { v == 7.5 } else { v == 0.0 }));
        quantize(&[0.0; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == 0.0));
    }
}
