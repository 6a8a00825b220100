//! Q2_K: 256 weights as 16 sub-blocks of 16 two-bit quants; byte `scales[j]` holds sub-block
//! `j`'s 4-bit scale (low nibble) and 4-bit minimum (high nibble), relative to the block's f16
//! `d` and `dmin`: `value = d * sc * q - dmin * m`.
//!
//! Element `128h + 32j + l` (`l` < 32) is bits `2j..2j+2` of `qs[32h + l]`.

use bytemuck::{Pod, Zeroable};
use mistralrs_common::Isa;

use super::k_quant_search::{fit_scale_min, nearest_int, ScaleSearch};
use super::q8_k::{check_dot_lengths, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q2_K,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot,
};

/// The 256 quants of a block, 0..4.
#[inline]
fn unpack(b: &BlockQ2K) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for h in 0..2 {
        for j in 0..4 {
            let out = &mut q[128 * h + 32 * j..128 * h + 32 * j + 32];
            for (v, &byte) in out.iter_mut().zip(&b.qs[32 * h..32 * h + 32]) {
                *v = (byte >> (2 * j)) & 3;
            }
        }
    }
    q
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ2K] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let dmin = f16_le(b.dmin);
        let q = unpack(b);
        for j in 0..16 {
            let sc = b.scales[j];
            let (step, offset) = (d * (sc & 0x0F) as f32, dmin * (sc >> 4) as f32);
            for (o, &v) in out[16 * j..16 * j + 16]
                .iter_mut()
                .zip(&q[16 * j..16 * j + 16])
            {
                *o = step * v as f32 - offset;
            }
        }
    }
}

/// ggml's reference approach (`quantize_row_q2_K_ref`): per 16 values a search over scale and
/// minimum minimising the |x|-weighted absolute error (16 trial scales), 4-bit scales and
/// minimums relative to the largest, requantization against the stored values.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ2K] = as_blocks_mut(dst);
    for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
        quantize_block(x, b);
    }
}

