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

/// The dot products in the orders of llama.cpp's x86 kernels for Q4_K weights repacked 8 rows
/// at a time at load: exact integer sums, then fused multiply-adds into a scalar accumulator,
/// the minimums into a second one subtracted at the end. Its GEMM (each group of 4 activation
/// rows of a batch) adds once per 64-element chunk, its GEMV (single rows, the rest of a
/// batch) once per block. [`vec_dot`]'s order (eight lanes summed at the end) is the one for
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
/// interleave their matrices at load and use the faster [`x8_matmul`]): output `(t, r)` goes
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

/// Q4_K rows interleaved 8 at a time at load, as llama.cpp repacks them on x86, with the
/// scales unpacked: per group of 8 rows and per block, the rows' `d` and `dmin`, each
/// sub-block's 6-bit scales and minimums (`[sub-block][row]`), then 32 vectors of 32 bytes:
/// byte `4r + e` of vector `8c + j` is byte `32c + 4j + e` of row `r`'s quants (so 4 nibbles
/// of every row sit side by side in one i32 lane).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4Kx8 {
    pub d: [[u8; 2]; 8],
    pub dmin: [[u8; 2]; 8],
    pub scales: [[u8; 8]; 8],
    pub mins: [[u8; 8]; 8],
    pub qs: [u8; 1024],
}
const _: () = assert!(std::mem::size_of::<BlockQ4Kx8>() == 1184);

/// Bytes of `rows` (a multiple of 8) rows of `cols` values once interleaved.
pub fn x8_bytes(rows: usize, cols: usize) -> usize {
    rows / 8 * (cols / QK_K) * std::mem::size_of::<BlockQ4Kx8>()
}

/// Interleaves `rows` (a multiple of 8) rows of `cols` values into [`BlockQ4Kx8`] groups.
pub fn repack_x8(rows: usize, cols: usize, src: &[u8]) -> Vec<u8> {
    let nb = cols / QK_K;
    assert!(
        rows.is_multiple_of(8) && cols.is_multiple_of(QK_K) && src.len() == rows * nb * 144,
        "q4_k repack: {rows} rows of {cols} in {} bytes",
        src.len()
    );
    let blocks: &[BlockQ4K] = as_blocks(src);
    let mut out = vec![0u8; x8_bytes(rows, cols)];
    let groups: &mut [BlockQ4Kx8] = as_blocks_mut(&mut out);
    for (g, group) in groups.chunks_exact_mut(nb).enumerate() {
        for (b, x8) in group.iter_mut().enumerate() {
            for r in 0..8 {
                let x = &blocks[(8 * g + r) * nb + b];
                x8.d[r] = x.d;
                x8.dmin[r] = x.dmin;
                let sm = unpack_scale_min_k4(&x.scales);
                for k in 0..8 {
                    x8.scales[k][r] = sm[k];
                    x8.mins[k][r] = sm[8 + k];
                }
                for v in 0..32 {
                    let (c, j) = (v / 8, v % 8);
                    let from = 32 * c + 4 * j;
                    x8.qs[32 * v + 4 * r..32 * v + 4 * r + 4]
                        .copy_from_slice(&x.qs[from..from + 4]);
                }
            }
        }
    }
    out
}

/// Row `r`'s block back out of a group-block.
fn block_of(x8: &BlockQ4Kx8, r: usize) -> BlockQ4K {
    let sc: [u8; 8] = std::array::from_fn(|k| x8.scales[k][r]);
    let mn: [u8; 8] = std::array::from_fn(|k| x8.mins[k][r]);
    BlockQ4K {
        d: x8.d[r],
        dmin: x8.dmin[r],
        scales: pack_scale_min_k4(&sc, &mn),
        qs: std::array::from_fn(|i| {
            let (c, l) = (i / 32, i % 32);
            x8.qs[32 * (8 * c + l / 4) + 4 * r + l % 4]
        }),
    }
}

