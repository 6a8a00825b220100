//! Q8_0: 32 values per block as signed bytes with one f16 scale, `x = d·q`.
//!
//! Q8_0 is also the activation format that Q4_0, Q5_0, Q8_0 and IQ4_NL weights multiply
//! with, so [`quantize`] runs once per activation row in every such matmul; its AVX2 path is
//! byte-identical to the scalar reference. The x86 building blocks shared by every
//! 32-value format live here ([`x86`]), as do the test helpers those formats share.

use mistralrs_common::Isa;

use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

pub const QK8_0: usize = 32;

/// `d` (f16), then 32 signed quants.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; QK8_0],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q8_0,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_0,
    vec_dot,
};

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ8_0] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK8_0)) {
        let d = f16_le(b.d);
        for (o, &q) in out.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

fn quantize(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK8_0]] = bytemuck::cast_slice(src);
    let blocks: &mut [BlockQ8_0] = as_blocks_mut(dst);
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::selected_isa() >= Isa::Avx2 {
        for (x, b) in rows.iter().zip(blocks.iter_mut()) {
            // SAFETY: selected_isa never exceeds what this CPU supports, so AVX2, FMA and
            // F16C are present.
            let (d, _) = unsafe { x86::quantize_block_avx2(x, &mut b.qs) };
            b.d = f16_to_le(d);
        }
        return;
    }
    for (x, b) in rows.iter().zip(blocks.iter_mut()) {
        let (d, _) = quantize_block_scalar(x, &mut b.qs);
        b.d = f16_to_le(d);
    }
}

/// Activation rows as ggml's CPU backend quantizes them at run time (its SIMD
/// `quantize_row_q8_0`, not the reference): `id = 127 / amax` and rounding to nearest even.
/// The reference (`quantize`) differs in the last bit for some blocks, and on models with
/// large activations that last bit shows in the logits, so matching llama.cpp token for token
/// needs this exact rule.
pub fn quantize_activation(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK8_0]] = bytemuck::cast_slice(src);
    let blocks: &mut [BlockQ8_0] = as_blocks_mut(dst);
    for (x, b) in rows.iter().zip(blocks.iter_mut()) {
        let (d, _) = quantize_block_runtime(x, &mut b.qs);
        b.d = f16_to_le(d);
    }
}

/// One block by ggml's run-time rule; returns `d` (unrounded) and `Σq`.
pub(crate) fn quantize_block_runtime(x: &[f32; QK8_0], qs: &mut [i8; QK8_0]) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_ties_even_small(v * id) as i8;
        sum += *q as i32;
    }
    (d, sum)
}

/// Round to nearest, ties to even, for |x| < 2^22: adding and removing 1.5·2^23 leaves the
/// hardware's default rounding to do the work, without a libm call. NaN stays NaN (→ 0 as i8).
#[inline(always)]
fn round_ties_even_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// ggml's `quantize_row_q8_0_ref` for one block: `d = amax / 127`, `q = round(x / d)` with
/// halves away from zero (C `roundf`). Returns the unrounded `d` and the sum of the quants
/// (Q8_1 stores `d·Σq`). `q` never reaches -128, which the SIMD dot products rely on.
pub(crate) fn quantize_block_scalar(x: &[f32; QK8_0], qs: &mut [i8; QK8_0]) -> (f32, i32) {
    // `f32::max` skips NaN, as does the AVX2 path.
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        // NaN (and inf·0) saturate to 0, which the AVX2 path mirrors.
        *q = (v * id).round() as i8;
        sum += *q as i32;
    }
    (d, sum)
}

