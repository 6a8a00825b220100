//! Q6_K: 256 weights as 16 sub-blocks of 16 six-bit quants, each sub-block with a signed 8-bit
//! scale relative to the block's f16 `d`: `value = d * sc * (q - 32)`.
//!
//! Per 128-element half `h`, for `l` in 0..32: the low nibbles of `ql[64h + l]` and
//! `ql[64h + 32 + l]` give elements `128h + l` and `128h + 32 + l`, their high nibbles elements
//! `128h + 64 + l` and `128h + 96 + l`; `qh[32h + l]` holds the top 2 bits of those four, in bit
//! pairs 0-1, 2-3, 4-5, 6-7. Element `e` uses `scales[e / 16]`.

use bytemuck::{Pod, Zeroable};
use mistralrs_common::Isa;

use super::k_quant_search::{fit_symmetric, nearest_int};
use super::q8_k::{check_dot_lengths, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q6_K,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot,
};

/// The 256 quants of a block with the offset of 32 removed (-32..=31).
#[inline]
fn unpack(b: &BlockQ6K) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32]);
        let out = &mut q[128 * h..128 * h + 128];
        for l in 0..32 {
            let hb = qh[l];
            out[l] = ((ql[l] & 0x0F) | ((hb & 3) << 4)) as i8 - 32;
            out[l + 32] = ((ql[l + 32] & 0x0F) | (((hb >> 2) & 3) << 4)) as i8 - 32;
            out[l + 64] = ((ql[l] >> 4) | (((hb >> 4) & 3) << 4)) as i8 - 32;
            out[l + 96] = ((ql[l + 32] >> 4) | (((hb >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    q
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ6K] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let q = unpack(b);
        for (i, (o, &v)) in out.iter_mut().zip(q.iter()).enumerate() {
            *o = d * b.scales[i / 16] as f32 * v as f32;
        }
    }
}

/// ggml's reference approach (`quantize_row_q6_K_ref`): a symmetric scale search per 16
/// values (weights x², 19 trial scales), 8-bit scales relative to the largest, requantization
/// against the stored scales.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ6K] = as_blocks_mut(dst);
    for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
        quantize_block(x, b);
    }
}

fn quantize_block(x: &[f32], b: &mut BlockQ6K) {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
    for (j, s) in scales.iter_mut().enumerate() {
        *s = fit_symmetric(
            &x[16 * j..16 * j + 16],
            32,
            &mut levels[16 * j..16 * j + 16],
        );
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = *s;
        }
    }
    *b = BlockQ6K::zeroed();
    if max_abs < 1e-15 {
        return;
    }
    let iscale = -128.0 / max_scale;
    b.d = f16_to_le(1.0 / iscale);
    let d = f16_le(b.d);
    for j in 0..16 {
        b.scales[j] = nearest_int(iscale * scales[j]).clamp(-128, 127) as i8;
        let step = d * b.scales[j] as f32;
        if step == 0.0 {
            continue;
        }
        for (l, &v) in levels[16 * j..16 * j + 16]
            .iter_mut()
            .zip(&x[16 * j..16 * j + 16])
        {
            *l = (nearest_int(v / step).clamp(-32, 31) + 32) as u8;
        }
    }
    for h in 0..2 {
        let lv = &levels[128 * h..128 * h + 128];
        for l in 0..32 {
            b.ql[64 * h + l] = (lv[l] & 0x0F) | ((lv[l + 64] & 0x0F) << 4);
            b.ql[64 * h + 32 + l] = (lv[l + 32] & 0x0F) | ((lv[l + 96] & 0x0F) << 4);
            b.qh[32 * h + l] = (lv[l] >> 4)
                | ((lv[l + 32] >> 4) << 2)
                | ((lv[l + 64] >> 4) << 4)
                | ((lv[l + 96] >> 4) << 6);
        }
    }
}

