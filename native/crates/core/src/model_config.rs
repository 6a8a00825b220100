//! The hyperparameters every architecture is described by, read from GGUF metadata
//! (`<arch>.*` keys). An architecture's own file adds its quirks on top.

use mistralrs_quant::gguf::GgufFile;

use crate::layers::RopeStyle;
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
    /// Linear RoPE scaling factor (1 when absent).
    pub rope_linear_factor: f32,
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

impl ModelConfig {
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
        let rope_linear_factor = match file.get_string_opt(&format!("{arch}.rope.scaling.type"))? {
            Some("linear") => arch_f32(file, &arch, "rope.scaling.factor")?.unwrap_or(1.0),
            _ => 1.0,
        };
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
            rope_linear_factor,
            context_length: arch_u32(file, &arch, "context_length")?.map_or(2048, |v| v as usize),
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
