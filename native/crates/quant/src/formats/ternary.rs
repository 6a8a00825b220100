//! What TQ1_0 and TQ2_0 share: their dot product's float steps in ggml's AVX2 order. Per
//! block, 8 exact integer lanes (each type's own); each lane times `dy·dx`
//! fused-multiply-added into its float accumulator (ggml writes a multiply and an add; its
//! compiler fuses them); the 8 accumulators reduced as `_mm256` halves, then pairs.

use mistralrs_common::Isa;

use super::f16_le;
use super::q8_k::{BlockQ8K, QK_K};

/// A ternary block: its f16 scale and its 8 integer lanes against an activation block.
pub(crate) trait TernaryBlock: bytemuck::Pod {
    fn d(&self) -> [u8; 2];
    fn lanes(&self, y: &BlockQ8K) -> [i32; 8];
}

/// The sum of activation block sums `2m` and `2m + 1`, which ggml's lane `m` subtracts (the
/// −1 of every code).
pub(crate) fn lane_bsum(y: &BlockQ8K, m: usize) -> i32 {
    i16::from_le_bytes(y.bsums[2 * m]) as i32 + i16::from_le_bytes(y.bsums[2 * m + 1]) as i32
}

/// The type's `vec_dot`: `n` values of weights and of Q8_K activations, lengths checked.
pub(crate) fn dot<B: TernaryBlock>(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    let nb = n / QK_K;
    assert!(
        n.is_multiple_of(QK_K)
            && weights.len() == nb * std::mem::size_of::<B>()
            && activation.len() == nb * std::mem::size_of::<BlockQ8K>(),
        "ternary vec_dot: n = {n}, {} weight bytes, {} activation bytes",
        weights.len(),
        activation.len()
    );
    let (w, a): (&[B], &[BlockQ8K]) = (super::as_blocks(weights), super::as_blocks(activation));
    #[cfg(target_arch = "x86_64")]
    if super::clamp_isa(isa) >= Isa::Avx2 {
        // SAFETY: the AVX2 tier implies FMA.
        return unsafe { dot_fma(w, a) };
    }
    let _ = isa;
    dot_body(w, a)
}

/// `mul_add` as one instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn dot_fma<B: TernaryBlock>(w: &[B], a: &[BlockQ8K]) -> f32 {
    dot_body(w, a)
}

#[inline(always)]
fn dot_body<B: TernaryBlock>(w: &[B], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in w.iter().zip(a) {
        let d = f32::from_le_bytes(y.d) * f16_le(x.d());
        for (lane, l) in acc.iter_mut().zip(x.lanes(y)) {
            *lane = (l as f32).mul_add(d, *lane);
        }
    }
    let s: [f32; 4] = std::array::from_fn(|i| acc[i] + acc[i + 4]);
    (s[0] + s[2]) + (s[1] + s[3])
}
