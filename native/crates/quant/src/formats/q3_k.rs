//! Q3_K: 256 weights as 16 sub-blocks of 16 three-bit quants, each sub-block with a 6-bit
//! scale stored +32, relative to the block's f16 `d`: `value = d * (sc - 32) * q`, `q` in -4..4.
//!
//! Element `128h + 32j + l` (`l` < 32) takes its low 2 bits from bits `2j..2j+2` of
//! `qs[32h + l]` and its high bit from bit `4h + j` of `hmask[l]`; a clear high bit means 4 is
//! subtracted. Scales: the low nibbles of 16 values in bytes 0..8 (low then high nibbles), the
//! top 2 bits of value `j` in bits `2 * (j / 4)` of byte `8 + j % 4`.

use bytemuck::{Pod, Zeroable};
use mistralrs_common::Isa;

use super::k_quant_search::{fit_symmetric_refined, nearest_int};
use super::q8_k::{check_dot_lengths, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q3_K,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot,
};

/// Scale `j` (0..16) as stored, 0..64 (subtract 32 to use it).
#[inline]
fn scale_q3(j: usize, s: &[u8; 12]) -> u8 {
    let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
    low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)
}

/// All 16 scales minus 32, unpacked four at a time in u32 words.
#[inline]
fn unpack_scales_q3(s: &[u8; 12]) -> [i8; 16] {
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a, b, top) = (word(0), word(1), word(2));
    let (nibble, two) = (0x0f0f_0f0f, 0x0303_0303);
    let words = [
        (a & nibble) | ((top & two) << 4),
        (b & nibble) | (((top >> 2) & two) << 4),
        ((a >> 4) & nibble) | (((top >> 4) & two) << 4),
        ((b >> 4) & nibble) | (((top >> 6) & two) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, w) in words.into_iter().enumerate() {
        for (k, byte) in w.to_le_bytes().into_iter().enumerate() {
            out[4 * i + k] = byte as i8 - 32;
        }
    }
    out
}

/// The 256 quants of a block, -4..=3.
#[inline]
fn unpack(b: &BlockQ3K) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for h in 0..2 {
        for j in 0..4 {
            let out = &mut q[128 * h + 32 * j..128 * h + 32 * j + 32];
            for (l, v) in out.iter_mut().enumerate() {
                let low = ((b.qs[32 * h + l] >> (2 * j)) & 3) as i8;
                let high = (b.hmask[l] >> (4 * h + j)) & 1;
                *v = low - if high == 0 { 4 } else { 0 };
            }
        }
    }
    q
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ3K] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let q = unpack(b);
        for j in 0..16 {
            let step = d * (scale_q3(j, &b.scales) as i32 - 32) as f32;
            for (o, &v) in out[16 * j..16 * j + 16]
                .iter_mut()
                .zip(&q[16 * j..16 * j + 16])
            {
                *o = step * v as f32;
            }
        }
    }
}

/// ggml's reference approach (`quantize_row_q3_K_ref`): per 16 values a symmetric fit refined
/// level by level (weights x²), 6-bit scales relative to the largest, requantization against
/// the stored scales.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ3K] = as_blocks_mut(dst);
    for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
        quantize_block(x, b);
    }
}

fn quantize_block(x: &[f32], b: &mut BlockQ3K) {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
    for (j, s) in scales.iter_mut().enumerate() {
        *s = fit_symmetric_refined(&x[16 * j..16 * j + 16], 4, &mut levels[16 * j..16 * j + 16]);
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = *s;
        }
    }
    *b = BlockQ3K::zeroed();
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            let l = (nearest_int(iscale * s).clamp(-32, 31) + 32) as u8;
            if j < 8 {
                b.scales[j] = l & 0x0F;
            } else {
                b.scales[j - 8] |= (l & 0x0F) << 4;
            }
            b.scales[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
        }
        b.d = f16_to_le(1.0 / iscale);
    }
    let d = f16_le(b.d);
    for j in 0..16 {
        let step = d * (scale_q3(j, &b.scales) as i32 - 32) as f32;
        if step == 0.0 {
            continue;
        }
        for (l, &v) in levels[16 * j..16 * j + 16]
            .iter_mut()
            .zip(&x[16 * j..16 * j + 16])
        {
            *l = (nearest_int(v / step).clamp(-4, 3) + 4) as u8;
        }
    }
    for (e, &l) in levels.iter().enumerate() {
        if l > 3 {
            b.hmask[e % 32] |= 1 << (e / 32);
        }
    }
    for h in 0..2 {
        let lv = &levels[128 * h..128 * h + 128];
        for l in 0..32 {
            b.qs[32 * h + l] = (lv[l] & 3)
                | ((lv[l + 32] & 3) << 2)
                | ((lv[l + 64] & 3) << 4)
                | ((lv[l + 96] & 3) << 6);
        }
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    check_dot_lengths(n, std::mem::size_of::<BlockQ3K>(), weights, activation);
    let x: &[BlockQ3K] = as_blocks(weights);
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

/// The reference: exact i32 sums per block, `d * yd * Σ (sc - 32)·Σq·y`.
fn dot_scalar(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let q = unpack(b);
        let mut isum = 0i32;
        for j in 0..16 {
            let s: i32 = q[16 * j..16 * j + 16]
                .iter()
                .zip(&a.qs[16 * j..16 * j + 16])
                .map(|(&w, &v)| w as i32 * v as i32)
                .sum();
            isum += (scale_q3(j, &b.scales) as i32 - 32) * s;
        }
        sum += f16_le(b.d) * a.scale() * isum as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::q8_k::simd::*;
    use super::super::q8_k::BlockQ8K;
    use super::{unpack_scales_q3, BlockQ3K};

    /// ggml's recipe: `maddubs` of the 2-bit parts with the activations, minus `maddubs` of 4
    /// (where the high bit is clear) with them, then `madd` with the signed sub-block scales.
    macro_rules! dot_body {
        ($x:expr, $y:expr, $madd:ident) => {{
            let m3 = _mm256_set1_epi8(3);
            let four = _mm256_set1_epi8(4);
            let zero = _mm256_setzero_si256();
            let mut acc = _mm256_setzero_ps();
            for (b, a) in $x.iter().zip($y.iter()) {
                let d = _mm256_set1_ps(a.scale() * f16(b.d));
                let scales = load_u8x16(bytemuck::cast_slice(&unpack_scales_q3(&b.scales)[..]));
                let hbits = load_u8(&b.hmask);
                let mut sumi = _mm256_setzero_si256();
                for h in 0..2 {
                    let q2 = load_u8(&b.qs[32 * h..]);
                    for j in 0..4 {
                        let low = _mm256_and_si256(
                            _mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * j as i32)),
                            m3,
                        );
                        let bit = _mm256_set1_epi8((1u8 << (4 * h + j)) as i8);
                        let clear = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), zero);
                        let minus = _mm256_and_si256(clear, four);
                        let yj = load_i8(&a.qs[128 * h + 32 * j..]);
                        let p = _mm256_sub_epi16(
                            _mm256_maddubs_epi16(low, yj),
                            _mm256_maddubs_epi16(minus, yj),
                        );
                        sumi = $madd(sumi, scale_pair_i8(scales, 8 * h + 2 * j), p);
                    }
                }
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc)
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_avx2)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_vnni(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_vnni)
    }
}

