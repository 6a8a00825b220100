//! IQ4_XS: 256 weights as 8 sub-blocks of 32 four-bit indices into the non-uniform IQ4_NL
//! table, each sub-block with a 6-bit scale stored +32: `value = d * (ls - 32) * KVALUES[q]`.
//!
//! Scale `ib`: low nibble from `scales_l[ib / 2]` (low nibble for even `ib`, high for odd), top
//! 2 bits from bits `2ib..2ib+2` of the little-endian u16 `scales_h`. Indices of sub-block `ib`:
//! byte `qs[16ib + j]` holds element `32ib + j` in its low nibble and `32ib + 16 + j` in its
//! high nibble.

use bytemuck::{Pod, Zeroable};
use mistralrs_common::Isa;

use super::k_quant_search::nearest_int;
use super::q8_k::{check_dot_lengths, BlockQ8K, QK_K};
use super::{as_blocks, as_blocks_mut, clamp_isa, f16_le, f16_to_le, TypeTraits};
use crate::GgmlType;

/// ggml's `kvalues_iq4nl` (kept here so this module does not depend on `iq4_nl`).
pub(crate) const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockIQ4XS {
    pub d: [u8; 2],
    /// Little-endian u16: the top 2 bits of the 8 scales.
    pub scales_h: [u8; 2],
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockIQ4XS>() == 136);

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::IQ4_XS,
    dequantize,
    quantize: Some(quantize),
    vec_dot_type: GgmlType::Q8_K,
    vec_dot,
};

/// The 8 sub-block scales minus 32 (-32..=31).
#[inline]
fn scales(b: &BlockIQ4XS) -> [i32; 8] {
    let high = u16::from_le_bytes(b.scales_h);
    let mut out = [0i32; 8];
    for (ib, s) in out.iter_mut().enumerate() {
        let low = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        let top = ((high >> (2 * ib)) & 3) as u8;
        *s = (low | (top << 4)) as i32 - 32;
    }
    out
}

/// The table values of sub-block `ib`, in element order.
#[inline]
fn sub_block(b: &BlockIQ4XS, ib: usize) -> [i8; 32] {
    let mut v = [0i8; 32];
    for (j, &q) in b.qs[16 * ib..16 * ib + 16].iter().enumerate() {
        v[j] = KVALUES[(q & 0x0F) as usize];
        v[j + 16] = KVALUES[(q >> 4) as usize];
    }
    v
}

fn dequantize(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockIQ4XS] = as_blocks(src);
    for (b, out) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        for (ib, &ls) in scales(b).iter().enumerate() {
            let step = d * ls as f32;
            for (o, &v) in out[32 * ib..32 * ib + 32].iter_mut().zip(&sub_block(b, ib)) {
                *o = step * v as f32;
            }
        }
    }
}

/// Index of the table value nearest to `x` (the upper one on ties).
fn best_index(x: f32) -> u8 {
    let (mut lo, mut hi) = (0usize, 15usize);
    if x <= KVALUES[lo] as f32 {
        return 0;
    }
    if x >= KVALUES[hi] as f32 {
        return 15;
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < KVALUES[mid] as f32 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - (KVALUES[lo] as f32) < KVALUES[hi] as f32 - x {
        lo as u8
    } else {
        hi as u8
    }
}

/// Following ggml's `quantize_row_iq4_nl_impl` without importance weights: per sub-block the
/// scales putting the extreme value on +127 and on -127 + k (|k| <= 7), each refitted by
/// x²-weighted least squares; then 6-bit scales relative to the largest and indices chosen against them.
fn quantize(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockIQ4XS] = as_blocks_mut(dst);
    for (x, b) in src.chunks_exact(QK_K).zip(blocks.iter_mut()) {
        quantize_block(x, b);
    }
}

