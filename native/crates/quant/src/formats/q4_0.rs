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