#[cfg(test)]
mod tests {
    use super::super::q8_k::test_support::*;
    use super::*;
    use crate::formats::testing::Rng;

    /// Σ over blocks of |d·yd| Σ |sc - 32|·|q|·|y|: every term either path rounds.
    fn magnitude(w: &[u8], a: &[u8]) -> f64 {
        let x: &[BlockQ3K] = as_blocks(w);
        let y: &[BlockQ8K] = as_blocks(a);
        let mut total = 0.0f64;
        for (b, a) in x.iter().zip(y) {
            let q = unpack(b);
            let s: f64 = (0..QK_K)
                .map(|i| {
                    ((scale_q3(i / 16, &b.scales) as f64 - 32.0) * q[i] as f64 * a.qs[i] as f64)
                        .abs()
                })
                .sum();
            total += (f16_le(b.d) as f64 * a.scale() as f64).abs() * s;
        }
        total
    }

    #[test]
    fn scale_unpacking_agrees() {
        let mut rng = Rng::new(31);
        for _ in 0..1000 {
            let mut s = [0u8; 12];
            rng.fill_bytes(&mut s);
            let all = unpack_scales_q3(&s);
            for (j, &v) in all.iter().enumerate() {
                assert_eq!(v as i32, scale_q3(j, &s) as i32 - 32);
            }
        }
    }

    #[test]
    fn simd_tiers_match_scalar_on_random_and_edge_blocks() {
        let mut rng = Rng::new(32);
        sweep(
            "Q3_K",
            &TRAITS,
            &mut rng,
            &mut |r, n| random_blocks(r, n, 110, &[108]),
            magnitude,
        );
        edge_sweep("Q3_K", &TRAITS, &[108], magnitude);
    }

    #[test]
    fn quantize_round_trip_error_is_bounded() {
        // 8 levels, symmetric, one scale per 16 values: about 0.146 measured (uniform-noise
        // estimate: range ~3.6 sigma / 7.5 steps / sqrt(12) = 0.139).
        check_quantizer(&TRAITS, 0.16, 2e-3, 2e-3);
    }

    #[test]
    fn quantized_weights_dot_like_their_dequantized_values() {
        let mut rng = Rng::new(33);
        let x = gaussian(&mut rng, 1024, 1.0);
        let mut w = vec![0u8; 4 * 110];
        quantize(&x, &mut w);
        let a = q8k_row(&mut rng, 1024, Act::Random);
        check_against_dequant("Q3_K quantized", &TRAITS, 1024, &w, &a, magnitude(&w, &a));
    }

    #[test]
    fn dequantize_hand_built_block() {
        let mut b = BlockQ3K::zeroed();
        b.d = 0x3C00u16.to_le_bytes(); // 1.0
                                       // Scale 0 = 0b10_0101 = 37 (+5), scale 13 = 0b00_1100 = 12 (-20).
        b.scales[0] = 0x05;
        b.scales[8] = 0b10;
        b.scales[5] = 0xC0;
        // Element 2: low bits 3, high bit set -> 3. Element 34 (j = 1): low 1, high clear -> -3.
        b.qs[2] = 0b0111;
        b.hmask[2] = 0b0000_0001;
        // Element 128 + 96 + 17 = 241 (h = 1, j = 3, scale 15 = 0 - 32): low 2, high bit 7 set.
        b.qs[32 + 17] = 0b10 << 6;
        b.hmask[17] = 0b1000_0000;
        // Element 208 (h = 1, j = 2, l = 16, scale 13): low 0, high clear -> -4.
        let mut y = vec![0.0f32; QK_K];
        dequantize(bytemuck::bytes_of(&b), &mut y);
        assert_eq!(y[2], 5.0 * 3.0);
        assert_eq!(y[34], -32.0 * -3.0); // scale 2 is 0 - 32
        assert_eq!(y[0], 5.0 * -4.0);
        assert_eq!(y[241], -32.0 * 2.0);
        assert_eq!(y[208], -20.0 * -4.0);
    }
}
