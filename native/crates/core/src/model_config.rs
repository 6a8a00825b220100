//! The hyperparameters every architecture is described by, read from GGUF metadata
//! (`<arch>.*` keys). An architecture's own file adds its quirks on top.

use mistralrs_quant::gguf::GgufFile;

use crate::layers::{RopeScaling, RopeStyle};
use crate::model_error::{ModelError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The Hugging Face `model_type` / GGUF `general.architecture`, e.g. `llama`.
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub rms_norm_eps: f32,
    pub rope_base: f32,
    /// Rotated dimensions per head.
    pub rope_dims: usize,
    pub rope_style: RopeStyle,
    /// Frequency scaling from the config (a GGUF's `rope_freqs.weight` tensor, when the
    /// architecture has one, takes precedence).
    pub rope_scaling: RopeScaling,
    pub context_length: usize,
}

/// Reads `<arch>.<key>` as a u32-ish integer.
pub fn arch_u32(file: &GgufFile, arch: &str, key: &str) -> Result<Option<u32>> {
    Ok(file.get_u32_opt(&format!("{arch}.{key}"))?)
}

pub fn arch_f32(file: &GgufFile, arch: &str, key: &str) -> Result<Option<f32>> {
    Ok(file.get_f32_opt(&format!("{arch}.{key}"))?)
}

fn required(file: &GgufFile, arch: &str, key: &str) -> Result<usize> {
    arch_u32(file, arch, key)?
        .map(|v| v as usize)
        .filter(|&v| v > 0)
        .ok_or_else(|| {
            ModelError::Unsupported(format!(
                "{}: missing or zero `{arch}.{key}`",
                file.path().display()
            ))
        })
}

/// `<arch>.rope.scaling.*` as llama.cpp reads it: the type defaults to linear, a factor of 0
/// or 1 means none.
fn rope_scaling_from_gguf(
    file: &GgufFile,
    arch: &str,
    context_length: usize,
) -> Result<RopeScaling> {
    let kind = file
        .get_string_opt(&format!("{arch}.rope.scaling.type"))?
        .unwrap_or("linear");
    let factor = match arch_f32(file, arch, "rope.scaling.factor")? {
        Some(f) => f,
        None => arch_f32(file, arch, "rope.scale_linear")?.unwrap_or(0.0),
    };
    let unsupported = |what: String| {
        Err(ModelError::Unsupported(format!(
            "{}: {what}",
            file.path().display()
        )))
    };
    if !factor.is_finite() || factor < 0.0 {
        return unsupported(format!("rope scaling factor {factor} is not valid"));
    }
    Ok(match kind {
        "none" => RopeScaling::None,
        _ if factor == 0.0 || factor == 1.0 => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor },
        "yarn" => {
            // The converter writes 0.1 · mscale_all_dim; llama.cpp divides it back.
            let log_multiplier =
                arch_f32(file, arch, "rope.scaling.yarn_log_multiplier")?.map_or(0.0, |m| m / 0.1);
            if log_multiplier != 0.0 && arch != "deepseek2" {
                return unsupported(format!(
                    "YaRN with a log multiplier is only supported for DeepSeek, not `{arch}`"
                ));
            }
            RopeScaling::Yarn {
                log_multiplier,
                factor,
                original_context: arch_u32(file, arch, "rope.scaling.original_context_length")?
                    .map_or(context_length, |v| v as usize),
                beta_fast: arch_f32(file, arch, "rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
                beta_slow: arch_f32(file, arch, "rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
                attn_factor: arch_f32(file, arch, "rope.scaling.attn_factor")?.unwrap_or(1.0),
            }
        }
        other => return unsupported(format!("rope scaling `{other}` is not supported")),
    })
}

impl ModelConfig {
    /// The rotation of this config's heads with `scaling` (the config's own, or one the
    /// architecture derives: Llama 3's factor tensor, LongRoPE's chosen set).
    pub fn rope(&self, scaling: RopeScaling) -> crate::layers::Rope {
        crate::layers::Rope::new(
            self.rope_style,
            self.head_dim,
            self.rope_dims,
            self.rope_base,
            scaling,
        )
    }

    /// The common part of a decoder-only transformer's config.
    pub fn from_gguf(file: &GgufFile, rope_style: RopeStyle) -> Result<ModelConfig> {
        let arch = file.get_string("general.architecture")?.to_string();
        let hidden_size = required(file, &arch, "embedding_length")?;
        let n_heads = required(file, &arch, "attention.head_count")?;
        let n_kv_heads =
            arch_u32(file, &arch, "attention.head_count_kv")?.map_or(n_heads, |v| v as usize);
        let head_dim = match arch_u32(file, &arch, "attention.key_length")? {
            Some(d) => d as usize,
            None => hidden_size / n_heads,
        };
        let vocab_size = match arch_u32(file, &arch, "vocab_size")? {
            Some(v) => v as usize,
            None => file
                .get_array("tokenizer.ggml.tokens")
                .map(|a| a.len())
                .unwrap_or(0),
        };
        let context_length = arch_u32(file, &arch, "context_length")?.map_or(2048, |v| v as usize);
        let rope_scaling = rope_scaling_from_gguf(file, &arch, context_length)?;
        let cfg = ModelConfig {
            vocab_size,
            hidden_size,
            n_layers: required(file, &arch, "block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            intermediate_size: required(file, &arch, "feed_forward_length")?,
            rms_norm_eps: arch_f32(file, &arch, "attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5),
            rope_base: arch_f32(file, &arch, "rope.freq_base")?.unwrap_or(10_000.0),
            rope_dims: arch_u32(file, &arch, "rope.dimension_count")?
                .map_or(head_dim, |v| v as usize),
            rope_style,
            rope_scaling,
            context_length,
            architecture: arch,
        };
        cfg.validate(&file.path().display().to_string())?;
        Ok(cfg)
    }

    fn validate(&self, source: &str) -> Result<()> {
        let bad = |what: String| Err(ModelError::Unsupported(format!("{source}: {what}")));
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} attention heads cannot share {} KV heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.vocab_size == 0 {
            return bad("the vocabulary size is unknown".into());
        }
        if self.rope_dims > self.head_dim || !self.rope_dims.is_multiple_of(2) {
            return bad(format!(
                "rope dimension {} does not fit head size {}",
                self.rope_dims, self.head_dim
            ));
        }
        if self.hidden_size > 1 << 16 || self.n_layers > 1024 || self.head_dim > 1024 {
            return bad("hyperparameters are implausibly large".into());
        }
        Ok(())
    }
}
