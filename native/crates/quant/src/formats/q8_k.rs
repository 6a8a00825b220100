//! Q8_K: 256 signed 8-bit quants with one f32 scale and the sums of each 16 quants.
//!
//! Not stored in model files: it is the activation format every K-quant (and IQ4_XS) dot
//! product pairs with. `bsums` lets those dot products fold a block's minimums in with one
//! multiply per 16 weights instead of one per weight.
//!
//! This module also holds what the K-quant modules share: the x86 helpers their SIMD paths are
//! built from ([`simd`]) and, for tests, the activation generators and tier checks.

use bytemuck::{Pod, Zeroable};
use mistralrs_common::{selected_isa, Isa};

use super::{as_blocks, as_blocks_mut, clamp_isa, TypeTraits};
use crate::GgmlType;

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

/// One Q8_K block: value `i` is `d * qs[i]`; `bsums[j]` is the sum of `qs[16j..16j + 16]`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8K {
    /// f32, little-endian.
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    /// 16 little-endian i16.
    pub bsums: [[u8; 2]; QK_K / 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl BlockQ8K {
    #[inline(always)]
    pub fn scale(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    #[inline(always)]
    pub fn bsum(&self, j: usize) -> i32 {
        i16::from_le_bytes(self.bsums[j]) as i32
    }
}

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q8_K,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot,
};

/// Panics unless `weights` holds exactly `n` elements of blocks of `weight_block_bytes` and
/// `activation` exactly `n` elements of Q8_K: the one check that keeps every SIMD load in bounds.
#[inline(always)]
pub(crate) fn check_dot_lengths(n: usize, weight_block_bytes: usize, weights: &[u8], act: &[u8]) {
    assert!(
        n.is_multiple_of(QK_K)
            && weights.len() == n / QK_K * weight_block_bytes
            && act.len() == n / QK_K * std::mem::size_of::<BlockQ8K>(),
        "vec_dot: {n} elements need {} weight bytes and {} Q8_K bytes, got {} and {}",
        n / QK_K * weight_block_bytes,
        n / QK_K * std::mem::size_of::<BlockQ8K>(),
        weights.len(),
        act.len()
    );
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ8K] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.scale();
        for (o, &q) in out.iter_mut().zip(b.qs.iter()) {
            *o = d * q as f32;
        }
    }
}

/// Quantizes with the selected ISA (the SIMD path writes the same bytes as the scalar one for
/// finite input).
fn quantize(src: &[f32], dst: &mut [u8]) {
    quantize_with(selected_isa(), src, dst);
}

pub(crate) fn quantize_with(isa: Isa, src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ8K] = as_blocks_mut(dst);
    assert_eq!(
        src.len(),
        blocks.len() * QK_K,
        "Q8_K quantize: length mismatch"
    );
    match clamp_isa(isa) {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => {
            for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
                // SAFETY: clamp_isa returned at least Avx2, so the CPU has AVX2, FMA and F16C.
                unsafe { simd::quantize_block_avx2(x, b) };
            }
        }
        _ => {
            for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
                quantize_block_scalar(x, b);
            }
        }
    }
}

/// ggml's `quantize_row_q8_K_ref`: the value of largest magnitude (first one on ties) maps to
/// -127, everything else to the nearest integer (ties to even) of `x * -127 / max`.
fn quantize_block_scalar(x: &[f32], b: &mut BlockQ8K) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        *b = BlockQ8K::zeroed();
        return;
    }
    let iscale = -127.0 / max;
    for (q, &v) in b.qs.iter_mut().zip(x) {
        *q = ((iscale * v).round_ties_even() as i32).clamp(-128, 127) as i8;
    }
    fill_bsums(b);
    b.d = (1.0 / iscale).to_le_bytes();
}

