//! Q4_0: 32 values per block as 4-bit quants around 8 with one f16 scale, `x = d·(q - 8)`.
//! Pairs with Q8_0 activations.

use mistralrs_common::Isa;

use super::q8_0::BlockQ8_0;
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

pub const QK4_0: usize = 32;

/// `d` (f16), then 16 bytes of nibbles: byte j holds element j in its low nibble and
/// element j + 16 in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q4_0,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_0,
    vec_dot,
};

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ4_0] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK4_0)) {
        let d = f16_le(b.d);
        let (lo, hi) = out.split_at_mut(QK4_0 / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b.qs) {
            *l = ((q & 0x0F) as i32 - 8) as f32 * d;
            *h = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// ggml's `quantize_row_q4_0_ref`: the value of largest magnitude, sign kept, maps to -8
/// (`d = max / -8`), so that side uses the full [-8, 7] range; the other side rounds half up
/// and clips at 7 (values between 7.5·|d| and 8·|d| there lose up to one step).
fn quantize(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK4_0]] = bytemuck::cast_slice(src);
    for (x, b) in rows.iter().zip(as_blocks_mut::<BlockQ4_0>(dst)) {
        // First value of largest magnitude; NaN compares false and is skipped.
        let max = x
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_to_le(d);
        // `as i8` truncates like C's (int8_t) cast: x·id + 8.5 ≥ 0.5, so this rounds half up.
        let q = |v: f32| ((v * id + 8.5) as i8).clamp(0, 15) as u8;
        for (j, byte) in b.qs.iter_mut().enumerate() {
            *byte = q(x[j]) | q(x[j + 16]) << 4;
        }
    }
}

/// Consecutive weight rows against one activation row (decode steps), one call for the
/// run: bit-identical to one `vec_dot` per row.
pub fn vec_dot_rows(isa: Isa, n: usize, weights: &[u8], activation: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let simd: Option<super::VecDotRowsSimd<BlockQ4_0, BlockQ8_0>> = Some(simd::vec_dot_rows_avx2);
    #[cfg(not(target_arch = "x86_64"))]
    let simd: Option<super::VecDotRowsSimd<BlockQ4_0, BlockQ8_0>> = None;
    super::vec_dot_rows_with(isa, n, weights, activation, out, &TRAITS, simd)
}

/// llama.cpp repacks Q4_0 matrices whose row count is a multiple of 8 at load on x86 (8 rows
/// interleaved) and computes them in its own order, for single tokens and batches alike: per
/// row, each block's exact integer sum times `dx·dy`, fused-multiply-added into one scalar
/// accumulator (no lanes summed at the end). This is that order, as the reference.
pub fn vec_dot_repacked_order(_isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let nb = n / QK4_0;
    assert!(
        n.is_multiple_of(QK4_0) && weights.len() == nb * 18 && activation.len() == nb * 34,
        "q4_0 repacked order: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    repacked_order_scalar(as_blocks(weights), as_blocks(activation))
}

fn repacked_order_scalar(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let (ylo, yhi) = y.qs.split_at(QK4_0 / 2);
        let mut isum = 0i32;
        for ((&q, &l), &h) in x.qs.iter().zip(ylo).zip(yhi) {
            isum += ((q & 0x0F) as i32 - 8) * l as i32 + ((q >> 4) as i32 - 8) * h as i32;
        }
        acc = (isum as f32).mul_add(f16_le(x.d) * f16_le(y.d), acc);
    }
    acc
}

/// [`vec_dot_repacked_order`] over consecutive rows against one activation row (decode
/// steps); eight rows at a time on AVX2.
pub fn vec_dot_repacked_order_rows(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    out: &mut [f32],
) {
    let nb = n / QK4_0;
    assert!(
        n.is_multiple_of(QK4_0)
            && weights.len() == out.len() * nb * 18
            && activation.len() == nb * 34,
        "q4_0 repacked rows: n = {n}, {} rows in {} weight bytes, {} activation bytes",
        out.len(),
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ4_0], &[BlockQ8_0]) = (as_blocks(weights), as_blocks(activation));
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if clamp_isa(isa) >= Isa::Avx2 && nb > 0 {
        let eights = out.len() / 8 * 8;
        // SAFETY: clamp_isa only returns tiers whose features this CPU has.
        unsafe { simd::repacked_rows_avx2(&w[..eights * nb], nb, a, &mut out[..eights]) };
        done = eights;
    }
    let _ = isa;
    for (r, o) in out.iter_mut().enumerate().skip(done) {
        *o = repacked_order_scalar(&w[r * nb..(r + 1) * nb], a);
    }
}

