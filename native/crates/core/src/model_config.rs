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

/// A value llama.cpp reads per layer (`get_key_or_arr`): None for a single number or no key,
/// else the array's `n_layers` whole numbers (hybrid models' `attention.head_count_kv`).
pub fn per_layer_u32(file: &GgufFile, key: &str, n_layers: usize) -> Result<Option<Vec<u32>>> {
    use mistralrs_quant::gguf::GgufArray;
    let Some(mistralrs_quant::gguf::GgufValue::Array(array)) = file.get(key) else {
        return Ok(None);
    };
    let bad =
        |what: &str| ModelError::Unsupported(format!("{}: `{key}` {what}", file.path().display()));
    let values: Vec<u32> = match array {
        GgufArray::U32(v) => v.clone(),
        GgufArray::I32(v) => v
            .iter()
            .map(|&x| u32::try_from(x))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("holds a negative number"))?,
        _ => return Err(bad("is an array of neither u32 nor i32")),
    };
    if values.len() != n_layers {
        return Err(bad(&format!(
            "has {} entries for {n_layers} layers",
            values.len()
        )));
    }
    Ok(Some(values))
}

pub fn arch_f32(file: &GgufFile, arch: &str, key: &str) -> Result<Option<f32>> {
    Ok(file.get_f32_opt(&format!("{arch}.{key}"))?)
}

fn required(file: &GgufFile, arch: &str, key: &str) -> Result<usize> {
    match arch_u32(file, arch, key)? {
        Some(0) => Err(ModelError::Unsupported(format!(
            "{}: `{arch}.{key}` is 0",
            file.path().display()
        ))),
        Some(v) => Ok(v as usize),
        None => Err(ModelError::Unsupported(format!(
            "{}: missing `{arch}.{key}`",
            file.path().display()
        ))),
    }
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
        return unsupported(format!(
            "`{arch}.rope.scaling.factor` is {factor}; it must be a positive number"
        ));
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
                truncate: true,
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
        let n_layers = required(file, &arch, "block_count")?;
        // Hybrid models list it per layer, 0 for their recurrent layers: the attention
        // layers' count is the largest.
        let kv_key = format!("{arch}.attention.head_count_kv");
        let n_kv_heads = match per_layer_u32(file, &kv_key, n_layers)? {
            // None attends: the KV geometry goes unused (kept valid).
            Some(per_layer) => match per_layer.into_iter().max().unwrap_or(0) {
                0 => n_heads,
                most => most as usize,
            },
            None => {
                arch_u32(file, &arch, "attention.head_count_kv")?.map_or(n_heads, |v| v as usize)
            }
        };
        let head_dim = match arch_u32(file, &arch, "attention.key_length")? {
            Some(d) => d as usize,
            None if hidden_size.is_multiple_of(n_heads) => hidden_size / n_heads,
            None => {
                return Err(ModelError::Unsupported(format!(
                    "{}: `{arch}.embedding_length` {hidden_size} is not a multiple of `{arch}.attention.head_count` {n_heads} and there is no `{arch}.attention.key_length`",
                    file.path().display()
                )))
            }
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
            n_layers,
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
        cfg.validate(
            &file.path().display().to_string(),
            KeyNames::Gguf(&cfg.architecture),
        )?;
        Ok(cfg)
    }

    /// Refuses hyperparameters that make the arithmetic meaningless or overflow it, naming
    /// the quantity: zero or disagreeing head counts, head and rotary sizes that do not fit,
    /// epsilons that are not positive (they divide), RoPE bases that are not positive and
    /// finite, empty or implausibly large sizes.
    pub(crate) fn validate(&self, source: &str, keys: KeyNames<'_>) -> Result<()> {
        let bad = |what: String| Err(ModelError::Unsupported(format!("{source}: {what}")));
        let sizes = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("embedding_length", self.hidden_size, 1 << 16),
            ("block_count", self.n_layers, 1024),
            ("attention.head_count", self.n_heads, 1024),
            ("attention.head_count_kv", self.n_kv_heads, 1024),
            ("attention.key_length", self.head_dim, 1024),
            ("feed_forward_length", self.intermediate_size, 1 << 20),
            ("context_length", self.context_length, MAX_CONTEXT),
        ];
        for (key, value, max) in sizes {
            let key = keys.name(key);
            if value == 0 {
                return bad(format!("`{key}` is 0"));
            }
            if value > max {
                return bad(format!(
                    "`{key}` {value} is implausibly large (at most {max})"
                ));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} attention heads (`{}`) cannot share {} KV heads (`{}`)",
                self.n_heads,
                keys.name("attention.head_count"),
                self.n_kv_heads,
                keys.name("attention.head_count_kv")
            ));
        }
        if self.rope_dims == 0
            || self.rope_dims > self.head_dim
            || !self.rope_dims.is_multiple_of(2)
        {
            return bad(format!(
                "rotary dimension {} (`{}`) does not fit head size {} (it must be even, positive and at most the head size)",
                self.rope_dims,
                keys.name("rope.dimension_count"),
                self.head_dim
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!(
                "`{}` is {}; a norm epsilon must be a positive number (it divides)",
                keys.name("attention.layer_norm_rms_epsilon"),
                self.rms_norm_eps
            ));
        }
        if !(self.rope_base.is_finite() && self.rope_base > 0.0) {
            return bad(format!(
                "`{}` is {}; a RoPE base must be a positive number",
                keys.name("rope.freq_base"),
                self.rope_base
            ));
        }
        self.rope_scaling.check(self.rope_base).or_else(|e| {
            bad(format!(
                "rope scaling (`{}`): {e}",
                keys.name("rope.scaling")
            ))
        })
    }
}

/// How a source names the hyperparameters `validate` checks, for its messages.
#[derive(Clone, Copy)]
pub(crate) enum KeyNames<'a> {
    /// `<arch>.<key>` as llama.cpp writes it.
    Gguf(&'a str),
    /// transformers' `config.json` names.
    Hf,
}

impl KeyNames<'_> {
    /// The source's name of a quantity, given by its GGUF key (without the architecture).
    fn name(&self, gguf_key: &str) -> String {
        match self {
            KeyNames::Gguf(arch) => format!("{arch}.{gguf_key}"),
            KeyNames::Hf => match gguf_key {
                "embedding_length" => "hidden_size",
                "block_count" => "num_hidden_layers",
                "attention.head_count" => "num_attention_heads",
                "attention.head_count_kv" => "num_key_value_heads",
                "attention.key_length" => "head_dim",
                "feed_forward_length" => "intermediate_size",
                "context_length" => "max_position_embeddings",
                "rope.dimension_count" => "partial_rotary_factor",
                "attention.layer_norm_rms_epsilon" => "rms_norm_eps",
                "rope.freq_base" => "rope_theta",
                "rope.scaling" => "rope_scaling / rope_parameters",
                other => other,
            }
            .to_string(),
        }
    }
}

/// Token ids are u32 on every path; no real vocabulary comes near this.
const MAX_VOCAB: usize = 1 << 24;
/// Positions and cache sizes stay far from overflow (10M-token models exist).
pub(crate) const MAX_CONTEXT: usize = 1 << 26;

/// A positive float hyperparameter (epsilons, soft-caps, scales), refused naming `key` when it
/// is zero, negative or not finite.
pub fn positive(source: &str, key: &str, value: Option<f32>) -> Result<Option<f32>> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(ModelError::Unsupported(format!(
            "{source}: `{key}` is {v}; it must be a positive number"
        ))),
        v => Ok(v),
    }
}
