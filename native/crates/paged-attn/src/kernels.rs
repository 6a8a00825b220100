//! The inner loops of attention, two ways with the same results to the last bit: portable
//! (`mul_add` lane by lane, which the compiler leaves scalar) and AVX2 (one vector instruction
//! per 8 lanes). Every operation is elementwise or reduced in the fixed order llama.cpp's
//! kernels use, so the vector forms change speed only.
//!
//! The attention bodies are generic over `Kernels` and `#[inline(always)]`; the AVX2 type is
//! only instantiated inside a function compiled with AVX2, FMA and F16C (see
//! `attention::attend_batch`), where its intrinsics inline.

use std::ops::Range;

use half::f16;
use mistralrs_common::numerics::{dot8, dot_f16_order, expf_ggml, hsum8};

use crate::cache::KvCache;

pub(crate) trait Kernels {
    /// `ggml_vec_dot_f16`'s order (4 accumulators of 8 lanes), as `numerics::dot_f16_order`.
    fn dot_f16_order(a: &[f32], b: &[f32]) -> f32;
    /// One 8-lane accumulator, as `numerics::dot8` (`len` a multiple of 8).
    fn dot8(a: &[f32], b: &[f32]) -> f32;
    /// Four [`Kernels::dot8`]s of one query with four keys, bit-identical to them: their
    /// accumulators are independent, so the four chains of FMAs overlap instead of each
    /// waiting on its own latency.
    #[inline(always)]
    fn dot8_x4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
        b.map(|b| Self::dot8(a, b))
    }
    /// `acc[i] = x[i] · p + acc[i]`, one fused multiply-add each.
    fn axpy(acc: &mut [f32], x: &[f32], p: f32);
    /// For every key `j` of `keys`, in increasing order: `axpy(slot j % 8 of lanes, v[k], p[k])`
    /// with `k = j - keys.start`; `lanes` is 8 rows and `v` `keys.len()` rows of `hd` values.
    #[inline(always)]
    fn axpy_slots8(lanes: &mut [f32], v: &[f32], p: &[f32], keys: Range<usize>, hd: usize) {
        for (k, j) in keys.enumerate() {
            let slot = j % 8;
            Self::axpy(
                &mut lanes[slot * hd..(slot + 1) * hd],
                &v[k * hd..(k + 1) * hd],
                p[k],
            );
        }
    }
    /// ggml's vector `expf` on 8 lanes.
    fn exp8(x: &[f32; 8]) -> [f32; 8];
    /// `x = round_f16(x · scale)` for every element.
    fn scale_round_f16(x: &mut [f32], scale: f32);
    /// f16 to f32, exactly.
    fn f16_to_f32(src: &[f16], dst: &mut [f32]);
}

/// Keys (`values` false) or values of one head in slots `rows` of one block as f32 into
/// `out` (`[rows.len(), head_dim]`): converted here when the cache holds f16, else read.
#[inline(always)]
pub(crate) fn read_rows<K: Kernels>(
    cache: &KvCache,
    values: bool,
    layer: usize,
    block: usize,
    head: usize,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let n = rows.len() * cache.config().head_dim;
    match cache.rows_f16(values, layer, block, head, rows.clone()) {
        Some(src) => K::f16_to_f32(src, &mut out[..n]),
        None => cache.read_rows(values, layer, block, head, rows, out),
    }
}

/// `x` rounded through f16, as ggml converts the operand of an f16 matrix product.
#[inline]
pub(crate) fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// The softmax of the scores of keys `start..end` (`row`), as ggml computes it: exponentials
/// in groups of 8 keys counted from position 0, each group summed across its lanes, the groups
/// summed in f64; the probabilities then rounded through f16, as llama.cpp's KQ·V sees them.
#[inline(always)]
pub(crate) fn softmax_row<K: Kernels>(
    row: &mut [f32],
    start: usize,
    end: usize,
    sink: Option<f32>,
) {
    let mut max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // A sink takes part in the maximum and the sum, as ggml adds it: its exp through the C
    // library, once the row's sum is done.
    if let Some(s) = sink {
        max = max.max(s);
    }
    let mut sum = 0f64;
    let mut g = start / 8 * 8;
    while g < end {
        let lanes = if g >= start && g + 8 <= end {
            let at = g - start;
            let mut x = [0f32; 8];
            for (l, v) in x.iter_mut().enumerate() {
                *v = row[at + l] - max;
            }
            let lanes = K::exp8(&x);
            row[at..at + 8].copy_from_slice(&lanes);
            lanes
        } else {
            // A group the range cuts: the lanes outside it count 0.
            let mut lanes = [0f32; 8];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let j = g + l;
                if (start..end).contains(&j) {
                    *lane = expf_ggml(row[j - start] - max);
                    row[j - start] = *lane;
                }
            }
            lanes
        };
        sum += f64::from(hsum8(&lanes));
        g += 8;
    }
    if let Some(s) = sink {
        sum += f64::from((s - max).exp());
    }
    K::scale_round_f16(row, (1.0 / sum) as f32);
}

