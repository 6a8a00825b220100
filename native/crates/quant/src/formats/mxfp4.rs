//! MXFP4 (the OCP microscaling format, gpt-oss's experts): 32 values per block as 4-bit E2M1
//! codes under one shared power-of-two scale (an E8M0 exponent): `x = 2^(e−127) · E2M1[q]`.
//! ggml keeps the E2M1 values doubled in an integer table and halves the scale, so that the
//! dot product is integer per block, as IQ4_NL's. Pairs with Q8_0 activations.

use super::table4::{self, TableBlock};
use super::{as_blocks, as_blocks_mut, TypeTraits};
use crate::GgmlType;

pub const QK_MXFP4: usize = 32;

/// E2M1's eight magnitudes {0, ½, 1, 1½, 2, 3, 4, 6} doubled, positive codes then negative
/// (ggml's `kvalues_mxfp4`).
pub const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// The exponent `e` (an E8M0 byte), then 16 bytes of codes: byte j holds element j in its low
/// nibble and element j + 16 in its high nibble (as Q4_0).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockMxfp4 {
    pub e: u8,
    pub qs: [u8; QK_MXFP4 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockMxfp4>() == 17);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::MXFP4,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_0,
    vec_dot: table4::vec_dot::<BlockMxfp4>,
};

/// Half the block's scale, `2^(e − 128)`, built from its bits (exponents 0 and 1 are
/// subnormal); the codes' table is doubled to match. No NaN for 255, as in ggml.
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockMxfp4] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_MXFP4)) {
        let d = e8m0_half(b.e);
        let (lo, hi) = out.split_at_mut(QK_MXFP4 / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b.qs) {
            *l = KVALUES[(q & 0x0F) as usize] as f32 * d;
            *h = KVALUES[(q >> 4) as usize] as f32 * d;
        }
    }
}

/// The first code whose value (times `d`) is nearest `x` (ties keep the earlier code, so 0
/// is +0's code).
fn nearest(x: f32, d: f32) -> u8 {
    let mut best = (0u8, (KVALUES[0] as f32 * d - x).abs());
    for (i, &k) in KVALUES.iter().enumerate().skip(1) {
        let err = (k as f32 * d - x).abs();
        if err < best.1 {
            best = (i as u8, err);
        }
    }
    best.0
}

/// ggml's reference quantizer: the exponent puts the block's largest magnitude in the top
/// binade of E2M1 (`⌊log₂ amax⌋ − 2`), then each value takes its nearest code.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK_MXFP4]] = bytemuck::cast_slice(src);
    for (x, b) in rows.iter().zip(as_blocks_mut::<BlockMxfp4>(dst)) {
        let amax = x
            .iter()
            .fold(0.0f32, |m, &v| if m < v.abs() { v.abs() } else { m });
        // ggml converts the float to a byte through a 32-bit integer: out-of-range
        // exponents (subnormal blocks) wrap as they do there.
        b.e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as i32 as u8
        } else {
            0
        };
        let d = e8m0_half(b.e);
        for (j, byte) in b.qs.iter_mut().enumerate() {
            *byte = nearest(x[j], d) | nearest(x[j + 16], d) << 4;
        }
    }
}

impl TableBlock for BlockMxfp4 {
    const TABLE: [i8; 16] = KVALUES;
    fn codes(&self) -> &[u8; 16] {
        &self.qs
    }
    fn scale(&self) -> f32 {
        e8m0_half(self.e)
    }
}

#[cfg(test)]
mod tests {
    use mistralrs_common::Isa;

    use super::super::f16_le;
    use super::super::q8_0::test_support::*;
    use super::super::q8_0::BlockQ8_0;
    use super::super::q8_0::TRAITS as Q8_0;
    use super::super::testing::Rng;
    use super::*;

    const ACT: Layout = Layout {
        type_size: 34,
        f16_at: &[0],
        no_min_i8_at: None,
    };

