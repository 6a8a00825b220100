//! Q4_K: 256 weights as 8 sub-blocks of 32 4-bit quants, each sub-block with a 6-bit scale and
//! a 6-bit minimum, both relative to the block's f16 `d` and `dmin`:
//! `value = d * sc * q - dmin * m`.
//!
//! Quants: within each 64-element chunk `c`, byte `qs[32c + l]` holds element `64c + l` in its
//! low nibble and element `64c + 32 + l` in its high nibble. Scales: see [`scale_min_k4`].

use bytemuck::{Pod, Zeroable};
use mistralrs_common::Isa;

use super::k_quant_search::quantize_scale_min_block;
use super::q8_k::{check_dot_lengths, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, TypeTraits};
use crate::GgmlType;

mod repacked;
mod x8;

pub use repacked::{
    repacked_order_tiles, vec_dot_gemm_order, vec_dot_gemv_order, vec_dot_gemv_order_rows,
};
pub use x8::{repack_x8, x8_bytes, x8_matmul, BlockQ4Kx8};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    /// 8 six-bit scales and 8 six-bit minimums, packed as [`scale_min_k4`] reads them.
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q4_K,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot,
};

/// Scale and minimum of sub-block `j` (0..8), as ggml's `get_scale_min_k4`: for `j < 4` the low
/// 6 bits of bytes `j` and `j + 4`; for `j >= 4` a nibble of byte `j + 4` with the top 2 bits of
/// bytes `j - 4` (scale) and `j` (minimum) above it.
#[inline]
pub(crate) fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// All 8 scales then all 8 minimums, unpacked four at a time in u32 words.
#[inline]
pub(crate) fn unpack_scale_min_k4(s: &[u8; 12]) -> [u8; 16] {
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a, b, c) = (word(0), word(1), word(2));
    let low6 = 0x3f3f_3f3f;
    let nibble = 0x0f0f_0f0f;
    let top2 = 0x0303_0303;
    let scales_lo = a & low6;
    let scales_hi = (c & nibble) | (((a >> 6) & top2) << 4);
    let mins_lo = b & low6;
    let mins_hi = ((c >> 4) & nibble) | (((b >> 6) & top2) << 4);
    let mut out = [0u8; 16];
    for (i, w) in [scales_lo, scales_hi, mins_lo, mins_hi]
        .into_iter()
        .enumerate()
    {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The inverse of [`scale_min_k4`] for 6-bit `scales` and `mins`.
pub(crate) fn pack_scale_min_k4(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (scales[j] & 63, mins[j] & 63);
        if j < 4 {
            s[j] |= ls;
            s[j + 4] |= lm;
        } else {
            s[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
    s
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ4K] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let dmin = f16_le(b.dmin);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &b.scales);
            let (step, offset) = (d * sc as f32, dmin * m as f32);
            let shift = 4 * (j % 2);
            let qs = &b.qs[32 * (j / 2)..32 * (j / 2) + 32];
            for (o, &q) in out[32 * j..32 * j + 32].iter_mut().zip(qs) {
                *o = step * ((q >> shift) & 0x0F) as f32 - offset;
            }
        }
    }
}

/// ggml's reference approach (`quantize_row_q4_K_ref`): per sub-block a weighted search over
/// scale and minimum (15 levels, 21 trial scales), 6-bit scales relative to the largest.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ4K] = as_blocks_mut(dst);
    for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
        let (d, dmin, scales, levels) = quantize_scale_min_block(x, 15, -1.0, 20);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        for c in 0..4 {
            for l in 0..32 {
                b.qs[32 * c + l] = levels[64 * c + l] | (levels[64 * c + 32 + l] << 4);
            }
        }
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    check_dot_lengths(n, std::mem::size_of::<BlockQ4K>(), weights, activation);
    let x: &[BlockQ4K] = as_blocks(weights);
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
fn dot_scalar(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &b.scales);
            let shift = 4 * (j % 2);
            let qs = &b.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let ys = &a.qs[32 * j..32 * j + 32];
            let s: i32 = qs
                .iter()
                .zip(ys)
                .map(|(&q, &v)| ((q >> shift) & 0x0F) as i32 * v as i32)
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

    use super::super::q8_k::simd::*;
    use super::super::q8_k::BlockQ8K;
    use super::{unpack_scale_min_k4, BlockQ4K};

    /// ggml's recipe: `maddubs` of the unsigned nibbles with the signed activations, `madd`
    /// with the sub-block scales into i32, the minimums through `bsums`; `$madd` is the
    /// multiply-accumulate of the tier.
    macro_rules! dot_body {
        ($x:expr, $y:expr, $madd:ident) => {{
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = _mm256_setzero_ps();
            for (b, a) in $x.iter().zip($y.iter()) {
                let yd = a.scale();
                let d = _mm256_set1_ps(yd * f16(b.d));
                let dmin = _mm256_set1_ps(yd * f16(b.dmin));
                let sm = load_u8x16(&unpack_scale_min_k4(&b.scales));
                // i32 lane j = (m_j, m_j) as two i16, so madd with the 16 bsums gives
                // m_j * (bsum_2j + bsum_2j+1) exactly, whatever the bsums.
                let mins = _mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8));
                let mins = _mm256_or_si256(mins, _mm256_slli_epi32(mins, 16));
                let prod_m = _mm256_madd_epi16(mins, load_bsums(a));
                let scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
                let mut sumi = _mm256_setzero_si256();
                for c in 0..4 {
                    let q4 = load_u8(&b.qs[32 * c..]);
                    let lo = _mm256_and_si256(q4, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                    // At most 2 * 15 * 128 per i16 pair: maddubs cannot saturate.
                    let p_lo = _mm256_maddubs_epi16(lo, load_i8(&a.qs[64 * c..]));
                    let p_hi = _mm256_maddubs_epi16(hi, load_i8(&a.qs[64 * c + 32..]));
                    let s_lo = _mm256_shuffle_epi8(scales, broadcast_i16_lane(2 * c));
                    let s_hi = _mm256_shuffle_epi8(scales, broadcast_i16_lane(2 * c + 1));
                    sumi = $madd(sumi, s_lo, p_lo);
                    sumi = $madd(sumi, s_hi, p_hi);
                }
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
                acc = _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(prod_m), acc);
            }
            hsum_f32x8(acc)
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_avx2)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_vnni(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_vnni)
    }
}

