//! Q5_1: 32 values per block as unsigned 5-bit quants with an f16 scale and an f16 offset,
//! `x = d·q + m`. Low four bits packed as in Q4_1, fifth bits in `qh` as in Q5_0. Pairs with
//! Q8_1 activations (the offset's share of a block dot is `m·s_y`).

use mistralrs_common::Isa;

use super::q8_1::BlockQ8_1;
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

pub const QK5_1: usize = 32;

/// `d`, `m` (f16); `qh`, a little-endian u32 whose bit j is the fifth bit of element j; then
/// 16 bytes of low nibbles (byte j: element j low, element j + 16 high).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q5_1,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_1,
    vec_dot,
};

/// The 32 quants of a block (0..=31) in element order.
#[inline]
fn quants(b: &BlockQ5_1) -> [i32; QK5_1] {
    let qh = u32::from_le_bytes(b.qh);
    std::array::from_fn(|i| {
        let nibble = if i < 16 {
            b.qs[i] & 0x0F
        } else {
            b.qs[i - 16] >> 4
        };
        (nibble as u32 | ((qh >> i) & 1) << 4) as i32
    })
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ5_1] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK5_1)) {
        let (d, m) = (f16_le(b.d), f16_le(b.m));
        for (o, q) in out.iter_mut().zip(quants(b)) {
            *o = q as f32 * d + m;
        }
    }
}

