//! The arithmetic of llama.cpp's attention, reproduced so that our scores and outputs equal
//! its own to the last bit: 8-lane FMA accumulation and its horizontal-sum order, and ggml's
//! vectorised `expf` approximation (a polynomial after range reduction, within 1.5 ulp) used by
//! its softmax. Written lane by lane with `mul_add`; the callers are compiled with FMA enabled
//! where the CPU has it, so `mul_add` is one instruction there and a correctly rounded library
//! call elsewhere — the same result either way.

/// ggml's `ggml_v_expf`, one lane.
#[inline(always)]
pub fn expf_ggml(x: f32) -> f32 {
    let c = |bits: u32| f32::from_bits(bits);
    let r = c(0x4B40_0000); // 1.5 * 2^23
    let z = x.mul_add(c(0x3FB8_AA3B), r); // x * log2(e) + r
    let n = z - r;
    let b = (-n).mul_add(c(0x35BF_BE8E), (-n).mul_add(c(0x3F31_7200), x));
    let e = z.to_bits() << 23;
    let k = c(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = c(0x3C07_2010)
        .mul_add(b, c(0x3D2B_9F17))
        .mul_add(u, c(0x3E2A_AF33).mul_add(b, c(0x3EFF_FEDB)))
        .mul_add(u, c(0x3F7F_FFF6) * b);
    if n.abs() <= 126.0 {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = c(g.wrapping_add(0x7F00_0000));
    let s2 = c(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// Horizontal sum of 8 lanes in the order of an AVX register reduction: high half plus low
/// half, then the pairs, then the last two.
#[inline(always)]
pub fn hsum8(v: &[f32; 8]) -> f32 {
    let h = [v[4] + v[0], v[5] + v[1], v[6] + v[2], v[7] + v[3]];
    (h[0] + h[2]) + (h[1] + h[3])
}

/// Dot product with one 8-lane FMA accumulator over consecutive chunks of 8, then `hsum8`:
/// how llama.cpp's f16 matrix products sum a row (`len` a multiple of 8).
#[inline(always)]
pub fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] = ca[l].mul_add(cb[l], acc[l]);
        }
    }
    hsum8(&acc)
}

/// How ggml's `ggml_vec_dot_f16` sums a product (llama.cpp's path when a step has a single
/// token): element `i` goes to accumulator `(i % 32) / 8`, lane `i % 8` (one FMA each); the
/// four accumulators are added pairwise, then the lanes (low half plus high half, then two
/// horizontal adds).
pub struct VecDotF16Acc {
    acc: [[f32; 8]; 4],
}

impl VecDotF16Acc {
    #[inline(always)]
    pub fn new() -> Self {
        VecDotF16Acc { acc: [[0.0; 8]; 4] }
    }

    /// Adds `a · b` as element `i` of the product.
    #[inline(always)]
    pub fn add(&mut self, i: usize, a: f32, b: f32) {
        let slot = &mut self.acc[(i % 32) / 8][i % 8];
        *slot = a.mul_add(b, *slot);
    }

    /// The four 8-lane accumulators: element `i` of a product goes to `[(i % 32) / 8][i % 8]`
    /// (for loops the compiler keeps in vector registers).
    #[inline(always)]
    pub fn lanes_mut(&mut self) -> &mut [[f32; 8]; 4] {
        &mut self.acc
    }

    #[inline(always)]
    pub fn sum(&self) -> f32 {
        let s = &self.acc;
        let x: [f32; 8] = std::array::from_fn(|l| (s[0][l] + s[2][l]) + (s[1][l] + s[3][l]));
        let t: [f32; 4] = std::array::from_fn(|l| x[l] + x[l + 4]);
        (t[0] + t[1]) + (t[2] + t[3])
    }
}

/// A whole product in `VecDotF16Acc`'s order, written so the compiler keeps the four
/// accumulators in vector registers (the element-by-element form does not vectorise).
#[inline(always)]
pub fn dot_f16_order(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = VecDotF16Acc::new();
    let whole = a.len().min(b.len()) / 32 * 32;
    for (ca, cb) in a[..whole].chunks_exact(32).zip(b[..whole].chunks_exact(32)) {
        // Fixed-size arrays: no bounds checks, so each accumulator becomes one vector FMA.
        let (ca, cb): (&[f32; 32], &[f32; 32]) = match (ca.try_into(), cb.try_into()) {
            (Ok(x), Ok(y)) => (x, y),
            _ => unreachable!("chunks_exact(32) yields 32 elements"),
        };
        for k in 0..4 {
            let slots = &mut acc.acc[k];
            for l in 0..8 {
                slots[l] = ca[8 * k + l].mul_add(cb[8 * k + l], slots[l]);
            }
        }
    }
    for i in whole..a.len().min(b.len()) {
        acc.add(i, a[i], b[i]);
    }
    acc.sum()
}

impl Default for VecDotF16Acc {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_within_two_ulp_of_libm_and_handles_the_ends() {
        let mut x = -100.0f32;
        while x < 88.0 {
            let (a, b) = (expf_ggml(x), x.exp());
            let ulp = (a.to_bits() as i64 - b.to_bits() as i64).abs();
            assert!(ulp <= 2, "x = {x}: {a} vs {b} ({ulp} ulp)");
            x += 0.0137;
        }
        assert_eq!(expf_ggml(0.0), 1.0);
        assert_eq!(expf_ggml(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_ggml(-200.0), 0.0);
        assert!(expf_ggml(100.0).is_infinite());
    }

    #[test]
    fn dot8_sums_in_lane_order() {
        let a: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let b = vec![1.0f32; 16];
        assert_eq!(dot8(&a, &b), 120.0);
        assert_eq!(hsum8(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]), 36.0);
        let mut acc = VecDotF16Acc::new();
        (0..64).for_each(|i| acc.add(i, i as f32, 2.0));
        assert_eq!(acc.sum(), 4032.0);
        // The vectorisable form sums in the same order, tail included.
        let x: Vec<f32> = (0..72).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let y: Vec<f32> = (0..72).map(|i| (i as f32 * 0.91).cos()).collect();
        let mut acc = VecDotF16Acc::new();
        x.iter()
            .zip(&y)
            .enumerate()
            .for_each(|(i, (&a, &b))| acc.add(i, a, b));
        assert_eq!(dot_f16_order(&x, &y).to_bits(), acc.sum().to_bits());
    }
}