fn quantize_block(x: &[f32], b: &mut BlockIQ4XS) {
    let first = KVALUES[0] as f32;
    let mut sub_scales = [0.0f32; 8];
    let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
    for (ib, scale) in sub_scales.iter_mut().enumerate() {
        let xb = &x[32 * ib..32 * ib + 32];
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax < 1e-15 {
            continue;
        }
        // Weighted sums Σ w·q·x and Σ w·q² (w = x²) for the indices that inverse scale picks.
        let fit = |id: f32| -> (f32, f32) {
            xb.iter().fold((0.0f32, 0.0f32), |(sqx, sq2), &v| {
                let q = KVALUES[best_index(id * v) as usize] as f32;
                let w = v * v;
                (sqx + w * q * v, sq2 + w * q * q)
            })
        };
        // First the extreme value on +127 (nearest table value 113), then on -127 + itry.
        let (sqx, sq2) = fit(-first / max);
        let mut d = if sq2 > 0.0 { sqx / sq2 } else { -max / first };
        let mut best = d * sqx;
        for itry in -7..=7 {
            let (sqx, sq2) = fit((itry as f32 + first) / max);
            if sq2 > 0.0 && sqx * sqx > best * sq2 {
                d = sqx / sq2;
                best = d * sqx;
            }
        }
        *scale = d;
        if d.abs() > max_abs {
            max_abs = d.abs();
            max_scale = d;
        }
    }
    *b = BlockIQ4XS::zeroed();
    b.d = f16_to_le(-max_scale / 32.0);
    let d = f16_le(b.d);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut high = 0u16;
    for (ib, &s) in sub_scales.iter().enumerate() {
        let l = nearest_int(id * s).clamp(-32, 31);
        let dl = d * l as f32;
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        let xb = &x[32 * ib..32 * ib + 32];
        for j in 0..16 {
            b.qs[16 * ib + j] = best_index(idl * xb[j]) | (best_index(idl * xb[j + 16]) << 4);
        }
        let l = (l + 32) as u8;
        b.scales_l[ib / 2] |= (l & 0x0F) << (4 * (ib % 2));
        high |= ((l >> 4) as u16) << (2 * ib);
    }
    b.scales_h = high.to_le_bytes();
}

