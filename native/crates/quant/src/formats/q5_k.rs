//! Q5_K: Q4_K with a fifth bit per quant: `value = d * sc * q - dmin * m`, `q` in 0..32.
//!
//! Scales, minimums and low nibbles are laid out as in Q4_K (see [`super::q4_k`]); bit `2c` of
//! `qh[l]` is the fifth bit of element `64c + l` and bit `2c + 1` that of element `64c + 32 + l`.

use bytemuck::{Pod, Zeroable};
use mistralrs_common::Isa;

use super::k_quant_search::quantize_scale_min_block;
use super::q4_k::scale_min_k4;
use super::q8_k::{check_dot_lengths, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, TypeTraits};
use crate::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q5_K,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot,
};

/// The 32 quants (0..32) of sub-block `j`.
#[inline]
fn sub_block(b: &BlockQ5K, j: usize) -> [u8; 32] {
    let shift = 4 * (j % 2);
    let qs = &b.qs[32 * (j / 2)..32 * (j / 2) + 32];
    let mut q = [0u8; 32];
    for (l, v) in q.iter_mut().enumerate() {
        *v = ((qs[l] >> shift) & 0x0F) | (((b.qh[l] >> j) & 1) << 4);
    }
    q
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ5K] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let dmin = f16_le(b.dmin);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &b.scales);
            let (step, offset) = (d * sc as f32, dmin * m as f32);
            for (o, &q) in out[32 * j..32 * j + 32].iter_mut().zip(&sub_block(b, j)) {
                *o = step * q as f32 - offset;
            }
        }
    }
}

/// ggml's reference approach (`quantize_row_q5_K_ref`): as Q4_K with 31 levels and 16 trial
/// scales per sub-block.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ5K] = as_blocks_mut(dst);
    for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
        let (d, dmin, scales, levels) = quantize_scale_min_block(x, 31, -0.5, 15);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        b.qh = [0; 32];
        for c in 0..4 {
            for l in 0..32 {
                let (lo, hi) = (levels[64 * c + l], levels[64 * c + 32 + l]);
                b.qs[32 * c + l] = (lo & 0x0F) | ((hi & 0x0F) << 4);
                b.qh[l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
            }
        }
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    check_dot_lengths(n, std::mem::size_of::<BlockQ5K>(), weights, activation);
    let x: &[BlockQ5K] = as_blocks(weights);
    let y: &[BlockQ8K] = as_blocks(activation);
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns a tier whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { simd::dot_vnni(x, y) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::dot_avx2(x, y) },
        _ => dot_scalar(x, y),
    }
}

/// The reference: exact i32 sums per block, `d * Σ sc·Σq·y - dmin * Σ m·bsum`.
fn dot_scalar(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &b.scales);
            let ys = &a.qs[32 * j..32 * j + 32];
            let s: i32 = sub_block(b, j)
                .iter()
                .zip(ys)
                .map(|(&q, &v)| q as i32 * v as i32)
                .sum();
            isum += sc as i32 * s;
            msum += m as i32 * (a.bsum(2 * j) + a.bsum(2 * j + 1));
        }
        let yd = a.scale();
        sum += yd * f16_le(b.d) * isum as f32 - yd * f16_le(b.dmin) * msum as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::q4_k::unpack_scale_min_k4;
    use super::super::q8_k::simd::*;
    use super::super::q8_k::BlockQ8K;
    use super::BlockQ5K;

    /// As Q4_K's, with the fifth bit added to each nibble (16 where the `qh` bit is set).
    macro_rules! dot_body {
        ($x:expr, $y:expr, $madd:ident) => {{
            let m4 = _mm256_set1_epi8(0x0F);
            let sixteen = _mm256_set1_epi8(16);
            let mut acc = _mm256_setzero_ps();
            // ggml sums the mins' terms apart, as scalars: `summs += dmin * Σ m·bsum` (fused
            // by its compiler), added after the lanes are reduced.
            let mut summs = 0.0f32;
            for (b, a) in $x.iter().zip($y.iter()) {
                let yd = a.scale();
                let d = _mm256_set1_ps(yd * f16(b.d));
                let dmin = -yd * f16(b.dmin);
                let sm = load_u8x16(&unpack_scale_min_k4(&b.scales));
                let mins = _mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8));
                let mins = _mm256_or_si256(mins, _mm256_slli_epi32(mins, 16));
                let prod_m = _mm256_madd_epi16(mins, load_bsums(a));
                let scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
                let hbits = load_u8(&b.qh);
                let mut sumi = _mm256_setzero_si256();
                for c in 0..4 {
                    let q4 = load_u8(&b.qs[32 * c..]);
                    let bit_lo = _mm256_set1_epi8((1u8 << (2 * c)) as i8);
                    let bit_hi = _mm256_set1_epi8((2u8 << (2 * c)) as i8);
                    let h_lo = _mm256_and_si256(
                        _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit_lo), bit_lo),
                        sixteen,
                    );
                    let h_hi = _mm256_and_si256(
                        _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit_hi), bit_hi),
                        sixteen,
                    );
                    let lo = _mm256_or_si256(_mm256_and_si256(q4, m4), h_lo);
                    let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), h_hi);
                    // At most 2 * 31 * 128 per i16 pair: maddubs cannot saturate.
                    let p_lo = _mm256_maddubs_epi16(lo, load_i8(&a.qs[64 * c..]));
                    let p_hi = _mm256_maddubs_epi16(hi, load_i8(&a.qs[64 * c + 32..]));
                    let s_lo = _mm256_shuffle_epi8(scales, broadcast_i16_lane(2 * c));
                    let s_hi = _mm256_shuffle_epi8(scales, broadcast_i16_lane(2 * c + 1));
                    sumi = $madd(sumi, s_lo, p_lo);
                    sumi = $madd(sumi, s_hi, p_hi);
                }
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
                summs = (hsum_i32x8(prod_m) as f32).mul_add(dmin, summs);
            }
            hsum_f32x8(acc) + summs
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_avx2)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_vnni(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_vnni)
    }
}

