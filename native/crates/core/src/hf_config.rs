//! A Hugging Face `config.json` as transformers' configuration classes write it, read into the
//! hyperparameters our models use. Two generations of keys are read: v4's `rope_theta`,
//! `rope_scaling`, `partial_rotary_factor` and `rope_local_base_freq` at the top level, and v5's
//! `rope_parameters` (one dict, or one per layer type such as Gemma 3's `full_attention` and
//! `sliding_attention`). Every value is checked where it is read: one that would make the
//! arithmetic meaningless is refused naming its key.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::layers::moe::{Gating, GroupScore, MoeConfig};
use crate::layers::{RopeScaling, RopeStyle};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};

/// What a checkpoint's `config.json` may leave to its configuration class's defaults, where
/// the default depends on the architecture.
#[derive(Clone, Copy, Debug)]
pub struct HfDefaults {
    /// `partial_rotary_factor` (Phi 2's class default is 0.5; everyone else's 1).
    pub partial_rotary_factor: f64,
    /// The router's `scoring_func` and `topk_method` (DeepSeek V3's class has neither key:
    /// it is always `sigmoid` and `noaux_tc`).
    pub scoring_func: &'static str,
    pub topk_method: &'static str,
    /// `norm_topk_prob`.
    pub norm_topk_prob: bool,
    /// How the checkpoint's Q/K rows rotate: halves (NeoX) for most, adjacent pairs for GLM 4.
    pub rope_style: RopeStyle,
}

impl HfDefaults {
    pub const fn new() -> HfDefaults {
        HfDefaults {
            partial_rotary_factor: 1.0,
            scoring_func: "softmax",
            topk_method: "greedy",
            norm_topk_prob: false,
            rope_style: RopeStyle::Neox,
        }
    }
}

impl Default for HfDefaults {
    fn default() -> Self {
        HfDefaults::new()
    }
}

pub struct HfConfig {
    path: PathBuf,
    value: Value,
}

