//! Rotary position embeddings, in ggml's two layouts, with linear and Llama 3 frequency
//! scaling. Angles are computed as llama.cpp does (a running f32 product of the frequency
//! step) so that logits track the reference closely.

/// Which elements rotate together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)`: ggml's "normal" (Llama GGUFs, whose Q/K rows the
    /// converter permuted).
    Normal,
    /// Halves `(i, i + d/2)`: GPT-NeoX style (Qwen, Gemma, Phi, HF Llama checkpoints).
    Neox,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f32,
    },
    /// Per-frequency divisors (Llama 3.1's `rope_freqs.weight`), one per rotated pair.
    FreqFactors(Vec<f32>),
    /// LongRoPE (Phi 3 / 3.5 / 4 mini long-context checkpoints): per-frequency divisors, the
    /// long set when a sequence may hold more than `original_context` tokens (llama.cpp picks
    /// by the context it is given, once), and cos/sin scaled by `attn_factor`.
    LongRope {
        short: Vec<f32>,
        long: Vec<f32>,
        original_context: usize,
        attn_factor: f32,
        /// Tokens a sequence may hold; set by the runner (until then, the long set).
        context: Option<usize>,
    },
    /// YaRN: interpolation for low frequencies, extrapolation for high ones, a ramp between,
    /// and a magnitude correction (Qwen 2.5 long-context, DeepSeek).
    Yarn {
        factor: f32,
        original_context: usize,
        beta_fast: f32,
        beta_slow: f32,
        /// `rope.scaling.attn_factor` (1 unless the model says otherwise).
        attn_factor: f32,
        /// DeepSeek's `mscale_all_dim` (0 when absent): the magnitude correction then moves
        /// from cos/sin to the attention scores (see `attention_mscale`).
        log_multiplier: f32,
        /// The correction range's ends are rounded outwards to whole dimensions (llama.cpp
        /// always; transformers unless the config says `truncate: false`, as gpt-oss's does).
        truncate: bool,
    },
}

/// `1 + 0.1 · ln(1 / freq_scale)`, YaRN's magnitude correction as llama.cpp computes it.
fn yarn_mscale(freq_scale: f32, multiplier: f32) -> f32 {
    1.0 + 0.1 * multiplier * (1.0 / freq_scale).ln()
}

impl RopeScaling {
    /// Refuses parameters that would make the rotation meaningless (NaN angles or scales):
    /// every factor finite and positive, contexts positive, and for YaRN a base above 1 (its
    /// correction range divides by ln(base)).
    pub fn check(&self, base: f32) -> std::result::Result<(), String> {
        let positive = |what: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{what} is {v}; it must be a positive number"))
            }
        };
        let all_positive =
            |what: &str, values: &[f32]| values.iter().try_for_each(|&v| positive(what, v));
        match self {
            RopeScaling::None => Ok(()),
            RopeScaling::Linear { factor } => positive("the scaling factor", *factor),
            RopeScaling::FreqFactors(f) => all_positive("a frequency factor", f),
            RopeScaling::LongRope {
                short,
                long,
                original_context,
                attn_factor,
                ..
            } => {
                all_positive("a LongRoPE short factor", short)?;
                all_positive("a LongRoPE long factor", long)?;
                positive("the LongRoPE attention factor", *attn_factor)?;
                if *original_context == 0 {
                    return Err("the original context is 0".into());
                }
                Ok(())
            }
            RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
                attn_factor,
                log_multiplier,
                ..
            } => {
                positive("the YaRN factor", *factor)?;
                positive("YaRN's beta_fast", *beta_fast)?;
                positive("YaRN's beta_slow", *beta_slow)?;
                positive("the YaRN attention factor", *attn_factor)?;
                if !log_multiplier.is_finite() {
                    return Err(format!("the YaRN log multiplier is {log_multiplier}"));
                }
                if *original_context == 0 {
                    return Err("the original context is 0".into());
                }
                if base.is_nan() || base <= 1.0 {
                    return Err(format!("YaRN needs a RoPE base above 1, not {base}"));
                }
                Ok(())
            }
        }
    }

    /// The factor whose square multiplies DeepSeek's attention scores: YaRN's magnitude
    /// correction with `mscale_all_dim`, computed in llama.cpp's float steps (1 without
    /// YaRN).
    pub fn attention_mscale(&self) -> f32 {
        let RopeScaling::Yarn {
            factor,
            attn_factor,
            log_multiplier,
            ..
        } = *self
        else {
            return 1.0;
        };
        let freq_scale = 1.0 / factor;
        let correction = if log_multiplier != 0.0 {
            1.0
        } else {
            yarn_mscale(freq_scale, 1.0)
        };
        let rope_factor = correction * (1.0 / (1.0 + 0.1 * factor.ln())) * attn_factor;
        let original = rope_factor * yarn_mscale(freq_scale, 1.0);
        original * yarn_mscale(freq_scale, log_multiplier)
    }

    /// Llama 3.1's frequency divisors from its `rope_scaling` config (what the GGUF converter
    /// stores as `rope_freqs.weight`): long wavelengths scaled by `factor`, short ones kept,
    /// a smooth blend between.
    pub fn llama3_factors(
        head_dim: usize,
        base: f32,
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_context: f64,
    ) -> RopeScaling {
        let low_freq_wavelen = original_context / low_freq_factor;
        let high_freq_wavelen = original_context / high_freq_factor;
        let factors = (0..head_dim / 2)
            .map(|i| {
                // The frequency in f32, as the reference computes it in a float32 tensor.
                let freq = 1.0 / base.powf((2 * i) as f32 / head_dim as f32);
                let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
                let f = if wavelen < high_freq_wavelen {
                    1.0
                } else if wavelen > low_freq_wavelen {
                    factor
                } else {
                    let smooth = (original_context / wavelen - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                };
                f as f32
            })
            .collect();
        RopeScaling::FreqFactors(factors)
    }
}

