//! Helpers for the format tests: a seeded generator and tolerance checks.

use mistralrs_common::Isa;

/// xorshift64*: deterministic, dependency-free randomness for tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn next_u8(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        out.iter_mut().for_each(|b| *b = self.next_u8());
    }

    /// `n` values uniform in [-scale, scale).
    pub fn f32_vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32() * scale).collect()
    }
}

/// Every ISA tier this CPU can run, scalar first.
pub fn tiers() -> Vec<Isa> {
    Isa::available()
}

/// Asserts |a - b| <= abs + rel * max(|a|, |b|), with a message naming what was compared.
pub fn assert_close(what: &str, a: f32, b: f32, abs: f32, rel: f32) {
    let tol = abs + rel * a.abs().max(b.abs());
    assert!(
        (a - b).abs() <= tol || (a.is_nan() && b.is_nan()),
        "{what}: {a} vs {b} (difference {}, tolerance {tol})",
        (a - b).abs()
    );
}
