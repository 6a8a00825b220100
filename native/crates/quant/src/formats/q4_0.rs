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

/// Q4_0 rows interleaved 8 at a time, as llama.cpp repacks them at load on x86: per group of
/// 8 rows and per block, the 8 scales, then 128 bytes where byte `32j + 4r + e` is byte
/// `4j + e` of row `r`'s block (so 4 nibbles of each row sit side by side in one i32 lane).
/// One group-block is as large as 8 blocks, and a group of rows as large as 8 rows.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0x8 {
    pub d: [[u8; 2]; 8],
    pub qs: [u8; 128],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0x8>() == 8 * 18);

/// Interleaves `rows` (a multiple of 8) rows of `cols` values into [`BlockQ4_0x8`] groups.
pub fn repack_x8(rows: usize, cols: usize, src: &[u8]) -> Vec<u8> {
    let nb = cols / QK4_0;
    assert!(
        rows.is_multiple_of(8) && cols.is_multiple_of(QK4_0) && src.len() == rows * nb * 18,
        "q4_0 repack: {rows} rows of {cols} in {} bytes",
        src.len()
    );
    let blocks: &[BlockQ4_0] = as_blocks(src);
    let mut out = vec![0u8; src.len()];
    let groups: &mut [BlockQ4_0x8] = as_blocks_mut(&mut out);
    for (g, group) in groups.chunks_exact_mut(nb).enumerate() {
        for (b, x8) in group.iter_mut().enumerate() {
            for r in 0..8 {
                let x = &blocks[(8 * g + r) * nb + b];
                x8.d[r] = x.d;
                for j in 0..4 {
                    x8.qs[32 * j + 4 * r..32 * j + 4 * r + 4]
                        .copy_from_slice(&x.qs[4 * j..4 * j + 4]);
                }
            }
        }
    }
    out
}

/// Row `r`'s block back out of a group-block.
fn block_of(x8: &BlockQ4_0x8, r: usize) -> BlockQ4_0 {
    BlockQ4_0 {
        d: x8.d[r],
        qs: std::array::from_fn(|k| x8.qs[32 * (k / 4) + 4 * r + k % 4]),
    }
}

