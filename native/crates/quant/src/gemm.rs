//! Prompt-processing products for the row-major block types whose `vec_dot` keeps eight lanes
//! per row (Q4_0, Q4_1, Q5_0, Q8_0, Q6_K): a register tile of weight rows × tokens, so that a
//! weight block is unpacked once for several tokens and an activation block loaded once for
//! several rows. Every output still runs exactly the operations of its type's `vec_dot` in the
//! same order (per block: exact integer lanes, one `dx·dy` product, one FMA into eight running
//! lanes; the lanes added up at the end), so the results are bit-identical to one `vec_dot` per
//! output, and therefore to llama.cpp's.

use mistralrs_common::Isa;

use crate::formats::clamp_isa;
use crate::GgmlType;

/// Whether [`gemm`] covers `ty` on `isa`.
pub fn supports(ty: GgmlType, isa: Isa) -> bool {
    cfg!(target_arch = "x86_64")
        && clamp_isa(isa) >= Isa::Avx2
        && matches!(
            ty,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q6_K
        )
}

/// The shape of one call: `weights` holds whole rows of `cols` values of the weight type,
/// `activation` `n_tokens` rows of its `vec_dot_type`; output `(t, r)` goes to
/// `out[t * out_stride + r]`.
pub struct GemmShape {
    pub cols: usize,
    pub n_tokens: usize,
    pub out_stride: usize,
}

