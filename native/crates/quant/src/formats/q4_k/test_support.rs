//! What the Q4_K tests share: the rounding magnitude of a product, random matrices, and the
//! check that a many-row product equals the single-row products of each order.

use mistralrs_common::Isa;

use super::super::q8_k::test_support::*;
use super::super::q8_k::{BlockQ8K, QK_K};
use super::super::{as_blocks, f16_le};
use super::{scale_min_k4, vec_dot_gemm_order, vec_dot_gemv_order, BlockQ4K};
use crate::formats::testing::Rng;

/// Σ over blocks of |yd| (|d| Σ sc·q·|y| + |dmin| Σ m·|bsum|): every term either path rounds.
pub(crate) fn magnitude(w: &[u8], a: &[u8]) -> f64 {
    let x: &[BlockQ4K] = as_blocks(w);
    let y: &[BlockQ8K] = as_blocks(a);
    let mut total = 0.0f64;
    for (b, a) in x.iter().zip(y) {
        let (mut s, mut m) = (0.0f64, 0.0f64);
        for j in 0..8 {
            let (sc, mn) = scale_min_k4(j, &b.scales);
            let qs = &b.qs[32 * (j / 2)..32 * (j / 2) + 32];
            for (&q, &v) in qs.iter().zip(&a.qs[32 * j..32 * j + 32]) {
                s += (sc as f64) * ((q >> (4 * (j % 2))) & 15) as f64 * (v as f64).abs();
            }
            m += mn as f64 * (a.bsum(2 * j).abs() + a.bsum(2 * j + 1).abs()) as f64;
        }
        let yd = a.scale().abs() as f64;
        total += yd * (f16_le(b.d).abs() as f64 * s + f16_le(b.dmin).abs() as f64 * m);
    }
    total
}

pub(crate) const ROWS: usize = 16;
pub(crate) const BLOCKS: usize = 3;
/// Above the count from which interleaved groups are unpacked first (8), with leftovers.
pub(crate) const TOKENS: usize = 11;

/// Random row-major weights (`ROWS` rows of `BLOCKS` blocks) and `TOKENS` activation rows.
pub(crate) fn weights_and_acts(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let n = BLOCKS * QK_K;
    let w = random_blocks(&mut rng, ROWS * n, 144, &[0, 2]);
    let acts = (0..TOKENS)
        .flat_map(|_| q8k_row(&mut rng, n, Act::Random))
        .collect();
    (w, acts)
}

/// `product(isa, gemm_order, out, stride)` writes every (token, row) output of the tokens
/// in `acts`; each must equal that order's single product bit for bit, on every tier,
/// leftover tokens included.
pub(crate) fn check_both_orders(
    w: &[u8],
    acts: &[u8],
    product: impl Fn(Isa, bool, *mut f32, usize),
) {
    let n = BLOCKS * QK_K;
    let (row_bytes, act_bytes) = (BLOCKS * 144, BLOCKS * std::mem::size_of::<BlockQ8K>());
    let tokens = acts.len() / act_bytes;
    let stride = ROWS + 1;
    for isa in Isa::available() {
        for (gemm_order, order) in [
            (true, vec_dot_gemm_order as VecDotFnRef),
            (false, vec_dot_gemv_order),
        ] {
            let mut out = vec![f32::NAN; tokens * stride];
            product(isa, gemm_order, out.as_mut_ptr(), stride);
            for t in 0..tokens {
                for r in 0..ROWS {
                    let row = &w[r * row_bytes..(r + 1) * row_bytes];
                    let want = order(isa, n, row, &acts[t * act_bytes..(t + 1) * act_bytes]);
                    let got = out[t * stride + r];
                    let what = format!("{isa} gemm={gemm_order} t{t} r{r}");
                    assert_eq!(got.to_bits(), want.to_bits(), "{what}");
                }
                assert!(out[t * stride + ROWS].is_nan());
            }
        }
    }
}
pub(crate) type VecDotFnRef = fn(Isa, usize, &[u8], &[u8]) -> f32;