    /// Random blocks whose exponents stay in a range where the products are finite.
    fn random_weights(rng: &mut Rng, blocks: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; blocks * 17];
        rng.fill_bytes(&mut bytes);
        for b in bytes.chunks_exact_mut(17) {
            b[0] = 100 + b[0] % 50;
        }
        bytes
    }

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(
            std::mem::size_of::<BlockMxfp4>(),
            GgmlType::MXFP4.type_size()
        );
        assert_eq!(QK_MXFP4, GgmlType::MXFP4.block_size());
    }

    #[test]
    fn e8m0_half_is_two_to_the_e_minus_128() {
        for e in 0..=254u8 {
            assert_eq!(e8m0_half(e), 2f64.powi(e as i32 - 128) as f32, "e = {e}");
        }
    }

    #[test]
    fn dequantize_hand_built_block() {
        let b = BlockMxfp4 {
            e: 127, // scale 1: values are E2M1's
            qs: std::array::from_fn(|j| (j | (15 - j) << 4) as u8),
        };
        let out = dequant(&TRAITS, bytemuck::bytes_of(&b), 32);
        let e2m1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        for j in 0..8 {
            assert_eq!(out[j], e2m1[j]);
            assert_eq!(out[j + 8], -e2m1[j]);
            assert_eq!(out[31 - j], e2m1[j]);
        }
    }

    #[test]
    fn quantize_is_exact_on_representable_values_and_nearest_otherwise() {
        // A block of E2M1 values times 2^3: every value comes back exactly.
        let exact: Vec<f32> = (0..32)
            .map(|j| {
                [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0][j % 8]
                    * 8.0
                    * if j % 3 == 0 { -1.0 } else { 1.0 }
            })
            .collect();
        let mut q = vec![0u8; 17];
        quantize(&exact, &mut q);
        // amax 48 = 1.5 · 2^5: the exponent is 5 − 2 (6 · 2^3 = 48), biased by 127.
        assert_eq!(q[0], 130);
        assert_eq!(dequant(&TRAITS, &q, 32), exact);
        // Others take the nearest representable value of the block's scale.
        let mut rng = Rng::new(41);
        let x = rng.f32_vec(32 * 16, 3.0);
        let mut q = vec![0u8; 16 * 17];
        quantize(&x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
            let d = e8m0_half(q[b * 17]);
            for (&v, &w) in xb.iter().zip(yb) {
                let best = KVALUES
                    .iter()
                    .map(|&k| (k as f32 * d - v).abs())
                    .fold(f32::INFINITY, f32::min);
                assert_eq!((w - v).abs(), best, "{v} → {w}");
            }
        }
        quantize(&[0.0; 32], &mut q[..17]);
        assert_eq!(&q[..17], &[0u8; 17]);
    }

    #[test]
    fn vec_dot_tiers_agree_with_the_reference_and_the_dequantized_dot() {
        let mut rng = Rng::new(40);
        for n in LENGTHS {
            let w = random_weights(&mut rng, n / 32);
            let a = random_row(&mut rng, &ACT, n / 32, 2.0);
            check_exact_dot("random", &TRAITS, &Q8_0, n, &w, &a);
            let mut a = vec![0u8; n / 32 * 34];
            (Q8_0.quantize.expect("Q8_0 quantizes"))(&rng.f32_vec(n, 3.0), &mut a);
            check_exact_dot("quantized activation", &TRAITS, &Q8_0, n, &w, &a);
        }
    }

    /// The repacked order equals the per-block reference up to the order of additions, and
    /// equals an explicit sequential fused sum bit for bit.
    #[test]
    fn repacked_order_is_one_fused_accumulator_over_blocks() {
        let mut rng = Rng::new(42);
        let n = 32 * 7;
        let w = random_weights(&mut rng, 7);
        let mut a = vec![0u8; 7 * 34];
        (Q8_0.quantize.expect("Q8_0 quantizes"))(&rng.f32_vec(n, 3.0), &mut a);
        let (wb, ab): (&[BlockMxfp4], &[BlockQ8_0]) = (as_blocks(&w), as_blocks(&a));
        let mut want = 0.0f32;
        for (x, y) in wb.iter().zip(ab) {
            want = (table4::block_sum(x, y) as f32).mul_add(e8m0_half(x.e) * f16_le(y.d), want);
        }
        let got = table4::vec_dot_repacked::<BlockMxfp4>(Isa::Scalar, n, &w, &a);
        assert_eq!(got.to_bits(), want.to_bits());
        let plain = table4::dot_scalar(wb, ab);
        assert!(
            (got - plain).abs() <= 1e-5 * plain.abs().max(1.0),
            "{got} vs {plain}"
        );
    }
}