/// [`vec_dot_repacked_order`] for every row × token (batches): output `(t, r)` goes to
/// `out[t * out_stride + r]`. `weights` holds whole rows of `n` values, `activation` whole Q8_0
/// rows. The order is the same for every token (llama.cpp's GEMM and GEMV agree), so
/// `_gemm_order` is ignored.
///
/// # Safety
/// `out` must be valid for writes at `t * out_stride + r` for every token `t` and row `r`, and
/// no other thread may access those indices during the call.
pub unsafe fn repacked_order_tiles(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    _gemm_order: bool,
    out: *mut f32,
    out_stride: usize,
) {
    let nb = n / QK4_0;
    assert!(
        nb > 0
            && n.is_multiple_of(QK4_0)
            && weights.len().is_multiple_of(nb * 18)
            && activation.len().is_multiple_of(nb * 34),
        "q4_0 repacked tiles: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ4_0], &[BlockQ8_0]) = (as_blocks(weights), as_blocks(activation));
    let (rows, n_tokens) = (w.len() / nb, a.len() / nb);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if clamp_isa(isa) >= Isa::Avx2 {
        done = rows / 8 * 8;
        // SAFETY: clamp_isa only returns tiers whose features this CPU has; the caller vouches
        // for `out`.
        unsafe { simd::repacked_tiles_avx2(&w[..done * nb], nb, a, n_tokens, out, out_stride) };
    }
    let _ = isa;
    for r in done..rows {
        for t in 0..n_tokens {
            let value = repacked_order_scalar(&w[r * nb..(r + 1) * nb], &a[t * nb..(t + 1) * nb]);
            // SAFETY: the caller's contract covers (t, r).
            unsafe { *out.add(t * out_stride + r) = value };
        }
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let nb = n / QK4_0;
    assert!(
        n.is_multiple_of(QK4_0) && weights.len() == nb * 18 && activation.len() == nb * 34,
        "q4_0 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ4_0], &[BlockQ8_0]) = (as_blocks(weights), as_blocks(activation));
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns tiers whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { simd::vec_dot_vnni(w, a) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::vec_dot_avx2(w, a) },
        _ => vec_dot_scalar(w, a),
    }
}

/// The reference: exact i32 sum per block, then one float scale per block.
fn vec_dot_scalar(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let (ylo, yhi) = y.qs.split_at(QK4_0 / 2);
        let mut sumi = 0i32;
        for ((&q, &l), &h) in x.qs.iter().zip(ylo).zip(yhi) {
            sumi += ((q & 0x0F) as i32 - 8) * l as i32 + ((q >> 4) as i32 - 8) * h as i32;
        }
        sum += sumi as f32 * f16_le(x.d) * f16_le(y.d);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::super::q8_0::x86::*;
    use super::{BlockQ4_0, BlockQ8_0};
    use std::arch::x86_64::*;

    macro_rules! tier {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            pub(super) fn $name(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
                #[inline]
                #[target_feature(enable = $features)]
                fn step(x: &BlockQ4_0, y: &BlockQ8_0, acc: __m256) -> __m256 {
                    let q = _mm256_sub_epi8(unpack_nibbles(&x.qs), _mm256_set1_epi8(8));
                    // The activation carries the sign: any activation byte works, -128
                    // included, since -q stays within [-7, 8].
                    let p = $dot(load_i8(&y.qs), q);
                    let d = _mm256_set1_ps(f16_to_f32(x.d) * f16_to_f32(y.d));
                    _mm256_fmadd_ps(p, d, acc)
                }
                sum_blocks!(w, a, step)
            }
        };
    }
    tier!(vec_dot_avx2, "avx2,fma,f16c", dot_i8_avx2);
    rows_kernel!(vec_dot_rows_avx2, vec_dot_avx2, BlockQ4_0, BlockQ8_0);

    /// `8·Σy` of an activation block, the correction that turns Σ q·y over the unsigned
    /// nibbles into Σ (q - 8)·y.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn offset_sum(y: &BlockQ8_0) -> i32 {
        let s = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_set1_epi8(1), load_i8(&y.qs)),
            _mm256_set1_epi16(1),
        );
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        8 * _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<1>(s)))
    }

    /// The `d` of 8 blocks `stride` apart, one per lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scales8(w: &[BlockQ4_0], first: usize, stride: usize) -> __m256 {
        let h: [i16; 8] =
            [0, 1, 2, 3, 4, 5, 6, 7].map(|r| i16::from_le_bytes(w[first + r * stride].d));
        _mm256_cvtph_ps(_mm_setr_epi16(
            h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
        ))
    }

    /// Decode steps: 8 rows per pass, one lane per row. Each row's block gives eight i32
    /// lanes of Σ q·y (unsigned nibbles, so no saturation: 2·15·128 per pair), added up across
    /// lanes exactly, corrected by 8·Σy, then fused into the row's accumulator.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn repacked_rows_avx2(w: &[BlockQ4_0], nb: usize, a: &[BlockQ8_0], out: &mut [f32]) {
        let ones = _mm256_set1_epi16(1);
        for (tile, out) in out.chunks_exact_mut(8).enumerate() {
            let first = tile * 8 * nb;
            let mut acc = _mm256_setzero_ps();
            for (b, y) in a.iter().enumerate().take(nb) {
                let ys = load_i8(&y.qs);
                let mut v = [_mm256_setzero_si256(); 8];
                for (r, lanes) in v.iter_mut().enumerate() {
                    let q = unpack_nibbles(&w[first + r * nb + b].qs);
                    *lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(q, ys), ones);
                }
                let isum = _mm256_sub_epi32(sum_lanes_x8(&v), _mm256_set1_epi32(offset_sum(y)));
                let scale =
                    _mm256_mul_ps(scales8(w, first + b, nb), _mm256_set1_ps(f16_to_f32(y.d)));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
            }
            // SAFETY: `out` holds exactly these 8 rows' outputs.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
        }
    }

    /// Rows 8 at a time with their blocks interleaved once (4 quants of each row per i32
    /// lane, as llama.cpp repacks them), then every token: per block and 4-element group, one
    /// maddubs of the 8 rows' nibbles with the token's 4 quants broadcast, summed in i16 (at
    /// most 8·2·15·128 = 30720 per pair), so lane `r` ends with row `r`'s Σ q·y.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn repacked_tiles_avx2(
        w: &[BlockQ4_0],
        nb: usize,
        a: &[BlockQ8_0],
        n_tokens: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let mut buffers = TILE_BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        // Per token and block: dy and the 8·Σy correction.
        buffers.act.clear();
        buffers
            .act
            .extend(a.iter().map(|y| (f16_to_f32(y.d), offset_sum(y))));
        for (tile, rows) in w.chunks_exact(8 * nb).enumerate() {
            buffers.quants.clear();
            buffers.scales.clear();
            for b in 0..nb {
                let mut e = [_mm256_setzero_si256(); 8];
                for (r, e) in e.iter_mut().enumerate() {
                    *e = unpack_nibbles(&rows[r * nb + b].qs);
                }
                buffers.quants.extend(transpose_i32x8(&e));
                buffers.scales.push(scales8(rows, b, nb));
            }
            let out = out.add(8 * tile);
            let mut t = 0;
            while t + 2 <= n_tokens {
                tokens::<2>(&buffers, a, nb, t, out, stride);
                t += 2;
            }
            if t < n_tokens {
                tokens::<1>(&buffers, a, nb, t, out, stride);
            }
        }
        TILE_BUFFERS.with(|b| *b.borrow_mut() = buffers);
    }

    /// `RN` tokens from `t0` against one interleaved 8-row tile.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tokens<const RN: usize>(
        u: &TileBuffers,
        a: &[BlockQ8_0],
        nb: usize,
        t0: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); RN];
        for b in 0..nb {
            let quants = &u.quants[b * 8..b * 8 + 8];
            let mut pairs = [_mm256_setzero_si256(); RN];
            for (g, &q) in quants.iter().enumerate() {
                for (k, sum) in pairs.iter_mut().enumerate() {
                    let y = &a[(t0 + k) * nb + b].qs[4 * g..4 * g + 4];
                    let y = _mm256_set1_epi32(i32::from_le_bytes([
                        y[0] as u8, y[1] as u8, y[2] as u8, y[3] as u8,
                    ]));
                    *sum = _mm256_add_epi16(*sum, _mm256_maddubs_epi16(q, y));
                }
            }
            for k in 0..RN {
                let (dy, offset) = u.act[(t0 + k) * nb + b];
                let isum =
                    _mm256_sub_epi32(_mm256_madd_epi16(pairs[k], ones), _mm256_set1_epi32(offset));
                let scale = _mm256_mul_ps(u.scales[b], _mm256_set1_ps(dy));
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[k]);
            }
        }
        for (k, acc) in acc.iter().enumerate() {
            // SAFETY: the caller's contract covers the tile's 8 rows of token t0 + k.
            _mm256_storeu_ps(out.add((t0 + k) * stride), *acc);
        }
    }

    /// `out[g]` lane `r` = `e[r]` lane `g` (an 8 × 8 transpose of i32 lanes).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn transpose_i32x8(e: &[__m256i; 8]) -> [__m256i; 8] {
        let t0 = _mm256_unpacklo_epi32(e[0], e[1]);
        let t1 = _mm256_unpackhi_epi32(e[0], e[1]);
        let t2 = _mm256_unpacklo_epi32(e[2], e[3]);
        let t3 = _mm256_unpackhi_epi32(e[2], e[3]);
        let t4 = _mm256_unpacklo_epi32(e[4], e[5]);
        let t5 = _mm256_unpackhi_epi32(e[4], e[5]);
        let t6 = _mm256_unpacklo_epi32(e[6], e[7]);
        let t7 = _mm256_unpackhi_epi32(e[6], e[7]);
        // u0: lanes 0 of rows 0..4 | lanes 4 of rows 0..4; u1: lanes 1 | 5; u2: 2 | 6; u3: 3 | 7.
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    /// Per-thread buffers kept between calls: one tile's interleaved quants (`[block][group]`)
    /// and scales, and the batch's per-block activation terms.
    #[derive(Default)]
    struct TileBuffers {
        quants: Vec<__m256i>,
        scales: Vec<__m256>,
        act: Vec<(f32, i32)>,
    }

    thread_local! {
        static TILE_BUFFERS: std::cell::RefCell<TileBuffers> =
            std::cell::RefCell::new(TileBuffers::default());
    }
    tier!(
        vec_dot_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        dot_i8_vnni
    );
}

