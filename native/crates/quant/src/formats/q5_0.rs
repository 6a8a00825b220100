//! Q5_0: 32 values per block as 5-bit quants around 16 with one f16 scale,
//! `x = d·(q - 16)`. The low four bits are packed as in Q4_0, the fifth bits sit in `qh`.
//! Pairs with Q8_0 activations.

use mistralrs_common::Isa;

use super::q8_0::BlockQ8_0;
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

pub const QK5_0: usize = 32;

/// `d` (f16); `qh`, a little-endian u32 whose bit j is the fifth bit of element j; then 16
/// bytes of low nibbles (byte j: element j low, element j + 16 high).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q5_0,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_0,
    vec_dot,
};

/// The 32 quants of a block (0..=31) in element order.
#[inline]
fn quants(b: &BlockQ5_0) -> [i32; QK5_0] {
    let qh = u32::from_le_bytes(b.qh);
    std::array::from_fn(|i| {
        let nibble = if i < 16 {
            b.qs[i] & 0x0F
        } else {
            b.qs[i - 16] >> 4
        };
        (nibble as u32 | ((qh >> i) & 1) << 4) as i32
    })
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ5_0] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK5_0)) {
        let d = f16_le(b.d);
        for (o, q) in out.iter_mut().zip(quants(b)) {
            *o = (q - 16) as f32 * d;
        }
    }
}

/// ggml's `quantize_row_q5_0_ref`: as Q4_0 with 5 bits, `d = max / -16`, so the largest
/// magnitude maps to -16 and the other side clips at 15.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK5_0]] = bytemuck::cast_slice(src);
    for (x, b) in rows.iter().zip(as_blocks_mut::<BlockQ5_0>(dst)) {
        let max = x
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_to_le(d);
        // Truncation of x·id + 16.5 ≥ 0.5: round half up, as ggml's (int8_t) cast.
        let q = |v: f32| ((v * id + 16.5) as i8).clamp(0, 31) as u32;
        let mut qh = 0u32;
        for (j, byte) in b.qs.iter_mut().enumerate() {
            let (lo, hi) = (q(x[j]), q(x[j + 16]));
            *byte = ((lo & 0x0F) | (hi & 0x0F) << 4) as u8;
            qh |= (lo >> 4) << j | (hi >> 4) << (j + 16);
        }
        b.qh = qh.to_le_bytes();
    }
}

