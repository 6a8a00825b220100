//! TQ2_0: ternary weights (BitNet b1.58 and TriLMs), 256 values per block as 2-bit codes
//! 0, 1, 2 for −1, 0, +1 under one f16 scale: `x = d·(q − 1)`. Pairs with Q8_K activations.

use super::q8_k::{BlockQ8K, QK_K};
use super::ternary::{self, TernaryBlock};
use super::{as_blocks, as_blocks_mut, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

/// 64 bytes of codes, then `d`. Byte `m` of the 32-byte half `h` holds, in its bit pairs from
/// the lowest, the elements `128h + m`, `+ 32`, `+ 64` and `+ 96`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockTq2_0 {
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockTq2_0>() == 66);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::TQ2_0,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot: ternary::dot::<BlockTq2_0>,
};

/// The code of element `128h + 32l + m`.
#[inline(always)]
fn code(b: &BlockTq2_0, h: usize, l: usize, m: usize) -> u8 {
    (b.qs[32 * h + m] >> (2 * l)) & 3
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in as_blocks::<BlockTq2_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_le(b.d);
        for (e, o) in out.iter_mut().enumerate() {
            *o = (code(b, e / 128, e % 128 / 32, e % 32) as i32 - 1) as f32 * d;
        }
    }
}

/// ggml's reference: `d` is the block's largest magnitude, each value rounded (half away from
/// zero) to −1, 0 or +1 of it.
fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(as_blocks_mut::<BlockTq2_0>(dst)) {
        let d = x.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_to_le(d);
        for (i, byte) in b.qs.iter_mut().enumerate() {
            let (h, m) = (i / 32, i % 32);
            *byte = (0..4).fold(0u8, |q, l| {
                let t = ((x[128 * h + 32 * l + m] * id).round() as i32 + 1) as u8;
                q | (t & 3) << (2 * l)
            });
        }
    }
}

impl TernaryBlock for BlockTq2_0 {
    fn d(&self) -> [u8; 2] {
        self.d
    }

    /// ggml's AVX2 lanes: lane `k` holds Σ q·y over the bytes `4k .. 4k + 4` of both 32-byte
    /// halves and all four bit pairs, less the activation's block sums `2k` and `2k + 1`.
    fn lanes(&self, y: &BlockQ8K) -> [i32; 8] {
        std::array::from_fn(|k| {
            let mut sumi = 0i32;
            for h in 0..2 {
                for l in 0..4 {
                    for m in 4 * k..4 * k + 4 {
                        sumi += code(self, h, l, m) as i32 * y.qs[128 * h + 32 * l + m] as i32;
                    }
                }
            }
            sumi - ternary::lane_bsum(y, k)
        })
    }
}

#[cfg(test)]
mod tests {
    use mistralrs_common::Isa;

    use super::super::q8_k::TRAITS as Q8_K;
    use super::super::testing::Rng;
    use super::*;

    #[test]
    fn block_size_matches_the_type_table() {
        assert_eq!(
            std::mem::size_of::<BlockTq2_0>(),
            GgmlType::TQ2_0.type_size()
        );
    }

    #[test]
    fn quantize_round_trips_ternary_values_and_the_dot_matches_the_dequantized_one() {
        let mut rng = Rng::new(50);
        // Ternary values times a scale: exact after a round trip.
        let x: Vec<f32> = (0..2 * QK_K)
            .map(|_| (rng.next_u8() % 3) as f32 - 1.0)
            .map(|t| t * 0.75)
            .collect();
        let mut q = vec![0u8; 2 * 66];
        quantize(&x, &mut q);
        let mut y = vec![0f32; x.len()];
        dequantize(&q, &mut y);
        assert_eq!(y, x);
        let act = rng.f32_vec(2 * QK_K, 3.0);
        let mut a = vec![0u8; 2 * 292];
        (Q8_K.quantize.expect("Q8_K quantizes"))(&act, &mut a);
        let mut deq_a = vec![0f32; act.len()];
        (Q8_K.dequantize)(&a, &mut deq_a);
        let exact: f64 = y
            .iter()
            .zip(&deq_a)
            .map(|(&p, &q)| p as f64 * q as f64)
            .sum();
        let got = (TRAITS.vec_dot)(Isa::Scalar, 2 * QK_K, &q, &a);
        assert!(
            (got as f64 - exact).abs() <= 1e-4 * exact.abs().max(1.0),
            "{got} vs {exact}"
        );
    }
}