#[cfg(test)]
pub(super) mod test_support;

#[cfg(test)]
mod tests {
    use super::super::q8_k::test_support::*;
    use super::test_support::magnitude;
    use super::*;
    use crate::formats::testing::Rng;

    #[test]
    fn scale_unpacking_agrees_and_round_trips() {
        let mut rng = Rng::new(41);
        for _ in 0..1000 {
            let mut s = [0u8; 12];
            rng.fill_bytes(&mut s);
            let all = unpack_scale_min_k4(&s);
            let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
            for j in 0..8 {
                (sc[j], mn[j]) = scale_min_k4(j, &s);
                assert_eq!((all[j], all[8 + j]), (sc[j], mn[j]));
            }
            assert_eq!(pack_scale_min_k4(&sc, &mn), s);
        }
    }

    #[test]
    fn simd_tiers_match_scalar_on_random_and_edge_blocks() {
        let mut rng = Rng::new(42);
        sweep(
            "Q4_K",
            &TRAITS,
            &mut rng,
            &mut |r, n| random_blocks(r, n, 144, &[0, 2]),
            magnitude,
        );
        edge_sweep("Q4_K", &TRAITS, &[0, 2], magnitude);
    }

    #[test]
    fn quantize_round_trip_error_is_bounded() {
        // 4 bits over a fitted [min, max] per 32 values: about 0.069 measured (uniform-noise
        // estimate: range ~4 sigma / 15 steps / sqrt(12) = 0.077).
        check_quantizer(&TRAITS, 0.08, 2e-3, 2e-3);
    }

    #[test]
    fn quantized_weights_dot_like_their_dequantized_values() {
        let mut rng = Rng::new(43);
        let x = gaussian(&mut rng, 1024, 1.0);
        let mut w = vec![0u8; 4 * 144];
        quantize(&x, &mut w);
        let a = q8k_row(&mut rng, 1024, Act::Random);
        check_against_dequant("Q4_K quantized", &TRAITS, 1024, &w, &a, magnitude(&w, &a));
    }

    #[test]
    fn dequantize_hand_built_block() {
        let mut b = BlockQ4K::zeroed();
        b.d = 0x3C00u16.to_le_bytes(); // 1.0
        b.dmin = 0x3800u16.to_le_bytes(); // 0.5
                                          // Sub-block 0: scale 2, min 3. Sub-block 5: scale 0b10_0111 = 39, min 0b01_1010 = 26.
        b.scales[0] = 2;
        b.scales[4] = 3;
        b.scales[9] = 0x07 | (0x0A << 4);
        b.scales[1] |= 0b10 << 6;
        b.scales[5] |= 0b01 << 6;
        b.qs[0] = 0x5F; // element 0 = 15 (sub-block 0), element 32 = 5 (sub-block 1)
        b.qs[64 + 3] = 0xC0; // element 128 + 3 = 0 (sub-block 4), element 160 + 3 = 12 (sub-block 5)
        let mut y = vec![0.0f32; QK_K];
        dequantize(bytemuck::bytes_of(&b), &mut y);
        assert_eq!(y[0], 2.0 * 15.0 - 1.5);
        assert_eq!(y[1], -1.5);
        assert_eq!(y[32], 0.0); // sub-block 1 has scale 0 and min 0
        assert_eq!(y[163], 39.0 * 12.0 - 13.0);
        assert_eq!(y[164], -13.0);
    }
}
