//! F32: plain little-endian floats (block size 1). Also the activation format of F32, F16
//! and BF16 weights; the x86 dot-product loop those three share lives here ([`x86`]).

use mistralrs_common::Isa;

use super::{as_blocks, as_blocks_mut, clamp_isa, TypeTraits};
use crate::GgmlType;

/// One little-endian f32.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockF32 {
    pub v: [u8; 4],
}
const _: () = assert!(std::mem::size_of::<BlockF32>() == 4);

impl BlockF32 {
    #[inline(always)]
    pub fn get(self) -> f32 {
        f32::from_le_bytes(self.v)
    }
}

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::F32,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::F32,
    vec_dot,
};

fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, o) in as_blocks::<BlockF32>(src).iter().zip(dst) {
        *o = b.get();
    }
}

fn quantize(src: &[f32], dst: &mut [u8]) {
    for (&x, b) in src.iter().zip(as_blocks_mut::<BlockF32>(dst)) {
        b.v = x.to_le_bytes();
    }
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    assert!(
        weights.len() == n * 4 && activation.len() == n * 4,
        "f32 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockF32], &[BlockF32]) = (as_blocks(weights), as_blocks(activation));
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

/// The dot product as llama.cpp's llamafile `tinyBLAS` computes each output of an F32 matrix
/// product of two or more tokens on AVX2: one 8-lane FMA accumulator, lane `l` adding the
/// products of the elements `i ≡ l (mod 8)` in order, then `(s0 + s2) + (s1 + s3)` of the
/// halves' sum `s`. It takes such products only when `n` is a multiple of 8 (otherwise, and
/// for a single token, `ggml_vec_dot_f32`, this type's `vec_dot`); `None` then, and on tiers
/// below AVX2 (the f64 reference stands for them all).
pub fn dot_tinyblas_order(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> Option<f32> {
    if !n.is_multiple_of(8) || weights.len() != n * 4 || activation.len() != n * 4 {
        return None;
    }
    let (w, a): (&[BlockF32], &[BlockF32]) = (as_blocks(weights), as_blocks(activation));
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns tiers whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => Some(unsafe { simd::dot_tinyblas_avx2(w, a) }),
        _ => None,
    }
}

/// [`dot_tinyblas_order`] in scalar code, its twin.
#[cfg(test)]
fn dot_tinyblas_order_scalar(w: &[BlockF32], a: &[BlockF32]) -> f32 {
    let mut lanes = [0f32; 8];
    for (x, y) in w.chunks_exact(8).zip(a.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] = x[l].get().mul_add(y[l].get(), lanes[l]);
        }
    }
    let s: [f32; 4] = std::array::from_fn(|l| lanes[l] + lanes[l + 4]);
    (s[0] + s[2]) + (s[1] + s[3])
}

/// The reference: products and sum in f64, as ggml's `ggml_vec_dot_f32` without SIMD.
fn vec_dot_scalar(w: &[BlockF32], a: &[BlockF32]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(x, y)| x.get() as f64 * y.get() as f64)
        .sum::<f64>() as f32
}

