//! Blocks of 32 four-bit codes into a 16-entry integer table under one scale (IQ4_NL's
//! non-uniform table, MXFP4's E2M1): their dot products with Q8_0 activations in ggml's
//! orders. Byte j of a block's codes holds element j in its low nibble and j + 16 in its
//! high one.

use mistralrs_common::Isa;

use super::q8_0::BlockQ8_0;
use super::{clamp_isa, f16_le};

pub(crate) trait TableBlock: bytemuck::Pod {
    const TABLE: [i8; 16];
    fn codes(&self) -> &[u8; 16];
    /// The unit of the table's values in this block.
    fn scale(&self) -> f32;
}

/// A block's exact integer dot product with an activation block.
pub(crate) fn block_sum<B: TableBlock>(x: &B, y: &BlockQ8_0) -> i32 {
    let (ylo, yhi) = y.qs.split_at(16);
    let mut sumi = 0i32;
    for ((&q, &l), &h) in x.codes().iter().zip(ylo).zip(yhi) {
        sumi += B::TABLE[(q & 0x0F) as usize] as i32 * l as i32;
        sumi += B::TABLE[(q >> 4) as usize] as i32 * h as i32;
    }
    sumi
}

/// The reference: exact integer sum per block, then `dy·scale` per block.
pub(crate) fn dot_scalar<B: TableBlock>(w: &[B], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        sum += f16_le(y.d) * x.scale() * block_sum(x, y) as f32;
    }
    sum
}

/// llama.cpp repacks these types' matrices of whole 8-row groups at load on x86 (8 rows
/// interleaved) and computes them in its own order, for single tokens and batches alike: per
/// row, each block's exact integer sum times `scale·dy`, fused-multiply-added into one scalar
/// accumulator.
#[inline(always)]
pub(crate) fn repacked_order<B: TableBlock>(w: &[B], a: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        acc = (block_sum(x, y) as f32).mul_add(x.scale() * f16_le(y.d), acc);
    }
    acc
}

/// One row's weights and activation as blocks, their lengths checked.
fn blocks<'a, B: TableBlock>(
    what: &str,
    n: usize,
    weights: &'a [u8],
    activation: &'a [u8],
) -> (&'a [B], &'a [BlockQ8_0]) {
    let nb = n / 32;
    let size = std::mem::size_of::<B>();
    assert!(
        n.is_multiple_of(32) && weights.len() == nb * size && activation.len() == nb * 34,
        "{what}: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    (super::as_blocks(weights), super::as_blocks(activation))
}

/// The type's `vec_dot`: ggml's AVX2 pair order from the AVX2 tier on, else the reference.
pub(crate) fn vec_dot<B: TableBlock>(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let (w, a) = blocks::<B>("vec_dot", n, weights, activation);
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns tiers whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { simd::pair_order(w, a) },
        _ => dot_scalar(w, a),
    }
}

/// One row in [`repacked_order`] (with FMA as one instruction where the CPU has it).
pub(crate) fn vec_dot_repacked<B: TableBlock>(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
) -> f32 {
    let (w, a) = blocks::<B>("repacked order", n, weights, activation);
    #[cfg(target_arch = "x86_64")]
    if clamp_isa(isa) >= Isa::Avx2 {
        // SAFETY: the AVX2 tier implies FMA.
        return unsafe { simd::repacked_order_fma(w, a) };
    }
    let _ = isa;
    repacked_order(w, a)
}

/// [`vec_dot_repacked`] for consecutive rows against one activation row.
pub(crate) fn vec_dot_repacked_rows<B: TableBlock>(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    out: &mut [f32],
) {
    let row_bytes = n / 32 * std::mem::size_of::<B>();
    for (o, row) in out.iter_mut().zip(weights.chunks_exact(row_bytes)) {
        *o = vec_dot_repacked::<B>(isa, n, row, activation);
    }
}

/// [`vec_dot_repacked`] for rows × tokens (llama.cpp's GEMM tiles of 4 tokens and its GEMV
/// share the order): output `(t, r)` at `out[t * out_stride + r]`; `weights` holds whole rows
/// of `n` values, `activation` whole Q8_0 rows.
///
/// # Safety
/// `out` must be valid for writes at `t * out_stride + r` for every token `t` and row `r`, and
/// no other thread may access those indices during the call.
pub(crate) unsafe fn repacked_order_tiles<B: TableBlock>(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    _gemm_order: bool,
    out: *mut f32,
    out_stride: usize,
) {
    let row_bytes = n / 32 * std::mem::size_of::<B>();
    for (t, act) in activation.chunks_exact(n / 32 * 34).enumerate() {
        for (r, row) in weights.chunks_exact(row_bytes).enumerate() {
            // SAFETY: the caller's contract covers (t, r).
            unsafe { *out.add(t * out_stride + r) = vec_dot_repacked::<B>(isa, n, row, act) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use super::super::q8_0::x86::*;
    use super::{block_sum, BlockQ8_0, TableBlock};
    use std::arch::x86_64::*;

    /// One block's products as 8 lanes of 4 (as ggml's `mul_add_epi8` and `madd`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn lanes<B: TableBlock>(x: &B, y: &BlockQ8_0) -> __m256 {
        // The table in both 128-bit halves: pshufb looks up each nibble within its half.
        let k = B::TABLE;
        let table = _mm256_setr_epi8(
            k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10], k[11], k[12], k[13],
            k[14], k[15], k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10], k[11],
            k[12], k[13], k[14], k[15],
        );
        let q = _mm256_shuffle_epi8(table, unpack_nibbles(x.codes()));
        dot_i8_avx2(load_i8(&y.qs), q)
    }

    /// ggml's AVX2 order: blocks in pairs, the even ones into one accumulator and the odd
    /// ones into another (lanes times `dy·scale`, fused), the two added and reduced; an odd
    /// last block fused in after (`sumf += d * sumi`, which its compiler fuses), from its
    /// exact integer sum.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn pair_order<B: TableBlock>(w: &[B], a: &[BlockQ8_0]) -> f32 {
        let (mut acc1, mut acc2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in 0..w.len() / 2 {
            let (x0, x1, y0, y1) = (&w[2 * i], &w[2 * i + 1], &a[2 * i], &a[2 * i + 1]);
            let s0 = _mm256_set1_ps(f16_to_f32(y0.d) * x0.scale());
            let s1 = _mm256_set1_ps(f16_to_f32(y1.d) * x1.scale());
            acc1 = _mm256_fmadd_ps(s0, lanes(x0, y0), acc1);
            acc2 = _mm256_fmadd_ps(s1, lanes(x1, y1), acc2);
        }
        let mut sum = hsum(_mm256_add_ps(acc1, acc2));
        if w.len() % 2 == 1 {
            let (x, y) = (&w[w.len() - 1], &a[w.len() - 1]);
            let d = f16_to_f32(y.d) * x.scale();
            sum = (block_sum(x, y) as f32).mul_add(d, sum);
        }
        sum
    }

    /// [`super::repacked_order`] with FMA as one instruction.
    #[target_feature(enable = "fma")]
    pub(crate) fn repacked_order_fma<B: TableBlock>(w: &[B], a: &[BlockQ8_0]) -> f32 {
        super::repacked_order(w, a)
    }
}