/// Consecutive weight rows against one activation row (decode steps), one call for the
/// run: bit-identical to one `vec_dot` per row.
pub fn vec_dot_rows(isa: Isa, n: usize, weights: &[u8], activation: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let simd: Option<super::VecDotRowsSimd<BlockQ6K, BlockQ8K>> = Some(simd::dot_rows_avx2);
    #[cfg(not(target_arch = "x86_64"))]
    let simd: Option<super::VecDotRowsSimd<BlockQ6K, BlockQ8K>> = None;
    super::vec_dot_rows_with(isa, n, weights, activation, out, &TRAITS, simd)
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    check_dot_lengths(n, std::mem::size_of::<BlockQ6K>(), weights, activation);
    let x: &[BlockQ6K] = as_blocks(weights);
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

/// The reference: exact i32 sums per block, `d * yd * Σ sc·Σ(q - 32)·y`.
fn dot_scalar(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
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
            isum += b.scales[j] as i32 * s;
        }
        sum += f16_le(b.d) * a.scale() * isum as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use std::arch::x86_64::*;

    use super::super::q8_k::simd::*;
    use super::super::q8_k::BlockQ8K;
    use super::BlockQ6K;

    /// Half `h` of a block's unsigned 6-bit quants: elements `128h + 32k ..` in vector `k`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn half_quants(b: &BlockQ6K, h: usize) -> [__m256i; 4] {
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(0x03);
        let ql0 = load_u8(&b.ql[64 * h..]);
        let ql1 = load_u8(&b.ql[64 * h + 32..]);
        let qh = load_u8(&b.qh[32 * h..]);
        // Each shift moves bits within a byte (the masks drop what crosses over).
        [
            _mm256_or_si256(
                _mm256_and_si256(ql0, m4),
                _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
            ),
            _mm256_or_si256(
                _mm256_and_si256(ql1, m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
            ),
        ]
    }

    /// ggml's recipe: rebuild the unsigned 6-bit quants, `maddubs` them with the activations and
    /// `madd` with the sub-block scales, and take the offset off through the activation sums.
    macro_rules! dot_body {
        ($x:expr, $y:expr, $madd:ident) => {{
            let mut acc = _mm256_setzero_ps();
            for (b, a) in $x.iter().zip($y.iter()) {
                let d = _mm256_set1_ps(a.scale() * f16(b.d));
                let scales = load_u8x16(bytemuck::cast_slice(&b.scales[..]));
                let mut sumi = _mm256_setzero_si256();
                for h in 0..2 {
                    let q = half_quants(b, h);
                    for (k, &qk) in q.iter().enumerate() {
                        let yk = load_i8(&a.qs[128 * h + 32 * k..]);
                        // |pairs| <= 2 * 63 * 128: no saturation.
                        let p = _mm256_maddubs_epi16(qk, yk);
                        sumi = $madd(sumi, scale_pair_i8(scales, 8 * h + 2 * k), p);
                    }
                }
                // The offset of 32 comes off at the end, as Σ scale·bsum per pair of
                // sub-blocks: the lanes then hold what ggml's hold, so the float sums agree.
                let offset = _mm256_madd_epi16(load_bsums(a), _mm256_cvtepi8_epi16(scales));
                let sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(offset, 5));
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc)
        }};
    }

    rows_kernel!(dot_rows_avx2, dot_avx2, BlockQ6K, BlockQ8K);

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_avx2)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_vnni(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_vnni)
    }
}

#[cfg(test)]
mod tests {
    use super::super::q8_k::test_support::*;
    use super::*;
    use crate::formats::testing::Rng;

    /// Σ over blocks of |d·yd| Σ |sc|·|q - 32|·|y|: every term either path rounds.
    fn magnitude(w: &[u8], a: &[u8]) -> f64 {
        let x: &[BlockQ6K] = as_blocks(w);
        let y: &[BlockQ8K] = as_blocks(a);
        let mut total = 0.0f64;
        for (b, a) in x.iter().zip(y) {
            let q = unpack(b);
            let s: f64 = (0..QK_K)
                .map(|i| (b.scales[i / 16] as f64 * q[i] as f64 * a.qs[i] as f64).abs())
                .sum();
            total += (f16_le(b.d) as f64 * a.scale() as f64).abs() * s;
        }
        total
    }

    #[test]
    fn simd_tiers_match_scalar_on_random_and_edge_blocks() {
        let mut rng = Rng::new(61);
        sweep(
            "Q6_K",
            &TRAITS,
            &mut rng,
            &mut |r, n| random_blocks(r, n, 210, &[208]),
            magnitude,
        );
        edge_sweep("Q6_K", &TRAITS, &[208], magnitude);
    }

    #[test]
    fn quantize_round_trip_error_is_bounded() {
        // 6 bits, symmetric, one scale per 16 values: about 0.017 measured (uniform-noise
        // estimate: range ~3.6 sigma / 63 steps / sqrt(12) = 0.0165).
        check_quantizer(&TRAITS, 0.02, 2e-3, 2e-3);
    }

    #[test]
    fn quantized_weights_dot_like_their_dequantized_values() {
        let mut rng = Rng::new(62);
        let x = gaussian(&mut rng, 1024, 1.0);
        let mut w = vec![0u8; 4 * 210];
        quantize(&x, &mut w);
        let a = q8k_row(&mut rng, 1024, Act::Random);
        check_against_dequant("Q6_K quantized", &TRAITS, 1024, &w, &a, magnitude(&w, &a));
    }

    #[test]
    fn dequantize_hand_built_block() {
        let mut b = BlockQ6K::zeroed();
        b.d = 0x3800u16.to_le_bytes(); // 0.5
        b.scales[0] = -3;
        b.scales[2] = 5;
        b.scales[12] = 127;
        b.scales[14] = -128;
        // Half 0, l = 1: element 1 = 0x0F | (3 << 4) = 63, element 33 = 0 | (1 << 4) = 16.
        b.ql[1] = 0x0F;
        b.ql[33] = 0x00;
        b.qh[1] = 0b0000_0111;
        // Half 1, l = 0: element 192 = 0xA | (2 << 4) = 42, element 224 = 0x1 | (0 << 4) = 1.
        b.ql[64] = 0xA0;
        b.ql[96] = 0x10;
        b.qh[32] = 0b0010_0000;
        let mut y = vec![0.0f32; QK_K];
        dequantize(bytemuck::bytes_of(&b), &mut y);
        assert_eq!(y[1], 0.5 * -3.0 * 31.0);
        assert_eq!(y[33], 0.5 * 5.0 * -16.0);
        assert_eq!(y[192], 0.5 * 127.0 * 10.0);
        assert_eq!(y[224], 0.5 * -128.0 * -31.0);
        assert_eq!(y[0], 0.5 * -3.0 * -32.0);
    }
}