fn quantize_block(x: &[f32], b: &mut BlockQ2K) {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    let mut weights = [0.0f32; 16];
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = v.abs();
        }
        let ls = &mut levels[16 * j..16 * j + 16];
        (scales[j], mins[j]) = fit_scale_min(
            xs,
            &weights,
            3,
            ls,
            ScaleSearch {
                rmin: -0.5,
                rdelta: 0.1,
                nstep: 15,
                use_mad: true,
            },
        );
    }
    let max_scale = scales
        .iter()
        .fold(0.0f32, |m, &s| if s > m { s } else { m });
    let max_min = mins.iter().fold(0.0f32, |m, &s| if s > m { s } else { m });
    *b = BlockQ2K::zeroed();
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (byte, &s) in b.scales.iter_mut().zip(&scales) {
            *byte = nearest_int(iscale * s).clamp(0, 15) as u8;
        }
        b.d = f16_to_le(max_scale / 15.0);
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (byte, &m) in b.scales.iter_mut().zip(&mins) {
            *byte |= (nearest_int(iscale * m).clamp(0, 15) as u8) << 4;
        }
        b.dmin = f16_to_le(max_min / 15.0);
    }
    let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
    for j in 0..16 {
        let step = d * (b.scales[j] & 0x0F) as f32;
        if step == 0.0 {
            continue;
        }
        let offset = dmin * (b.scales[j] >> 4) as f32;
        for (l, &v) in levels[16 * j..16 * j + 16]
            .iter_mut()
            .zip(&x[16 * j..16 * j + 16])
        {
            *l = nearest_int((v + offset) / step).clamp(0, 3) as u8;
        }
    }
    for h in 0..2 {
        let lv = &levels[128 * h..128 * h + 128];
        for l in 0..32 {
            b.qs[32 * h + l] = lv[l] | (lv[l + 32] << 2) | (lv[l + 64] << 4) | (lv[l + 96] << 6);
        }
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    check_dot_lengths(n, std::mem::size_of::<BlockQ2K>(), weights, activation);
    let x: &[BlockQ2K] = as_blocks(weights);
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
fn dot_scalar(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let q = unpack(b);
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..16 {
            let s: i32 = q[16 * j..16 * j + 16]
                .iter()
                .zip(&a.qs[16 * j..16 * j + 16])
                .map(|(&w, &v)| w as i32 * v as i32)
                .sum();
            isum += (b.scales[j] & 0x0F) as i32 * s;
            msum += (b.scales[j] >> 4) as i32 * a.bsum(j);
        }
        let yd = a.scale();
        sum += yd * f16_le(b.d) * isum as f32 - yd * f16_le(b.dmin) * msum as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::q8_k::simd::*;
    use super::super::q8_k::BlockQ8K;
    use super::BlockQ2K;

    /// ggml's recipe: `maddubs` of the 2-bit quants with the activations, `madd` with the
    /// sub-block scales, the minimums through one `madd` with the 16 bsums.
    macro_rules! dot_body {
        ($x:expr, $y:expr, $madd:ident) => {{
            let m3 = _mm256_set1_epi8(3);
            let m4 = _mm_set1_epi8(0x0F);
            let mut acc = _mm256_setzero_ps();
            for (b, a) in $x.iter().zip($y.iter()) {
                let yd = a.scale();
                let d = _mm256_set1_ps(yd * f16(b.d));
                let dmin = _mm256_set1_ps(yd * f16(b.dmin));
                let packed = load_u8x16(&b.scales);
                let scales = _mm_and_si128(packed, m4);
                let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
                let prod_m = _mm256_madd_epi16(mins, load_bsums(a));
                let mut sumi = _mm256_setzero_si256();
                for h in 0..2 {
                    let q2 = load_u8(&b.qs[32 * h..]);
                    for j in 0..4 {
                        let q = _mm256_and_si256(
                            _mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * j as i32)),
                            m3,
                        );
                        let p = _mm256_maddubs_epi16(q, load_i8(&a.qs[128 * h + 32 * j..]));
                        sumi = $madd(sumi, scale_pair_i8(scales, 8 * h + 2 * j), p);
                    }
                }
                // The mins' terms first, then the scales', as ggml's AVX2 kernel adds them.
                acc = _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(prod_m), acc);
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc)
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_avx2)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_vnni(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
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
        let x: &[BlockQ2K] = as_blocks(w);
        let y: &[BlockQ8K] = as_blocks(a);
        let mut total = 0.0f64;
        for (b, a) in x.iter().zip(y) {
            let q = unpack(b);
            let s: f64 = (0..QK_K)
                .map(|i| (b.scales[i / 16] & 15) as f64 * q[i] as f64 * (a.qs[i] as f64).abs())
                .sum();
            let mut m = 0.0f64;
            for j in 0..16 {
                m += (b.scales[j] >> 4) as f64 * a.bsum(j).abs() as f64;
            }
            let yd = a.scale().abs() as f64;
            total += yd * (f16_le(b.d).abs() as f64 * s + f16_le(b.dmin).abs() as f64 * m);
        }
        total
    }

    #[test]
    fn simd_tiers_match_scalar_on_random_and_edge_blocks() {
        let mut rng = Rng::new(21);
        sweep(
            "Q2_K",
            &TRAITS,
            &mut rng,
            &mut |r, n| random_blocks(r, n, 84, &[80, 82]),
            magnitude,
        );
        edge_sweep("Q2_K", &TRAITS, &[80, 82], magnitude);
    }

    #[test]
    fn quantize_round_trip_error_is_bounded() {
        // 4 levels over a fitted [min, max] per 16 values: about 0.29 measured (uniform-noise
        // estimate: range ~3.5 sigma / 3 steps / sqrt(12) = 0.34, the fit does better).
        check_quantizer(&TRAITS, 0.32, 2e-3, 2e-3);
    }

    #[test]
    fn quantized_weights_dot_like_their_dequantized_values() {
        let mut rng = Rng::new(22);
        let x = gaussian(&mut rng, 1024, 1.0);
        let mut w = vec![0u8; 4 * 84];
        quantize(&x, &mut w);
        let a = q8k_row(&mut rng, 1024, Act::Random);
        check_against_dequant("Q2_K quantized", &TRAITS, 1024, &w, &a, magnitude(&w, &a));
    }

    #[test]
    fn dequantize_hand_built_block() {
        let mut b = BlockQ2K::zeroed();
        b.d = 0x3C00u16.to_le_bytes(); // 1.0
        b.dmin = 0x4000u16.to_le_bytes(); // 2.0
        b.scales[0] = 0x3F; // scale 15, min 3
        b.scales[5] = 0xA2; // scale 2, min 10
        b.scales[15] = 0xF0; // scale 0, min 15
        b.qs[4] = 0b11_10_01_11; // elements 4, 36, 68, 100 = 3, 1, 2, 3
        b.qs[20] = 0b00_11_00_00; // element 64 + 20 = 84 (sub-block 5) = 3
        b.qs[32 + 31] = 0b01_00_00_00; // element 128 + 96 + 31 = 255 -> 1
        let mut y = vec![0.0f32; QK_K];
        dequantize(bytemuck::bytes_of(&b), &mut y);
        assert_eq!(y[4], 15.0 * 3.0 - 6.0);
        assert_eq!(y[5], -6.0);
        assert_eq!(y[36], 0.0); // sub-blocks 2 and 4 have scale 0 and min 0
        assert_eq!(y[68], 0.0);
        assert_eq!(y[84], 2.0 * 3.0 - 20.0);
        assert_eq!(y[85], -20.0);
        assert_eq!(y[255], 0.0 * 1.0 - 30.0);
    }
}