/// `out[t * out_stride + r] = vec_dot_repacked_order(row r, token t)` for every row of
/// `weights` (groups made by [`repack_x8`]) and every token of `activation` (whole Q8_0 rows of
/// `n` values): single tokens (decode steps) and batches alike.
///
/// # Safety
/// `out` must be valid for writes at `t * out_stride + r` for every token `t` and row `r`, and
/// no other thread may access those indices during the call.
pub unsafe fn x8_matmul(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    out: *mut f32,
    out_stride: usize,
) {
    let nb = n / QK4_0;
    assert!(
        nb > 0
            && n.is_multiple_of(QK4_0)
            && weights.len().is_multiple_of(nb * 8 * 18)
            && activation.len().is_multiple_of(nb * 34),
        "q4_0x8 matmul: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ4_0x8], &[BlockQ8_0]) = (as_blocks(weights), as_blocks(activation));
    let n_tokens = a.len() / nb;
    #[cfg(target_arch = "x86_64")]
    if clamp_isa(isa) >= Isa::Avx2 {
        // SAFETY: clamp_isa only returns tiers whose features this CPU has; the caller vouches
        // for `out`.
        unsafe { simd::x8_matmul_avx2(w, nb, a, n_tokens, out, out_stride) };
        return;
    }
    let _ = isa;
    for (g, group) in w.chunks_exact(nb).enumerate() {
        for r in 0..8 {
            let row: Vec<BlockQ4_0> = group.iter().map(|x8| block_of(x8, r)).collect();
            for t in 0..n_tokens {
                let value = repacked_order_scalar(&row, &a[t * nb..(t + 1) * nb]);
                // SAFETY: the caller's contract covers (t, 8g + r).
                unsafe { *out.add(t * out_stride + 8 * g + r) = value };
            }
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
    use super::{BlockQ4_0, BlockQ4_0x8, BlockQ8_0};
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

    /// See [`super::x8_matmul`]: each group of 8 rows against the tokens 4 at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn x8_matmul_avx2(
        w: &[BlockQ4_0x8],
        nb: usize,
        a: &[BlockQ8_0],
        n_tokens: usize,
        out: *mut f32,
        stride: usize,
    ) {
        // Per token and block: dy and the 8·Σy correction, once for every group of rows.
        let mut act = ACT_TERMS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        act.clear();
        for y in a {
            act.push((f16_to_f32(y.d), offset_sum(y)));
        }
        let mut unpacked = UNPACKED.with(|b| std::mem::take(&mut *b.borrow_mut()));
        for (g, group) in w.chunks_exact(nb).enumerate() {
            let out = out.add(8 * g);
            let mut t = 0;
            if n_tokens >= UNPACK_MIN_TOKENS {
                unpacked.fill(group);
                while t + 4 <= n_tokens {
                    x8_unpacked_4(&unpacked, a, &act, nb, t, out, stride);
                    t += 4;
                }
            }
            while t + 4 <= n_tokens {
                x8_tokens::<4>(group, a, &act, nb, t, out, stride);
                t += 4;
            }
            for t in t..n_tokens {
                x8_tokens::<1>(group, a, &act, nb, t, out, stride);
            }
        }
        UNPACKED.with(|b| *b.borrow_mut() = unpacked);
        ACT_TERMS.with(|b| *b.borrow_mut() = act);
    }

    /// From this many tokens on, a group's nibbles are unpacked once into [`Unpacked`] and
    /// every token reads them from there (L1 or L2) instead of unpacking them again.
    const UNPACK_MIN_TOKENS: usize = 8;

    /// One group of 8 rows with its nibbles unpacked: per block, the low and high nibbles of
    /// each of the 4 packed vectors (8 vectors), and the 8 rows' scales as f32.
    #[derive(Default)]
    struct Unpacked {
        quants: Vec<__m256i>,
        dx: Vec<__m256>,
    }

    impl Unpacked {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn fill(&mut self, group: &[BlockQ4_0x8]) {
            self.quants.clear();
            self.dx.clear();
            for x8 in group {
                push_nibble_halves(&mut self.quants, &x8.qs);
                // SAFETY: the 8 scales are 16 contiguous bytes.
                self.dx.push(_mm256_cvtph_ps(unsafe {
                    _mm_loadu_si128(x8.d.as_ptr().cast())
                }));
            }
        }
    }

    thread_local! {
        static ACT_TERMS: std::cell::RefCell<Vec<(f32, i32)>> = const { std::cell::RefCell::new(Vec::new()) };
        static UNPACKED: std::cell::RefCell<Unpacked> = std::cell::RefCell::new(Unpacked::default());
    }

    /// [`x8_tokens`] for 4 tokens from `t0` on an unpacked group: the same sums in the same
    /// order; each weight vector is loaded once for the 4 tokens.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn x8_unpacked_4(
        group: &Unpacked,
        a: &[BlockQ8_0],
        act: &[(f32, i32)],
        nb: usize,
        t0: usize,
        out: *mut f32,
        stride: usize,
    ) {
        assert!(
            group.quants.len() == 8 * nb
                && group.dx.len() == nb
                && (t0 + 4) * nb <= a.len()
                && a.len() == act.len()
        );
        let ones = _mm256_set1_epi16(1);
        let (q, dx) = (group.quants.as_ptr(), group.dx.as_ptr());
        let (a, act) = (a.as_ptr().add(t0 * nb), act.as_ptr().add(t0 * nb));
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..nb {
            let q = q.add(8 * b);
            let y: [*const i8; 4] = std::array::from_fn(|k| (*a.add(k * nb + b)).qs.as_ptr());
            let quad = |k: usize, at: usize| {
                _mm256_set1_epi32(y[k].add(at).cast::<i32>().read_unaligned())
            };
            let mut pairs = [_mm256_setzero_si256(); 4];
            for j in 0..4 {
                let (lo, hi) = (*q.add(2 * j), *q.add(2 * j + 1));
                for (k, sum) in pairs.iter_mut().enumerate() {
                    let p = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, quad(k, 4 * j)),
                        _mm256_maddubs_epi16(hi, quad(k, 16 + 4 * j)),
                    );
                    *sum = if j == 0 { p } else { _mm256_add_epi16(*sum, p) };
                }
            }
            let dx = *dx.add(b);
            for (k, acc) in acc.iter_mut().enumerate() {
                let (dy, offset) = *act.add(k * nb + b);
                let isum =
                    _mm256_sub_epi32(_mm256_madd_epi16(pairs[k], ones), _mm256_set1_epi32(offset));
                let scale = _mm256_mul_ps(dx, _mm256_set1_ps(dy));
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc);
            }
        }
        for (k, acc) in acc.iter().enumerate() {
            // SAFETY: the caller's contract covers the group's 8 rows of token t0 + k.
            _mm256_storeu_ps(out.add((t0 + k) * stride), *acc);
        }
    }

    /// One group of 8 rows × `RN` tokens from `t0`, one lane per row. Per block, each 32-byte
    /// load holds 4 nibbles of every row for two groups of 4 elements; one maddubs per group
    /// with the token's 4 quants broadcast, summed in i16 (at most 8·2·15·128 = 30720 per
    /// pair), leaves row `r`'s Σ q·y in lane `r` after one madd; corrected by 8·Σy it is the
    /// block's exact sum, fused into the row's accumulator as llama.cpp does.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn x8_tokens<const RN: usize>(
        group: &[BlockQ4_0x8],
        a: &[BlockQ8_0],
        act: &[(f32, i32)],
        nb: usize,
        t0: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); RN];
        for (b, x8) in group.iter().enumerate() {
            let mut pairs = [_mm256_setzero_si256(); RN];
            for j in 0..4 {
                // SAFETY: 32 of the 128 quant bytes.
                let packed = _mm256_loadu_si256(x8.qs.as_ptr().add(32 * j).cast());
                // Elements 4j..4j+4 of each row (low nibbles), and 4j+16..4j+20 (high).
                let (lo, hi) = nibble_halves(packed);
                for (k, sum) in pairs.iter_mut().enumerate() {
                    let ys = a[(t0 + k) * nb + b].qs.as_ptr();
                    let y_lo = _mm256_set1_epi32(ys.add(4 * j).cast::<i32>().read_unaligned());
                    let y_hi = _mm256_set1_epi32(ys.add(16 + 4 * j).cast::<i32>().read_unaligned());
                    *sum = _mm256_add_epi16(*sum, _mm256_maddubs_epi16(lo, y_lo));
                    *sum = _mm256_add_epi16(*sum, _mm256_maddubs_epi16(hi, y_hi));
                }
            }
            // SAFETY: the 8 scales are 16 contiguous bytes.
            let dx = _mm256_cvtph_ps(_mm_loadu_si128(x8.d.as_ptr().cast()));
            for k in 0..RN {
                let (dy, offset) = act[(t0 + k) * nb + b];
                let isum =
                    _mm256_sub_epi32(_mm256_madd_epi16(pairs[k], ones), _mm256_set1_epi32(offset));
                let scale = _mm256_mul_ps(dx, _mm256_set1_ps(dy));
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[k]);
            }
        }
        for (k, acc) in acc.iter().enumerate() {
            // SAFETY: the caller's contract covers the group's 8 rows of token t0 + k.
            _mm256_storeu_ps(out.add((t0 + k) * stride), *acc);
        }
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

    /// The interleaved groups give the reference order's value for every output, on every
    /// tier, for single tokens and batches with tokens left over from the groups of 4 (below
    /// and above the count from which groups are unpacked first); and the interleaving keeps
    /// every row's block.
    #[test]
    fn x8_groups_equal_the_repacked_order_reference_bit_for_bit() {
        let mut rng = Rng::new(42);
        let (rows, nb, n_tokens) = (16usize, 5usize, 14usize);
        let n = nb * 32;
        let w = random_row(&mut rng, &LAYOUT, rows * nb, 2.0);
        let acts: Vec<Vec<u8>> = (0..n_tokens)
            .map(|_| {
                let mut a = vec![0u8; nb * 34];
                (Q8_0.quantize.expect("Q8_0 quantizes"))(&rng.f32_vec(n, 3.0), &mut a);
                a
            })
            .collect();
        let x8 = repack_x8(rows, n, &w);
        let groups: &[BlockQ4_0x8] = as_blocks(&x8);
        let blocks: &[BlockQ4_0] = as_blocks(&w);
        for r in 0..rows {
            for b in 0..nb {
                let back = block_of(&groups[(r / 8) * nb + b], r % 8);
                assert_eq!(
                    bytemuck::bytes_of(&back),
                    bytemuck::bytes_of(&blocks[r * nb + b])
                );
            }
        }
        let row = |r: usize| &w[r * nb * 18..(r + 1) * nb * 18];
        let all: Vec<u8> = acts.concat();
        for isa in Isa::available() {
            for tokens in [1, 7, n_tokens] {
                let stride = rows + 2;
                let mut out = vec![f32::NAN; tokens * stride];
                let act = &all[..tokens * nb * 34];
                // SAFETY: out holds `tokens` rows of `stride` values.
                unsafe { x8_matmul(isa, n, &x8, act, out.as_mut_ptr(), stride) };
                for t in 0..tokens {
                    for r in 0..rows {
                        let want = vec_dot_repacked_order(Isa::Scalar, n, row(r), &acts[t]);
                        let got = out[t * stride + r];
                        assert_eq!(got.to_bits(), want.to_bits(), "{isa} {tokens}: t{t} r{r}");
                    }
                    assert!(out[t * stride + rows].is_nan());
                }
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