#[cfg(test)]
mod tests {
    use super::super::q8_0::test_support::*;
    use super::super::q8_0::TRAITS as Q8_0;
    use super::super::testing::Rng;
    use super::*;

    const LAYOUT: Layout = Layout {
        type_size: 18,
        f16_at: &[0],
        no_min_i8_at: None,
    };
    /// Any activation byte is allowed here, -128 included.
    const ACT: Layout = Layout {
        type_size: 34,
        f16_at: &[0],
        no_min_i8_at: None,
    };

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockQ4_0>(), GgmlType::Q4_0.type_size());
        assert_eq!(QK4_0, GgmlType::Q4_0.block_size());
    }

    /// The repacked order's row runs and tiles give the reference's value for every output,
    /// on every tier, with rows and tokens left over from the groups of 8 and 2.
    #[test]
    fn repacked_order_kernels_equal_the_reference_bit_for_bit() {
        let mut rng = Rng::new(42);
        let (rows, nb, n_tokens) = (21usize, 5usize, 7usize);
        let n = nb * 32;
        let w = random_row(&mut rng, &LAYOUT, rows * nb, 2.0);
        let acts: Vec<Vec<u8>> = (0..n_tokens)
            .map(|_| {
                let mut a = vec![0u8; nb * 34];
                (Q8_0.quantize.expect("Q8_0 quantizes"))(&rng.f32_vec(n, 3.0), &mut a);
                a
            })
            .collect();
        let row = |r: usize| &w[r * nb * 18..(r + 1) * nb * 18];
        for isa in Isa::available() {
            let mut got = vec![0f32; rows];
            vec_dot_repacked_order_rows(isa, n, &w, &acts[0], &mut got);
            for (r, g) in got.iter().enumerate() {
                let want = vec_dot_repacked_order(Isa::Scalar, n, row(r), &acts[0]);
                assert_eq!(g.to_bits(), want.to_bits(), "{isa} rows: row {r}");
            }
            let stride = rows + 2;
            let mut out = vec![f32::NAN; n_tokens * stride];
            let all: Vec<u8> = acts.concat();
            // SAFETY: out holds n_tokens rows of `stride` values.
            unsafe { repacked_order_tiles(isa, n, &w, &all, true, out.as_mut_ptr(), stride) };
            for t in 0..n_tokens {
                for r in 0..rows {
                    let want = vec_dot_repacked_order(Isa::Scalar, n, row(r), &acts[t]);
                    let got = out[t * stride + r];
                    assert_eq!(got.to_bits(), want.to_bits(), "{isa} tiles: t{t} r{r}");
                }
                assert!(out[t * stride + rows].is_nan());
            }
        }
        // The order differs from `vec_dot`'s only in rounding.
        let plain = vec_dot(Isa::Scalar, n, row(0), &acts[0]);
        let repacked = vec_dot_repacked_order(Isa::Scalar, n, row(0), &acts[0]);
        assert!(
            (plain - repacked).abs() <= 1e-4 * plain.abs().max(1.0),
            "{plain} vs {repacked}"
        );
    }

    #[test]
    fn dequantize_hand_built_block() {
        // Byte j: low nibble j (element j), high nibble 15 - j (element j + 16).
        let b = BlockQ4_0 {
            d: f16_to_le(0.5),
            qs: std::array::from_fn(|j| (j | (15 - j) << 4) as u8),
        };
        let out = dequant(&TRAITS, bytemuck::bytes_of(&b), 32);
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(out[j + 16], (7.0 - j as f32) * 0.5);
        }
        assert_eq!((out[0], out[15], out[16], out[31]), (-4.0, 3.5, 3.5, -4.0));
    }

    #[test]
    fn vec_dot_tiers_agree_with_scalar_and_dequantized_dot() {
        let mut rng = Rng::new(40);
        for n in LENGTHS {
            let w = random_row(&mut rng, &LAYOUT, n / 32, 2.0);
            let a = random_row(&mut rng, &ACT, n / 32, 2.0);
            check_exact_dot("random", &TRAITS, &Q8_0, n, &w, &a);
            let mut a = vec![0u8; n / 32 * 34];
            (Q8_0.quantize.expect("Q8_0 quantizes"))(&rng.f32_vec(n, 3.0), &mut a);
            check_exact_dot("quantized activation", &TRAITS, &Q8_0, n, &w, &a);
        }
        for salt in 0..4 {
            let w = edge_row(&LAYOUT, salt);
            let a = edge_row(&ACT, salt + 1);
            check_exact_dot("edge", &TRAITS, &Q8_0, w.len() / 18 * 32, &w, &a);
        }
    }

    /// With d = max / -8 and t = x/d ∈ [-8, 8], q - 8 = min(7, round-half-up(t)), so
    /// |t - (q - 8)| ≤ 1/2, except t - 7 (≤ 1) when t > 7.5 clips. Rounding d to f16 adds
    /// |q - 8|·|d - d16| ≤ 8·|d - d16|. Per element:
    /// |x - y| ≤ |d|·max(1/2, t - 7) + 8·|d - d16|, plus a few ulps of amax for x·(1/d).
    fn check_round_trip(what: &str, x: &[f32]) {
        let mut q = vec![0u8; x.len() / 32 * 18];
        quantize(x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let max = xb
                .iter()
                .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -8.0;
            let d16 = f16_le(f16_to_le(d));
            for (a, b) in xb.iter().zip(yb) {
                let t = if d != 0.0 { a / d } else { 0.0 };
                let bound = d.abs() * (t - 7.0).max(0.5) + 8.0 * (d - d16).abs() + 1e-6 * max.abs();
                assert!((a - b).abs() <= bound, "{what}: {a} -> {b} (bound {bound})");
            }
        }
    }

    #[test]
    fn quantize_round_trip_within_bound() {
        let mut rng = Rng::new(41);
        check_round_trip("random", &rng.f32_vec(4096, 5.0));
        check_round_trip("constant", &[0.3; 64]);
        let mut spike = vec![0.0f32; 64];
        spike[9] = 6.0;
        spike[50] = -1e-3;
        check_round_trip("spike", &spike);
        let mut q = vec![0u8; 36];
        quantize(&spike, &mut q);
        let y = dequant(&TRAITS, &q, 64);
        // The spike is exact (q - 8 = -8, d = -0.75 is an f16); the zeros stay exact zeros.
        assert_eq!(y[9], 6.0);
        assert!(y
            .iter()
            .enumerate()
            .all(|(i, &v)| i == 9 || i == 50 || v == 0.0));
        quantize(&[0.0; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == 0.0));
    }

    /// Quantizing values that are already on the grid, with the extreme at -8·d, is exact.
    #[test]
    fn quantize_reproduces_grid_values() {
        let x: Vec<f32> = (0..32)
            .map(|i| {
                if i == 0 {
                    2.0
                } else {
                    ((i % 16) as f32 - 8.0) * -0.25
                }
            })
            .collect();
        let mut q = vec![0u8; 18];
        quantize(&x, &mut q);
        assert_eq!(dequant(&TRAITS, &q, 32), x);
    }
}