/// `text` with the bare `NaN`, `Infinity` and `-Infinity` outside strings quoted.
fn quote_python_constants(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push('"');
            out.push_str(word);
            out.push('"');
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The layer types of transformers' `layer_types` (and of per-type `rope_parameters`).
pub const FULL_ATTENTION: &str = "full_attention";
pub const SLIDING_ATTENTION: &str = "sliding_attention";

impl HfConfig {
    /// `dir/config.json`.
    pub fn read(dir: &Path) -> Result<HfConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ModelError::Unsupported(format!("{}: {e}", path.display())))?;
        HfConfig::parse(&path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<HfConfig> {
        // Python's `json` writes NaN and infinities as bare words (older transformers did, in
        // fields such as Mamba's `time_step_limit`): read as strings, so that a key we use
        // holding one is refused by name rather than the whole file.
        let value: Value = serde_json::from_str(text)
            .or_else(|e| serde_json::from_str(&quote_python_constants(text)).map_err(|_| e))
            .map_err(|e| {
                ModelError::Unsupported(format!("{}: not valid JSON: {e}", path.display()))
            })?;
        if !value.is_object() {
            return Err(ModelError::Unsupported(format!(
                "{}: not a JSON object",
                path.display()
            )));
        }
        Ok(HfConfig {
            path: path.to_path_buf(),
            value,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model_type(&self) -> Result<&str> {
        self.value["model_type"]
            .as_str()
            .ok_or_else(|| self.bad("has no `model_type`"))
    }

    /// A multimodal checkpoint keeps the text model's keys under `text_config`.
    pub fn has_text_config(&self) -> bool {
        self.value["text_config"].is_object()
    }

    pub fn bad(&self, what: impl std::fmt::Display) -> ModelError {
        ModelError::Unsupported(format!("{}: {what}", self.path.display()))
    }

    /// A whole number, or a list of equal ones (HunYuan's per-layer `moe_topk`,
    /// `moe_intermediate_size`, `num_shared_expert`); a list whose values differ is refused.
    pub fn uniform_usize(&self, key: &str) -> Result<Option<usize>> {
        let Some(list) = self.value[key].as_array() else {
            return self.usize_key(key);
        };
        let Some(values) = self.usize_list(key)? else {
            return Ok(None);
        };
        match values.first() {
            Some(&first) if values.iter().all(|&v| v == first) => Ok(Some(first)),
            _ => Err(self.bad(format!(
                "`{key}` differs between layers ({} values), which is not supported",
                list.len()
            ))),
        }
    }

    pub fn usize_key(&self, key: &str) -> Result<Option<usize>> {
        match &self.value[key] {
            Value::Null => Ok(None),
            v => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.bad(format!("`{key}` is {v}, not a whole number"))),
        }
    }

    /// A whole number that must be present and positive.
    pub fn required(&self, key: &str) -> Result<usize> {
        match self.usize_key(key)? {
            None => Err(self.bad(format!("lacks `{key}`"))),
            Some(0) => Err(self.bad(format!("`{key}` is 0"))),
            Some(v) => Ok(v),
        }
    }

    pub fn str_key(&self, key: &str) -> Result<Option<String>> {
        match &self.value[key] {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            v => Err(self.bad(format!("`{key}` is {v}, not a string"))),
        }
    }

    pub fn f64_key(&self, key: &str) -> Result<Option<f64>> {
        number(&self.value, key).map_err(|e| self.bad(e))
    }

    pub fn bool_key(&self, key: &str) -> Result<Option<bool>> {
        match &self.value[key] {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            v => Err(self.bad(format!("`{key}` is {v}, not true or false"))),
        }
    }

    /// A float hyperparameter that must be finite and positive when present (soft-caps,
    /// scalars that divide or scale).
    pub fn positive_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.f64_key(key)? {
            None => Ok(None),
            Some(v) if v > 0.0 && (v as f32).is_finite() => Ok(Some(v as f32)),
            Some(v) => Err(self.bad(format!("`{key}` is {v}; it must be a positive number"))),
        }
    }

    /// The rotary parameters of `layer_type`: v5's per-type dict, its one dict, or `None` (v4
    /// keeps them at the top level).
    fn rope_dict(&self, layer_type: &str) -> Option<&Value> {
        let params = &self.value["rope_parameters"];
        if params[layer_type].is_object() {
            Some(&params[layer_type])
        } else if params.is_object() && !params[FULL_ATTENTION].is_object() {
            Some(params)
        } else {
            None
        }
    }

    /// The base of `layer_type`'s rotation, if the config gives one (Gemma 3's local layers:
    /// v5's `sliding_attention.rope_theta`, v4's `rope_local_base_freq`).
    pub fn rope_theta(&self, layer_type: &str) -> Result<Option<f32>> {
        let (value, key, name) = match self.rope_dict(layer_type) {
            Some(d) if !d["rope_theta"].is_null() => {
                (d, "rope_theta", "rope_parameters.rope_theta")
            }
            _ if layer_type == SLIDING_ATTENTION => {
                (&self.value, "rope_local_base_freq", "rope_local_base_freq")
            }
            _ => (&self.value, "rope_theta", "rope_theta"),
        };
        match number(value, key).map_err(|e| self.bad(e))? {
            None => Ok(None),
            Some(b) if b > 0.0 && (b as f32).is_finite() => Ok(Some(b as f32)),
            Some(b) => Err(self.bad(format!("`{name}` is {b}; a RoPE base must be positive"))),
        }
    }

    /// The base of the sliding-window layers' rotation when it has its own (Gemma 3): v5's
    /// `rope_parameters.sliding_attention.rope_theta`, v4's `rope_local_base_freq`.
    pub fn local_rope_base(&self) -> Result<Option<f32>> {
        let nested = self.value["rope_parameters"][SLIDING_ATTENTION].is_object();
        if nested || !self.value["rope_local_base_freq"].is_null() {
            self.rope_theta(SLIDING_ATTENTION)
        } else {
            Ok(None)
        }
    }

    fn partial_rotary_factor(&self, default: f64) -> Result<f64> {
        let in_dict = self
            .rope_dict(FULL_ATTENTION)
            .map(|d| number(d, "partial_rotary_factor"))
            .transpose()
            .map_err(|e| self.bad(e))?
            .flatten();
        let factor = match in_dict {
            Some(f) => Some(f),
            None => self.f64_key("partial_rotary_factor")?,
        };
        match factor {
            None => Ok(default),
            Some(f) if f > 0.0 && f <= 1.0 => Ok(f),
            Some(f) => Err(self.bad(format!("partial_rotary_factor {f} is not in (0, 1]"))),
        }
    }

    /// HunYuan's NTK-aware `alpha` (a `dynamic` scaling with an `alpha`): the base becomes
    /// `rope_theta · alpha^(head_dim / (head_dim − 2))`, fixed for every context, computed in
    /// double precision as llama.cpp's converter does before it stores the base.
    fn ntk_alpha_base(&self, head_dim: usize) -> Result<Option<f32>> {
        let (s, name) = match self.rope_dict(FULL_ATTENTION) {
            Some(d) => (d, "rope_parameters"),
            None => (&self.value["rope_scaling"], "rope_scaling"),
        };
        let kind = s["rope_type"].as_str().or(s["type"].as_str());
        let alpha = number(s, "alpha").map_err(|e| self.bad(format!("{name}.{e}")))?;
        let (Some("dynamic"), Some(alpha)) = (kind, alpha) else {
            return Ok(None);
        };
        let theta = match number(s, "rope_theta").map_err(|e| self.bad(format!("{name}.{e}")))? {
            Some(t) => t,
            None => self.f64_key("rope_theta")?.unwrap_or(10_000.0),
        };
        let base = theta * alpha.powf(head_dim as f64 / (head_dim as f64 - 2.0));
        if !(alpha > 0.0 && head_dim > 2 && base > 0.0 && (base as f32).is_finite()) {
            return Err(self.bad(format!(
                "`{name}`: alpha {alpha} with rope_theta {theta} and head_dim {head_dim} gives no usable RoPE base"
            )));
        }
        Ok(Some(base as f32))
    }

    /// Which layers attend in a hybrid model: `layer_types` (`full_attention` and
    /// `sliding_attention` attend; `conv`, `mamba`, `linear_attention` are recurrent), else
    /// LFM2's `full_attn_idxs`.
    pub fn attention_layers(&self, n_layers: usize) -> Result<Option<Vec<bool>>> {
        // Granite's older configs name the list `layers_block_type`.
        let types = match &self.value["layer_types"] {
            Value::Null => &self.value["layers_block_type"],
            types => types,
        };
        let layers = match types {
            Value::Array(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    Some(FULL_ATTENTION | SLIDING_ATTENTION | "attention") => Ok(true),
                    Some("conv" | "mamba" | "linear_attention") => Ok(false),
                    _ => Err(self.bad(format!("layer type {t} is not known"))),
                })
                .collect::<Result<Vec<_>>>()?,
            Value::Null => match self.usize_list("full_attn_idxs")? {
                None => return Ok(None),
                Some(idxs) => {
                    if let Some(i) = idxs.iter().find(|&&i| i >= n_layers) {
                        return Err(
                            self.bad(format!("full_attn_idxs names layer {i} of {n_layers}"))
                        );
                    }
                    (0..n_layers).map(|i| idxs.contains(&i)).collect()
                }
            },
            other => return Err(self.bad(format!("layer_types {other} is not a list"))),
        };
        if layers.len() != n_layers {
            return Err(self.bad(format!(
                "layer_types has {} entries for {n_layers} layers",
                layers.len()
            )));
        }
        Ok(Some(layers))
    }

    /// `first_k_dense_replace` (LFM2-MoE: `num_dense_layers`), or `mlp_layer_types` when it
    /// lists `dense` layers and then `sparse` ones (any other order is refused).
    pub fn leading_dense_layers(&self) -> Result<Option<usize>> {
        for key in ["first_k_dense_replace", "num_dense_layers"] {
            if let Some(n) = self.usize_key(key)? {
                return Ok(Some(n));
            }
        }
        let types = match &self.value["mlp_layer_types"] {
            Value::Null => return Ok(None),
            Value::Array(types) => types,
            other => return Err(self.bad(format!("mlp_layer_types {other} is not a list"))),
        };
        let dense = types
            .iter()
            .take_while(|t| t.as_str() == Some("dense"))
            .count();
        if types[dense..].iter().any(|t| t.as_str() != Some("sparse")) {
            return Err(self.bad(
                "mlp_layer_types must list `dense` layers, then `sparse` ones; other orders are not supported",
            ));
        }
        Ok(Some(dense))
    }

    /// A list of whole numbers (SmolLM3's `no_rope_layers`).
    pub fn usize_list(&self, key: &str) -> Result<Option<Vec<usize>>> {
        match &self.value[key] {
            Value::Null => Ok(None),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok()))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| {
                    self.bad(format!("`{key}` holds a value that is not a whole number"))
                }),
            v => Err(self.bad(format!("`{key}` is {v}, not a list"))),
        }
    }

    /// The hyperparameters every decoder shares. Checkpoints in this layout rotate halves
    /// (NeoX) whatever the architecture does in GGUF, unless its class says otherwise.
    pub fn model_config(&self, architecture: &str, defaults: &HfDefaults) -> Result<ModelConfig> {
        let hidden_size = self.required("hidden_size")?;
        let n_heads = self.required("num_attention_heads")?;
        let head_dim = match self.usize_key("head_dim")? {
            Some(d) => d,
            None if hidden_size.is_multiple_of(n_heads) => hidden_size / n_heads,
            None => {
                return Err(self.bad(format!(
                    "hidden_size {hidden_size} is not a multiple of num_attention_heads {n_heads} and there is no head_dim"
                )))
            }
        };
        let rope_dims = ((head_dim as f64
            * self.partial_rotary_factor(defaults.partial_rotary_factor)?)
            as usize)
            & !1;
        let rope_base = match self.ntk_alpha_base(head_dim)? {
            Some(base) => base,
            None => self.rope_theta(FULL_ATTENTION)?.unwrap_or(10_000.0),
        };
        let context_length = self.usize_key("max_position_embeddings")?.unwrap_or(2048);
        let cfg = ModelConfig {
            architecture: architecture.to_string(),
            vocab_size: self.required("vocab_size")?,
            hidden_size,
            n_layers: self.required("num_hidden_layers")?,
            n_heads,
            n_kv_heads: self.usize_key("num_key_value_heads")?.unwrap_or(n_heads),
            head_dim,
            // LFM2's first checkpoints name it `block_ff_dim`.
            intermediate_size: match self.usize_key("block_ff_dim")? {
                Some(ff) => ff,
                None => self.required("intermediate_size")?,
            },
            rms_norm_eps: self.f64_key("rms_norm_eps")?.unwrap_or(1e-6) as f32,
            rope_base,
            rope_dims,
            rope_style: defaults.rope_style,
            rope_scaling: self.rope_scaling(head_dim, rope_base, context_length)?,
            context_length,
        };
        cfg.validate(
            &self.path.display().to_string(),
            crate::model_config::KeyNames::Hf,
        )?;
        Ok(cfg)
    }

    /// The full-attention layers' frequency scaling: linear, Llama 3's factors, YaRN or
    /// LongRoPE (v4's `rope_scaling`, v5's `rope_parameters` with a `rope_type`).
    fn rope_scaling(&self, head_dim: usize, base: f32, context: usize) -> Result<RopeScaling> {
        let (s, name) = match self.rope_dict(FULL_ATTENTION) {
            Some(d) => (d, "rope_parameters"),
            None => (&self.value["rope_scaling"], "rope_scaling"),
        };
        if s.is_null() {
            return Ok(RopeScaling::None);
        }
        if !s.is_object() {
            return Err(self.bad(format!("`{name}` is {s}, not an object")));
        }
        let kind = s["rope_type"].as_str().or(s["type"].as_str()).unwrap_or("");
        let key = |k: &str| -> Result<Option<f64>> {
            number(s, k).map_err(|e| self.bad(format!("{name}.{e}")))
        };
        let need = |k: &str| -> Result<f64> {
            key(k)?.ok_or_else(|| self.bad(format!("`{name}` ({kind}) lacks `{k}`")))
        };
        let factor = key("factor")?.unwrap_or(1.0);
        // v5 writes the pretraining context into the dict (the config's own by default).
        let original = match key("original_max_position_embeddings")? {
            Some(o) => Some(o),
            None => self
                .usize_key("original_max_position_embeddings")?
                .map(|o| o as f64),
        };
        let scaling = match kind {
            "" | "default" => RopeScaling::None,
            // HunYuan's alpha changes the base (`ntk_alpha_base`), not the frequencies' scale.
            "dynamic" if !s["alpha"].is_null() => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: factor as f32,
            },
            "llama3" => {
                let (low, high) = (need("low_freq_factor")?, need("high_freq_factor")?);
                let original = original.ok_or_else(|| {
                    self.bad(format!(
                        "`{name}` (llama3) lacks `original_max_position_embeddings`"
                    ))
                })?;
                if !(factor > 0.0 && low > 0.0 && high > low && original > 0.0) {
                    return Err(self.bad(format!(
                        "`{name}` (llama3): factor {factor}, low_freq_factor {low}, high_freq_factor {high}, original_max_position_embeddings {original} do not make a scaling (all positive, high above low)"
                    )));
                }
                RopeScaling::llama3_factors(head_dim, base, factor, low, high, original)
            }
            "yarn" => {
                if key("attention_factor")?.is_some() {
                    return Err(self.bad(format!(
                        "`{name}.attention_factor` for YaRN is not supported"
                    )));
                }
                // llama.cpp (and we) take DeepSeek's `mscale` equal to `mscale_all_dim`.
                if let (Some(m), Some(all)) = (key("mscale")?, key("mscale_all_dim")?) {
                    if m != all {
                        return Err(self.bad(format!(
                            "`{name}`: YaRN with mscale {m} other than mscale_all_dim {all} is not supported"
                        )));
                    }
                }
                RopeScaling::Yarn {
                    factor: factor as f32,
                    original_context: whole(original.unwrap_or(context as f64)).ok_or_else(
                        || {
                            self.bad(format!(
                                "`{name}.original_max_position_embeddings` is not a whole number"
                            ))
                        },
                    )?,
                    beta_fast: key("beta_fast")?.unwrap_or(32.0) as f32,
                    beta_slow: key("beta_slow")?.unwrap_or(1.0) as f32,
                    attn_factor: 1.0,
                    // DeepSeek's; its `mscale` is taken equal to it, as llama.cpp does.
                    log_multiplier: key("mscale_all_dim")?.unwrap_or(0.0) as f32,
                    truncate: match &s["truncate"] {
                        Value::Null => true,
                        Value::Bool(t) => *t,
                        v => {
                            return Err(
                                self.bad(format!("`{name}.truncate` is {v}, not true or false"))
                            )
                        }
                    },
                }
            }
            "longrope" | "su" => self.longrope(s, name, head_dim, original, context)?,
            other => return Err(self.bad(format!("`{name}` of type `{other}` is not supported"))),
        };
        scaling
            .check(base)
            .map_err(|e| self.bad(format!("`{name}`: {e}")))?;
        Ok(scaling)
    }

    /// Phi 3's short and long factor lists; cos/sin scaled by `attention_factor`, or by
    /// √(1 + ln(scale) / ln(original)) for a context `scale` times the original (as both
    /// transformers and llama.cpp's converter compute it).
    fn longrope(
        &self,
        s: &Value,
        name: &str,
        head_dim: usize,
        original: Option<f64>,
        context: usize,
    ) -> Result<RopeScaling> {
        let factors = |key: &str| -> Result<Vec<f32>> {
            let list = s[key]
                .as_array()
                .ok_or_else(|| self.bad(format!("`{name}` lacks the list `{key}`")))?;
            let values = list
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| self.bad(format!("`{name}.{key}` holds a non-number")))?;
            if values.len() != head_dim / 2 {
                return Err(self.bad(format!(
                    "`{name}.{key}` has {} factors, expected {}",
                    values.len(),
                    head_dim / 2
                )));
            }
            Ok(values)
        };
        let original = original.and_then(whole).filter(|&o| o > 0).ok_or_else(|| {
            self.bad("LongRoPE needs a positive `original_max_position_embeddings`")
        })?;
        let scale = context as f64 / original as f64;
        // Phi 3.5 MoE names it `long_mscale` (equal to `short_mscale` in its checkpoints).
        let attn_factor = match number(s, "attention_factor")
            .and_then(|a| Ok(a.or(number(s, "long_mscale")?)))
            .map_err(|e| self.bad(format!("{name}.{e}")))?
        {
            Some(a) => a,
            None if scale <= 1.0 => 1.0,
            None => (1.0 + scale.ln() / (original as f64).ln()).sqrt(),
        };
        Ok(RopeScaling::LongRope {
            short: factors("short_factor")?,
            long: factors("long_factor")?,
            original_context: original,
            attn_factor: attn_factor as f32,
            context: None,
        })
    }

    /// `sliding_window`; `use_sliding_window: false` (Qwen) turns it off, and Qwen's windowed
    /// upper layers (`use_sliding_window: true`) are not supported.
    pub fn sliding_window(&self) -> Result<Option<usize>> {
        match self.bool_key("use_sliding_window")? {
            Some(false) => return Ok(None),
            Some(true) => {
                return Err(self.bad("use_sliding_window (windowed upper layers) is not supported"))
            }
            None => {}
        }
        match self.usize_key("sliding_window")? {
            Some(0) => {
                Err(self.bad("`sliding_window` is 0; a window must hold at least one token"))
            }
            w => Ok(w),
        }
    }

    pub fn sliding_layers(&self) -> Result<Option<Vec<bool>>> {
        match &self.value["layer_types"] {
            Value::Null => Ok(None),
            Value::Array(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    Some(SLIDING_ATTENTION) => Ok(true),
                    Some(FULL_ATTENTION) => Ok(false),
                    _ => Err(self.bad(format!("layer type {t} is not known"))),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            other => Err(self.bad(format!("layer_types {other} is not a list"))),
        }
    }

    /// Mixtral's `num_local_experts`, Qwen 3 MoE's `num_experts`, DeepSeek's
    /// `n_routed_experts` (with its scoring function, scale and expert groups). Every layer is
    /// sparse, except DeepSeek's `first_k_dense_replace` leading ones (its loader reads that).
    pub fn moe(&self, defaults: &HfDefaults) -> Result<Option<MoeConfig>> {
        let Some(n_experts) = self
            .usize_key("num_local_experts")?
            .or(self.usize_key("num_experts")?)
            .or(self.usize_key("n_routed_experts")?)
        else {
            return Ok(None);
        };
        let dense_layers = self.value["mlp_only_layers"]
            .as_array()
            .is_some_and(|l| !l.is_empty());
        if dense_layers
            || self
                .usize_key("decoder_sparse_step")?
                .is_some_and(|s| s != 1)
            || self.usize_key("moe_layer_freq")?.is_some_and(|s| s != 1)
        {
            return Err(self.bad("mixes dense and sparse layers (mlp_only_layers, decoder_sparse_step, moe_layer_freq), which is not supported"));
        }
        let expert_ff = match self.uniform_usize("moe_intermediate_size")? {
            Some(f) => f,
            None => self.required("intermediate_size")?,
        };
        let norm_topk = self
            .bool_key("norm_topk_prob")?
            .unwrap_or(defaults.norm_topk_prob);
        let text = |key: &str, default: &'static str| match &self.value[key] {
            Value::Null => Ok(default.to_string()),
            Value::String(s) => Ok(s.clone()),
            v => Err(self.bad(format!("`{key}` is {v}, not a string"))),
        };
        let gating = match text("scoring_func", defaults.scoring_func)?.as_str() {
            "softmax" => Gating::Softmax,
            "sigmoid" => Gating::Sigmoid,
            other => return Err(self.bad(format!("scoring_func `{other}` is not supported"))),
        };
        let topk_method = text("topk_method", defaults.topk_method)?;
        let score = match topk_method.as_str() {
            "greedy" | "group_limited_greedy" => GroupScore::Max,
            "noaux_tc" => GroupScore::TopTwoSum,
            other => return Err(self.bad(format!("topk_method `{other}` is not supported"))),
        };
        let source = self.path.display().to_string();
        let cfg = MoeConfig {
            gating,
            scale: self.positive_f32("routed_scaling_factor")?.unwrap_or(1.0),
            ..MoeConfig::checked(
                n_experts,
                match self.usize_key("num_experts_per_tok")? {
                    Some(k) => k,
                    None => self.uniform_usize("moe_topk")?.unwrap_or(0),
                },
                expert_ff,
                norm_topk,
                &source,
            )?
        };
        if topk_method == "greedy" {
            return Ok(Some(cfg));
        }
        cfg.with_groups(
            self.usize_key("n_group")?.unwrap_or(0),
            self.usize_key("topk_group")?.unwrap_or(0),
            score,
            &source,
        )
        .map(Some)
    }
}

/// `value[key]` as a number, `None` when absent or null.
fn number(value: &Value, key: &str) -> std::result::Result<Option<f64>, String> {
    match &value[key] {
        Value::Null => Ok(None),
        v => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` is {v}, not a number")),
    }
}

/// `v` as a whole number of tokens, if it is one.
fn whole(v: f64) -> Option<usize> {
    (v >= 0.0 && v.fract() == 0.0 && v < (1u64 << 53) as f64).then_some(v as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_constants_outside_strings_are_quoted() {
        let text = r#"{"a": [0.0, Infinity], "b": -Infinity, "c": NaN, "d": "NaN \" Infinity"}"#;
        let value: Value = serde_json::from_str(&quote_python_constants(text)).expect("valid JSON");
        assert_eq!(value["a"][1], "Infinity");
        assert_eq!(value["b"], "-Infinity");
        assert_eq!(value["c"], "NaN");
        assert_eq!(value["d"], "NaN \" Infinity");
        let config = HfConfig::parse(Path::new("config.json"), text).expect("parsed");
        assert!(config.f64_key("c").is_err());
    }
}
