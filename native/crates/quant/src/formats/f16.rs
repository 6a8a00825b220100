//! F16: IEEE half-precision floats, little-endian (block size 1). Pairs with F32
//! activations: every f16 is exact in f32, so the dot only rounds in its sums.

use mistralrs_common::Isa;

use super::f32::BlockF32;
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

/// One little-endian IEEE f16.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockF16 {
    pub v: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockF16>() == 2);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::F16,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::F32,
    vec_dot,
};

fn dequantize(src: &[u8], dst: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    // half's slice conversion uses F16C when the CPU has it, but needs 2-byte alignment.
    match bytemuck::try_cast_slice::<u8, half::f16>(src) {
        Ok(h) => {
            let n = h.len().min(dst.len());
            h[..n].convert_to_f32_slice(&mut dst[..n]);
        }
        Err(_) => {
            for (b, o) in as_blocks::<BlockF16>(src).iter().zip(dst) {
                *o = f16_le(b.v);
            }
        }
    }
}

/// Round to nearest even (as ggml's `GGML_FP32_TO_FP16`); beyond ±65504 (after rounding)
/// values become ±inf, NaN stays NaN.
fn quantize(src: &[f32], dst: &mut [u8]) {
    for (&x, b) in src.iter().zip(as_blocks_mut::<BlockF16>(dst)) {
        b.v = f16_to_le(x);
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    assert!(
        weights.len() == n * 2 && activation.len() == n * 4,
        "f16 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockF16], &[BlockF32]) = (as_blocks(weights), as_blocks(activation));
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns tiers whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { simd::vec_dot_avx512(w, a) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::vec_dot_avx2(w, a) },
        _ => vec_dot_scalar(w, a),
    }
}

/// The reference: exact products, summed in f64.
fn vec_dot_scalar(w: &[BlockF16], a: &[BlockF32]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(x, y)| f16_le(x.v) as f64 * y.get() as f64)
        .sum::<f64>() as f32
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::f16_le;
    use super::super::f32::x86::*;
    use super::{BlockF16, BlockF32};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load_f16x8(x: &[BlockF16; 8]) -> __m256 {
        // SAFETY: reads exactly the 16 bytes of the array; loadu needs no alignment.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(x.as_ptr().cast()) })
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn load_f16x16(x: &[BlockF16; 16]) -> __m512 {
        // SAFETY: reads exactly the 32 bytes of the array; loadu needs no alignment.
        _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(x.as_ptr().cast()) })
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn vec_dot_avx2(w: &[BlockF16], a: &[BlockF32]) -> f32 {
        fma_dot_256!(w, a, load_f16x8, |x: &BlockF16| f16_le(x.v))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) fn vec_dot_avx512(w: &[BlockF16], a: &[BlockF32]) -> f32 {
        fma_dot_512!(w, a, load_f16x16, |x: &BlockF16| f16_le(x.v))
    }
}

#[cfg(test)]
mod tests {
    use super::super::f32::tests::{activation, check_float_dot, EDGE, FLOAT_LENGTHS};
    use super::super::testing::Rng;
    use super::*;

    fn to_f16(x: &[f32]) -> Vec<u8> {
        let mut q = vec![0u8; x.len() * 2];
        quantize(x, &mut q);
        q
    }

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockF16>(), GgmlType::F16.type_size());
        assert_eq!(GgmlType::F16.block_size(), 1);
    }

    #[test]
    fn dequantize_hand_built_values() {
        // 1.0, -2.0, 65504 (max), 2⁻²⁴ (smallest subnormal), -0.0, +inf.
        let bytes = [
            0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00, 0x00, 0x80, 0x00, 0x7C,
        ];
        let mut out = [0.0f32; 6];
        dequantize(&bytes, &mut out);
        assert_eq!(out[..4], [1.0, -2.0, 65504.0, 2f32.powi(-24)]);
        assert!(out[4] == 0.0 && out[4].is_sign_negative() && out[5] == f32::INFINITY);
        // The unaligned path gives the same.
        let mut shifted = [0u8; 13];
        shifted[1..].copy_from_slice(&bytes);
        let mut again = [0.0f32; 6];
        dequantize(&shifted[1..], &mut again);
        assert!(out
            .iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    /// Round to nearest even: |x - y| ≤ 2⁻¹¹·|x| in the normal range, ≤ 2⁻²⁵ among
    /// subnormals; ties go to the even mantissa; overflow past 65520 gives inf; NaN stays.
    #[test]
    fn quantize_rounds_to_nearest_even() {
        let mut rng = Rng::new(2);
        let x: Vec<f32> = (0..4096)
            .map(|i| rng.next_f32() * [1e-6, 1.0, 3e4][i % 3])
            .collect();
        let mut y = vec![0.0f32; x.len()];
        dequantize(&to_f16(&x), &mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!(
                (a - b).abs() <= (a.abs() * 2f32.powi(-11)).max(2f32.powi(-25)),
                "{a} -> {b}"
            );
        }
        let ulp = 2f32.powi(-10);
        let special = [
            1.0 + ulp / 2.0,
            1.0 + 1.5 * ulp,
            65519.0,
            65520.0,
            -1e9,
            f32::NAN,
            -0.0,
        ];
        let mut y = [0.0f32; 7];
        dequantize(&to_f16(&special), &mut y);
        assert_eq!(
            y[..5],
            [
                1.0,
                1.0 + 2.0 * ulp,
                65504.0,
                f32::INFINITY,
                f32::NEG_INFINITY
            ]
        );
        assert!(y[5].is_nan() && y[6].to_bits() == (-0.0f32).to_bits());
    }

    #[test]
    fn vec_dot_tiers_agree_with_the_f64_dot() {
        let mut rng = Rng::new(3);
        for n in FLOAT_LENGTHS {
            let w = to_f16(&rng.f32_vec(n, 3.0));
            let a = activation(&mut rng, n, 2.0);
            check_float_dot("random", &TRAITS, n, &w, &a);
        }
        for n in [10, 37, 300] {
            let w: Vec<f32> = (0..n)
                .map(|i| EDGE[i % EDGE.len()].clamp(-65504.0, 65504.0))
                .collect();
            let a: Vec<u8> = (0..n)
                .flat_map(|i| EDGE[(i * 3 + 1) % EDGE.len()].to_le_bytes())
                .collect();
            check_float_dot("edge", &TRAITS, n, &to_f16(&w), &a);
        }
        // Random bit patterns, minus inf/NaN (exponent all ones).
        for n in [33, 1000] {
            let mut w = vec![0u8; n * 2];
            rng.fill_bytes(&mut w);
            w.chunks_exact_mut(2)
                .filter(|h| h[1] & 0x7C == 0x7C)
                .for_each(|h| h[1] &= !0x40);
            let a = activation(&mut rng, n, 1.0);
            check_float_dot("random bits", &TRAITS, n, &w, &a);
        }
    }
}