#[cfg(test)]
mod tests {
    use super::super::q8_k::test_support::*;
    use super::*;
    use crate::formats::testing::Rng;

    /// Σ over blocks of |yd| (|d| Σ sc·q·|y| + |dmin| Σ m·|bsum|): every term either path rounds.
    fn magnitude(w: &[u8], a: &[u8]) -> f64 {
        let x: &[BlockQ5K] = as_blocks(w);
        let y: &[BlockQ8K] = as_blocks(a);
        let mut total = 0.0f64;
        for (b, a) in x.iter().zip(y) {
            let (mut s, mut m) = (0.0f64, 0.0f64);
            for j in 0..8 {
                let (sc, mn) = scale_min_k4(j, &b.scales);
                for (&q, &v) in sub_block(b, j).iter().zip(&a.qs[32 * j..32 * j + 32]) {
                    s += sc as f64 * q as f64 * (v as f64).abs();
                }
                m += mn as f64 * (a.bsum(2 * j).abs() + a.bsum(2 * j + 1).abs()) as f64;
            }
            let yd = a.scale().abs() as f64;
            total += yd * (f16_le(b.d).abs() as f64 * s + f16_le(b.dmin).abs() as f64 * m);
        }
        total
    }

    #[test]
    fn simd_tiers_match_scalar_on_random_and_edge_blocks() {
        let mut rng = Rng::new(51);
        sweep(
            "Q5_K",
            &TRAITS,
            &mut rng,
            &mut |r, n| random_blocks(r, n, 176, &[0, 2]),
            magnitude,
        );
        edge_sweep("Q5_K", &TRAITS, &[0, 2], magnitude);
    }

    #[test]
    fn quantize_round_trip_error_is_bounded() {
        // 5 bits over a fitted [min, max] per 32 values: about 0.035 measured, half of Q4_K's
        // (uniform-noise estimate: range ~4 sigma / 31 steps / sqrt(12) = 0.037).
        check_quantizer(&TRAITS, 0.04, 2e-3, 2e-3);
    }

    #[test]
    fn quantized_weights_dot_like_their_dequantized_values() {
        let mut rng = Rng::new(52);
        let x = gaussian(&mut rng, 1024, 1.0);
        let mut w = vec![0u8; 4 * 176];
        quantize(&x, &mut w);
        let a = q8k_row(&mut rng, 1024, Act::Random);
        check_against_dequant("Q5_K quantized", &TRAITS, 1024, &w, &a, magnitude(&w, &a));
    }

    #[test]
    fn dequantize_hand_built_block() {
        let mut b = BlockQ5K::zeroed();
        b.d = 0x4000u16.to_le_bytes(); // 2.0
        b.dmin = 0x3400u16.to_le_bytes(); // 0.25
                                          // Sub-block 0: scale 1, min 4. Sub-block 7: scale 0b11_0001 = 49, min 0b00_0010 = 2.
        b.scales[0] = 1;
        b.scales[4] = 4;
        b.scales[11] = 0x01 | (0x02 << 4);
        b.scales[3] |= 0b11 << 6;
        b.qs[5] = 0x0A; // element 5 = 10 + 16 (qh bit 0), element 37 = 0 (sub-block 1)
        b.qh[5] = 0b1000_0001; // bit 7: fifth bit of element 192 + 32 + 5 (sub-block 7)
        b.qs[96 + 5] = 0x30; // element 192 + 5 = 0 (sub-block 6), element 229 = 3 + 16
        let mut y = vec![0.0f32; QK_K];
        dequantize(bytemuck::bytes_of(&b), &mut y);
        assert_eq!(y[5], 2.0 * 26.0 - 1.0);
        assert_eq!(y[6], -1.0);
        assert_eq!(y[37], 0.0);
        assert_eq!(y[229], 2.0 * 49.0 * 19.0 - 0.5);
        assert_eq!(y[197], 0.0);
    }
}