/// Lane by lane.
pub(crate) struct Portable;

impl Kernels for Portable {
    #[inline(always)]
    fn dot_f16_order(a: &[f32], b: &[f32]) -> f32 {
        dot_f16_order(a, b)
    }

    #[inline(always)]
    fn dot8(a: &[f32], b: &[f32]) -> f32 {
        dot8(a, b)
    }

    #[inline(always)]
    fn axpy(acc: &mut [f32], x: &[f32], p: f32) {
        for (a, &v) in acc.iter_mut().zip(x) {
            *a = v.mul_add(p, *a);
        }
    }

    #[inline(always)]
    fn exp8(x: &[f32; 8]) -> [f32; 8] {
        std::array::from_fn(|l| expf_ggml(x[l]))
    }

    #[inline(always)]
    fn scale_round_f16(x: &mut [f32], scale: f32) {
        for v in x.iter_mut() {
            *v = round_f16(*v * scale);
        }
    }

    #[inline(always)]
    fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
}

/// AVX2, FMA and F16C. Only for code compiled with those features enabled.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{expf_ggml, f16, hsum8, Avx2, Kernels, Portable, Range};

    #[inline(always)]
    fn store8(v: __m256) -> [f32; 8] {
        let mut out = [0f32; 8];
        // SAFETY: `out` holds 8 floats; unaligned store.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        out
    }

    // SAFETY (every intrinsic below): `Avx2` is only used where AVX2, FMA and F16C are
    // enabled (the contract of the type), and every load or store stays inside the slices it
    // comes from (lengths checked by the loop bounds).
    impl Kernels for Avx2 {
        #[inline(always)]
        fn dot_f16_order(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let whole = n / 32 * 32;
            unsafe {
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut i = 0;
                while i < whole {
                    for (k, slot) in acc.iter_mut().enumerate() {
                        let x = _mm256_loadu_ps(a.as_ptr().add(i + 8 * k));
                        let y = _mm256_loadu_ps(b.as_ptr().add(i + 8 * k));
                        *slot = _mm256_fmadd_ps(x, y, *slot);
                    }
                    i += 32;
                }
                // A loop, not `map`: see `dot8_x4`.
                let mut lanes = [[0f32; 8]; 4];
                for (lane, v) in lanes.iter_mut().zip(acc) {
                    *lane = store8(v);
                }
                // The tail, element by element into its accumulator and lane.
                for j in whole..n {
                    let slot = &mut lanes[(j % 32) / 8][j % 8];
                    *slot = a[j].mul_add(b[j], *slot);
                }
                let s = &lanes;
                let x: [f32; 8] =
                    std::array::from_fn(|l| (s[0][l] + s[2][l]) + (s[1][l] + s[3][l]));
                let t: [f32; 4] = std::array::from_fn(|l| x[l] + x[l + 4]);
                (t[0] + t[1]) + (t[2] + t[3])
            }
        }

        #[inline(always)]
        fn dot8(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len()) / 8 * 8;
            unsafe {
                let mut acc = _mm256_setzero_ps();
                let mut i = 0;
                while i < n {
                    let x = _mm256_loadu_ps(a.as_ptr().add(i));
                    let y = _mm256_loadu_ps(b.as_ptr().add(i));
                    acc = _mm256_fmadd_ps(x, y, acc);
                    i += 8;
                }
                hsum8(&store8(acc))
            }
        }

        #[inline(always)]
        fn dot8_x4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
            let n = b.iter().fold(a.len(), |n, b| n.min(b.len())) / 8 * 8;
            unsafe {
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut i = 0;
                while i < n {
                    let x = _mm256_loadu_ps(a.as_ptr().add(i));
                    for (slot, b) in acc.iter_mut().zip(b) {
                        let y = _mm256_loadu_ps(b.as_ptr().add(i));
                        *slot = _mm256_fmadd_ps(x, y, *slot);
                    }
                    i += 8;
                }
                // A loop, not `map`: closures do not inherit the caller's target features, so
                // the intrinsics inside would become calls.
                let mut dots = [0f32; 4];
                for (dot, v) in dots.iter_mut().zip(acc) {
                    *dot = hsum8(&store8(v));
                }
                dots
            }
        }

        /// The slots' accumulators of 8 elements stay in registers while every key passes,
        /// instead of a load and a store per key: the same FMAs in the same order.
        #[inline(always)]
        fn axpy_slots8(lanes: &mut [f32], v: &[f32], p: &[f32], keys: Range<usize>, hd: usize) {
            let n_keys = keys.len();
            if !hd.is_multiple_of(8)
                || lanes.len() < 8 * hd
                || v.len() < n_keys * hd
                || p.len() < n_keys
            {
                return Portable::axpy_slots8(lanes, v, p, keys, hd);
            }
            let first_group = keys.start / 8 * 8;
            unsafe {
                for d in (0..hd).step_by(8) {
                    let mut acc = [_mm256_setzero_ps(); 8];
                    for (s, slot) in acc.iter_mut().enumerate() {
                        *slot = _mm256_loadu_ps(lanes.as_ptr().add(s * hd + d));
                    }
                    let mut g = first_group;
                    while g < keys.end {
                        if g >= keys.start && g + 8 <= keys.end {
                            // A whole group of 8 keys: one per slot, no range checks.
                            let k = g - keys.start;
                            for (s, slot) in acc.iter_mut().enumerate() {
                                let x = _mm256_loadu_ps(v.as_ptr().add((k + s) * hd + d));
                                let pk = _mm256_set1_ps(*p.get_unchecked(k + s));
                                *slot = _mm256_fmadd_ps(x, pk, *slot);
                            }
                        } else {
                            for (s, slot) in acc.iter_mut().enumerate() {
                                let j = g + s;
                                if j >= keys.start && j < keys.end {
                                    let k = j - keys.start;
                                    let x = _mm256_loadu_ps(v.as_ptr().add(k * hd + d));
                                    let pk = _mm256_set1_ps(*p.get_unchecked(k));
                                    *slot = _mm256_fmadd_ps(x, pk, *slot);
                                }
                            }
                        }
                        g += 8;
                    }
                    for (s, slot) in acc.iter().enumerate() {
                        _mm256_storeu_ps(lanes.as_mut_ptr().add(s * hd + d), *slot);
                    }
                }
            }
        }

        #[inline(always)]
        fn axpy(acc: &mut [f32], x: &[f32], p: f32) {
            let n = acc.len().min(x.len());
            let whole = n / 8 * 8;
            unsafe {
                let pv = _mm256_set1_ps(p);
                let mut i = 0;
                while i < whole {
                    let a = _mm256_loadu_ps(acc.as_ptr().add(i));
                    let v = _mm256_loadu_ps(x.as_ptr().add(i));
                    _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(v, pv, a));
                    i += 8;
                }
            }
            Portable::axpy(&mut acc[whole..n], &x[whole..n], p);
        }

        /// ggml's AVX2 `ggml_v_expf`: the fast path on 8 lanes when every |n| ≤ 126, else
        /// lane by lane (the rare far tails).
        #[inline(always)]
        fn exp8(x: &[f32; 8]) -> [f32; 8] {
            unsafe {
                let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
                let xv = _mm256_loadu_ps(x.as_ptr());
                let r = c(0x4B40_0000);
                let z = _mm256_fmadd_ps(xv, c(0x3FB8_AA3B), r);
                let n = _mm256_sub_ps(z, r);
                let b =
                    _mm256_fnmadd_ps(n, c(0x35BF_BE8E), _mm256_fnmadd_ps(n, c(0x3F31_7200), xv));
                let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
                let k = _mm256_castsi256_ps(_mm256_add_epi32(
                    e,
                    _mm256_castps_si256(_mm256_set1_ps(1.0)),
                ));
                let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
                let far = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
                if _mm256_movemask_ps(far) != 0 {
                    return std::array::from_fn(|l| expf_ggml(x[l]));
                }
                let u = _mm256_mul_ps(b, b);
                let j = _mm256_fmadd_ps(
                    _mm256_fmadd_ps(
                        _mm256_fmadd_ps(c(0x3C07_2010), b, c(0x3D2B_9F17)),
                        u,
                        _mm256_fmadd_ps(c(0x3E2A_AF33), b, c(0x3EFF_FEDB)),
                    ),
                    u,
                    _mm256_mul_ps(c(0x3F7F_FFF6), b),
                );
                store8(_mm256_fmadd_ps(j, k, k))
            }
        }

        #[inline(always)]
        fn scale_round_f16(x: &mut [f32], scale: f32) {
            let whole = x.len() / 8 * 8;
            unsafe {
                let s = _mm256_set1_ps(scale);
                let mut i = 0;
                while i < whole {
                    let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), s);
                    let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                    _mm256_storeu_ps(x.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
                    i += 8;
                }
            }
            Portable::scale_round_f16(&mut x[whole..], scale);
        }

        #[inline(always)]
        fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
            let n = src.len().min(dst.len());
            let whole = n / 8 * 8;
            unsafe {
                let mut i = 0;
                while i < whole {
                    let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
                    _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
                    i += 8;
                }
            }
            for (d, s) in dst[whole..n].iter_mut().zip(&src[whole..n]) {
                *d = s.to_f32();
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * scale
            })
            .collect()
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn all_avx2(a: &[f32], b: &[f32], p: f32) -> (f32, f32, Vec<f32>, Vec<[f32; 8]>, Vec<f32>) {
        let mut acc = b.to_vec();
        Avx2::axpy(&mut acc, a, p);
        let exps = a
            .chunks_exact(8)
            .map(|c| Avx2::exp8(c.try_into().unwrap()))
            .collect();
        let mut rounded = a.to_vec();
        Avx2::scale_round_f16(&mut rounded, p);
        let halves: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
        let mut widened = vec![0f32; a.len()];
        Avx2::f16_to_f32(&halves, &mut widened);
        assert!(widened
            .iter()
            .zip(&halves)
            .all(|(w, h)| w.to_bits() == h.to_f32().to_bits()));
        (
            Avx2::dot_f16_order(a, b),
            Avx2::dot8(a, b),
            acc,
            exps,
            rounded,
        )
    }

    #[test]
    fn avx2_kernels_equal_the_portable_ones_bit_for_bit() {
        let f = mistralrs_common::cpu_features();
        if !(f.avx2 && f.fma && f.f16c) {
            mistralrs_common::test_support::skip_test("no AVX2/FMA/F16C on this CPU");
            return;
        }
        for (n, seed) in [(8, 1), (64, 2), (72, 3), (160, 4), (37 * 8, 5)] {
            let a = values(n, seed, 40.0);
            let b = values(n, seed + 100, 3.0);
            let p = 0.37;
            // SAFETY: the features were checked above.
            let (d16, d8, acc, exps, rounded) = unsafe { all_avx2(&a, &b, p) };
            assert_eq!(d16.to_bits(), Portable::dot_f16_order(&a, &b).to_bits());
            assert_eq!(d8.to_bits(), Portable::dot8(&a, &b).to_bits());
            let mut want = b.clone();
            Portable::axpy(&mut want, &a, p);
            assert_eq!(acc, want);
            // Exponents from far below (the slow path) to the usual softmax range.
            for (c, got) in a.chunks_exact(8).zip(&exps) {
                let x: [f32; 8] = c.try_into().unwrap();
                let want = Portable::exp8(&x);
                assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits));
            }
            let mut want = a.clone();
            Portable::scale_round_f16(&mut want, p);
            assert_eq!(rounded, want);
        }
        let far: [f32; 8] = [-150.0, -90.0, -87.0, -10.0, -0.5, 0.0, -126.5, -200.0];
        // SAFETY: checked above.
        let got = unsafe { all_avx2(&far, &far, 1.0) }.3[0];
        assert_eq!(
            got.map(f32::to_bits),
            Portable::exp8(&far).map(f32::to_bits)
        );
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn blocked_avx2(
        q: &[f32],
        keys: [&[f32]; 4],
        lanes: &mut [f32],
        v: &[f32],
        p: &[f32],
        range: Range<usize>,
        hd: usize,
    ) -> [f32; 4] {
        Avx2::axpy_slots8(lanes, v, p, range, hd);
        Avx2::dot8_x4(q, keys)
    }

    /// The blocked forms (four keys per query, eight slots held over a run of keys) equal the
    /// one-at-a-time kernels to the last bit, for runs that start and end inside slot groups.
    #[test]
    fn blocked_kernels_equal_one_at_a_time_bit_for_bit() {
        let f = mistralrs_common::cpu_features();
        if !(f.avx2 && f.fma && f.f16c) {
            mistralrs_common::test_support::skip_test("no AVX2/FMA/F16C on this CPU");
            return;
        }
        for (hd, keys) in [(64usize, 3..29usize), (256, 8..24), (40, 5..6), (12, 1..19)] {
            let n = keys.len();
            let q = values(hd, 7, 4.0);
            let k = values(4 * hd, 8, 4.0);
            let v = values(n * hd, 9, 2.0);
            let p = values(n, 10, 1.0);
            let start = values(8 * hd, 11, 1.0);
            let mut want = start.clone();
            for (i, j) in keys.clone().enumerate() {
                let s = j % 8;
                Portable::axpy(
                    &mut want[s * hd..(s + 1) * hd],
                    &v[i * hd..(i + 1) * hd],
                    p[i],
                );
            }
            let mut got = start.clone();
            let rows: [&[f32]; 4] = std::array::from_fn(|r| &k[r * hd..(r + 1) * hd]);
            // SAFETY: the features were checked above.
            let dots = unsafe { blocked_avx2(&q, rows, &mut got, &v, &p, keys.clone(), hd) };
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "hd {hd}"
            );
            for (r, dot) in dots.into_iter().enumerate() {
                assert_eq!(
                    dot.to_bits(),
                    Portable::dot8(&q, rows[r]).to_bits(),
                    "hd {hd} key {r}"
                );
            }
        }
    }
}