/// Consecutive weight rows against one activation row (decode steps), one call for the
/// run: bit-identical to one `vec_dot` per row.
pub fn vec_dot_rows(isa: Isa, n: usize, weights: &[u8], activation: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let simd: Option<super::VecDotRowsSimd<BlockQ8_0, BlockQ8_0>> = Some(simd::vec_dot_rows_avx2);
    #[cfg(not(target_arch = "x86_64"))]
    let simd: Option<super::VecDotRowsSimd<BlockQ8_0, BlockQ8_0>> = None;
    super::vec_dot_rows_with(isa, n, weights, activation, out, &TRAITS, simd)
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let nb = n / QK8_0;
    assert!(
        n.is_multiple_of(QK8_0) && weights.len() == nb * 34 && activation.len() == nb * 34,
        "q8_0 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ8_0], &[BlockQ8_0]) = (as_blocks(weights), as_blocks(activation));
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

/// The reference: exact i32 sum per block, then one float scale per block (ggml's generic
/// `ggml_vec_dot_q8_0_q8_0`).
fn vec_dot_scalar(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let sumi: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
        sum += sumi as f32 * f16_le(x.d) * f16_le(y.d);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::x86::*;
    use super::BlockQ8_0;
    use std::arch::x86_64::*;

    macro_rules! tier {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            pub(super) fn $name(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
                #[inline]
                #[target_feature(enable = $features)]
                fn step(x: &BlockQ8_0, y: &BlockQ8_0, acc: __m256) -> __m256 {
                    // The weights carry the sign: a -128 weight is fine, a -128 activation
                    // (never produced by `quantize`) is not.
                    let p = $dot(load_i8(&x.qs), load_i8(&y.qs));
                    let d = _mm256_set1_ps(f16_to_f32(x.d) * f16_to_f32(y.d));
                    _mm256_fmadd_ps(p, d, acc)
                }
                sum_blocks!(w, a, step)
            }
        };
    }
    tier!(vec_dot_avx2, "avx2,fma,f16c", dot_i8_avx2);
    rows_kernel!(vec_dot_rows_avx2, vec_dot_avx2, BlockQ8_0, BlockQ8_0);

    tier!(
        vec_dot_vnni,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        dot_i8_vnni
    );
}

/// x86 building blocks for the 32-value formats. Every function needs at least AVX2, FMA and
/// F16C; the `_vnni` ones also AVX-512 VL + VNNI. Each block dot returns eight i32 lanes,
/// each the sum of four neighbouring products, as f32: both tiers produce the same lanes, so
/// their results are bit-identical.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// Sums `step(w[i], a[i], acc)` over the block pairs on two accumulators, so consecutive
    /// blocks do not wait on each other's FMA latency, then adds the eight lanes up. The
    /// second form also adds up a scalar `extra(w[i], a[i])` per block in the same pass (the
    /// `m·s` terms of Q4_1 / Q5_1). Must expand inside a function with AVX2 + FMA.
    /// Sums the blocks' contributions in ggml's order (one running accumulator, block after
    /// block; extra scalar terms summed on the side and added last), so that each dot product
    /// is bit-identical to llama.cpp's on the same inputs. Models with large activations need
    /// that to follow the reference token for token.
    macro_rules! sum_blocks {
        ($w:expr, $a:expr, $step:ident) => {{
            let mut acc = ::core::arch::x86_64::_mm256_setzero_ps();
            for (x, y) in $w.iter().zip($a) {
                acc = $step(x, y, acc);
            }
            $crate::formats::q8_0::x86::hsum(acc)
        }};
        ($w:expr, $a:expr, $step:ident, $extra:ident) => {{
            let mut acc = ::core::arch::x86_64::_mm256_setzero_ps();
            let mut extra = 0.0f32;
            for (x, y) in $w.iter().zip($a) {
                acc = $step(x, y, acc);
                extra += $extra(x, y);
            }
            $crate::formats::q8_0::x86::hsum(acc) + extra
        }};
    }
    pub(crate) use sum_blocks;

    /// One little-endian f16 to f32 with F16C (half's own conversion checks the CPU each call).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn f16_to_f32(h: [u8; 2]) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(
            _mm_cvtsi32_si128(u16::from_le_bytes(h) as i32),
        ))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn load_i8(qs: &[i8; 32]) -> __m256i {
        // SAFETY: reads exactly the 32 bytes of the array; loadu needs no alignment.
        unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
    }

    /// 16 bytes of packed nibbles to 32 bytes (0..=15) in element order: byte j's low nibble
    /// is element j, its high nibble element j + 16.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn unpack_nibbles(qs: &[u8; 16]) -> __m256i {
        // SAFETY: reads exactly the 16 bytes of the array; loadu needs no alignment.
        let packed = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
        let both = _mm256_set_m128i(_mm_srli_epi16::<4>(packed), packed);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    /// The low and the high nibbles of 32 packed bytes, each as 32 bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn nibble_halves(packed: __m256i) -> (__m256i, __m256i) {
        let m4 = _mm256_set1_epi8(0x0F);
        (
            _mm256_and_si256(packed, m4),
            _mm256_and_si256(_mm256_srli_epi16::<4>(packed), m4),
        )
    }

    /// [`nibble_halves`] of each 32 bytes of `qs` (a multiple of 32), pushed low then high.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn push_nibble_halves(dst: &mut Vec<__m256i>, qs: &[u8]) {
        for packed in qs.chunks_exact(32) {
            // SAFETY: 32 readable bytes; loadu needs no alignment.
            let (lo, hi) = nibble_halves(unsafe { _mm256_loadu_si256(packed.as_ptr().cast()) });
            dst.push(lo);
            dst.push(hi);
        }
    }

    /// The 32 bits of `bits` to 32 bytes, 0xFF where bit j is set (the Q5 fifth bits).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn expand_bits(bits: u32) -> __m256i {
        // Byte j takes source byte j / 8 (the shuffle works per 128-bit half, and set1
        // repeats all four source bytes in both), then keeps bit j % 8.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                3, 3, 3, 3,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
    }

    /// Signed × signed bytes (ggml's sign trick): `|s|` is unsigned and `o` takes s's sign,
    /// so `maddubs` sees u8 × i8. `s` may hold -128 (|-128| reads as 128 unsigned); `o` may
    /// not where `s` is negative. Pair sums stay within ±32 768, so maddubs cannot saturate.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn dot_i8_avx2(s: __m256i, o: __m256i) -> __m256 {
        dot_u8_avx2(_mm256_sign_epi8(s, s), _mm256_sign_epi8(o, s))
    }

    /// Unsigned × signed bytes: maddubs to i16 pairs, madd by ones to i32 quads. Callers keep
    /// `u` ≤ 31 or use the sign trick, so no pair saturates.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn dot_u8_avx2(u: __m256i, s: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// As [`dot_i8_avx2`], with one VNNI `vpdpbusd` instead of maddubs + madd.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) fn dot_i8_vnni(s: __m256i, o: __m256i) -> __m256 {
        dot_u8_vnni(_mm256_sign_epi8(s, s), _mm256_sign_epi8(o, s))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) fn dot_u8_vnni(u: __m256i, s: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s))
    }

    /// [`super::quantize_block_scalar`] with the same bytes: max |x| is exact in any order,
    /// `x·id` is the same single multiply, and rounding half away from zero is done exactly
    /// (truncate, then step away when the exact remainder is ≥ 0.5).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn quantize_block_avx2(x: &[f32; 32], qs: &mut [i8; 32]) -> (f32, i32) {
        let p = x.as_ptr();
        // SAFETY: four 8-float loads at offsets 0, 8, 16, 24 stay inside the 32-float array.
        let v = unsafe {
            [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ]
        };
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for vi in v {
            // max_ps returns its second operand when the first is NaN: NaN is skipped.
            m = _mm256_max_ps(_mm256_andnot_ps(sign, vi), m);
        }
        let h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        let amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));

        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let q = [
            round_away(v[0], id),
            round_away(v[1], id),
            round_away(v[2], id),
            round_away(v[3], id),
        ];
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256::<1>(sum),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));

        // packs interleave per 128-bit half: 4-byte groups come out as q0[0..4], q1[0..4],
        // q2[0..4], q3[0..4], q0[4..8], ...; the permute puts them back in element order.
        // Values are within ±127, so the saturating packs never clip.
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: writes exactly the 32 bytes of the array; storeu needs no alignment.
        unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), bytes) };
        (d, _mm_cvtsi128_si32(s))
    }

    /// `round(v·id)` as C's `roundf`, to i32; NaN lanes become 0 as `f32 as i8` does.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn round_away(v: __m256, id: __m256) -> __m256i {
        let t = _mm256_mul_ps(v, id);
        let trunc = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
        let sign = _mm256_set1_ps(-0.0);
        // Exact: t and trunc(t) share their exponent range (|t| ≤ 127).
        let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(t, trunc));
        let step = _mm256_or_ps(_mm256_and_ps(t, sign), _mm256_set1_ps(1.0));
        let away = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5)), step);
        let r = _mm256_and_ps(
            _mm256_add_ps(trunc, away),
            _mm256_cmp_ps::<_CMP_ORD_Q>(t, t),
        );
        _mm256_cvttps_epi32(r)
    }
}

