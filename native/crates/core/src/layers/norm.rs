//! Normalisation layers.

/// RMSNorm of each row: `out = x / sqrt(mean(x²) + eps) · w`. `x` and `out` are
/// `[n_rows, dim]`, `w` is `[dim]`. As in ggml, squares are f32 products summed in f64, and
/// the scale is applied before the weight.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let dim = w.len();
    for (row, dst) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let scale = inv_rms(row, eps);
        for ((o, &v), &g) in dst.iter_mut().zip(row).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// RMSNorm in place, for per-head norms (QK-norm) where `x` is `[n, dim]`.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let dim = w.len();
    for row in x.chunks_exact_mut(dim) {
        let scale = inv_rms(row, eps);
        for (v, &g) in row.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    }
}

/// LayerNorm of each row: `out = (x − mean) / sqrt(var + eps) · w + b`, summed as ggml sums
/// it on AVX2: the mean in f64; the squares of `x − mean` in 8-lane f32 groups (each reduced
/// as the AVX2 kernel does), the groups' sums and a scalar tail added in f64.
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let dim = w.len();
    for (row, dst) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        let mean = sum as f32 / dim as f32;
        let mut sq = 0f64;
        let mut i = 0;
        while i + 8 <= dim {
            let mut s = [0f32; 8];
            for (l, sl) in s.iter_mut().enumerate() {
                let c = row[i + l] - mean;
                dst[i + l] = c;
                *sl = c * c;
            }
            // (high half + low half), then pairs, then the last two.
            let h = [s[0] + s[4], s[1] + s[5], s[2] + s[6], s[3] + s[7]];
            let p = [h[0] + h[2], h[1] + h[3]];
            sq += f64::from(p[0] + p[1]);
            i += 8;
        }
        for j in i..dim {
            let c = row[j] - mean;
            dst[j] = c;
            sq += f64::from(c * c);
        }
        let variance = (sq / dim as f64) as f32;
        let scale = 1.0 / (variance + eps).sqrt();
        for ((o, &g), &bias) in dst.iter_mut().zip(w).zip(b) {
            *o = *o * scale * g + bias;
        }
    }
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let sum: f64 = row.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / row.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_scales_rows_to_unit_rms() {
        let x = [3.0f32, 4.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let w = [1.0f32, 2.0, 1.0, 1.0];
        let mut out = [0f32; 8];
        rms_norm(&x, &w, 0.0, &mut out);
        assert!((out[0] - 1.2).abs() < 1e-6 && (out[1] - 3.2).abs() < 1e-6);
        assert_eq!(&out[4..], &[1.0, 2.0, 1.0, 1.0]);
        let mut y = x;
        rms_norm_inplace(&mut y, &w, 0.0);
        assert_eq!(y, out);
    }
}