/// `ggml_vec_dot_f32`'s AVX2 order in scalar code, the twin of `simd::vec_dot_avx2`: lane `l`
/// of accumulator `j` sums `w[i]·a[i]` (one FMA each) for the `i = 32c + 8j + l` of every whole
/// 32-element chunk `c`; the accumulators combine as `(0 + 2) + (1 + 3)`; the lanes as two
/// horizontal adds of the halves' sum, `((s0 + s1) + (s2 + s3))` where `s_l = lane l + lane
/// l + 4`; then the other elements' products are added one at a time.
#[cfg(test)]
fn vec_dot_ggml_avx2_order(w: &[BlockF32], a: &[BlockF32]) -> f32 {
    let n = w.len().min(a.len());
    let body = n / 32 * 32;
    let mut acc = [[0f32; 8]; 4];
    for c in (0..body).step_by(32) {
        for (j, lanes) in acc.iter_mut().enumerate() {
            for (l, lane) in lanes.iter_mut().enumerate() {
                let i = c + 8 * j + l;
                *lane = w[i].get().mul_add(a[i].get(), *lane);
            }
        }
    }
    let v: [f32; 8] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    let s: [f32; 4] = std::array::from_fn(|l| v[l] + v[l + 4]);
    let mut sum = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in w[body..n].iter().zip(&a[body..n]) {
        sum += x.get() * y.get();
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::x86::*;
    use super::BlockF32;
    use std::arch::x86_64::{
        _mm256_castps256_ps128, _mm256_extractf128_ps, _mm_add_ps, _mm_cvtss_f32, _mm_hadd_ps,
    };

    /// As llama.cpp's `ggml_vec_dot_f32` on AVX2 (its decode-step product for F32 weights,
    /// e.g. MoE routers); its scalar twin, `vec_dot_ggml_avx2_order`, spells the order out.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn vec_dot_avx2(w: &[BlockF32], a: &[BlockF32]) -> f32 {
        let n = w.len().min(a.len());
        let body = n / 32 * 32;
        let wv: &[[BlockF32; 8]] = bytemuck::cast_slice(&w[..body]);
        let av: &[[BlockF32; 8]] = bytemuck::cast_slice(&a[..body]);
        let mut acc = [_mm256_setzero_ps(); 4];
        for (x, y) in wv.chunks_exact(4).zip(av.chunks_exact(4)) {
            for j in 0..4 {
                acc[j] = _mm256_fmadd_ps(load_f32x8(&x[j]), load_f32x8(&y[j]), acc[j]);
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_hadd_ps(s, s);
        let mut sum = _mm_cvtss_f32(_mm_hadd_ps(s, s));
        for (x, y) in w[body..n].iter().zip(&a[body..n]) {
            sum += x.get() * y.get();
        }
        sum
    }

    /// See [`super::dot_tinyblas_order`]; `w.len()` is a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_tinyblas_avx2(w: &[BlockF32], a: &[BlockF32]) -> f32 {
        let wv: &[[BlockF32; 8]] = bytemuck::cast_slice(w);
        let av: &[[BlockF32; 8]] = bytemuck::cast_slice(a);
        let mut acc = _mm256_setzero_ps();
        for (x, y) in wv.iter().zip(av) {
            acc = _mm256_fmadd_ps(load_f32x8(x), load_f32x8(y), acc);
        }
        hsum_256(acc)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) fn vec_dot_avx512(w: &[BlockF32], a: &[BlockF32]) -> f32 {
        fma_dot_512!(w, a, load_f32x16, |x: &BlockF32| x.get())
    }
}

/// The x86 loop of the float dot products: whole vectors of weights (converted to f32 by a
/// loader) times f32 activations on four accumulators, so four FMA chains overlap, then a
/// scalar tail. Loaders take arrays of exactly one vector's elements, so every load is in
/// bounds by its type.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::BlockF32;
    use std::arch::x86_64::*;

    /// `$w`, `$a`: equal-length slices of weight blocks and [`BlockF32`]; `$load`: weights
    /// `&[B; L]` → f32 vector; `$get`: one weight to f32 for the tail. Must expand in a
    /// function with the features of the vector ops it names.
    macro_rules! fma_dot {
        ($w:expr, $a:expr, $lanes:literal, $zero:ident, $fma:ident, $add:ident, $hsum:ident,
         $load:ident, $load_a:ident, $get:expr) => {{
            let (w, a) = ($w, $a);
            let body = w.len().min(a.len()) / $lanes * $lanes;
            let wv: &[[_; $lanes]] = bytemuck::cast_slice(&w[..body]);
            let av: &[[BlockF32; $lanes]] = bytemuck::cast_slice(&a[..body]);
            let mut acc = [$zero(); 4];
            let (w4, a4) = (wv.chunks_exact(4), av.chunks_exact(4));
            let (wr, ar) = (w4.remainder(), a4.remainder());
            for (x, y) in w4.zip(a4) {
                acc[0] = $fma($load(&x[0]), $load_a(&y[0]), acc[0]);
                acc[1] = $fma($load(&x[1]), $load_a(&y[1]), acc[1]);
                acc[2] = $fma($load(&x[2]), $load_a(&y[2]), acc[2]);
                acc[3] = $fma($load(&x[3]), $load_a(&y[3]), acc[3]);
            }
            for (x, y) in wr.iter().zip(ar) {
                acc[0] = $fma($load(x), $load_a(y), acc[0]);
            }
            let sum = $hsum($add($add(acc[0], acc[1]), $add(acc[2], acc[3])));
            let get = $get;
            let tail: f32 = w[body..]
                .iter()
                .zip(&a[body..])
                .map(|(x, y)| get(x) * y.get())
                .sum();
            sum + tail
        }};
    }
    pub(crate) use fma_dot;

    /// [`fma_dot`] on 8-lane AVX2 vectors.
    macro_rules! fma_dot_256 {
        ($w:expr, $a:expr, $load:ident, $get:expr) => {
            $crate::formats::f32::x86::fma_dot!(
                $w,
                $a,
                8,
                _mm256_setzero_ps,
                _mm256_fmadd_ps,
                _mm256_add_ps,
                hsum_256,
                $load,
                load_f32x8,
                $get
            )
        };
    }
    pub(crate) use fma_dot_256;

    /// [`fma_dot`] on 16-lane AVX-512 vectors.
    macro_rules! fma_dot_512 {
        ($w:expr, $a:expr, $load:ident, $get:expr) => {
            $crate::formats::f32::x86::fma_dot!(
                $w,
                $a,
                16,
                _mm512_setzero_ps,
                _mm512_fmadd_ps,
                _mm512_add_ps,
                hsum_512,
                $load,
                load_f32x16,
                $get
            )
        };
    }
    pub(crate) use fma_dot_512;

    // Re-exported so the macros find the vector ops wherever they expand.
    pub(crate) use std::arch::x86_64::{
        _mm256_add_ps, _mm256_fmadd_ps, _mm256_setzero_ps, _mm512_add_ps, _mm512_fmadd_ps,
        _mm512_setzero_ps,
    };

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn load_f32x8(x: &[BlockF32; 8]) -> __m256 {
        // SAFETY: reads exactly the 32 bytes of the array; loadu needs no alignment.
        unsafe { _mm256_loadu_ps(x.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) fn load_f32x16(x: &[BlockF32; 16]) -> __m512 {
        // SAFETY: reads exactly the 64 bytes of the array; loadu needs no alignment.
        unsafe { _mm512_loadu_ps(x.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn hsum_256(v: __m256) -> f32 {
        crate::formats::q8_0::x86::hsum(v)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) fn hsum_512(v: __m512) -> f32 {
        // The upper eight floats through the f64 view: extractf32x8 would need AVX-512 DQ.
        let upper = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let half = _mm256_add_ps(_mm512_castps512_ps256(v), upper);
        crate::formats::q8_0::x86::hsum(half)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testing::{tiers, Rng};
    use super::super::TypeTraits;
    use super::*;

    /// Lengths that exercise every path: scalar tail only, one vector, the 4-accumulator
    /// loop, leftover whole vectors and a tail, for both 8- and 16-lane tiers.
    pub const FLOAT_LENGTHS: [usize; 10] = [1, 7, 8, 17, 31, 64, 100, 257, 4096, 4096 + 32 + 7];

    /// Σ |w·a| in f64: the condition number of the sum.
    fn cond(t: &TypeTraits, n: usize, w: &[u8], a: &[u8]) -> (f64, f64) {
        let mut wf = vec![0.0f32; n];
        (t.dequantize)(w, &mut wf);
        let af = as_blocks::<BlockF32>(a).iter().map(|b| b.get());
        wf.iter().zip(af).fold((0.0, 0.0), |(s, c), (&x, y)| {
            let p = x as f64 * y as f64;
            (s + p, c + p.abs())
        })
    }

    /// Every tier against the f64 dot of the dequantized weights and the activations
    /// (which the scalar tier computes exactly, then rounds once). A SIMD lane sees at most
    /// n/32 + 4 FMAs, then about 6 reduction adds; the scalar tail at most 15 + 1 adds of
    /// rounded products: each term goes through at most n/32 + 40 roundings of 2⁻²⁴, so
    /// |got - exact| ≤ (n/32 + 40)·2⁻²⁴·Σ|w·a| (tested with a factor 2 of margin).
    pub fn check_float_dot(what: &str, t: &TypeTraits, n: usize, w: &[u8], a: &[u8]) {
        let (exact, c) = cond(t, n, w, a);
        let tol = ((n / 32 + 40) as f64 * 2f64.powi(-23) * c) as f32;
        for isa in tiers() {
            let got = (t.vec_dot)(isa, n, w, a);
            let err = (got as f64 - exact).abs() as f32;
            assert!(
                err <= tol,
                "{what} {isa} n={n}: {got} vs {exact} (tolerance {tol})"
            );
        }
    }

    /// Random finite activations as f32 bytes.
    pub fn activation(rng: &mut Rng, n: usize, scale: f32) -> Vec<u8> {
        rng.f32_vec(n, scale)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// Hard values: zeros, ±65504, subnormals of f16 / bf16 / f32 range, opposite signs that
    /// cancel.
    pub const EDGE: [f32; 10] = [
        0.0, -0.0, 65504.0, -65504.0, 6.0e-8, -1.0e-40, 1.0, -1.0, 3.0e5, -0.5,
    ];

    fn bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockF32>(), GgmlType::F32.type_size());
        assert_eq!(GgmlType::F32.block_size(), 1);
    }

    #[test]
    fn dequantize_and_quantize_are_byte_copies() {
        let x = [1.5f32, -0.0, f32::NAN, f32::INFINITY, 1e-42];
        let mut q = vec![0u8; 20];
        quantize(&x, &mut q);
        assert_eq!(q, bytes(&x));
        assert_eq!(&q[..4], &[0x00, 0x00, 0xC0, 0x3F]);
        let mut y = [0.0f32; 5];
        dequantize(&q, &mut y);
        assert!(x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    /// The AVX2 kernel is llama.cpp's `ggml_vec_dot_f32` order to the last bit (its scalar
    /// twin spells that order out), on every length path: tail only, whole chunks, both.
    #[test]
    fn avx2_vec_dot_equals_its_scalar_twin_bit_for_bit() {
        if !tiers().contains(&Isa::Avx2) {
            mistralrs_common::test_support::skip_test("no AVX2 tier on this CPU");
            return;
        }
        let mut rng = Rng::new(7);
        for n in FLOAT_LENGTHS.into_iter().chain([32, 63, 96, 2048 + 31]) {
            let w = activation(&mut rng, n, 3.0);
            let a = activation(&mut rng, n, 2.0);
            let twin = vec_dot_ggml_avx2_order(as_blocks(&w), as_blocks(&a));
            assert_eq!(
                vec_dot(Isa::Avx2, n, &w, &a).to_bits(),
                twin.to_bits(),
                "n={n}"
            );
        }
    }

    /// The tinyBLAS-order kernel equals its scalar twin to the last bit.
    #[test]
    fn tinyblas_order_equals_its_scalar_twin_bit_for_bit() {
        if !tiers().contains(&Isa::Avx2) {
            mistralrs_common::test_support::skip_test("no AVX2 tier on this CPU");
            return;
        }
        let mut rng = Rng::new(9);
        for n in [8, 64, 256, 2048 + 8] {
            let w = activation(&mut rng, n, 3.0);
            let a = activation(&mut rng, n, 2.0);
            let twin = dot_tinyblas_order_scalar(as_blocks(&w), as_blocks(&a));
            let got = dot_tinyblas_order(Isa::Avx2, n, &w, &a).expect("a multiple of 8");
            assert_eq!(got.to_bits(), twin.to_bits(), "n={n}");
        }
        assert_eq!(dot_tinyblas_order(Isa::Avx2, 12, &[0; 48], &[0; 48]), None);
        assert_eq!(dot_tinyblas_order(Isa::Scalar, 8, &[0; 32], &[0; 32]), None);
    }

    #[test]
    fn vec_dot_tiers_agree_with_the_f64_dot() {
        let mut rng = Rng::new(1);
        for n in FLOAT_LENGTHS {
            let w = activation(&mut rng, n, 3.0);
            let a = activation(&mut rng, n, 2.0);
            check_float_dot("random", &TRAITS, n, &w, &a);
        }
        for n in [10, 37, 300] {
            let w: Vec<f32> = (0..n).map(|i| EDGE[i % EDGE.len()]).collect();
            let a: Vec<f32> = (0..n).map(|i| EDGE[(i * 7 + 3) % EDGE.len()]).collect();
            check_float_dot("edge", &TRAITS, n, &bytes(&w), &bytes(&a));
        }
        // Exact cancellation: the tiers must all give 0.
        let w = bytes(&[1e8, 1.0, -1e8, -1.0].repeat(40));
        let a = bytes(&[1.0f32; 160]);
        for isa in tiers() {
            assert_eq!((TRAITS.vec_dot)(isa, 160, &w, &a), 0.0, "{isa}");
        }
    }
}