pub(crate) fn fill_bsums(b: &mut BlockQ8K) {
    for (j, sum) in b.bsums.iter_mut().enumerate() {
        let s: i16 = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum();
        *sum = s.to_le_bytes();
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    check_dot_lengths(n, std::mem::size_of::<BlockQ8K>(), weights, activation);
    let x: &[BlockQ8K] = as_blocks(weights);
    let y: &[BlockQ8K] = as_blocks(activation);
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns a tier whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { simd::dot_q8k_vnni(x, y) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::dot_q8k_avx2(x, y) },
        _ => dot_scalar(x, y),
    }
}

fn dot_scalar(x: &[BlockQ8K], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (a, b) in x.iter().zip(y) {
        let isum: i32 =
            a.qs.iter()
                .zip(b.qs.iter())
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
        sum += a.scale() * b.scale() * isum as f32;
    }
    sum
}

/// x86 building blocks shared by the K-quant dot products. Loads take slices and check their
/// length (constant-folded for the fixed-size block fields), so they are safe to call.
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use std::arch::x86_64::*;

    use super::{fill_bsums, BlockQ8K, QK_K};

    /// Loads the first 32 bytes of `s` (unaligned).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn load_u8(s: &[u8]) -> __m256i {
        let s = &s[..32];
        // SAFETY: `s` is exactly 32 readable bytes; loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
    }

    /// Loads the first 32 quants of `s` (unaligned).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn load_i8(s: &[i8]) -> __m256i {
        let s = &s[..32];
        // SAFETY: as in load_u8.
        unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
    }

    /// Loads the first 16 bytes of `s` (unaligned).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn load_u8x16(s: &[u8]) -> __m128i {
        let s = &s[..16];
        // SAFETY: `s` is exactly 16 readable bytes; loadu has no alignment requirement.
        unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
    }

    /// The 16 bsums of a Q8_K block as i16 lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn load_bsums(b: &BlockQ8K) -> __m256i {
        load_u8(bytemuck::cast_slice(&b.bsums[..]))
    }

    /// An IEEE half to f32 with F16C (exact, like `f16_le`).
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    pub fn f16(bytes: [u8; 2]) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            u16::from_le_bytes(bytes) as i32
        )))
    }

    /// The exact sum of 8 i32 lanes (callers keep it from overflowing).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn hsum_i32x8(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
    }

    /// Sum of the 8 lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn hsum_f32x8(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// `acc + madd(a, b)`: i16 pairs multiplied and added into i32 lanes (AVX2 tier).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn madd_acc_avx2(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }

    /// The same sum in one `vpdpwssd` (AVX-512 VNNI + VL tier); wraps exactly like the above.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
    #[inline]
    pub fn madd_acc_vnni(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }

    /// 16 i16 lanes where lanes 0..8 hold byte `a` of `bytes` and lanes 8..16 byte `a + 1`,
    /// sign-extended: the scales of two consecutive 16-element sub-blocks, laid out to match
    /// the i16 pair sums `maddubs` makes of one 32-element chunk.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn scale_pair_i8(bytes: __m128i, a: usize) -> __m256i {
        let lo = (a as i64 & 15) * 0x0101_0101_0101_0101;
        let hi = ((a as i64 + 1) & 15) * 0x0101_0101_0101_0101;
        _mm256_cvtepi8_epi16(_mm_shuffle_epi8(bytes, _mm_set_epi64x(hi, lo)))
    }

    /// Shuffle control that copies i16 lane `j` (of 8 per 128-bit half) into every lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn broadcast_i16_lane(j: usize) -> __m256i {
        let j = (j & 7) as i16;
        _mm256_set1_epi16(((2 * j + 1) << 8) | (2 * j))
    }

    /// Q8_K quantization with identical output bytes to the scalar path for finite input.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn quantize_block_avx2(x: &[f32], b: &mut BlockQ8K) {
        let x = &x[..QK_K];
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut vmax = _mm256_setzero_ps();
        let mut v = [_mm256_setzero_ps(); 32];
        for (i, vi) in v.iter_mut().enumerate() {
            let s = &x[8 * i..8 * i + 8];
            // SAFETY: `s` is exactly 8 readable f32; loadu has no alignment requirement.
            *vi = unsafe { _mm256_loadu_ps(s.as_ptr()) };
            // NaN lanes of the first operand lose to the running max, as in the scalar `>`.
            vmax = _mm256_max_ps(_mm256_and_ps(*vi, abs_mask), vmax);
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` is 8 writable f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vmax) };
        let amax = lanes.iter().fold(0.0f32, |m, &l| if l > m { l } else { m });
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            return;
        }
        // The first element of that magnitude gives the sign, as in the scalar scan.
        let target = _mm256_set1_ps(amax);
        let mut max = amax;
        for (i, vi) in v.iter().enumerate() {
            let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(
                _mm256_and_ps(*vi, abs_mask),
                target,
            ));
            if hit != 0 {
                max = x[8 * i + hit.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let vscale = _mm256_set1_ps(iscale);
        let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for c in 0..8 {
            // cvtps rounds to nearest even (the default MXCSR mode), like round_ties_even.
            let i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * c], vscale));
            let i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * c + 1], vscale));
            let i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * c + 2], vscale));
            let i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * c + 3], vscale));
            // Saturating packs clamp to [-128, 127]; the lane shuffles they make are undone by
            // the final permute.
            let p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            let q = _mm256_permutevar8x32_epi32(p, perm);
            let out = &mut b.qs[32 * c..32 * c + 32];
            // SAFETY: `out` is exactly 32 writable bytes; storeu has no alignment requirement.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), q) };
        }
        fill_bsums(b);
        b.d = (1.0 / iscale).to_le_bytes();
    }

    macro_rules! dot_q8k_body {
        ($x:expr, $y:expr, $madd:ident) => {{
            let mut acc = _mm256_setzero_ps();
            for (a, b) in $x.iter().zip($y.iter()) {
                let mut sumi = _mm256_setzero_si256();
                for c in 0..8 {
                    let p = load_i8(&a.qs[32 * c..]);
                    let q = load_i8(&b.qs[32 * c..]);
                    // Widen to i16 so -128 * -128 is exact (maddubs' sign trick is not).
                    let p0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(p));
                    let p1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(p, 1));
                    let q0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q));
                    let q1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1));
                    sumi = $madd(sumi, p0, q0);
                    sumi = $madd(sumi, p1, q1);
                }
                let d = _mm256_set1_ps(a.scale() * b.scale());
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc)
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8k_avx2(x: &[BlockQ8K], y: &[BlockQ8K]) -> f32 {
        dot_q8k_body!(x, y, madd_acc_avx2)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q8k_vnni(x: &[BlockQ8K], y: &[BlockQ8K]) -> f32 {
        dot_q8k_body!(x, y, madd_acc_vnni)
    }
}

/// Generators and checks shared by the K-quant tests.
#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::formats::testing::{assert_close, tiers, Rng};

    fn quant(isa: Isa, x: &[f32]) -> Vec<u8> {
        let mut out = vec![0u8; x.len() / QK_K * 292];
        quantize_with(isa, x, &mut out);
        out
    }

    #[test]
    fn simd_quantize_writes_the_scalar_bytes() {
        let mut rng = Rng::new(1);
        let mut cases: Vec<Vec<f32>> = (0..8)
            .map(|i| rng.f32_vec(4 * QK_K, 10f32.powi(i - 4)))
            .collect();
        cases.push(vec![0.0; QK_K]);
        cases.push(vec![-0.0; QK_K]);
        let mut tie = vec![0.0f32; QK_K];
        tie[7] = -3.0; // first of the tied magnitudes wins: negative max
        tie[200] = 3.0;
        tie[9] = 1.5 * 3.0 / 127.0; // exactly half-way between two quants
        cases.push(tie);
        let mut spike = vec![1e-6f32; QK_K];
        spike[255] = 1e4;
        cases.push(spike);
        for x in &cases {
            let want = quant(Isa::Scalar, x);
            for isa in tiers() {
                assert!(quant(isa, x) == want, "{isa} quantization differs");
            }
        }
    }

    #[test]
    fn quantize_survives_non_finite_input() {
        let mut x = vec![1.0f32; QK_K];
        x[5] = f32::NAN;
        x[6] = f32::INFINITY;
        for isa in tiers() {
            quant(isa, &x);
            quant(isa, &[f32::NAN; QK_K]);
            quant(isa, &[f32::NEG_INFINITY; QK_K]);
        }
    }

    #[test]
    fn quantize_follows_ggml() {
        // max = -127 makes iscale exactly 1, so the ties below are exact.
        let mut x = vec![0.0f32; QK_K];
        x[7] = -127.0;
        x[200] = 127.0;
        x[9] = 1.5;
        x[10] = 2.5;
        x[11] = -0.5;
        x[12] = 0.49;
        let bytes = quant(Isa::Scalar, &x);
        let b: &BlockQ8K = &as_blocks::<BlockQ8K>(&bytes)[0];
        assert_eq!(b.scale(), 1.0);
        assert_eq!(
            (b.qs[7], b.qs[200], b.qs[9], b.qs[10], b.qs[11], b.qs[12]),
            (-127, 127, 2, 2, 0, 0)
        );
        assert_eq!(b.bsum(0), -127 + 2 + 2);
        assert_eq!(b.bsum(12), 127);
        let zero = quant(Isa::Scalar, &[0.0; QK_K]);
        assert!(zero.iter().all(|&v| v == 0));
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step() {
        let mut rng = Rng::new(2);
        let x = gaussian(&mut rng, 8 * QK_K, 2.0);
        let bytes = quant(Isa::Scalar, &x);
        let y = dequant(&TRAITS, &bytes, x.len());
        for (blk, b) in as_blocks::<BlockQ8K>(&bytes).iter().enumerate() {
            let step = b.scale().abs();
            for i in 0..QK_K {
                let k = blk * QK_K + i;
                assert_close("Q8_K round trip", y[k], x[k], 0.5 * step * 1.0001, 0.0);
            }
        }
    }

    fn magnitude(w: &[u8], a: &[u8]) -> f64 {
        let x: &[BlockQ8K] = as_blocks(w);
        let y: &[BlockQ8K] = as_blocks(a);
        x.iter()
            .zip(y)
            .map(|(p, q)| {
                let s: i64 =
                    p.qs.iter()
                        .zip(&q.qs)
                        .map(|(&u, &v)| (u as i64 * v as i64).abs())
                        .sum();
                (p.scale() as f64 * q.scale() as f64).abs() * s as f64
            })
            .sum()
    }

    #[test]
    fn vec_dot_tiers_match_scalar_and_dequantized_product() {
        let mut rng = Rng::new(3);
        for n in [256, 512, 4096] {
            for (wk, ak) in [
                (Act::Random, Act::Random),
                (Act::AllMin, Act::AllMin),
                (Act::Extremes, Act::AllMax),
            ] {
                let w = q8k_row(&mut rng, n, wk);
                let a = q8k_row(&mut rng, n, ak);
                let mag = magnitude(&w, &a);
                check_tiers("Q8_K", &TRAITS, n, &w, &a, mag);
                check_against_dequant("Q8_K", &TRAITS, n, &w, &a, mag);
            }
        }
    }

    #[test]
    fn dequantize_hand_built_block() {
        let mut b = BlockQ8K::zeroed();
        b.d = 0.5f32.to_le_bytes();
        b.qs[0] = -128;
        b.qs[1] = 127;
        b.qs[255] = 3;
        let y = dequant(&TRAITS, bytemuck::bytes_of(&b), QK_K);
        assert_eq!((y[0], y[1], y[2], y[255]), (-64.0, 63.5, 0.0, 1.5));
    }
}
