//! Element-wise activations of the MLPs.

use mistralrs_common::numerics::expf_ggml;

/// `a = silu(a) · b` (SwiGLU), in place. The exponential is ggml's vectorised approximation,
/// as llama.cpp computes SiLU: its output feeds an 8-bit quantization, where one ulp can flip
/// a rounding.
pub fn swiglu(a: &mut [f32], b: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::cpu_features().fma {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe { swiglu_fma(a, b) };
        return;
    }
    swiglu_body(a, b);
}

/// The exp approximation is all `mul_add`: one instruction with FMA, a library call without.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn swiglu_fma(a: &mut [f32], b: &[f32]) {
    swiglu_body(a, b);
}

#[inline(always)]
fn swiglu_body(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = *x / (1.0 + expf_ggml(-*x)) * y;
    }
}

/// `a = gelu(a) · b` (GeGLU), with the tanh approximation the Gemma family uses, evaluated as
/// llama.cpp's CPU backend does (see [`gelu_table`]).
pub fn geglu(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = gelu_table(*x) * y;
    }
}

/// `a = gelu(a) · b` in f32 throughout, as transformers computes `gelu_pytorch_tanh`: what
/// encoders (embedding models) use, whose references are transformers', not llama.cpp's.
pub fn geglu_f32(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = gelu_tanh(*x) * y;
    }
}

/// `a = gelu(a)` (Phi 2's and Starcoder 2's MLP), as [`geglu`] evaluates it.
pub fn gelu(a: &mut [f32]) {
    for x in a.iter_mut() {
        *x = gelu_table(*x);
    }
}

/// GELU with the tanh approximation, as llama.cpp's CPU backend evaluates it: through a table
/// of f16 inputs and outputs (so the input is rounded to f16 and so is the result), the
/// identity above 10 and zero below -10.
fn gelu_table(v: f32) -> f32 {
    if v <= -10.0 {
        0.0
    } else if v >= 10.0 {
        v
    } else {
        let h = half::f16::from_f32(v).to_bits();
        half::f16::from_bits(gelu_f16_table()[h as usize]).to_f32()
    }
}

/// `gelu_tanh` of every f16 input, rounded to f16 (128 KiB, built on first use): a lookup
/// instead of a `tanh` per element, with the same results.
fn gelu_f16_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let x = half::f16::from_bits(bits).to_f32();
                half::f16::from_f32(gelu_tanh(x)).to_bits()
            })
            .collect()
    })
}

/// `0.5·x·(1 + tanh(√(2/π)·x·(1 + a·x²)))` with the operations grouped and rounded as
/// llama.cpp's x86 CPU backends built with FMA (AVX2 and up) compute their table:
/// `1 + (a·x)·x` is one fused multiply-add. Unfused, one f16 input (x = -1.999, bits 0xbfff)
/// gets the neighbouring output, which moved Gemma 3's logits by more than a logit.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    let inner = (COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// `1 / (1 + e^−x)`, as ggml's sigmoid (libm's exp, one value at a time).
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let mut a = [0.0f32, 1.0, -1.0];
        swiglu(&mut a, &[1.0, 2.0, 1.0]);
        assert!((a[1] - 2.0 * 0.731_058_6).abs() < 1e-6 && (a[2] + 0.268_941_4).abs() < 1e-6);
        let mut g = [0.0f32, 1.0, -3.0, 12.0, -11.0];
        geglu(&mut g, &[1.0, 1.0, 1.0, 2.0, 1.0]);
        // f16 precision: 0.8412 is 0.841192 rounded to 11 significant bits.
        assert!((g[1] - 0.841_192).abs() < 5e-4 && g[2].abs() < 0.01);
        assert_eq!((g[0], g[3], g[4]), (0.0, 24.0, 0.0));
    }

    /// The table is llama.cpp's: `ggml_table_gelu_f16` of its AVX2 CPU backend
    /// (libggml-cpu-haswell.so of node-llama-cpp 3.22.1, read after `ggml_cpu_init`), over every
    /// f16 input in (-10, 10), hashed with FNV-1a (each entry little-endian).
    #[test]
    fn gelu_table_is_llama_cpps() {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut entries = 0;
        for bits in 0..=u16::MAX {
            let x = half::f16::from_bits(bits).to_f32();
            if x.is_nan() || x <= -10.0 || x >= 10.0 {
                continue;
            }
            entries += 1;
            for byte in gelu_f16_table()[bits as usize].to_le_bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        assert_eq!(entries, 37376);
        assert_eq!(hash, 0xc6e6_387b_bbd2_64fa);
        // The one entry where the fused multiply-add matters.
        assert_eq!(gelu_f16_table()[0xbfff], 0xa9d3);
    }

    /// The table holds exactly the direct evaluation for every f16 input in (-10, 10).
    #[test]
    fn gelu_table_equals_direct_evaluation() {
        for bits in 0..=u16::MAX {
            let x = half::f16::from_bits(bits).to_f32();
            if x.is_nan() || x <= -10.0 || x >= 10.0 {
                continue;
            }
            let direct = half::f16::from_f32(gelu_tanh(x)).to_f32();
            assert_eq!(gelu_table(x).to_bits(), direct.to_bits(), "{x}");
        }
    }
}