fn vec_dot(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32 {
    check_dot_lengths(n, std::mem::size_of::<BlockIQ4XS>(), weights, activation);
    let x: &[BlockIQ4XS] = as_blocks(weights);
    let y: &[BlockQ8K] = as_blocks(activation);
    match clamp_isa(isa) {
        // SAFETY: clamp_isa only returns a tier whose features this CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { simd::dot_vnni(x, y) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::dot_avx2(x, y) },
        _ => dot_scalar(x, y),
    }
}

/// The reference: exact i32 sums per block, `d * yd * Σ (ls - 32)·Σ KVALUES[q]·y`.
fn dot_scalar(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let mut isum = 0i32;
        for (ib, &ls) in scales(b).iter().enumerate() {
            let s: i32 = sub_block(b, ib)
                .iter()
                .zip(&a.qs[32 * ib..32 * ib + 32])
                .map(|(&w, &v)| w as i32 * v as i32)
                .sum();
            isum += ls * s;
        }
        sum += f16_le(b.d) * a.scale() * isum as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::q8_k::simd::*;
    use super::super::q8_k::BlockQ8K;
    use super::{scales, BlockIQ4XS, KVALUES};

    /// ggml's recipe: nibbles through the table with one `pshufb`, then the sign trick so
    /// `maddubs` can multiply signed by signed. The activation is the operand made unsigned
    /// (|y| <= 128 fits a u8) and the weight takes its sign (|w| <= 127), so even y = -128 is
    /// exact and no pair sum can saturate (2 * 128 * 127 < 32768).
    macro_rules! dot_body {
        ($x:expr, $y:expr, $madd:ident) => {{
            let m4 = _mm256_set1_epi8(0x0F);
            let table = _mm256_broadcastsi128_si256(load_u8x16(bytemuck::cast_slice(&KVALUES[..])));
            let mut acc = _mm256_setzero_ps();
            for (b, a) in $x.iter().zip($y.iter()) {
                let d = _mm256_set1_ps(a.scale() * f16(b.d));
                let ls = scales(b);
                let mut sumi = _mm256_setzero_si256();
                for p in 0..4 {
                    // Sub-blocks 2p (low 128 bits) and 2p + 1 (high 128 bits).
                    let q4 = load_u8(&b.qs[32 * p..]);
                    let lo = _mm256_shuffle_epi8(table, _mm256_and_si256(q4, m4));
                    let hi =
                        _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4));
                    let w = [
                        _mm256_permute2x128_si256(lo, hi, 0x20),
                        _mm256_permute2x128_si256(lo, hi, 0x31),
                    ];
                    for (k, &wk) in w.iter().enumerate() {
                        let yk = load_i8(&a.qs[64 * p + 32 * k..]);
                        let prod =
                            _mm256_maddubs_epi16(_mm256_abs_epi8(yk), _mm256_sign_epi8(wk, yk));
                        sumi = $madd(sumi, _mm256_set1_epi16(ls[2 * p + k] as i16), prod);
                    }
                }
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc)
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_avx2)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_vnni(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
        dot_body!(x, y, madd_acc_vnni)
    }
}

#[cfg(test)]
mod tests {
    use super::super::q8_k::test_support::*;
    use super::*;
    use crate::formats::testing::Rng;

    /// Σ over blocks of |d·yd| Σ |ls - 32|·|KVALUES[q]|·|y|: every term either path rounds.
    fn magnitude(w: &[u8], a: &[u8]) -> f64 {
        let x: &[BlockIQ4XS] = as_blocks(w);
        let y: &[BlockQ8K] = as_blocks(a);
        let mut total = 0.0f64;
        for (b, a) in x.iter().zip(y) {
            let mut s = 0.0f64;
            for (ib, &ls) in scales(b).iter().enumerate() {
                for (&v, &q) in sub_block(b, ib).iter().zip(&a.qs[32 * ib..32 * ib + 32]) {
                    s += (ls as f64 * v as f64 * q as f64).abs();
                }
            }
            total += (f16_le(b.d) as f64 * a.scale() as f64).abs() * s;
        }
        total
    }

    #[test]
    fn simd_tiers_match_scalar_on_random_and_edge_blocks() {
        let mut rng = Rng::new(71);
        sweep(
            "IQ4_XS",
            &TRAITS,
            &mut rng,
            &mut |r, n| random_blocks(r, n, 136, &[0]),
            magnitude,
        );
        edge_sweep("IQ4_XS", &TRAITS, &[0], magnitude);
    }

    #[test]
    fn best_index_picks_the_nearest_value() {
        for i in -300..300 {
            let x = i as f32 * 0.5;
            let got = KVALUES[best_index(x) as usize] as f32;
            let best = KVALUES
                .iter()
                .map(|&v| (v as f32 - x).abs())
                .fold(f32::INFINITY, f32::min);
            assert_eq!((got - x).abs(), best, "x = {x}");
        }
    }

    #[test]
    fn quantize_round_trip_error_is_bounded() {
        // 16 non-uniform levels, symmetric, per 32 values: about 0.075 measured, a little above
        // Q4_K. The table has no zero, so zeros beside a spike come back as d * scale * 1: up
        // to 1/100 of the spike.
        check_quantizer(&TRAITS, 0.085, 2e-3, 1e-2);
    }

    #[test]
    fn quantized_weights_dot_like_their_dequantized_values() {
        let mut rng = Rng::new(72);
        let x = gaussian(&mut rng, 1024, 1.0);
        let mut w = vec![0u8; 4 * 136];
        quantize(&x, &mut w);
        let a = q8k_row(&mut rng, 1024, Act::Random);
        check_against_dequant("IQ4_XS quantized", &TRAITS, 1024, &w, &a, magnitude(&w, &a));
    }

    #[test]
    fn dequantize_hand_built_block() {
        let mut b = BlockIQ4XS::zeroed();
        b.d = 0x3C00u16.to_le_bytes(); // 1.0
                                       // Sub-block 0: 0b10_0001 = 33 (+1); sub-block 3: 0b01_1111 = 31 (-1); others 0 (-32).
        b.scales_l[0] = 0x01;
        b.scales_l[1] = 0xF0;
        b.scales_h = ((0b10u16) | (0b01 << 6)).to_le_bytes();
        b.qs[0] = 0xF0; // element 0 = -127, element 16 = 113
        b.qs[48 + 2] = 0x08; // element 98 = 1, element 114 = -127
        b.qs[112] = 0x21; // element 224 = -104, element 240 = -83
        let mut y = vec![0.0f32; QK_K];
        dequantize(bytemuck::bytes_of(&b), &mut y);
        assert_eq!((y[0], y[16]), (-127.0, 113.0));
        assert_eq!((y[98], y[114]), (-1.0, 127.0));
        assert_eq!((y[224], y[240]), (3328.0, 2656.0));
        assert_eq!(y[32], -32.0 * -127.0);
    }
}
