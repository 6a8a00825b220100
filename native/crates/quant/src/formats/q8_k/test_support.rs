//! Generators and checks shared by the K-quant tests (activation rows, random and edge
//! weight blocks, tier comparisons, quantizer round trips).

use super::{fill_bsums, BlockQ8K, QK_K, TRAITS};
use crate::formats::testing::{assert_close, tiers, Rng};
use crate::formats::TypeTraits;
use bytemuck::Zeroable;
use mistralrs_common::Isa;

/// Which quants an activation row holds.
#[derive(Clone, Copy, Debug)]
pub enum Act {
    Random,
    AllMin,
    AllMax,
    /// -128 and 127 alternating.
    Extremes,
}

/// A Q8_K row of `n` elements with consistent bsums and a finite scale in about [-1, 1].
pub fn q8k_row(rng: &mut Rng, n: usize, kind: Act) -> Vec<u8> {
    let mut blocks = vec![BlockQ8K::zeroed(); n / QK_K];
    for b in &mut blocks {
        for (i, q) in b.qs.iter_mut().enumerate() {
            *q = match kind {
                Act::Random => rng.next_u8() as i8,
                Act::AllMin => -128,
                Act::AllMax => 127,
                Act::Extremes => [-128, 127][i % 2],
            };
        }
        fill_bsums(b);
        b.d = (rng.next_f32() + 1e-3).to_le_bytes();
    }
    bytemuck::cast_slice(&blocks).to_vec()
}

/// A random finite half (any exponent, either sign), little-endian.
pub fn finite_f16(rng: &mut Rng) -> [u8; 2] {
    loop {
        let bits = rng.next_u64() as u16;
        if bits & 0x7c00 != 0x7c00 {
            return bits.to_le_bytes();
        }
    }
}

/// `n` elements of random blocks of `block_bytes`, with a random finite half at each
/// offset of `halves` (the d / dmin fields).
pub fn random_blocks(rng: &mut Rng, n: usize, block_bytes: usize, halves: &[usize]) -> Vec<u8> {
    let mut v = vec![0u8; n / QK_K * block_bytes];
    rng.fill_bytes(&mut v);
    for blk in v.chunks_exact_mut(block_bytes) {
        for &o in halves {
            blk[o..o + 2].copy_from_slice(&finite_f16(rng));
        }
    }
    v
}

/// `n` elements of blocks whose every byte is `fill`, with `half` at each offset of
/// `halves`: quants and scales at their extremes.
pub fn filled_blocks(
    n: usize,
    block_bytes: usize,
    fill: u8,
    halves: &[usize],
    half: [u8; 2],
) -> Vec<u8> {
    let mut v = vec![fill; n / QK_K * block_bytes];
    for blk in v.chunks_exact_mut(block_bytes) {
        for &o in halves {
            blk[o..o + 2].copy_from_slice(&half);
        }
    }
    v
}

/// Roughly Gaussian values (sum of four uniforms), standard deviation about `sigma`.
pub fn gaussian(rng: &mut Rng, n: usize, sigma: f32) -> Vec<f32> {
    let k = sigma * (3.0f32).sqrt();
    (0..n)
        .map(|_| (0..4).map(|_| rng.next_f32()).sum::<f32>() * 0.5 * k)
        .collect()
}

pub fn dequant(traits: &TypeTraits, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    (traits.dequantize)(bytes, &mut out);
    out
}

/// Every tier against the scalar reference: |tier - scalar| <= 1e-5 * magnitude, where
/// `magnitude` bounds the sum of absolute values of every term either path rounds.
pub fn check_tiers(what: &str, traits: &TypeTraits, n: usize, w: &[u8], a: &[u8], mag: f64) {
    let reference = (traits.vec_dot)(Isa::Scalar, n, w, a);
    assert!(reference.is_finite(), "{what}: scalar result {reference}");
    for isa in tiers() {
        let got = (traits.vec_dot)(isa, n, w, a);
        assert_close(
            &format!("{what} n={n} {isa}"),
            got,
            reference,
            1e-5 * mag as f32,
            0.0,
        );
    }
}

/// The dot product against f64 sums of the dequantized rows, within 1e-5 * magnitude.
pub fn check_against_dequant(
    what: &str,
    traits: &TypeTraits,
    n: usize,
    w: &[u8],
    a: &[u8],
    mag: f64,
) {
    let dw = dequant(traits, w, n);
    let da = dequant(&TRAITS, a, n);
    let exact: f64 = dw.iter().zip(&da).map(|(&p, &q)| p as f64 * q as f64).sum();
    for isa in tiers() {
        let got = (traits.vec_dot)(isa, n, w, a);
        assert_close(
            &format!("{what} n={n} {isa} vs f64"),
            got,
            exact as f32,
            1e-5 * mag as f32,
            0.0,
        );
    }
}