/// Every row (groups made by [`repack_x8`]) × every token of `activation` (whole Q8_K rows of
/// `n` values) in the repacked orders: output `(t, r)` goes to `out[t * out_stride + r]` and
/// equals [`vec_dot_gemm_order`] (`gemm_order`) or [`vec_dot_gemv_order`] bit for bit.
///
/// # Safety
/// `out` must be valid for writes at `t * out_stride + r` for every token `t` and row `r`, and
/// no other thread may access those indices during the call.
pub unsafe fn x8_matmul(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    gemm_order: bool,
    out: *mut f32,
    out_stride: usize,
) {
    let nb = n / QK_K;
    let group_bytes = nb * std::mem::size_of::<BlockQ4Kx8>();
    let act_bytes = nb * std::mem::size_of::<BlockQ8K>();
    assert!(
        nb > 0
            && n.is_multiple_of(QK_K)
            && weights.len().is_multiple_of(group_bytes)
            && activation.len().is_multiple_of(act_bytes),
        "q4_k x8 matmul: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ4Kx8], &[BlockQ8K]) = (as_blocks(weights), as_blocks(activation));
    let n_tokens = a.len() / nb;
    #[cfg(target_arch = "x86_64")]
    if clamp_isa(isa) >= Isa::Avx2 {
        // SAFETY: clamp_isa only returns tiers whose features this CPU has; the caller vouches
        // for `out`.
        unsafe { simd::x8_matmul_avx2(w, nb, a, n_tokens, gemm_order, out, out_stride) };
        return;
    }
    let _ = isa;
    let when = if gemm_order {
        Accumulate::PerChunk
    } else {
        Accumulate::PerBlock
    };
    for (g, group) in w.chunks_exact(nb).enumerate() {
        for r in 0..8 {
            let row: Vec<BlockQ4K> = group.iter().map(|x8| block_of(x8, r)).collect();
            for t in 0..n_tokens {
                let y = &a[t * nb..(t + 1) * nb];
                let value = repacked_order_body(&row, y, when, chunk_sums_scalar);
                // SAFETY: the caller's contract covers (t, 8g + r).
                unsafe { *out.add(t * out_stride + 8 * g + r) = value };
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Accumulate {
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
fn repacked_order_body(
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

fn chunk_sums_scalar(qs: &[u8], ys: &[i8]) -> (i32, i32) {
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

    use super::super::q8_0::x86::{nibble_halves, push_nibble_halves};
    use super::super::q8_k::simd::*;
    use super::super::q8_k::BlockQ8K;
    use super::{unpack_scale_min_k4, BlockQ4K, BlockQ4Kx8};

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

    /// See [`super::x8_matmul`]: each group of 8 rows against the tokens 4 at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn x8_matmul_avx2(
        w: &[BlockQ4Kx8],
        nb: usize,
        a: &[BlockQ8K],
        n_tokens: usize,
        gemm_order: bool,
        out: *mut f32,
        stride: usize,
    ) {
        let mut unpacked = UNPACKED.with(|b| std::mem::take(&mut *b.borrow_mut()));
        for (g, group) in w.chunks_exact(nb).enumerate() {
            let out = out.add(8 * g);
            let mut t = 0;
            if n_tokens >= UNPACK_MIN_TOKENS && nb <= UNPACK_MAX_BLOCKS {
                unpacked.fill(group);
                while t + 4 <= n_tokens {
                    match gemm_order {
                        true => x8_unpacked_4::<true>(&unpacked, a, nb, t, out, stride),
                        false => x8_unpacked_4::<false>(&unpacked, a, nb, t, out, stride),
                    }
                    t += 4;
                }
            }
            while t + 4 <= n_tokens {
                match gemm_order {
                    true => x8_tokens::<4, true>(group, a, nb, t, out, stride),
                    false => x8_tokens::<4, false>(group, a, nb, t, out, stride),
                }
                t += 4;
            }
            for t in t..n_tokens {
                match gemm_order {
                    true => x8_tokens::<1, true>(group, a, nb, t, out, stride),
                    false => x8_tokens::<1, false>(group, a, nb, t, out, stride),
                }
            }
        }
        UNPACKED.with(|b| *b.borrow_mut() = unpacked);
    }

    /// From this many tokens on, a group is unpacked once into [`Unpacked`] and every token
    /// reads it from there (L1 or L2) instead of unpacking nibbles and scales again.
    const UNPACK_MIN_TOKENS: usize = 8;

    /// Up to this many blocks per row (2048 columns: 20 KiB unpacked per group, within L1).
    /// Wider groups gain nothing over unpacking the nibbles per token quad (1024×4096 × 512
    /// tokens, 1 thread: 33.9 against 34.2 ms) and lose once they spill to L2 (512×8192:
    /// 40.6 against 38.6 ms).
    const UNPACK_MAX_BLOCKS: usize = 8;

    /// Vectors per block in [`Unpacked::vectors`]: the low and high nibbles of the 32 packed
    /// vectors, then per sub-block the scales as i16 pairs and the minimums as i32.
    const UNPACKED_VECTORS: usize = 64 + 8 + 8;

    /// One group of 8 rows unpacked: per block, [`UNPACKED_VECTORS`] vectors, and the rows'
    /// `d` and `dmin` as f32.
    #[derive(Default)]
    struct Unpacked {
        vectors: Vec<__m256i>,
        d: Vec<[__m256; 2]>,
    }

    impl Unpacked {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn fill(&mut self, group: &[BlockQ4Kx8]) {
            self.vectors.clear();
            self.d.clear();
            for x8 in group {
                push_nibble_halves(&mut self.vectors, &x8.qs);
                for k in 0..8 {
                    // SAFETY: 8 bytes each.
                    let s = unsafe { _mm_loadl_epi64(x8.scales[k].as_ptr().cast()) };
                    self.vectors
                        .push(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s, s)));
                }
                for k in 0..8 {
                    // SAFETY: as above.
                    let m = unsafe { _mm_loadl_epi64(x8.mins[k].as_ptr().cast()) };
                    self.vectors.push(_mm256_cvtepu8_epi32(m));
                }
                // SAFETY: 8 halves are 16 contiguous bytes.
                let halves8 = |h: &[[u8; 2]; 8]| unsafe { _mm_loadu_si128(h.as_ptr().cast()) };
                self.d.push([
                    _mm256_cvtph_ps(halves8(&x8.d)),
                    _mm256_cvtph_ps(halves8(&x8.dmin)),
                ]);
            }
        }
    }

    thread_local! {
        static UNPACKED: std::cell::RefCell<Unpacked> = std::cell::RefCell::new(Unpacked::default());
    }

    /// [`x8_tokens`] for 4 tokens from `t0` on an unpacked group: the same sums in the same
    /// orders, each weight vector loaded once for the 4 tokens.
    #[inline(always)]
    unsafe fn x8_unpacked_4<const PER_CHUNK: bool>(
        group: &Unpacked,
        a: &[BlockQ8K],
        nb: usize,
        t0: usize,
        out: *mut f32,
        stride: usize,
    ) {
        assert!(
            group.vectors.len() == UNPACKED_VECTORS * nb
                && group.d.len() == nb
                && (t0 + 4) * nb <= a.len()
        );
        let (v, dd) = (group.vectors.as_ptr(), group.d.as_ptr());
        let a = a.as_ptr().add(t0 * nb);
        let mut sums = [TokenSums::new(); 4];
        for b in 0..nb {
            let v = v.add(UNPACKED_VECTORS * b);
            let [d, dmin] = *dd.add(b);
            let ys: [&BlockQ8K; 4] = std::array::from_fn(|k| &*a.add(k * nb + b));
            for c in 0..4 {
                let mut sum_lo = [_mm256_setzero_si256(); 4];
                let mut sum_hi = [_mm256_setzero_si256(); 4];
                for j in 0..8 {
                    let (lo, hi) = (*v.add(2 * (8 * c + j)), *v.add(2 * (8 * c + j) + 1));
                    for k in 0..4 {
                        let y = ys[k].qs.as_ptr().add(64 * c + 4 * j);
                        let y_lo = _mm256_set1_epi32(y.cast::<i32>().read_unaligned());
                        let y_hi = _mm256_set1_epi32(y.add(32).cast::<i32>().read_unaligned());
                        let (p_lo, p_hi) = (
                            _mm256_maddubs_epi16(lo, y_lo),
                            _mm256_maddubs_epi16(hi, y_hi),
                        );
                        if j == 0 {
                            (sum_lo[k], sum_hi[k]) = (p_lo, p_hi);
                        } else {
                            sum_lo[k] = _mm256_add_epi16(sum_lo[k], p_lo);
                            sum_hi[k] = _mm256_add_epi16(sum_hi[k], p_hi);
                        }
                    }
                }
                let scales = (*v.add(64 + 2 * c), *v.add(64 + 2 * c + 1));
                let mins = (*v.add(72 + 2 * c), *v.add(72 + 2 * c + 1));
                for (k, token) in sums.iter_mut().enumerate() {
                    let chunk = (sum_lo[k], sum_hi[k]);
                    token.chunk::<PER_CHUNK>(ys[k], c, chunk, scales, mins, (d, dmin));
                }
            }
            for (token, y) in sums.iter_mut().zip(ys) {
                token.block_end::<PER_CHUNK>(y, (d, dmin));
            }
        }
        for (k, token) in sums.iter().enumerate() {
            // SAFETY: the caller's contract covers the group's 8 rows of token t0 + k.
            _mm256_storeu_ps(out.add((t0 + k) * stride), token.value());
        }
    }

    /// One token's running sums over a group of 8 rows (one lane per row), in llama.cpp's
    /// orders: per chunk of 64 values, the lanes' exact i32 sums by sub-block scale and of the
    /// minimums by the activation's block sums; fused into the accumulators per chunk (the
    /// GEMM order) or summed over the block and fused once (the GEMV order).
    #[derive(Clone, Copy)]
    struct TokenSums {
        acc: __m256,
        acc_min: __m256,
        isum_block: __m256i,
        imin_block: __m256i,
    }

    impl TokenSums {
        #[inline(always)]
        unsafe fn new() -> TokenSums {
            TokenSums {
                acc: _mm256_setzero_ps(),
                acc_min: _mm256_setzero_ps(),
                isum_block: _mm256_setzero_si256(),
                imin_block: _mm256_setzero_si256(),
            }
        }

        /// Chunk `c` of the block: `sums` are the i16 sums of its low and high 32 values,
        /// `scales` and `mins` their sub-blocks' per-lane scales (as i16 pairs) and minimums,
        /// `d` the rows' `d` and `dmin`.
        #[inline(always)]
        unsafe fn chunk<const PER_CHUNK: bool>(
            &mut self,
            y: &BlockQ8K,
            c: usize,
            (sum_lo, sum_hi): (__m256i, __m256i),
            (sc_lo, sc_hi): (__m256i, __m256i),
            (min_lo, min_hi): (__m256i, __m256i),
            (d, dmin): (__m256, __m256),
        ) {
            let isum = _mm256_add_epi32(
                _mm256_madd_epi16(sum_lo, sc_lo),
                _mm256_madd_epi16(sum_hi, sc_hi),
            );
            let bs_lo = y.bsum(4 * c) + y.bsum(4 * c + 1);
            let bs_hi = y.bsum(4 * c + 2) + y.bsum(4 * c + 3);
            let imin = _mm256_add_epi32(
                _mm256_mullo_epi32(min_lo, _mm256_set1_epi32(bs_lo)),
                _mm256_mullo_epi32(min_hi, _mm256_set1_epi32(bs_hi)),
            );
            if PER_CHUNK {
                self.fuse(y, (d, dmin), isum, imin);
            } else {
                self.isum_block = _mm256_add_epi32(self.isum_block, isum);
                self.imin_block = _mm256_add_epi32(self.imin_block, imin);
            }
        }

        /// After the block's last chunk.
        #[inline(always)]
        unsafe fn block_end<const PER_CHUNK: bool>(&mut self, y: &BlockQ8K, d: (__m256, __m256)) {
            if !PER_CHUNK {
                self.fuse(y, d, self.isum_block, self.imin_block);
                self.isum_block = _mm256_setzero_si256();
                self.imin_block = _mm256_setzero_si256();
            }
        }

        #[inline(always)]
        unsafe fn fuse(
            &mut self,
            y: &BlockQ8K,
            (d, dmin): (__m256, __m256),
            isum: __m256i,
            imin: __m256i,
        ) {
            let yd = _mm256_set1_ps(y.scale());
            let (dy, dminy) = (_mm256_mul_ps(d, yd), _mm256_mul_ps(dmin, yd));
            self.acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dy, self.acc);
            self.acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), dminy, self.acc_min);
        }

        /// The 8 rows' products.
        #[inline(always)]
        unsafe fn value(&self) -> __m256 {
            _mm256_sub_ps(self.acc, self.acc_min)
        }
    }

    /// One group of 8 rows × `RN` tokens from `t0`, one lane per row: each lane runs
    /// `repacked_order_body`'s FMAs in its order (per chunk when `PER_CHUNK`, else per
    /// block). Per chunk and row, each sub-block's Σ q·y is summed in i16 over 8 maddubs (at
    /// most 8·2·15·128 = 30720 per pair), then one madd by the lane's scale makes it i32.
    #[inline(always)]
    unsafe fn x8_tokens<const RN: usize, const PER_CHUNK: bool>(
        group: &[BlockQ4Kx8],
        a: &[BlockQ8K],
        nb: usize,
        t0: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let mut sums = [TokenSums::new(); RN];
        for (b, x8) in group.iter().enumerate() {
            let ys: [&BlockQ8K; RN] = std::array::from_fn(|k| &a[(t0 + k) * nb + b]);
            let halves8 = |h: &[[u8; 2]; 8]| _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast()));
            let (d, dmin) = (halves8(&x8.d), halves8(&x8.dmin));
            for c in 0..4 {
                // Lane r: (scale, scale) as i16 for the madd, and the minimums as i32.
                let scale = |k: usize| {
                    let s = _mm_loadl_epi64(x8.scales[k].as_ptr().cast());
                    _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s, s))
                };
                let min =
                    |k: usize| _mm256_cvtepu8_epi32(_mm_loadl_epi64(x8.mins[k].as_ptr().cast()));
                let scales = (scale(2 * c), scale(2 * c + 1));
                let mins = (min(2 * c), min(2 * c + 1));
                let mut sum_lo = [_mm256_setzero_si256(); RN];
                let mut sum_hi = [_mm256_setzero_si256(); RN];
                for j in 0..8 {
                    let packed = _mm256_loadu_si256(x8.qs.as_ptr().add(32 * (8 * c + j)).cast());
                    let (lo, hi) = nibble_halves(packed);
                    for k in 0..RN {
                        let y = ys[k].qs.as_ptr().add(64 * c + 4 * j);
                        let y_lo = _mm256_set1_epi32(y.cast::<i32>().read_unaligned());
                        let y_hi = _mm256_set1_epi32(y.add(32).cast::<i32>().read_unaligned());
                        sum_lo[k] = _mm256_add_epi16(sum_lo[k], _mm256_maddubs_epi16(lo, y_lo));
                        sum_hi[k] = _mm256_add_epi16(sum_hi[k], _mm256_maddubs_epi16(hi, y_hi));
                    }
                }
                for (k, token) in sums.iter_mut().enumerate() {
                    let chunk = (sum_lo[k], sum_hi[k]);
                    token.chunk::<PER_CHUNK>(ys[k], c, chunk, scales, mins, (d, dmin));
                }
            }
            for (token, y) in sums.iter_mut().zip(ys) {
                token.block_end::<PER_CHUNK>(y, (d, dmin));
            }
        }
        for (k, token) in sums.iter().enumerate() {
            // SAFETY: the caller's contract covers the group's 8 rows of token t0 + k.
            _mm256_storeu_ps(out.add((t0 + k) * stride), token.value());
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
mod tests {
    use super::super::q8_k::test_support::*;
    use super::*;
    use crate::formats::testing::Rng;

    /// Σ over blocks of |yd| (|d| Σ sc·q·|y| + |dmin| Σ m·|bsum|): every term either path rounds.
    fn magnitude(w: &[u8], a: &[u8]) -> f64 {
        let x: &[BlockQ4K] = as_blocks(w);
        let y: &[BlockQ8K] = as_blocks(a);
        let mut total = 0.0f64;
        for (b, a) in x.iter().zip(y) {
            let (mut s, mut m) = (0.0f64, 0.0f64);
            for j in 0..8 {
                let (sc, mn) = scale_min_k4(j, &b.scales);
                let qs = &b.qs[32 * (j / 2)..32 * (j / 2) + 32];
                for (&q, &v) in qs.iter().zip(&a.qs[32 * j..32 * j + 32]) {
                    s += (sc as f64) * ((q >> (4 * (j % 2))) & 15) as f64 * (v as f64).abs();
                }
                m += mn as f64 * (a.bsum(2 * j).abs() + a.bsum(2 * j + 1).abs()) as f64;
            }
            let yd = a.scale().abs() as f64;
            total += yd * (f16_le(b.d).abs() as f64 * s + f16_le(b.dmin).abs() as f64 * m);
        }
        total
    }

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

    const ROWS: usize = 16;
    const BLOCKS: usize = 3;
    /// Above the count from which interleaved groups are unpacked first (8), with leftovers.
    const TOKENS: usize = 11;

    /// Random row-major weights (`ROWS` rows of `BLOCKS` blocks) and `TOKENS` activation rows.
    fn weights_and_acts(seed: u64) -> (Vec<u8>, Vec<u8>) {
        let mut rng = Rng::new(seed);
        let n = BLOCKS * QK_K;
        let w = random_blocks(&mut rng, ROWS * n, 144, &[0, 2]);
        let acts = (0..TOKENS)
            .flat_map(|_| q8k_row(&mut rng, n, Act::Random))
            .collect();
        (w, acts)
    }

    /// `product(isa, gemm_order, out, stride)` writes every (token, row) output of the tokens
    /// in `acts`; each must equal that order's single product bit for bit, on every tier,
    /// leftover tokens included.
    fn check_both_orders(w: &[u8], acts: &[u8], product: impl Fn(Isa, bool, *mut f32, usize)) {
        let n = BLOCKS * QK_K;
        let (row_bytes, act_bytes) = (BLOCKS * 144, BLOCKS * std::mem::size_of::<BlockQ8K>());
        let tokens = acts.len() / act_bytes;
        let stride = ROWS + 1;
        for isa in Isa::available() {
            for (gemm_order, order) in [
                (true, vec_dot_gemm_order as VecDotFnRef),
                (false, vec_dot_gemv_order),
            ] {
                let mut out = vec![f32::NAN; tokens * stride];
                product(isa, gemm_order, out.as_mut_ptr(), stride);
                for t in 0..tokens {
                    for r in 0..ROWS {
                        let row = &w[r * row_bytes..(r + 1) * row_bytes];
                        let want = order(isa, n, row, &acts[t * act_bytes..(t + 1) * act_bytes]);
                        let got = out[t * stride + r];
                        let what = format!("{isa} gemm={gemm_order} t{t} r{r}");
                        assert_eq!(got.to_bits(), want.to_bits(), "{what}");
                    }
                    assert!(out[t * stride + ROWS].is_nan());
                }
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

    /// The interleaved groups keep every row's block, and give both orders' values.
    #[test]
    fn x8_groups_equal_single_products_bit_for_bit() {
        let (w, acts) = weights_and_acts(46);
        let x8 = repack_x8(ROWS, BLOCKS * QK_K, &w);
        let groups: &[BlockQ4Kx8] = as_blocks(&x8);
        let original: &[BlockQ4K] = as_blocks(&w);
        for r in 0..ROWS {
            for b in 0..BLOCKS {
                let back = block_of(&groups[(r / 8) * BLOCKS + b], r % 8);
                let want = bytemuck::bytes_of(&original[r * BLOCKS + b]);
                assert_eq!(bytemuck::bytes_of(&back), want, "row {r} block {b}");
            }
        }
        // All the tokens (groups unpacked first), and 7 of them (unpacked per token quad).
        let seven = &acts[..7 * acts.len() / TOKENS];
        for acts in [&acts[..], seven] {
            check_both_orders(&w, acts, |isa, gemm_order, out, stride| {
                // SAFETY: `out` holds a row of `stride` values per token of `acts`.
                unsafe { x8_matmul(isa, BLOCKS * QK_K, &x8, acts, gemm_order, out, stride) }
            });
        }
    }

    type VecDotFnRef = fn(Isa, usize, &[u8], &[u8]) -> f32;

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