/// Helpers shared by the tests of the 32-value formats.
#[cfg(test)]
pub(crate) mod test_support {
    use super::super::testing::{assert_close, tiers, Rng};
    use super::super::{f16_to_le, TypeTraits};
    use mistralrs_common::Isa;

    /// Row lengths every vec_dot test uses: one block, two, a K-quant super-block, and a
    /// long row with an odd number of blocks (exercises the second accumulator's tail).
    pub const LENGTHS: [usize; 4] = [32, 64, 256, 4096 + 32];

    /// Where a block keeps its f16 fields and, for Q8 formats, its i8 quants.
    pub struct Layout {
        pub type_size: usize,
        pub f16_at: &'static [usize],
        /// Offset of 32 i8 quants in which -128 is replaced by -127 (Q8 activations of the
        /// Q8 × Q8 dots, whose SIMD sign trick needs it; `quantize` never writes -128).
        pub no_min_i8_at: Option<usize>,
    }

    fn fix_block(b: &mut [u8], layout: &Layout) {
        if let Some(at) = layout.no_min_i8_at {
            b[at..at + 32]
                .iter_mut()
                .filter(|q| **q == 0x80)
                .for_each(|q| *q = 0x81);
        }
    }

    /// Random bytes with finite random f16 fields in [-scale, scale).
    pub fn random_row(rng: &mut Rng, layout: &Layout, nb: usize, scale: f32) -> Vec<u8> {
        let mut row = vec![0u8; nb * layout.type_size];
        rng.fill_bytes(&mut row);
        for b in row.chunks_exact_mut(layout.type_size) {
            for &at in layout.f16_at {
                b[at..at + 2].copy_from_slice(&f16_to_le(rng.next_f32() * scale));
            }
            fix_block(b, layout);
        }
        row
    }