/// Consecutive weight rows against one activation row (decode steps), one call for the
/// run: bit-identical to one `vec_dot` per row.
pub fn vec_dot_rows(isa: Isa, n: usize, weights: &[u8], activation: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let simd: Option<super::VecDotRowsSimd<BlockQ5_0, BlockQ8_0>> = Some(simd::vec_dot_rows_avx2);
    #[cfg(not(target_arch = "x86_64"))]
    let simd: Option<super::VecDotRowsSimd<BlockQ5_0, BlockQ8_0>> = None;
    super::vec_dot_rows_with(isa, n, weights, activation, out, &TRAITS, simd)
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let nb = n / QK5_0;
    assert!(
        n.is_multiple_of(QK5_0) && weights.len() == nb * 22 && activation.len() == nb * 34,
        "q5_0 vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[BlockQ5_0], &[BlockQ8_0]) = (as_blocks(weights), as_blocks(activation));
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
fn vec_dot_scalar(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let sumi: i32 = quants(x)
            .iter()
            .zip(&y.qs)
            .map(|(&q, &v)| (q - 16) * v as i32)
            .sum();
        sum += sumi as f32 * f16_le(x.d) * f16_le(y.d);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use super::super::q8_0::x86::*;
    use super::{BlockQ5_0, BlockQ8_0};
    use std::arch::x86_64::*;

    /// The block's quants as signed bytes `q - 16` (in [-16, 15]), in element order.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn centred_quants(x: &BlockQ5_0) -> __m256i {
        let fifth = _mm256_and_si256(
            expand_bits(u32::from_le_bytes(x.qh)),
            _mm256_set1_epi8(0x10),
        );
        let q = _mm256_or_si256(unpack_nibbles(&x.qs), fifth);
        _mm256_sub_epi8(q, _mm256_set1_epi8(16))
    }

    macro_rules! tier {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            pub(super) fn $name(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
                #[inline]
                #[target_feature(enable = $features)]
                fn step(x: &BlockQ5_0, y: &BlockQ8_0, acc: __m256) -> __m256 {
                    let q = centred_quants(x);
                    // The activation carries the sign: -q stays within [-15, 16], so any
                    // activation byte works.
                    let p = $dot(load_i8(&y.qs), q);
                    let d = _mm256_set1_ps(f16_to_f32(x.d) * f16_to_f32(y.d));
                    _mm256_fmadd_ps(p, d, acc)
                }
                sum_blocks!(w, a, step)
            }
        };
    }
    tier!(vec_dot_avx2, "avx2,fma,f16c", dot_i8_avx2);
    rows_kernel!(vec_dot_rows_avx2, vec_dot_avx2, BlockQ5_0, BlockQ8_0);

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
        type_size: 22,
        f16_at: &[0],
        no_min_i8_at: None,
    };
    const ACT: Layout = Layout {
        type_size: 34,
        f16_at: &[0],
        no_min_i8_at: None,
    };

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(std::mem::size_of::<BlockQ5_0>(), GgmlType::Q5_0.type_size());
        assert_eq!(QK5_0, GgmlType::Q5_0.block_size());
    }

    #[test]
    fn dequantize_hand_built_block() {
        // Low nibbles j / 15 - j as in Q4_0; fifth bits set for elements 1, 17 and 31.
        let qh: u32 = 1 << 1 | 1 << 17 | 1 << 31;
        let b = BlockQ5_0 {
            d: f16_to_le(-0.25),
            qh: qh.to_le_bytes(),
            qs: std::array::from_fn(|j| (j | (15 - j) << 4) as u8),
        };
        let out = dequant(&TRAITS, bytemuck::bytes_of(&b), 32);
        assert_eq!(out[0], (0.0 - 16.0) * -0.25);
        assert_eq!(out[1], (1.0 + 16.0 - 16.0) * -0.25);
        assert_eq!(out[15], (15.0 - 16.0) * -0.25);
        assert_eq!(out[16], (15.0 - 16.0) * -0.25);
        assert_eq!(out[17], (14.0 + 16.0 - 16.0) * -0.25);
        assert_eq!(out[31], (0.0 + 16.0 - 16.0) * -0.25);
    }

    #[test]
    fn vec_dot_tiers_agree_with_scalar_and_dequantized_dot() {
        let mut rng = Rng::new(50);
        for n in LENGTHS {
            let w = random_row(&mut rng, &LAYOUT, n / 32, 2.0);
            let a = random_row(&mut rng, &ACT, n / 32, 2.0);
            check_exact_dot("random", &TRAITS, &Q8_0, n, &w, &a);
            let mut a = vec![0u8; n / 32 * 34];
            (Q8_0.quantize.expect("Q8_0 quantizes"))(&rng.f32_vec(n, 3.0), &mut a);
            check_exact_dot("quantized activation", &TRAITS, &Q8_0, n, &w, &a);
        }
        for salt in 0..4 {
            let (w, a) = (edge_row(&LAYOUT, salt), edge_row(&ACT, salt + 1));
            check_exact_dot("edge", &TRAITS, &Q8_0, w.len() / 22 * 32, &w, &a);
        }
    }

    /// As Q4_0's bound with 16 for 8: t = x/d ∈ [-16, 16], |t - (q - 16)| ≤ 1/2 except
    /// t - 15 (≤ 1) when t > 15.5 clips, and |q - 16| ≤ 16 multiplies the f16 error of d:
    /// |x - y| ≤ |d|·max(1/2, t - 15) + 16·|d - d16| + a few ulps of amax.
    fn check_round_trip(what: &str, x: &[f32]) {
        let mut q = vec![0u8; x.len() / 32 * 22];
        quantize(x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let max = xb
                .iter()
                .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -16.0;
            let d16 = f16_le(f16_to_le(d));
            for (a, b) in xb.iter().zip(yb) {
                let t = if d != 0.0 { a / d } else { 0.0 };
                let bound =
                    d.abs() * (t - 15.0).max(0.5) + 16.0 * (d - d16).abs() + 1e-6 * max.abs();
                assert!((a - b).abs() <= bound, "{what}: {a} -> {b} (bound {bound})");
            }
        }
    }

    #[test]
    fn quantize_round_trip_within_bound() {
        let mut rng = Rng::new(51);
        check_round_trip("random", &rng.f32_vec(4096, 5.0));
        check_round_trip("constant", &[-0.7; 64]);
        let mut spike = vec![0.0f32; 64];
        spike[20] = -3.0;
        check_round_trip("spike", &spike);
        let mut q = vec![0u8; 44];
        quantize(&spike, &mut q);
        let y = dequant(&TRAITS, &q, 64);
        assert_eq!(y[20], -3.0);
        assert!(y.iter().enumerate().all(|(i, &v)| i == 20 || v == 0.0));
        quantize(&[0.0; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == 0.0));
    }

    /// Grid values with every quant 0..=31 present, extreme at -16·d: exact, and the fifth
    /// bits land where dequantize reads them.
    #[test]
    fn quantize_reproduces_grid_values() {
        let x: Vec<f32> = (0..32).map(|i| ((31 - i) as f32 - 16.0) * -0.125).collect();
        let mut q = vec![0u8; 22];
        quantize(&x, &mut q);
        assert_eq!(dequant(&TRAITS, &q, 32), x);
    }
}
