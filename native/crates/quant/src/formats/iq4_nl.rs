//! IQ4_NL: 32 values per block as 4-bit indices into a fixed non-uniform table, with one
//! f16 scale: `x = d·KVALUES[q]`. The table is denser near zero, where weights cluster.
//! Pairs with Q8_0 activations.

use super::table4::{self, TableBlock};
use super::{as_blocks, as_blocks_mut, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

pub const QK4_NL: usize = 32;

/// ggml's `kvalues_iq4nl`, ascending.
pub const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// `d` (f16), then 16 bytes of table indices: byte j holds element j in its low nibble and
/// element j + 16 in its high nibble (as Q4_0).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq4Nl {
    pub d: [u8; 2],
    pub qs: [u8; QK4_NL / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == 18);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::IQ4_NL,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_0,
    vec_dot: table4::vec_dot::<BlockIq4Nl>,
};

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockIq4Nl] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK4_NL)) {
        let d = f16_le(b.d);
        let (lo, hi) = out.split_at_mut(QK4_NL / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b.qs) {
            *l = KVALUES[(q & 0x0F) as usize] as f32 * d;
            *h = KVALUES[(q >> 4) as usize] as f32 * d;
        }
    }
}

/// Index of the table value nearest `t` (ties to the lower one; NaN gives index 0).
fn nearest(t: f32) -> usize {
    let i = KVALUES.partition_point(|&v| (v as f32) < t);
    match i {
        0 => 0,
        16 => 15,
        _ if t - KVALUES[i - 1] as f32 <= KVALUES[i] as f32 - t => i - 1,
        _ => i,
    }
}

/// A best-scale search in the manner of ggml's `quantize_row_iq4_nl_impl` without an
/// importance matrix: the weights are `x²`, so large values, which matter most in a dot
/// product, are fitted best. For 15 trial scales that put the value of largest magnitude
/// near the table's wide end (-127), round every value to its nearest table entry, fit the
/// least-squares scale for those indices, and keep the fit with the smallest weighted error.
/// Then round `d` to f16 and pick the nearest entries again for that `d`.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let rows: &[[f32; QK4_NL]] = bytemuck::cast_slice(src);
    for (x, b) in rows.iter().zip(as_blocks_mut::<BlockIq4Nl>(dst)) {
        let max = x
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let mut d = 0.0f32;
        if max != 0.0 {
            // For fixed indices q the weighted error Σw(x - d·q)² is least at
            // d = Σwqx / Σwq², where it equals Σwx² - (Σwqx)²/Σwq²: keep the largest score.
            let mut best = 0.0f32;
            for itry in -7..=7 {
                let id = (itry as f32 - 127.0) / max;
                let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
                for &v in x {
                    let q = KVALUES[nearest(id * v)] as f32;
                    let w = v * v;
                    sumqx += w * q * v;
                    sumq2 += w * q * q;
                }
                if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
        }
        b.d = f16_to_le(d);
        let d16 = f16_le(b.d);
        let id = if d16 != 0.0 { 1.0 / d16 } else { 0.0 };
        for (j, byte) in b.qs.iter_mut().enumerate() {
            *byte = (nearest(id * x[j]) | nearest(id * x[j + 16]) << 4) as u8;
        }
    }
}