/// Runs [`check_tiers`] and [`check_against_dequant`] for n = 256, 512 and 4096 and every
/// kind of activation, with weight rows from `weights(rng, n)`.
pub fn sweep(
    what: &str,
    traits: &TypeTraits,
    rng: &mut Rng,
    weights: &mut dyn FnMut(&mut Rng, usize) -> Vec<u8>,
    magnitude: fn(&[u8], &[u8]) -> f64,
) {
    for n in [256, 512, 4096] {
        for kind in [Act::Random, Act::AllMin, Act::AllMax, Act::Extremes] {
            let w = weights(rng, n);
            let a = q8k_row(rng, n, kind);
            let mag = magnitude(&w, &a);
            check_tiers(&format!("{what} {kind:?}"), traits, n, &w, &a, mag);
            check_against_dequant(&format!("{what} {kind:?}"), traits, n, &w, &a, mag);
        }
    }
}

/// The same checks on edge blocks: every byte 0x00, 0xFF (quants and 6-bit scales at
/// their maxima), 0xAA, 0x55, 0x0F or 0xF0, with d / dmin zero, ±65504 (largest finite
/// half), 1 or the smallest subnormal; activations random or at -128 / 127.
pub fn edge_sweep(
    what: &str,
    traits: &TypeTraits,
    halves: &[usize],
    magnitude: fn(&[u8], &[u8]) -> f64,
) {
    let mut rng = Rng::new(99);
    for fill in [0x00u8, 0xFF, 0xAA, 0x55, 0x0F, 0xF0] {
        for half in [0x0000u16, 0x7BFF, 0xFBFF, 0x3C00, 0x0001] {
            for n in [256, 512] {
                let w = filled_blocks(n, traits.ty.type_size(), fill, halves, half.to_le_bytes());
                for kind in [Act::Random, Act::AllMin, Act::AllMax, Act::Extremes] {
                    let a = q8k_row(&mut rng, n, kind);
                    let mag = magnitude(&w, &a);
                    let tag = format!("{what} fill {fill:#x} half {half:#x} {kind:?}");
                    check_tiers(&tag, traits, n, &w, &a, mag);
                    check_against_dequant(&tag, traits, n, &w, &a, mag);
                }
            }
        }
    }
}

/// RMS of (dequantize(quantize(x)) - x) divided by RMS of x.
pub fn rel_rms_error(traits: &TypeTraits, x: &[f32]) -> (f64, Vec<f32>) {
    let mut bytes = vec![0u8; x.len() / QK_K * traits.ty.type_size()];
    (traits.quantize.expect("quantizable"))(x, &mut bytes);
    let y = dequant(traits, &bytes, x.len());
    let err: f64 = x
        .iter()
        .zip(&y)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let sig: f64 = x.iter().map(|&a| (a as f64).powi(2)).sum();
    ((err / sig.max(f64::MIN_POSITIVE)).sqrt(), y)
}

/// Round trips that every K-quant quantizer must pass: relative RMS error on Gaussian data
/// below `bound`, constant rows within `rel` of their value, every element of a row holding
/// a single spike within `spike_rel * |spike|` of the input, zeros exact.
pub fn check_quantizer(traits: &TypeTraits, bound: f64, rel: f32, spike_rel: f32) {
    let mut rng = Rng::new(traits.ty as u64 + 77);
    for sigma in [0.02f32, 1.0, 300.0] {
        let x = gaussian(&mut rng, 16 * QK_K, sigma);
        let (e, _) = rel_rms_error(traits, &x);
        assert!(
            e < bound,
            "{}: Gaussian sigma {sigma}: relative RMS error {e} >= {bound}",
            traits.ty
        );
    }
    for c in [0.37f32, -2.5, 1000.0, -0.3] {
        let (_, y) = rel_rms_error(traits, &[c; QK_K]);
        for &v in &y {
            assert_close(&format!("{} constant {c}", traits.ty), v, c, 0.0, rel);
        }
    }
    for (pos, spike) in [(0usize, 50.0f32), (100, -7.0), (255, 0.25)] {
        let mut x = vec![0.0f32; QK_K];
        x[pos] = spike;
        let (_, y) = rel_rms_error(traits, &x);
        for (i, &v) in y.iter().enumerate() {
            let want = if i == pos { spike } else { 0.0 };
            assert_close(
                &format!("{} spike at {pos}, element {i}", traits.ty),
                v,
                want,
                spike_rel * spike.abs(),
                0.0,
            );
        }
    }
    let (_, y) = rel_rms_error(traits, &[0.0; 2 * QK_K]);
    assert!(
        y.iter().all(|&v| v == 0.0),
        "{}: zeros must stay exact zeros",
        traits.ty
    );
    // Non-finite and huge input gives meaningless blocks but must not panic.
    let mut wild = gaussian(&mut rng, 2 * QK_K, 1.0);
    wild[3] = f32::NAN;
    wild[40] = f32::INFINITY;
    wild[300] = f32::NEG_INFINITY;
    wild[301] = f32::MAX;
    wild[500] = -f32::MAX;
    let mut bytes = vec![0u8; 2 * traits.ty.type_size()];
    (traits.quantize.expect("quantizable"))(&wild, &mut bytes);
    (traits.quantize.expect("quantizable"))(&[f32::NAN; QK_K], &mut bytes[..traits.ty.type_size()]);
}
