//! TQ1_0: ternary weights at 1.69 bits, 256 values per block as base-3 digits (−1, 0, +1 as
//! 0, 1, 2) packed five to a byte (four in the last 4 bytes), under one f16 scale. A byte holds
//! its digits as a fraction of 243 scaled to 256 (rounded up), so multiplying it by 3^n and
//! keeping the top bits of `3 · q` reads digit n. Pairs with Q8_K activations.

use super::q8_k::{BlockQ8K, QK_K};
use super::ternary::{self, TernaryBlock};
use super::{as_blocks, as_blocks_mut, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

/// 48 bytes of five digits (bytes 0..32 for elements 0..160, bytes 32..48 for 160..240),
/// 4 bytes of four digits (elements 240..256), then `d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockTq1_0 {
    pub qs: [u8; 48],
    pub qh: [u8; 4],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockTq1_0>() == 54);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::TQ1_0,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot: ternary::dot::<BlockTq1_0>,
};

const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// For each element of a block, the byte and the power of 3 that read its digit, in element
/// order: 32 bytes × 5 digits, 16 bytes × 5 digits, then the 4 `qh` bytes × 4 digits.
fn layout(e: usize) -> (usize, usize) {
    match e {
        0..160 => (e % 32, e / 32),
        160..240 => (32 + (e - 160) % 16, (e - 160) / 16),
        _ => (48 + (e - 240) % 4, (e - 240) / 4),
    }
}

fn byte(b: &BlockTq1_0, i: usize) -> u8 {
    if i < 48 {
        b.qs[i]
    } else {
        b.qh[i - 48]
    }
}

/// Digit of ggml's reference (`(3 · q) >> 8`, q the byte times 3^n modulo 256).
fn digit(q: u8) -> i32 {
    ((q as u16 * 3) >> 8) as i32
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in as_blocks::<BlockTq1_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_le(b.d);
        for (e, o) in out.iter_mut().enumerate() {
            let (i, n) = layout(e);
            *o = (digit(byte(b, i).wrapping_mul(POW3[n])) - 1) as f32 * d;
        }
    }
}

/// ggml's reference: `d` is the block's largest magnitude; each value rounded (half away
/// from zero) to −1, 0 or +1 of it; a byte's digits read as a base-3 number (the first the
/// most significant; four-digit bytes shifted up one), scaled to 256/243 and rounded up.
fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(as_blocks_mut::<BlockTq1_0>(dst)) {
        let d = x.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_to_le(d);
        let mut bytes = [0u16; 52];
        for (e, &v) in x.iter().enumerate() {
            let (i, _) = layout(e);
            let t = ((v * id).round() as i32 + 1) as u16;
            bytes[i] = bytes[i] * 3 + t;
        }
        for (i, q) in bytes.iter().enumerate() {
            // The four-digit bytes' first digit goes to the most significant of five.
            let q = if i >= 48 { (q * 3) as u8 } else { *q as u8 };
            let packed = (q as u16 * 256).div_ceil(243) as u8;
            if i < 48 {
                b.qs[i] = packed;
            } else {
                b.qh[i - 48] = packed;
            }
        }
    }
}

/// The digit as ggml's AVX2 kernel reads it: a halving average twice (`(3q)/4` with its
/// roundings, after taking 1 off), then the top two bits.
fn digit_avx2(q: u8) -> i32 {
    let a = q.saturating_sub(1) as u16;
    let b = (a + 1) >> 1;
    ((((a + b + 1) >> 1) >> 6) & 3) as i32
}

impl TernaryBlock for BlockTq1_0 {
    fn d(&self) -> [u8; 2] {
        self.d
    }

    /// ggml's AVX2 lanes: lane `m` holds the products at positions `4m .. 4m + 4` of each
    /// 32-element run the kernel multiplies (the runs follow the element order), digits read
    /// as [`digit_avx2`], less the activation's block sums `2m` and `2m + 1`.
    fn lanes(&self, y: &BlockQ8K) -> [i32; 8] {
        let mut lanes = [0i32; 8];
        for e in 0..QK_K {
            let (i, n) = layout(e);
            let t = digit_avx2(byte(self, i).wrapping_mul(POW3[n]));
            lanes[e % 32 / 4] += t * y.qs[e] as i32;
        }
        std::array::from_fn(|m| lanes[m] - ternary::lane_bsum(y, m))
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
            std::mem::size_of::<BlockTq1_0>(),
            GgmlType::TQ1_0.type_size()
        );
    }

    /// The AVX2 kernel's digit equals the reference's on every byte the quantizer writes.
    #[test]
    fn both_digit_readings_agree_on_packed_bytes() {
        for digits in 0..243u16 {
            let q = (digits * 256).div_ceil(243) as u8;
            for p in POW3.iter().take(5) {
                let v = q.wrapping_mul(*p);
                assert_eq!(digit(v), digit_avx2(v), "byte {q} × {p}");
            }
        }
    }

    #[test]
    fn quantize_round_trips_ternary_values_and_the_dot_matches_the_dequantized_one() {
        let mut rng = Rng::new(60);
        let x: Vec<f32> = (0..2 * QK_K)
            .map(|_| ((rng.next_u8() % 3) as f32 - 1.0) * 0.5)
            .collect();
        let mut q = vec![0u8; 2 * 54];
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
        for isa in [Isa::Scalar, Isa::Avx2] {
            let got = (TRAITS.vec_dot)(isa, 2 * QK_K, &q, &a);
            assert!(
                (got as f64 - exact).abs() <= 1e-4 * exact.abs().max(1.0),
                "{got} vs {exact}"
            );
        }
    }
}