#[derive(Clone, Debug)]
pub struct Rope {
    style: RopeStyle,
    /// Rotated dimensions of each head (the rest pass through).
    n_rot: usize,
    head_dim: usize,
    theta_scale: f32,
    freq_scale: f32,
    freq_factors: Option<Vec<f32>>,
    /// YaRN's ramp between `corr_dims` and its weight (0 = plain interpolation).
    ext_factor: f32,
    corr_dims: [f32; 2],
    /// Scale of cos and sin.
    mscale: f32,
}

impl Rope {
    pub fn new(
        style: RopeStyle,
        head_dim: usize,
        n_rot: usize,
        base: f32,
        scaling: RopeScaling,
    ) -> Rope {
        let n_rot = n_rot.min(head_dim) & !1;
        let theta_scale = base.powf(-2.0 / n_rot as f32);
        let mut rope = Rope {
            style,
            n_rot,
            head_dim,
            theta_scale,
            freq_scale: 1.0,
            freq_factors: None,
            ext_factor: 0.0,
            corr_dims: [0.0, 0.0],
            mscale: 1.0,
        };
        match scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => rope.freq_scale = 1.0 / factor,
            RopeScaling::FreqFactors(f) => rope.freq_factors = Some(f),
            RopeScaling::LongRope {
                short,
                long,
                original_context,
                attn_factor,
                context,
            } => {
                let use_long = context.is_none_or(|c| c > original_context);
                rope.freq_factors = Some(if use_long { long } else { short });
                rope.mscale = attn_factor;
            }
            RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
                attn_factor,
                log_multiplier,
                truncate,
            } => {
                rope.freq_scale = 1.0 / factor;
                rope.ext_factor = 1.0;
                // The correction range: dimensions whose wavelength completes between
                // `beta_slow` and `beta_fast` turns over the original context.
                let corr_dim = |turns: f32| {
                    n_rot as f32
                        * (original_context as f32 / (turns * 2.0 * std::f32::consts::PI)).ln()
                        / (2.0 * base.ln())
                };
                let (low, high) = (corr_dim(beta_fast), corr_dim(beta_slow));
                let (low, high) = if truncate {
                    (low.floor(), high.ceil())
                } else {
                    (low, high)
                };
                rope.corr_dims = [low.max(0.0), high.min(n_rot as f32 - 1.0)];
                // llama.cpp first cancels the magnitude factor that its kernel applies, then the
                // kernel multiplies it back: the same float steps give the same scale.
                let f = 1.0 / rope.freq_scale;
                // With DeepSeek's multiplier the correction is left to the scores (llama.cpp
                // takes its `mscale` equal to `mscale_all_dim`, which makes this ratio 1).
                let mscale = if log_multiplier != 0.0 || f <= 1.0 {
                    1.0
                } else {
                    0.1 * f.ln() + 1.0
                };
                let cancelled = mscale * (1.0 / (1.0 + 0.1 * f.ln())) * attn_factor;
                // The kernel's half is compiled with FMA contraction.
                rope.mscale = cancelled * 0.1f32.mul_add((1.0 / rope.freq_scale).ln(), 1.0);
            }
        }
        rope
    }

    /// 1 below the correction range (extrapolate), 0 above it (interpolate), linear between.
    fn yarn_ramp(&self, i0: usize) -> f32 {
        let [low, high] = self.corr_dims;
        let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
        1.0 - y.clamp(0.0, 1.0)
    }

    /// Rotates `x` (`[n_tokens, n_heads, head_dim]`), token `t` at `positions[t]`.
    pub fn apply(&self, x: &mut [f32], positions: &[usize], n_heads: usize) {
        #[cfg(target_arch = "x86_64")]
        if mistralrs_common::cpu_features().fma {
            // SAFETY: the CPU has FMA (checked just above).
            unsafe { self.apply_fma(x, positions, n_heads) };
            return;
        }
        self.apply_body(x, positions, n_heads);
    }

    /// The rotation is `mul_add`: one instruction with FMA, a library call without.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn apply_fma(&self, x: &mut [f32], positions: &[usize], n_heads: usize) {
        self.apply_body(x, positions, n_heads);
    }

    #[inline(always)]
    fn apply_body(&self, x: &mut [f32], positions: &[usize], n_heads: usize) {
        let half = self.n_rot / 2;
        let mut cos_sin = vec![(0f32, 0f32); half];
        let row = n_heads * self.head_dim;
        for (t, &pos) in positions.iter().enumerate() {
            let mut theta = pos as f32;
            for (i, cs) in cos_sin.iter_mut().enumerate() {
                let factor = self
                    .freq_factors
                    .as_ref()
                    .and_then(|f| f.get(i))
                    .copied()
                    .unwrap_or(1.0);
                let extrapolated = theta / factor;
                let interpolated = self.freq_scale * extrapolated;
                let angle = if self.ext_factor != 0.0 {
                    let mix = self.yarn_ramp(2 * i) * self.ext_factor;
                    // Fused as the C compiler contracts llama.cpp's blend.
                    interpolated.mul_add(1.0 - mix, extrapolated * mix)
                } else {
                    interpolated
                };
                *cs = (angle.cos() * self.mscale, angle.sin() * self.mscale);
                theta *= self.theta_scale;
            }
            for head in x[t * row..(t + 1) * row].chunks_exact_mut(self.head_dim) {
                for (i, &(cos, sin)) in cos_sin.iter().enumerate() {
                    let (a, b) = match self.style {
                        RopeStyle::Normal => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    // One fused multiply-add each, as the C compiler contracts llama.cpp's
                    // rotation: results equal its own to the last bit.
                    head[a] = x0.mul_add(cos, -(x1 * sin));
                    head[b] = x0.mul_add(sin, x1 * cos);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_rotation_keeps_norms() {
        let rope = Rope::new(RopeStyle::Neox, 8, 8, 10000.0, RopeScaling::None);
        let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.7).collect();
        let mut x = orig.clone();
        rope.apply(&mut x, &[0, 5], 1);
        assert_eq!(&x[..8], &orig[..8]);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&x[8..]) - norm(&orig[8..])).abs() < 1e-5);
        assert_ne!(&x[8..], &orig[8..]);
    }

    #[test]
    fn normal_and_neox_differ_only_in_pairing() {
        // Normal pairs (0,1),(2,3); Neox pairs (0,2),(1,3): permuting the input maps one onto
        // the other.
        let a = Rope::new(RopeStyle::Normal, 4, 4, 100.0, RopeScaling::None);
        let b = Rope::new(RopeStyle::Neox, 4, 4, 100.0, RopeScaling::None);
        let mut x = vec![1.0f32, 2.0, 3.0, 4.0];
        let mut y = vec![1.0f32, 3.0, 2.0, 4.0];
        a.apply(&mut x, &[3], 1);
        b.apply(&mut y, &[3], 1);
        assert_eq!(x, vec![y[0], y[2], y[1], y[3]]);
    }
}
