//! Q4_K dot products in the summation orders of llama.cpp's kernels for the Q4_K weights it
//! repacks 8 rows at a time at load (see [`super::x8`] for our interleaved layout), one row
//! at a time: for row-major matrices, decode steps and the reference of the interleaved
//! kernels.

use mistralrs_common::Isa;

use super::super::q8_k::{check_dot_lengths, BlockQ8K, QK_K};
use super::super::{as_blocks, clamp_isa, f16_le};
use super::{unpack_scale_min_k4, BlockQ4K};

/// The dot products in the orders of llama.cpp's x86 kernels for Q4_K weights repacked 8 rows
/// at a time at load: exact integer sums, then fused multiply-adds into a scalar accumulator,
/// the minimums into a second one subtracted at the end. Its GEMM (each group of 4 activation
/// rows of a batch) adds once per 64-element chunk, its GEMV (single rows, the rest of a
/// batch) once per block. [`super::vec_dot`]'s order (eight lanes summed at the end) is the one for
/// tensors it does not repack.
pub fn vec_dot_gemm_order(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    repacked_order_dot(isa, n, weights, activation, Accumulate::PerChunk)
}

/// See [`vec_dot_gemm_order`].
pub fn vec_dot_gemv_order(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    repacked_order_dot(isa, n, weights, activation, Accumulate::PerBlock)
}

/// [`vec_dot_gemv_order`] for consecutive rows in one call (decode steps).
pub fn vec_dot_gemv_order_rows(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    out: &mut [f32],
) {
    let row_bytes = std::mem::size_of::<BlockQ4K>() * n / QK_K;
    assert!(
        n.is_multiple_of(QK_K) && weights.len() == out.len() * row_bytes,
        "q4_k gemv rows: n = {n}, {} rows in {} bytes",
        out.len(),
        weights.len()
    );
    match clamp_isa(isa) {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni if !out.is_empty() => {
            check_dot_lengths(
                n,
                std::mem::size_of::<BlockQ4K>(),
                &weights[..row_bytes],
                activation,
            );
            // SAFETY: clamp_isa only returns a tier whose features this CPU has.
            unsafe {
                simd::gemv_rows_avx2(as_blocks(weights), n / QK_K, as_blocks(activation), out)
            }
        }
        _ => {
            for (o, row) in out.iter_mut().zip(weights.chunks_exact(row_bytes.max(1))) {
                *o = vec_dot_gemv_order(isa, n, row, activation);
            }
        }
    }
}