/// ggml's `quantize_row_q5_1_ref`: `m = min`, `d = (max - min) / 31`, `q = round-half-up((x -
/// min) / d)` (at most 31).
fn quantize(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK5_1]] = bytemuck::cast_slice(src);
    for (x, b) in rows.iter().zip(as_blocks_mut::<BlockQ5_1>(dst)) {
        // NaN compares false and is skipped, as in ggml.
        let min = x.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
        let max = x.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        (b.d, b.m) = (f16_to_le(d), f16_to_le(min));
        // (x - min)·id + 0.5 ≥ 0.5, so truncation (C's (int8_t) cast) rounds half up.
        let q = |v: f32| (((v - min) * id + 0.5) as i8).clamp(0, 31) as u32;
        let mut qh = 0u32;
        for (j, byte) in b.qs.iter_mut().enumerate() {
            let (lo, hi) = (q(x[j]), q(x[j + 16]));
            *byte = ((lo & 0x0F) | (hi & 0x0F) << 4) as u8;
            qh |= (lo >> 4) << j | (hi >> 4) << (j + 16);
        }
        b.qh = qh.to_le_bytes();
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let nb = n / QK5_1;
    assert!(
        n.is_multiple_of(QK5_1) && weights.len() == nb * 24 && activation.len() == nb * 36,
        "q5_1 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ5_1], &[BlockQ8_1]) = (as_blocks(weights), as_blocks(activation));
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
fn vec_dot_scalar(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let sumi: i32 = quants(x)
            .iter()
            .zip(&y.qs)
            .map(|(&q, &v)| q * v as i32)
            .sum();
        sum += f16_le(x.d) * f16_le(y.d) * sumi as f32 + f16_le(x.m) * f16_le(y.s);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::q8_0::x86::*;
    use super::{BlockQ5_1, BlockQ8_1};
    use std::arch::x86_64::*;

    macro_rules! tier {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            pub(super) fn $name(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
                #[inline]
                #[target_feature(enable = $features)]
                fn step(x: &BlockQ5_1, y: &BlockQ8_1, acc: __m256) -> __m256 {
                    let fifth = _mm256_and_si256(
                        expand_bits(u32::from_le_bytes(x.qh)),
                        _mm256_set1_epi8(0x10),
                    );
                    // Quants 0..=31 are unsigned: no sign trick, and a pair of products is
                    // at most 2·31·128, far from i16 saturation.
                    let q = _mm256_or_si256(unpack_nibbles(&x.qs), fifth);
                    let p = $dot(q, load_i8(&y.qs));
                    let d = _mm256_set1_ps(f16_to_f32(x.d) * f16_to_f32(y.d));
                    _mm256_fmadd_ps(p, d, acc)
                }
                /// The offset's share of the block dot: m·Σy = m·s_y.
                #[inline]
                #[target_feature(enable = $features)]
                fn min_term(x: &BlockQ5_1, y: &BlockQ8_1) -> f32 {
                    f16_to_f32(x.m) * f16_to_f32(y.s)
                }
                sum_blocks!(w, a, step, min_term)
            }
        };
    }
    tier!(vec_dot_avx2, "avx2,fma,f16c", dot_u8_avx2);
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
        type_size: 24,
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
        let blocks: &[BlockQ5_1] = as_blocks(w);
        blocks
            .iter()
            .map(|b| (f16_le(b.d), f16_le(b.m), quants(b)))
            .collect()
    }

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockQ5_1>(), GgmlType::Q5_1.type_size());
        assert_eq!(QK5_1, GgmlType::Q5_1.block_size());
    }

    #[test]
    fn dequantize_hand_built_block() {
        // Low nibbles j / 15 - j; fifth bits set for elements 0, 15 and 16.
        let qh: u32 = 1 | 1 << 15 | 1 << 16;
        let b = BlockQ5_1 {
            d: f16_to_le(2.0),
            m: f16_to_le(-31.0),
            qh: qh.to_le_bytes(),
            qs: std::array::from_fn(|j| (j | (15 - j) << 4) as u8),
        };
        let out = dequant(&TRAITS, bytemuck::bytes_of(&b), 32);
        assert_eq!(out[0], 16.0 * 2.0 - 31.0);
        assert_eq!(out[1], 1.0 * 2.0 - 31.0);
        assert_eq!(out[15], 31.0 * 2.0 - 31.0);
        assert_eq!(out[16], 31.0 * 2.0 - 31.0);
        assert_eq!(out[17], 14.0 * 2.0 - 31.0);
        assert_eq!(out[31], -31.0);
    }

    #[test]
    fn vec_dot_tiers_agree_with_scalar_and_dequantized_dot() {
        let mut rng = Rng::new(52);
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
            check_offset_dot("edge", &TRAITS, w.len() / 24 * 32, &w, &a, &parts(&w));
        }
    }

    /// As Q4_1's bound with 31 steps: |x - y| ≤ d/2 + 31·|d - d16| + |min - m16| + a few ulps
    /// of max |x|, with d = (max - min)/31.
    fn check_round_trip(what: &str, x: &[f32]) {
        let mut q = vec![0u8; x.len() / 32 * 24];
        quantize(x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let min = xb.iter().fold(f32::MAX, |m, &v| m.min(v));
            let max = xb.iter().fold(-f32::MAX, |m, &v| m.max(v));
            let d = (max - min) / 31.0;
            let (d16, m16) = (f16_le(f16_to_le(d)), f16_le(f16_to_le(min)));
            let amax = min.abs().max(max.abs());
            let bound = d / 2.0 + 31.0 * (d - d16).abs() + (min - m16).abs() + 1e-6 * amax;
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= bound, "{what}: {a} -> {b} (bound {bound})");
            }
        }
    }

    #[test]
    fn quantize_round_trip_within_bound() {
        let mut rng = Rng::new(53);
        check_round_trip("random", &rng.f32_vec(4096, 5.0));
        let shifted: Vec<f32> = rng.f32_vec(1024, 1.0).iter().map(|v| v - 6.0).collect();
        check_round_trip("shifted", &shifted);
        check_round_trip("constant", &[0.3; 64]);
        let mut q = vec![0u8; 48];
        quantize(&[-1.25; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == -1.25));
        let mut spike = vec![0.0f32; 64];
        spike[47] = 15.5;
        check_round_trip("spike", &spike);
        quantize(&spike, &mut q);
        let y = dequant(&TRAITS, &q, 64);
        assert!(y
            .iter()
            .enumerate()
            .all(|(i, &v)| if i == 47 { v == 15.5 } else { v == 0.0 }));
        quantize(&[0.0; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == 0.0));
    }

    /// Every quant 0..=31 once, on an f16 grid: exact, fifth bits included.
    #[test]
    fn quantize_reproduces_grid_values() {
        let x: Vec<f32> = (0..32)
            .map(|i| ((i * 7) % 32) as f32 * 0.25 - 3.0)
            .collect();
        let mut q = vec![0u8; 24];
        quantize(&x, &mut q);
        assert_eq!(dequant(&TRAITS, &q, 32), x);
    }
}