impl TableBlock for BlockIq4Nl {
    const TABLE: [i8; 16] = KVALUES;
    fn codes(&self) -> &[u8; 16] {
        &self.qs
    }
    fn scale(&self) -> f32 {
        f16_le(self.d)
    }
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
    const ACT: Layout = Layout {
        type_size: 34,
        f16_at: &[0],
        no_min_i8_at: None,
    };

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(
            std::mem::size_of::<BlockIq4Nl>(),
            GgmlType::IQ4_NL.type_size()
        );
        assert_eq!(QK4_NL, GgmlType::IQ4_NL.block_size());
    }

    #[test]
    fn dequantize_hand_built_block() {
        let b = BlockIq4Nl {
            d: f16_to_le(0.5),
            qs: std::array::from_fn(|j| (j | (15 - j) << 4) as u8),
        };
        let out = dequant(&TRAITS, bytemuck::bytes_of(&b), 32);
        for j in 0..16 {
            assert_eq!(out[j], KVALUES[j] as f32 * 0.5);
            assert_eq!(out[j + 16], KVALUES[15 - j] as f32 * 0.5);
        }
        assert_eq!(
            (out[0], out[8], out[16], out[31]),
            (-63.5, 0.5, 56.5, -63.5)
        );
    }

    #[test]
    fn nearest_picks_the_closest_entry() {
        for t in -140..=130 {
            let t = t as f32 + 0.25;
            let best = (0..16).min_by(|&a, &b| {
                (t - KVALUES[a] as f32)
                    .abs()
                    .total_cmp(&(t - KVALUES[b] as f32).abs())
            });
            assert_eq!(Some(nearest(t)), best, "t = {t}");
        }
        assert_eq!(
            (nearest(-1000.0), nearest(1000.0), nearest(-4.5)),
            (0, 15, 7)
        );
    }

    #[test]
    fn vec_dot_tiers_agree_with_scalar_and_dequantized_dot() {
        let mut rng = Rng::new(20);
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
            check_exact_dot("edge", &TRAITS, &Q8_0, w.len() / 18 * 32, &w, &a);
        }
    }

    /// The search is least squares, not minimax, so the bound is on the weighted error it
    /// minimises, E = Σ x²·(x - y)². The trial scale d_c = -max/127 maps every value into
    /// [-127, 127], where the nearest entry is at most 14 away (half the widest gap is 12,
    /// and 113..127 is 14), so E(d_c) ≤ Σx²·(14·amax/127)²; the least-squares fit and the
    /// best-of-15 choice only lower E. Rounding d to f16 moves each y by at most
    /// 127·|d - d16| before the indices are re-picked (which cannot increase the error), and
    /// |d - d16| ≤ 2⁻¹⁰·|d16| + 2⁻²⁵. So √E ≤ √Σx²·(14·amax/127 + 127·|d - d16|), with a
    /// relative slack of 1e-4 for float sums.
    fn check_round_trip(what: &str, x: &[f32]) {
        let mut q = vec![0u8; x.len() / 32 * 18];
        quantize(x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        let blocks: &[BlockIq4Nl] = as_blocks(&q);
        for ((xb, yb), b) in x.chunks(32).zip(y.chunks(32)).zip(blocks) {
            let amax = xb.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
            let sw: f64 = xb.iter().map(|&v| v as f64 * v as f64).sum();
            let e: f64 = xb
                .iter()
                .zip(yb)
                .map(|(&a, &b)| (a as f64).powi(2) * (a as f64 - b as f64).powi(2))
                .sum();
            let d_err = f16_le(b.d).abs() as f64 * 2f64.powi(-10) + 2f64.powi(-25);
            let bound = sw.sqrt() * (14.0 * amax / 127.0 + 127.0 * d_err) * (1.0 + 1e-4);
            assert!(
                e.sqrt() <= bound,
                "{what}: weighted error {} > bound {bound}",
                e.sqrt()
            );
        }
    }

    #[test]
    fn quantize_round_trip_within_bound() {
        let mut rng = Rng::new(21);
        check_round_trip("random", &rng.f32_vec(4096, 5.0));
        let shifted: Vec<f32> = rng.f32_vec(1024, 1.0).iter().map(|v| v + 2.0).collect();
        check_round_trip("shifted", &shifted);
        check_round_trip("constant", &[0.3; 64]);
        let mut spike = vec![0.0f32; 64];
        spike[5] = -9.0;
        check_round_trip("spike", &spike);
        let mut q = vec![0u8; 36];
        quantize(&spike, &mut q);
        let y = dequant(&TRAITS, &q, 64);
        // A lone value is fitted exactly up to the f16 rounding of d = value / table entry;
        // the zeros are not exact (the table has no 0) but at most d·1 = |spike|/127.
        assert!((y[5] + 9.0).abs() <= 9.0 * 2f32.powi(-10));
        assert!(y
            .iter()
            .enumerate()
            .all(|(i, &v)| i == 5 || v.abs() <= 9.0 / 127.0 * 1.001));
        assert!(y[32..].iter().all(|&v| v == 0.0));
        quantize(&[0.0; 64], &mut q);
        assert!(dequant(&TRAITS, &q, 64).iter().all(|&v| v == 0.0));
    }

    /// On random data the search should beat the plain trial scale d = -max/127 in the
    /// weighted error it minimises (never lose to it, by the argument above).
    #[test]
    fn search_is_no_worse_than_the_plain_scale() {
        let mut rng = Rng::new(22);
        let x = rng.f32_vec(32 * 64, 1.0);
        let mut q = vec![0u8; 64 * 18];
        quantize(&x, &mut q);
        let y = dequant(&TRAITS, &q, x.len());
        let (mut searched, mut plain) = (0.0f64, 0.0f64);
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let max = xb
                .iter()
                .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = f16_le(f16_to_le(-max / 127.0));
            for (&v, &w) in xb.iter().zip(yb) {
                let p = d * KVALUES[nearest(v / d)] as f32;
                searched += (v as f64).powi(2) * (v - w) as f64 * (v - w) as f64;
                plain += (v as f64).powi(2) * (v - p) as f64 * (v - p) as f64;
            }
        }
        assert!(searched < plain, "searched {searched} vs plain {plain}");
    }
}