/// Rows × tokens in the repacked orders for a row-major matrix, one output at a time (models
/// interleave their matrices at load and use the faster [`super::x8_matmul`]): output `(t, r)` goes
/// to `out[t * out_stride + r]` and equals [`vec_dot_gemm_order`] (`gemm_order`, for the
/// tokens of llama.cpp's groups of 4) or [`vec_dot_gemv_order`]. `weights` holds a multiple
/// of 8 rows of `n` values, `activation` whole Q8_K rows of `n` values.
///
/// # Safety
/// `out` must be valid for writes at `t * out_stride + r` for every token `t` and row `r`, and
/// no other thread may access those indices during the call.
pub unsafe fn repacked_order_tiles(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    gemm_order: bool,
    out: *mut f32,
    out_stride: usize,
) {
    let row_bytes = std::mem::size_of::<BlockQ4K>() * n / QK_K;
    let act_bytes = std::mem::size_of::<BlockQ8K>() * n / QK_K;
    assert!(
        n > 0
            && n.is_multiple_of(QK_K)
            && weights.len().is_multiple_of(8 * row_bytes)
            && activation.len().is_multiple_of(act_bytes),
        "q4_k tiles: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let order = if gemm_order {
        vec_dot_gemm_order
    } else {
        vec_dot_gemv_order
    };
    for (r, row) in weights.chunks_exact(row_bytes).enumerate() {
        for (t, act) in activation.chunks_exact(act_bytes).enumerate() {
            // SAFETY: the caller's contract covers (t, r).
            unsafe { *out.add(t * out_stride + r) = order(isa, n, row, act) };
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Accumulate {
    PerChunk,
    PerBlock,
}

fn repacked_order_dot(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    when: Accumulate,
) -> f32 {
    check_dot_lengths(n, std::mem::size_of::<BlockQ4K>(), weights, activation);
    let x: &[BlockQ4K] = as_blocks(weights);
    let y: &[BlockQ8K] = as_blocks(activation);
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns a tier whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { simd::repacked_order_avx2(x, y, when) },
        _ => repacked_order_body(x, y, when, chunk_sums_scalar),
    }
}

/// The shared body; `chunk_sums(qs, ys)` gives the exact low- and high-nibble sums of a
/// 64-element chunk.
#[inline(always)]
pub(super) fn repacked_order_body(
    x: &[BlockQ4K],
    y: &[BlockQ8K],
    when: Accumulate,
    chunk_sums: impl Fn(&[u8], &[i8]) -> (i32, i32),
) -> f32 {
    let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
    for (b, a) in x.iter().zip(y) {
        let d = f16_le(b.d) * a.scale();
        let dmin = f16_le(b.dmin) * a.scale();
        let sm = unpack_scale_min_k4(&b.scales);
        let (mut isum, mut imin) = (0i32, 0i32);
        for c in 0..4 {
            let (lo, hi) = chunk_sums(&b.qs[32 * c..32 * c + 32], &a.qs[64 * c..64 * c + 64]);
            isum += sm[2 * c] as i32 * lo + sm[2 * c + 1] as i32 * hi;
            imin += sm[8 + 2 * c] as i32 * (a.bsum(4 * c) + a.bsum(4 * c + 1))
                + sm[8 + 2 * c + 1] as i32 * (a.bsum(4 * c + 2) + a.bsum(4 * c + 3));
            if when == Accumulate::PerChunk {
                acc = (isum as f32).mul_add(d, acc);
                acc_min = (imin as f32).mul_add(dmin, acc_min);
                (isum, imin) = (0, 0);
            }
        }
        if when == Accumulate::PerBlock {
            acc = (isum as f32).mul_add(d, acc);
            acc_min = (imin as f32).mul_add(dmin, acc_min);
        }
    }
    acc - acc_min
}

pub(super) fn chunk_sums_scalar(qs: &[u8], ys: &[i8]) -> (i32, i32) {
    let mut sums = (0i32, 0i32);
    for (l, &q) in qs.iter().enumerate() {
        sums.0 += (q & 0x0F) as i32 * ys[l] as i32;
        sums.1 += (q >> 4) as i32 * ys[32 + l] as i32;
    }
    sums
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::super::q8_k::simd::*;
    use super::super::super::q8_k::BlockQ8K;
    use super::super::BlockQ4K;

    /// Sum of the eight i32 lanes (exact).
    #[inline(always)]
    unsafe fn hsum_i32x8(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 1)))
    }

    /// `repacked_order_avx2` in the gemv order over consecutive rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn gemv_rows_avx2(w: &[BlockQ4K], per_row: usize, a: &[BlockQ8K], out: &mut [f32]) {
        for (o, row) in out.iter_mut().zip(w.chunks_exact(per_row)) {
            *o = repacked_order_avx2(row, a, super::Accumulate::PerBlock);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn repacked_order_avx2(
        x: &[BlockQ4K],
        y: &[BlockQ8K],
        when: super::Accumulate,
    ) -> f32 {
        super::repacked_order_body(x, y, when, |qs, ys| chunk_sums(qs, ys))
    }

    /// `(Σ low nibble · y[0..32], Σ high nibble · y[32..64])` of 32 quant bytes, exact.
    #[inline(always)]
    unsafe fn chunk_sums(qs: &[u8], ys: &[i8]) -> (i32, i32) {
        let m4 = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let q4 = load_u8(qs);
        let lo = _mm256_and_si256(q4, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
        // At most 2 * 15 * 128 per i16 pair: maddubs cannot saturate.
        let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load_i8(ys)), ones);
        let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load_i8(&ys[32..])), ones);
        (hsum_i32x8(p_lo), hsum_i32x8(p_hi))
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::q8_k::test_support::*;
    use super::super::test_support::*;
    use super::super::vec_dot;
    use super::*;
    use crate::formats::testing::Rng;

    #[test]
    fn repacked_orders_are_the_same_on_every_tier_and_close_to_vec_dot() {
        let mut rng = Rng::new(44);
        for blocks in [1usize, 3, 8] {
            let n = blocks * QK_K;
            let w = random_blocks(&mut rng, n, 144, &[0, 2]);
            let a = q8k_row(&mut rng, n, Act::Random);
            let plain = vec_dot(Isa::Scalar, n, &w, &a);
            let bound = magnitude(&w, &a) * 1e-5;
            for order in [vec_dot_gemm_order, vec_dot_gemv_order] {
                let scalar = order(Isa::Scalar, n, &w, &a);
                for isa in [Isa::Avx2, Isa::Avx512Vnni] {
                    let got = order(isa, n, &w, &a);
                    assert_eq!(got.to_bits(), scalar.to_bits(), "{isa:?}, {blocks} blocks");
                }
                assert!(
                    ((plain - scalar) as f64).abs() <= bound,
                    "{plain} vs {scalar}"
                );
            }
        }
    }

    #[test]
    fn row_major_tiles_equal_single_products_bit_for_bit() {
        let (w, acts) = weights_and_acts(45);
        check_both_orders(&w, &acts, |isa, gemm_order, out, stride| {
            // SAFETY: `out` holds TOKENS rows of `stride` values.
            unsafe { repacked_order_tiles(isa, BLOCKS * QK_K, &w, &acts, gemm_order, out, stride) }
        });
    }
}
