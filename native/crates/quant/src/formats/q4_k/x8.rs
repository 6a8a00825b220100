//! Q4_K matrices interleaved 8 rows at a time at load, as llama.cpp repacks them on x86, and
//! their product with Q8_K activations for decode steps and prompts in its orders (bit for
//! bit the single-row products of [`super::repacked`]).

use bytemuck::{Pod, Zeroable};
use mistralrs_common::Isa;

use super::super::q8_k::{BlockQ8K, QK_K};
use super::super::{as_blocks, as_blocks_mut, clamp_isa};
use super::repacked::{chunk_sums_scalar, repacked_order_body, Accumulate};
use super::{pack_scale_min_k4, unpack_scale_min_k4, BlockQ4K};

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
/// equals [`super::vec_dot_gemm_order`] (`gemm_order`) or [`super::vec_dot_gemv_order`] bit
/// for bit.
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

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::super::q8_0::x86::{nibble_halves, push_nibble_halves};
    use super::super::super::q8_k::BlockQ8K;
    use super::BlockQ4Kx8;

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
            // The last one to three tokens in one pass over the group too (a verify step's
            // rows): each token's arithmetic does not depend on how many share the pass.
            match (n_tokens - t, gemm_order) {
                (3, true) => x8_tokens::<3, true>(group, a, nb, t, out, stride),
                (3, false) => x8_tokens::<3, false>(group, a, nb, t, out, stride),
                (2, true) => x8_tokens::<2, true>(group, a, nb, t, out, stride),
                (2, false) => x8_tokens::<2, false>(group, a, nb, t, out, stride),
                (1, true) => x8_tokens::<1, true>(group, a, nb, t, out, stride),
                (1, false) => x8_tokens::<1, false>(group, a, nb, t, out, stride),
                _ => {}
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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
        // All the tokens (groups unpacked first), and 7, 6 and 5 of them (unpacked per token
        // quad, then a tail of 3, 2 or 1 in one pass).
        let first = |n: usize| &acts[..n * acts.len() / TOKENS];
        for acts in [&acts[..], first(7), first(6), first(5)] {
            check_both_orders(&w, acts, |isa, gemm_order, out, stride| {
                // SAFETY: `out` holds a row of `stride` values per token of `acts`.
                unsafe { x8_matmul(isa, BLOCKS * QK_K, &x8, acts, gemm_order, out, stride) }
            });
        }
    }
}