/// `out[t * out_stride + r] = vec_dot(weights row r, activation row t)` for every row of
/// `weights` and every token. Returns false (nothing written) when [`supports`] does not hold.
///
/// # Safety
/// `out` must be valid for writes at `t * out_stride + r` for every token `t` and row `r` of
/// `weights`, and no other thread may access those indices during the call.
pub unsafe fn gemm(
    ty: GgmlType,
    isa: Isa,
    shape: &GemmShape,
    weights: &[u8],
    activation: &[u8],
    out: *mut f32,
) -> bool {
    if !supports(ty, isa) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use crate::formats::{q4_0::BlockQ4_0, q4_1::BlockQ4_1, q5_0::BlockQ5_0};
        use crate::formats::{q6_k::BlockQ6K, q8_0::BlockQ8_0, q8_1::BlockQ8_1, q8_k::BlockQ8K};
        use x86::{run, Q4_0, Q4_1, Q5_0, Q6K, Q8_0};
        // SAFETY: `supports` checked AVX2, FMA and F16C; the caller vouches for `out`.
        match ty {
            GgmlType::Q4_0 => run::<Q4_0, BlockQ4_0, BlockQ8_0>(shape, weights, activation, out),
            GgmlType::Q4_1 => run::<Q4_1, BlockQ4_1, BlockQ8_1>(shape, weights, activation, out),
            GgmlType::Q5_0 => run::<Q5_0, BlockQ5_0, BlockQ8_0>(shape, weights, activation, out),
            GgmlType::Q8_0 => run::<Q8_0, BlockQ8_0, BlockQ8_0>(shape, weights, activation, out),
            GgmlType::Q6_K => run::<Q6K, BlockQ6K, BlockQ8K>(shape, weights, activation, out),
            _ => return false,
        }
    }
    true
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::GemmShape;
    use crate::formats::as_blocks;
    use crate::formats::q4_0::BlockQ4_0;
    use crate::formats::q4_1::BlockQ4_1;
    use crate::formats::q5_0::{self, BlockQ5_0};
    use crate::formats::q6_k::{self, BlockQ6K};
    use crate::formats::q8_0::x86::{f16_to_f32, hsum, load_i8, unpack_nibbles};
    use crate::formats::q8_0::BlockQ8_0;
    use crate::formats::q8_1::BlockQ8_1;
    use crate::formats::q8_k::simd::{f16, load_bsums, load_u8x16, madd_acc_avx2, scale_pair_i8};
    use crate::formats::q8_k::{BlockQ8K, QK_K};

    /// One block type's `vec_dot` step, cut where a tile shares work: what depends on the
    /// weight block alone, what on the activation block alone, and their integer product.
    pub(super) trait TileKernel<W, A> {
        /// Values per block.
        const BLOCK: usize;
        /// The unpacked weight block, as a chunk of rows keeps it.
        type WeightQuants: Copy;
        /// What a tile holds of a weight block: the quants, and their absolute value when the
        /// weight carries the sign (derived in the tile, so the chunk stays half the size).
        type RowQuants: Copy;
        /// The activation block (and its absolute value when it carries the sign).
        type ActQuants: Copy;
        /// Q4_1's `m·s` term, summed beside the lanes and added after them.
        const HAS_MIN: bool;
        unsafe fn weight(w: &W) -> (Self::WeightQuants, f32, f32);
        unsafe fn row(q: &Self::WeightQuants) -> Self::RowQuants;
        unsafe fn act(a: &A) -> (Self::ActQuants, f32, f32);
        /// The block's eight i32 lanes (sums of four neighbouring products) as f32.
        unsafe fn dot(w: Self::RowQuants, a: Self::ActQuants) -> __m256;
    }

    pub(super) struct Q4_0;
    pub(super) struct Q4_1;
    pub(super) struct Q5_0;
    pub(super) struct Q8_0;
    pub(super) struct Q6K;

    /// maddubs to i16 pairs, madd by ones to i32 quads, as f32 (no pair saturates: see the
    /// types' `vec_dot`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn lanes(unsigned: __m256i, signed: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(unsigned, signed);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// The activation carries the sign (as in Q4_0's and Q5_0's `vec_dot`): `(|y|, y)`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn signed_act(a: &BlockQ8_0) -> ((__m256i, __m256i), f32, f32) {
        let y = load_i8(&a.qs);
        ((_mm256_sign_epi8(y, y), y), f16_to_f32(a.d), 0.0)
    }

    /// A type whose `vec_dot` lets the activation carry the sign (Q4_0, Q5_0): its signed
    /// quants `q` against `(|y|, y)`.
    macro_rules! act_carries_sign {
        ($kernel:ident, $block:ty, $quants:expr) => {
            impl TileKernel<$block, BlockQ8_0> for $kernel {
                const BLOCK: usize = 32;
                type WeightQuants = __m256i;
                type RowQuants = __m256i;
                type ActQuants = (__m256i, __m256i);
                const HAS_MIN: bool = false;
                #[inline]
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn weight(w: &$block) -> (__m256i, f32, f32) {
                    ($quants(w), f16_to_f32(w.d), 0.0)
                }
                #[inline(always)]
                unsafe fn row(q: &__m256i) -> __m256i {
                    *q
                }
                #[inline]
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn act(a: &BlockQ8_0) -> ((__m256i, __m256i), f32, f32) {
                    signed_act(a)
                }
                #[inline]
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn dot(q: __m256i, (abs_y, y): (__m256i, __m256i)) -> __m256 {
                    lanes(abs_y, _mm256_sign_epi8(q, y))
                }
            }
        };
    }

    /// Q4_0's quants `q - 8`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q4_0_quants(w: &BlockQ4_0) -> __m256i {
        _mm256_sub_epi8(unpack_nibbles(&w.qs), _mm256_set1_epi8(8))
    }

    act_carries_sign!(Q4_0, BlockQ4_0, q4_0_quants);
    act_carries_sign!(Q5_0, BlockQ5_0, q5_0::simd::centred_quants);

    impl TileKernel<BlockQ8_0, BlockQ8_0> for Q8_0 {
        const BLOCK: usize = 32;
        // The weight carries the sign, as in Q8_0's `vec_dot` (which keeps a -128 weight
        // exact): `(|q|, q)` in the tile.
        type WeightQuants = __m256i;
        type RowQuants = (__m256i, __m256i);
        type ActQuants = __m256i;
        const HAS_MIN: bool = false;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn weight(w: &BlockQ8_0) -> (__m256i, f32, f32) {
            (load_i8(&w.qs), f16_to_f32(w.d), 0.0)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn row(&q: &__m256i) -> (__m256i, __m256i) {
            (_mm256_sign_epi8(q, q), q)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn act(a: &BlockQ8_0) -> (__m256i, f32, f32) {
            (load_i8(&a.qs), f16_to_f32(a.d), 0.0)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn dot((abs_q, q): (__m256i, __m256i), y: __m256i) -> __m256 {
            lanes(abs_q, _mm256_sign_epi8(y, q))
        }
    }

    impl TileKernel<BlockQ4_1, BlockQ8_1> for Q4_1 {
        const BLOCK: usize = 32;
        type WeightQuants = __m256i;
        type RowQuants = __m256i;
        type ActQuants = __m256i;
        const HAS_MIN: bool = true;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn weight(w: &BlockQ4_1) -> (__m256i, f32, f32) {
            (unpack_nibbles(&w.qs), f16_to_f32(w.d), f16_to_f32(w.m))
        }
        #[inline(always)]
        unsafe fn row(q: &__m256i) -> __m256i {
            *q
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn act(a: &BlockQ8_1) -> (__m256i, f32, f32) {
            (load_i8(&a.qs), f16_to_f32(a.d), f16_to_f32(a.s))
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn dot(nibbles: __m256i, y: __m256i) -> __m256 {
            lanes(nibbles, y)
        }
    }

    /// A Q6_K block unpacked: the unsigned 6-bit quants (vector `4h + k` holds elements
    /// `128h + 32k ..`), each vector's pair of sub-block scales as i16, and the 16 scales as
    /// i16 for the offset term.
    #[derive(Clone, Copy)]
    pub(super) struct Q6KQuants {
        q: [__m256i; 8],
        scale_pairs: [__m256i; 8],
        scales: __m256i,
    }

    impl TileKernel<BlockQ6K, BlockQ8K> for Q6K {
        const BLOCK: usize = QK_K;
        type WeightQuants = Q6KQuants;
        // The tile reads a block's vectors where the chunk keeps them.
        type RowQuants = *const Q6KQuants;
        type ActQuants = *const BlockQ8K;
        const HAS_MIN: bool = false;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn weight(w: &BlockQ6K) -> (Q6KQuants, f32, f32) {
            let [q0, q1] = [0, 1].map(|h| q6_k::simd::half_quants(w, h));
            let scales = load_u8x16(bytemuck::cast_slice(&w.scales[..]));
            let unpacked = Q6KQuants {
                q: [q0[0], q0[1], q0[2], q0[3], q1[0], q1[1], q1[2], q1[3]],
                scale_pairs: std::array::from_fn(|v| scale_pair_i8(scales, 2 * v)),
                scales: _mm256_cvtepi8_epi16(scales),
            };
            (unpacked, f16(w.d), 0.0)
        }
        #[inline(always)]
        unsafe fn row(q: &Q6KQuants) -> *const Q6KQuants {
            q
        }
        #[inline(always)]
        unsafe fn act(a: &BlockQ8K) -> (*const BlockQ8K, f32, f32) {
            (a, a.scale(), 0.0)
        }
        /// Q6_K's `vec_dot` block: Σ scale·(q·y) over the eight vectors, less 32·Σ scale·bsum.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn dot(w: *const Q6KQuants, y: *const BlockQ8K) -> __m256 {
            let (w, y) = (&*w, &*y);
            let mut sumi = _mm256_setzero_si256();
            for v in 0..8 {
                // |pairs| <= 2 * 63 * 128: no saturation.
                let p = _mm256_maddubs_epi16(
                    w.q[v],
                    _mm256_loadu_si256(y.qs.as_ptr().add(32 * v).cast()),
                );
                sumi = madd_acc_avx2(sumi, w.scale_pairs[v], p);
            }
            let offset = _mm256_madd_epi16(load_bsums(y), w.scales);
            _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, _mm256_slli_epi32(offset, 5)))
        }
    }

    /// A chunk of weight rows unpacked once (per block: the kernel's quants, `dx` and `mx`),
    /// for every token of the batch to reuse: `[row][block]`.
    struct Unpacked<'a, Q> {
        q: &'a [Q],
        dx: &'a [f32],
        mx: &'a [f32],
        nb: usize,
    }

    impl<Q: Copy> Unpacked<'_, Q> {
        #[inline(always)]
        fn at(&self, r: usize, b: usize) -> (&Q, f32, f32) {
            let i = r * self.nb + b;
            (&self.q[i], self.dx[i], self.mx[i])
        }
    }

    /// The activations' scales as f32, block-major (`[block][token]`), so that a tile's four
    /// tokens' scales are one load: `d` then, for Q4_1's activations, `s`.
    struct ActScales<'a> {
        d: &'a [f32],
        s: &'a [f32],
        n_tokens: usize,
    }

    /// One row × one token (the leftovers of the 2 × 4 tiles): `a` starts at the token.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn single<K: TileKernel<W, A>, W, A>(
        w: &Unpacked<'_, K::WeightQuants>,
        r: usize,
        a: &[A],
        out: *mut f32,
    ) {
        let mut acc = _mm256_setzero_ps();
        let mut extra = 0f32;
        for (b, a) in a.iter().enumerate().take(w.nb) {
            let (q, dx, mx) = w.at(r, b);
            let (y, dy, sy) = K::act(a);
            acc = _mm256_fmadd_ps(K::dot(K::row(q), y), _mm256_set1_ps(dx * dy), acc);
            if K::HAS_MIN {
                extra += mx * sy;
            }
        }
        let sum = hsum(acc);
        // SAFETY: the caller's contract covers this output.
        *out = if K::HAS_MIN { sum + extra } else { sum };
    }

    /// Four consecutive tokens from `t0`: `a` starts at `t0` and holds their blocks.
    struct TokenQuad<'a, A> {
        a: &'a [A],
        t0: usize,
        scales: &'a ActScales<'a>,
    }

    /// Where a tile's outputs go: output `(t, r)` (token `t` of the quad) at `t * stride + r`.
    #[derive(Clone, Copy)]
    struct TileOut {
        ptr: *mut f32,
        stride: usize,
    }

    /// Rows `r, r + 1` × the 4 tokens of `tokens`. A first pass writes each block's eight
    /// `dx·dy` products (lane `4i + t` for row `r + i` and token `t`, from one vector multiply:
    /// the same products as the scalar ones) to `products`, so the main loop broadcasts each
    /// straight from memory; Q4_1's eight `m·s` terms are summed in that pass.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    // `t` numbers the token in the accumulators and in the products' lanes alike.
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile_2x4<K: TileKernel<W, A>, W, A>(
        w: &Unpacked<'_, K::WeightQuants>,
        r: usize,
        tokens: &TokenQuad<'_, A>,
        products: &mut [__m256],
        out: TileOut,
    ) {
        let TokenQuad { a, t0, scales } = *tokens;
        let TileOut {
            ptr: out,
            stride: out_stride,
        } = out;
        let nb = w.nb;
        assert!(
            (r + 2) * nb <= w.q.len()
                && 4 * nb <= a.len()
                && products.len() >= nb
                && t0 + 4 <= scales.n_tokens
        );
        let n = scales.n_tokens;
        let (dx0, dx1) = (w.dx.as_ptr().add(r * nb), w.dx.as_ptr().add((r + 1) * nb));
        let (mx0, mx1) = (w.mx.as_ptr().add(r * nb), w.mx.as_ptr().add((r + 1) * nb));
        let (dy, sy) = (scales.d.as_ptr().add(t0), scales.s.as_ptr().add(t0));
        /// Lane `4i + t`: `x_i[b] · y_t[b]`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn pairs(x0: *const f32, x1: *const f32, y: *const f32) -> __m256 {
            let x = _mm256_set_m128(_mm_set1_ps(*x1), _mm_set1_ps(*x0));
            let y = _mm_loadu_ps(y);
            _mm256_mul_ps(x, _mm256_set_m128(y, y))
        }
        let mut extra = _mm256_setzero_ps();
        for (b, p) in products[..nb].iter_mut().enumerate() {
            *p = pairs(dx0.add(b), dx1.add(b), dy.add(b * n));
            if K::HAS_MIN {
                extra = _mm256_add_ps(extra, pairs(mx0.add(b), mx1.add(b), sy.add(b * n)));
            }
        }
        let (q0, q1) = (w.q.as_ptr().add(r * nb), w.q.as_ptr().add((r + 1) * nb));
        let (a, p) = (a.as_ptr(), products.as_ptr().cast::<f32>());
        let mut acc = [[_mm256_setzero_ps(); 4]; 2];
        for b in 0..nb {
            let (x0, x1) = (K::row(&*q0.add(b)), K::row(&*q1.add(b)));
            let p = p.add(8 * b);
            for t in 0..4 {
                let (y, _, _) = K::act(&*a.add(t * nb + b));
                let s0 = _mm256_broadcast_ss(&*p.add(t));
                acc[0][t] = _mm256_fmadd_ps(K::dot(x0, y), s0, acc[0][t]);
                let s1 = _mm256_broadcast_ss(&*p.add(4 + t));
                acc[1][t] = _mm256_fmadd_ps(K::dot(x1, y), s1, acc[1][t]);
            }
        }
        let mut extras = [0f32; 8];
        _mm256_storeu_ps(extras.as_mut_ptr(), extra);
        for i in 0..2 {
            for t in 0..4 {
                let sum = hsum(acc[i][t]);
                // SAFETY: the caller's contract covers (t, r + i) of this tile.
                *out.add(t * out_stride + r + i) = if K::HAS_MIN {
                    sum + extras[4 * i + t]
                } else {
                    sum
                };
            }
        }
    }

    /// Unpacked weights per chunk of rows: about this many bytes, so a chunk stays in L2 while
    /// every token passes over it.
    const CHUNK_BYTES: usize = 128 * 1024;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn run<K: TileKernel<W, A>, W: bytemuck::Pod, A: bytemuck::Pod>(
        shape: &GemmShape,
        weights: &[u8],
        activation: &[u8],
        out: *mut f32,
    ) {
        let (w, a): (&[W], &[A]) = (as_blocks(weights), as_blocks(activation));
        let nb = shape.cols / K::BLOCK;
        assert!(
            nb > 0
                && w.len().is_multiple_of(nb)
                && a.len() == nb * shape.n_tokens
                && shape.cols.is_multiple_of(K::BLOCK),
            "gemm: {} weight blocks, {} activation blocks for {} tokens of {} columns",
            w.len(),
            a.len(),
            shape.n_tokens,
            shape.cols
        );
        let rows = w.len() / nb;
        let stride = shape.out_stride;
        let n_tokens = shape.n_tokens;
        let mut buffers = BUFFERS.with(|s| std::mem::take(&mut *s.borrow_mut()));

        // The activations' scales, once per call.
        let table = &mut buffers.scales;
        table.clear();
        table.resize(2 * nb * n_tokens, 0.0);
        let (d, s) = table.split_at_mut(nb * n_tokens);
        for t in 0..n_tokens {
            for b in 0..nb {
                let (_, dy, sy) = K::act(&a[t * nb + b]);
                d[b * n_tokens + t] = dy;
                s[b * n_tokens + t] = sy;
            }
        }
        let scales = ActScales { d, s, n_tokens };
        buffers.products.resize(nb, _mm256_setzero_ps());

        // An even number of rows per chunk, at least 2.
        let per_row = nb * (std::mem::size_of::<K::WeightQuants>() + 8);
        let chunk_rows = (CHUNK_BYTES / per_row).max(2) / 2 * 2;
        let vectors = std::mem::size_of::<K::WeightQuants>() / 32;
        let mut chunk = 0;
        while chunk < rows {
            let n_rows = chunk_rows.min(rows - chunk);
            // Unpack the chunk's blocks into the buffers, viewed as the kernel's quants.
            buffers.quants.clear();
            buffers
                .quants
                .resize(n_rows * nb * vectors, _mm256_setzero_si256());
            buffers.dx.resize(n_rows * nb, 0.0);
            buffers.mx.resize(n_rows * nb, 0.0);
            // SAFETY: `WeightQuants` is one or two __m256i (size a multiple of 32, alignment
            // 32), so `vectors` vectors hold exactly one of it, aligned.
            let quants = std::slice::from_raw_parts_mut(
                buffers.quants.as_mut_ptr().cast::<K::WeightQuants>(),
                n_rows * nb,
            );
            for (i, block) in w[chunk * nb..(chunk + n_rows) * nb].iter().enumerate() {
                let (q, dx, mx) = K::weight(block);
                quants[i] = q;
                buffers.dx[i] = dx;
                buffers.mx[i] = mx;
            }
            let unpacked = Unpacked {
                q: quants,
                dx: &buffers.dx,
                mx: &buffers.mx,
                nb,
            };
            let oc = out.add(chunk);
            let mut t = 0;
            while t + 4 <= n_tokens {
                let (at, o) = (&a[t * nb..], oc.add(t * stride));
                let quad = TokenQuad {
                    a: at,
                    t0: t,
                    scales: &scales,
                };
                let tile_out = TileOut { ptr: o, stride };
                let mut r = 0;
                while r + 2 <= n_rows {
                    tile_2x4::<K, W, A>(&unpacked, r, &quad, &mut buffers.products, tile_out);
                    r += 2;
                }
                for r in r..n_rows {
                    for k in 0..4 {
                        single::<K, W, A>(&unpacked, r, &at[k * nb..], o.add(k * stride + r));
                    }
                }
                t += 4;
            }
            for t in t..n_tokens {
                for r in 0..n_rows {
                    single::<K, W, A>(&unpacked, r, &a[t * nb..], oc.add(t * stride + r));
                }
            }
            chunk += n_rows;
        }
        BUFFERS.with(|s| *s.borrow_mut() = buffers);
    }

    /// Per-thread buffers kept between calls, so a prompt step does not allocate.
    #[derive(Default)]
    struct Buffers {
        scales: Vec<f32>,
        products: Vec<__m256>,
        quants: Vec<__m256i>,
        dx: Vec<f32>,
        mx: Vec<f32>,
    }

    thread_local! {
        static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{quantize, testing::Rng, type_traits};
    use crate::matmul::quantize_activation_row;

    /// Every output equals its type's `vec_dot` to the last bit, for shapes with leftover rows
    /// and tokens.
    #[test]
    fn tiles_equal_single_dot_products_bit_for_bit() {
        if !supports(GgmlType::Q8_0, Isa::Avx2) {
            return;
        }
        let mut rng = Rng::new(23);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q6_K,
        ] {
            let traits = type_traits(ty).unwrap();
            let shapes = [
                (45, 512, 7),
                (8, 64, 12),
                (37, 96, 1),
                (70, 640, 5),
                (11, 768, 9),
            ];
            for (rows, cols, n_tokens) in shapes {
                // Q6_K's blocks are 256 values: only the shapes made of whole blocks.
                let Some(row_bytes) = ty.bytes_for(cols as u64) else {
                    continue;
                };
                let row_bytes = row_bytes as usize;
                let mut weights = vec![0u8; rows * row_bytes];
                quantize(ty, &rng.f32_vec(rows * cols, 1.0), &mut weights).unwrap();
                if ty == GgmlType::Q8_0 {
                    // A file may hold -128, which only the weight-carries-sign order keeps exact.
                    for block in weights.chunks_mut(34).step_by(3) {
                        block[2 + block[2] as usize % 32] = 0x80;
                    }
                }
                let act_type = traits.vec_dot_type;
                let act_bytes = act_type.bytes_for(cols as u64).unwrap() as usize;
                let mut act = vec![0u8; n_tokens * act_bytes];
                for (x, dst) in rng
                    .f32_vec(n_tokens * cols, 3.0)
                    .chunks(cols)
                    .zip(act.chunks_mut(act_bytes))
                {
                    quantize_activation_row(act_type, x, dst).unwrap();
                }
                let stride = rows + 3;
                let mut out = vec![f32::NAN; n_tokens * stride];
                let shape = GemmShape {
                    cols,
                    n_tokens,
                    out_stride: stride,
                };
                for isa in Isa::available().into_iter().filter(|&i| supports(ty, i)) {
                    // SAFETY: out holds n_tokens rows of `stride` values.
                    assert!(unsafe { gemm(ty, isa, &shape, &weights, &act, out.as_mut_ptr()) });
                    for t in 0..n_tokens {
                        for r in 0..rows {
                            let want = (traits.vec_dot)(
                                isa,
                                cols,
                                &weights[r * row_bytes..(r + 1) * row_bytes],
                                &act[t * act_bytes..(t + 1) * act_bytes],
                            );
                            let got = out[t * stride + r];
                            assert_eq!(got.to_bits(), want.to_bits(), "{ty} {isa} t{t} r{r}");
                        }
                        assert!(out[t * stride + rows].is_nan(), "wrote past its rows");
                    }
                }
            }
        }
        assert!(!supports(GgmlType::Q4_K, Isa::Avx2));
        assert!(!supports(GgmlType::Q8_0, Isa::Scalar));
    }
}
