//! BF16: the top 16 bits of an f32, little-endian (block size 1). Pairs with F32
//! activations; widening is a 16-bit shift, exact.

use mistralrs_common::Isa;

use super::f32::BlockF32;
use super::{as_blocks, as_blocks_mut, clamp_isa, TypeTraits};
use crate::GgmlType;

/// One little-endian bf16.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockBf16 {
    pub v: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockBf16>() == 2);

impl BlockBf16 {
    #[inline(always)]
    pub fn get(self) -> f32 {
        f32::from_bits((u16::from_le_bytes(self.v) as u32) << 16)
    }
}

/// f32 to bf16 bits, rounding to nearest even as ggml's `ggml_compute_fp32_to_bf16`; NaN
/// stays NaN (quiet bit forced, so truncating the payload cannot make it inf).
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7FFF_FFFF > 0x7F80_0000 {
        return ((u >> 16) | 0x40) as u16;
    }
    // Adding 0x7FFF plus the lowest kept bit rounds half to even; a carry into the exponent
    // is the correct rounding up (up to inf). Cannot overflow: u ≤ 0xFF80_0000 here.
    ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) as u16
}

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::BF16,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::F32,
    vec_dot,
};

fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, o) in as_blocks::<BlockBf16>(src).iter().zip(dst) {
        *o = b.get();
    }
}

fn quantize(src: &[f32], dst: &mut [u8]) {
    for (&x, b) in src.iter().zip(as_blocks_mut::<BlockBf16>(dst)) {
        b.v = f32_to_bf16_bits(x).to_le_bytes();
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    assert!(
        weights.len() == n * 2 && activation.len() == n * 4,
        "bf16 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockBf16], &[BlockF32]) = (as_blocks(weights), as_blocks(activation));
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
fn vec_dot_scalar(w: &[BlockBf16], a: &[BlockF32]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(x, y)| x.get() as f64 * y.get() as f64)
        .sum::<f64>() as f32
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::f32::x86::*;
    use super::{BlockBf16, BlockF32};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load_bf16x8(x: &[BlockBf16; 8]) -> __m256 {
        // SAFETY: reads exactly the 16 bytes of the array; loadu needs no alignment.
        let h = unsafe { _mm_loadu_si128(x.as_ptr().cast()) };
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn load_bf16x16(x: &[BlockBf16; 16]) -> __m512 {
        // SAFETY: reads exactly the 32 bytes of the array; loadu needs no alignment.
        let h = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn vec_dot_avx2(w: &[BlockBf16], a: &[BlockF32]) -> f32 {
        fma_dot_256!(w, a, load_bf16x8, |x: &BlockBf16| x.get())
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) fn vec_dot_avx512(w: &[BlockBf16], a: &[BlockF32]) -> f32 {
        fma_dot_512!(w, a, load_bf16x16, |x: &BlockBf16| x.get())
    }
}

#[cfg(test)]
mod tests {
    use super::super::f32::tests::{activation, check_float_dot, EDGE, FLOAT_LENGTHS};
    use super::super::testing::Rng;
    use super::*;

    fn to_bf16(x: &[f32]) -> Vec<u8> {
        let mut q = vec![0u8; x.len() * 2];
        quantize(x, &mut q);
        q
    }

    fn from_bf16(q: &[u8]) -> Vec<f32> {
        let mut y = vec![0.0f32; q.len() / 2];
        dequantize(q, &mut y);
        y
    }

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockBf16>(), GgmlType::BF16.type_size());
        assert_eq!(GgmlType::BF16.block_size(), 1);
    }

    #[test]
    fn dequantize_hand_built_values() {
        // 1.0 (0x3F80), -3.0 (0xC040), 2⁻¹³³ (0x0001, smallest subnormal), -inf (0xFF80).
        let out = from_bf16(&[0x80, 0x3F, 0x40, 0xC0, 0x01, 0x00, 0x80, 0xFF]);
        assert_eq!(
            out,
            [1.0, -3.0, f32::from_bits(0x0001_0000), f32::NEG_INFINITY]
        );
    }

    /// Round to nearest even: |x - y| ≤ 2⁻⁸·|x| for normal values (8 significant bits);
    /// ties go to the even mantissa; the largest f32 rounds up to inf; NaN stays NaN (also
    /// a NaN whose payload sits only in the discarded bits); infinities stay.
    #[test]
    fn quantize_rounds_to_nearest_even() {
        let mut rng = Rng::new(4);
        let x: Vec<f32> = (0..4096)
            .map(|i| rng.next_f32() * [1e-30, 1.0, 1e30][i % 3])
            .collect();
        for (a, b) in x.iter().zip(from_bf16(&to_bf16(&x))) {
            assert!((a - b).abs() <= a.abs() * 2f32.powi(-8), "{a} -> {b}");
            let h = half::bf16::from_f32(*a).to_f32();
            assert_eq!(
                b.to_bits(),
                h.to_bits(),
                "{a}: half's bf16 rounding differs"
            );
        }
        let ulp = 2f32.powi(-7);
        let tricky = f32::from_bits(0x7F80_0001);
        let special = [
            1.0 + ulp / 2.0,
            1.0 + 1.5 * ulp,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            tricky,
            -0.0,
        ];
        let y = from_bf16(&to_bf16(&special));
        assert_eq!(y[..4], [1.0, 1.0 + 2.0 * ulp, f32::INFINITY, f32::INFINITY]);
        assert!(y[4].is_nan() && y[5].is_nan() && y[6].to_bits() == (-0.0f32).to_bits());
    }

    #[test]
    fn vec_dot_tiers_agree_with_the_f64_dot() {
        let mut rng = Rng::new(5);
        for n in FLOAT_LENGTHS {
            let w = to_bf16(&rng.f32_vec(n, 3.0));
            let a = activation(&mut rng, n, 2.0);
            check_float_dot("random", &TRAITS, n, &w, &a);
        }
        for n in [10, 37, 300] {
            let w: Vec<f32> = (0..n).map(|i| EDGE[i % EDGE.len()]).collect();
            let a: Vec<u8> = (0..n)
                .flat_map(|i| EDGE[(i * 3 + 1) % EDGE.len()].to_le_bytes())
                .collect();
            check_float_dot("edge", &TRAITS, n, &to_bf16(&w), &a);
        }
        // Random bit patterns, minus inf/NaN, and large magnitudes kept finite in products.
        for n in [33, 1000] {
            let mut w = vec![0u8; n * 2];
            rng.fill_bytes(&mut w);
            w.chunks_exact_mut(2)
                .for_each(|h| h[1] = (h[1] & 0x80) | (h[1] & 0x7F).clamp(0x30, 0x4F));
            let a = activation(&mut rng, n, 1.0);
            check_float_dot("random bits", &TRAITS, n, &w, &a);
        }
    }
}