    /// Edge blocks: scales 0, ±65504 (largest finite f16), 1, the smallest subnormal and
    /// -0.5, crossed with quant bytes all 0x00, all 0xFF (every nibble and bit at its min or
    /// max), 0x80, 0x7F, 0x88, 0x0F, 0xF0 and 0x5A. `salt` rotates the combinations so a
    /// weight row and an activation row pair different ones.
    pub fn edge_row(layout: &Layout, salt: usize) -> Vec<u8> {
        const SCALES: [f32; 6] = [0.0, 65504.0, -65504.0, 1.0, 5.960_464_5e-8, -0.5];
        const FILLS: [u8; 8] = [0x00, 0xFF, 0x80, 0x7F, 0x88, 0x0F, 0xF0, 0x5A];
        let nb = SCALES.len() * FILLS.len();
        let mut row = vec![0u8; nb * layout.type_size];
        for (k, b) in row.chunks_exact_mut(layout.type_size).enumerate() {
            let k = (k * (2 * salt + 1) + salt) % nb;
            b.fill(FILLS[k % FILLS.len()]);
            for &at in layout.f16_at {
                b[at..at + 2].copy_from_slice(&f16_to_le(SCALES[k / FILLS.len()]));
            }
            fix_block(b, layout);
        }
        row
    }

    pub fn dequant(traits: &TypeTraits, bytes: &[u8], n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; n];
        (traits.dequantize)(bytes, &mut out);
        out
    }

    /// Σ a·b and Σ |a·b| in f64.
    pub fn dot_and_abs(a: &[f32], b: &[f32]) -> (f64, f64) {
        a.iter().zip(b).fold((0.0, 0.0), |(s, t), (&x, &y)| {
            let p = x as f64 * y as f64;
            (s + p, t + p.abs())
        })
    }

    /// Float-rounding tolerance between two evaluations of one sum whose terms' absolute
    /// values add up to `cond`: each is off by at most depth·2⁻²⁴·cond, where depth bounds
    /// the roundings any term goes through (scale products, its accumulator chain, the final
    /// reductions); the difference of two is at most twice that.
    pub fn rounding_tol(depth: usize, cond: f64) -> f32 {
        (depth as f64 * 2f64.powi(-23) * cond + 1e-30) as f32
    }

    /// Every tier equals the scalar tier within `rounding_tol(nb + 16, cond)`.
    pub fn assert_tiers_match(what: &str, t: &TypeTraits, n: usize, w: &[u8], a: &[u8], cond: f64) {
        let reference = (t.vec_dot)(Isa::Scalar, n, w, a);
        let tol = rounding_tol(n / 32 + 16, cond);
        for isa in tiers() {
            let got = (t.vec_dot)(isa, n, w, a);
            assert!(
                (got - reference).abs() <= tol,
                "{what} {isa} n={n}: {got} vs scalar {reference} (tolerance {tol})"
            );
        }
    }

    /// For formats whose dequantized values are exact products `d·q` (an f16 times a small
    /// integer fits in f32): every tier matches the scalar one, and every tier matches the
    /// f64 dot of the dequantized rows, both within `rounding_tol(nb + 16, Σ|w·a|)`.
    pub fn check_exact_dot(
        what: &str,
        wt: &TypeTraits,
        at: &TypeTraits,
        n: usize,
        w: &[u8],
        a: &[u8],
    ) {
        let (exact, cond) = dot_and_abs(&dequant(wt, w, n), &dequant(at, a, n));
        assert_tiers_match(what, wt, n, w, a, cond);
        let tol = rounding_tol(n / 32 + 16, cond);
        for isa in tiers() {
            let got = (wt.vec_dot)(isa, n, w, a);
            assert_close(
                &format!("{what} {isa} n={n} vs f64"),
                got,
                exact as f32,
                tol,
                0.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{tiers, Rng};
    use super::test_support::*;
    use super::*;

    /// Weights may hold -128 (they carry the sign in the SIMD dot); activations may not.
    const LAYOUT: Layout = Layout {
        type_size: 34,
        f16_at: &[0],
        no_min_i8_at: None,
    };
    const ACT: Layout = Layout {
        type_size: 34,
        f16_at: &[0],
        no_min_i8_at: Some(2),
    };

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockQ8_0>(), GgmlType::Q8_0.type_size());
        assert_eq!(QK8_0, GgmlType::Q8_0.block_size());
    }

    #[test]
    fn dequantize_hand_built_block() {
        let mut b = BlockQ8_0 {
            d: f16_to_le(0.25),
            qs: [0; 32],
        };
        b.qs[0] = -128;
        b.qs[1] = 127;
        b.qs[2] = -3;
        b.qs[31] = 8;
        let out = dequant(&TRAITS, bytemuck::bytes_of(&b), 32);
        assert_eq!(&out[..3], &[-32.0, 31.75, -0.75]);
        assert_eq!(out[31], 2.0);
        assert!(out[3..31].iter().all(|&v| v == 0.0));
    }

    fn check_dot(what: &str, n: usize, w: &[u8], a: &[u8]) {
        check_exact_dot(what, &TRAITS, &TRAITS, n, w, a);
    }

    #[test]
    fn vec_dot_tiers_agree_with_scalar_and_dequantized_dot() {
        let mut rng = Rng::new(80);
        for n in LENGTHS {
            let w = random_row(&mut rng, &LAYOUT, n / 32, 2.0);
            let a = random_row(&mut rng, &ACT, n / 32, 2.0);
            check_dot("random", n, &w, &a);
            let x = rng.f32_vec(n, 3.0);
            let mut a = vec![0u8; n / 32 * 34];
            quantize(&x, &mut a);
            check_dot("quantized activation", n, &w, &a);
        }
        for salt in 0..4 {
            let (w, a) = (edge_row(&LAYOUT, salt), edge_row(&ACT, salt + 1));
            check_dot("edge", w.len() / 34 * 32, &w, &a);
        }
    }

    /// Round trip bound, per element: |x - q·d16| ≤ |x - q·d| + |q|·|d - d16|. Rounding to
    /// the nearest integer gives |x/d - q| ≤ 1/2, and x/d stays within ±127 so no quant
    /// clips; so |x - y| ≤ d/2 + 127·|d - d16|, plus a few ulps of amax for `x·(1/d)`.
    fn check_round_trip(what: &str, x: &[f32]) {
        let mut q = vec![0u8; x.len() / 32 * 34];
        quantize(x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let d16 = f16_le(f16_to_le(d));
            let bound = d / 2.0 + 127.0 * (d - d16).abs() + 4.0 * f32::EPSILON * amax;
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= bound, "{what}: {a} -> {b} (bound {bound})");
            }
        }
    }

    #[test]
    fn quantize_round_trip_within_bound() {
        let mut rng = Rng::new(81);
        check_round_trip("random", &rng.f32_vec(4096, 5.0));
        check_round_trip("constant", &[0.3; 64]);
        let mut spike = vec![0.0f32; 64];
        spike[40] = -7.5;
        check_round_trip("spike", &spike);
        let mut q = vec![0u8; 68];
        quantize(&spike, &mut q);
        let y = dequant(&TRAITS, &q, 64);
        assert!(y.iter().enumerate().all(|(i, &v)| (i == 40) == (v != 0.0)));
        quantize(&[0.0; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn avx2_quantize_gives_the_scalar_bytes() {
        if !tiers().contains(&Isa::Avx2) {
            return;
        }
        let mut rng = Rng::new(82);
        let mut rows: Vec<[f32; 32]> = (0..512)
            .map(|i| std::array::from_fn(|_| rng.next_f32() * (1 + i % 7) as f32))
            .collect();
        // amax = 127 makes id = 1: every k + 0.5 is an exact tie for roundf.
        rows.push(std::array::from_fn(|i| {
            if i == 0 {
                -127.0
            } else {
                i as f32 * 4.0 - 63.5
            }
        }));
        rows.push([0.0; 32]);
        let mut odd = [1.0f32; 32];
        (odd[1], odd[2], odd[3]) = (f32::NAN, f32::INFINITY, -1e-40);
        rows.push(odd);
        rows.push([65504.0 * 4.0; 32]);
        for x in &rows {
            let (mut qs, mut qv) = ([0i8; 32], [0i8; 32]);
            let ds = quantize_block_scalar(x, &mut qs);
            // SAFETY: the AVX2 tier is listed only when the CPU supports it.
            #[cfg(target_arch = "x86_64")]
            let dv = unsafe { x86::quantize_block_avx2(x, &mut qv) };
            #[cfg(not(target_arch = "x86_64"))]
            let dv = quantize_block_scalar(x, &mut qv);
            assert_eq!(
                (ds.0.to_bits(), ds.1, qs),
                (dv.0.to_bits(), dv.1, qv),
                "{x:?}"
            );
        }
    }
}
