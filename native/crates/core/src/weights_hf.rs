//! A Hugging Face model folder (`config.json` + safetensors) as a weight source: GGUF tensor
//! names map onto the checkpoint's names, `config.json` onto `ModelConfig`. Float tensors
//! (F32, F16, BF16) are used in place in the mapped shards, or stored in the type `--dtype`
//! asks for (`weights_dtype`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mistralrs_quant::safetensors::{Dtype, SafetensorsModel};
use mistralrs_quant::GgmlType;
use serde_json::Value;

use crate::layers::{Embedding, Linear, RopeScaling, RopeStyle, WeightBytes};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::weights::Weights;
use crate::weights_dtype::{store_as, WeightDtype};

pub struct HfWeights {
    dir: PathBuf,
    model: SafetensorsModel,
    config: Value,
    /// Our architecture id for the config's `model_type`.
    arch: String,
    /// The type matrices are stored in, and the bytes they take so far.
    dtype: WeightDtype,
    stored_bytes: AtomicUsize,
}

impl HfWeights {
    pub fn open(dir: &Path) -> Result<HfWeights> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| ModelError::Unsupported(format!("{}: {e}", config_path.display())))?;
        let config: Value = serde_json::from_str(&text).map_err(|e| {
            ModelError::Unsupported(format!("{}: not valid JSON: {e}", config_path.display()))
        })?;
        let arch = match config["model_type"].as_str() {
            // Mistral is Llama's decoder with a sliding window.
            Some("mistral") => "llama",
            // llama.cpp's one architecture for both (V3 differs in configuration only).
            Some("deepseek_v2") | Some("deepseek_v3") => "deepseek2",
            Some("gemma3_text") => "gemma3",
            // Phi 2's checkpoints say `phi`; llama.cpp (and `-a`) call it phi2.
            Some("phi") => "phi2",
            Some(t) => t,
            None => {
                return Err(ModelError::Unsupported(format!(
                    "{}: has no model_type",
                    config_path.display()
                )))
            }
        }
        .to_string();
        Ok(HfWeights {
            dir: dir.to_path_buf(),
            model: SafetensorsModel::open_dir(dir)?,
            config,
            arch,
            dtype: WeightDtype::Auto,
            stored_bytes: AtomicUsize::new(0),
        })
    }

    /// Stores the float matrices in `dtype` (`auto`: the checkpoint's types).
    pub fn with_dtype(mut self, dtype: WeightDtype) -> HfWeights {
        self.dtype = dtype;
        self
    }

    /// Bytes of the matrices loaded so far, as stored.
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes.load(Ordering::Relaxed)
    }

    /// A matrix as the model keeps it: converted to `dtype`, and counted.
    fn store(&self, ty: GgmlType, bytes: WeightBytes) -> Result<(GgmlType, WeightBytes)> {
        let (ty, bytes) = store_as(ty, bytes, self.dtype)?;
        self.stored_bytes
            .fetch_add(bytes.as_slice().len(), Ordering::Relaxed);
        Ok((ty, bytes))
    }

    /// `model_type` as our architecture id.
    pub fn architecture(&self) -> Result<String> {
        Ok(self.arch.clone())
    }

    /// Gemma checkpoints store norm weights as offsets from 1 (the GGUF converter adds it).
    fn norm_shift(&self, gguf: &str) -> f32 {
        let gemma = self.arch.starts_with("gemma");
        if gemma && gguf.ends_with("norm.weight") {
            1.0
        } else {
            0.0
        }
    }

    fn bad(&self, what: impl std::fmt::Display) -> ModelError {
        ModelError::Unsupported(format!("{}: config.json {what}", self.dir.display()))
    }

    fn usize_key(&self, key: &str) -> Result<Option<usize>> {
        match &self.config[key] {
            Value::Null => Ok(None),
            v => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.bad(format!("`{key}` is not a whole number"))),
        }
    }

    fn required(&self, key: &str) -> Result<usize> {
        self.usize_key(key)?
            .filter(|&v| v > 0)
            .ok_or_else(|| self.bad(format!("lacks `{key}`")))
    }

    /// The checkpoint's name for a GGUF tensor name.
    fn hf_name(&self, gguf: &str) -> Option<String> {
        let final_norm = if self.arch == "phi2" {
            "model.final_layernorm"
        } else {
            "model.norm"
        };
        match gguf {
            "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
            "output_norm.weight" => return Some(format!("{final_norm}.weight")),
            "output_norm.bias" => return Some(format!("{final_norm}.bias")),
            "output.weight" => return Some("lm_head.weight".into()),
            "output.bias" => return Some("lm_head.bias".into()),
            _ => {}
        }
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, rest) = rest.split_once('.')?;
        let (part, kind) = rest.rsplit_once('.')?;
        // Gemma 2/3 norm around both blocks: their `post_attention_layernorm` follows
        // attention, where Llama's (and Gemma 1's) is the MLP's pre-norm.
        let gemma = self.arch == "gemma2" || self.arch == "gemma3";
        let hf = match part {
            "attn_norm" => "input_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" if self.arch == "phi2" => "self_attn.dense",
            "attn_output" => "self_attn.o_proj",
            "ffn_up" if self.arch == "phi2" => "mlp.fc1",
            "ffn_down" if self.arch == "phi2" => "mlp.fc2",
            "ffn_up" if self.arch == "starcoder2" => "mlp.c_fc",
            "ffn_down" if self.arch == "starcoder2" => "mlp.c_proj",
            "attn_qkv" => "self_attn.qkv_proj",
            "ffn_up" if self.arch == "phi3" => "mlp.gate_up_proj",
            "attn_q_norm" => "self_attn.q_norm",
            "attn_k_norm" => "self_attn.k_norm",
            "post_attention_norm" if gemma => "post_attention_layernorm",
            "ffn_norm" if gemma => "pre_feedforward_layernorm",
            "post_ffw_norm" if gemma => "post_feedforward_layernorm",
            "ffn_norm" => "post_attention_layernorm",
            "ffn_gate_inp" if self.arch == "mixtral" || self.arch == "phimoe" => {
                "block_sparse_moe.gate"
            }
            "ffn_gate_inp" => "mlp.gate",
            // DeepSeek's low-rank attention and shared experts.
            "attn_q_a" => "self_attn.q_a_proj",
            "attn_q_a_norm" => "self_attn.q_a_layernorm",
            "attn_q_b" => "self_attn.q_b_proj",
            "attn_kv_a_mqa" => "self_attn.kv_a_proj_with_mqa",
            "attn_kv_a_norm" => "self_attn.kv_a_layernorm",
            "exp_probs_b" => {
                return Some(format!(
                    "model.layers.{layer}.mlp.gate.e_score_correction_bias"
                ))
            }
            "ffn_gate_shexp" => "mlp.shared_experts.gate_proj",
            "ffn_up_shexp" => "mlp.shared_experts.up_proj",
            "ffn_down_shexp" => "mlp.shared_experts.down_proj",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            _ => return None,
        };
        Some(format!("model.layers.{layer}.{hf}.{kind}"))
    }

    fn f64_key(&self, value: &Value, key: &str, default: Option<f64>) -> Result<f64> {
        match (&value[key], default) {
            (Value::Null, Some(d)) => Ok(d),
            (v, _) => v
                .as_f64()
                .ok_or_else(|| self.bad(format!("`{key}` is missing or not a number"))),
        }
    }

    /// `rope_scaling`: linear, Llama 3's frequency factors, YaRN, or LongRoPE.
    fn rope_scaling(&self, head_dim: usize, base: f32) -> Result<RopeScaling> {
        let s = &self.config["rope_scaling"];
        if s.is_null() {
            return Ok(RopeScaling::None);
        }
        let kind = s["rope_type"].as_str().or(s["type"].as_str()).unwrap_or("");
        let factor = self.f64_key(s, "factor", Some(1.0))?;
        Ok(match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: factor as f32,
            },
            "llama3" => RopeScaling::llama3_factors(
                head_dim,
                base,
                factor,
                self.f64_key(s, "low_freq_factor", None)?,
                self.f64_key(s, "high_freq_factor", None)?,
                self.f64_key(s, "original_max_position_embeddings", None)?,
            ),
            "yarn" => RopeScaling::Yarn {
                factor: factor as f32,
                original_context: self.f64_key(s, "original_max_position_embeddings", None)?
                    as usize,
                beta_fast: self.f64_key(s, "beta_fast", Some(32.0))? as f32,
                beta_slow: self.f64_key(s, "beta_slow", Some(1.0))? as f32,
                attn_factor: 1.0,
                // DeepSeek's; its `mscale` is taken equal to it, as llama.cpp does.
                log_multiplier: self.f64_key(s, "mscale_all_dim", Some(0.0))? as f32,
            },
            "longrope" | "su" => self.longrope(s, head_dim)?,
            _ => return Err(self.bad(format!("rope_scaling {s} is not supported yet"))),
        })
    }

    /// Phi 3's short and long factor lists; cos/sin scaled by `attention_factor`, or by
    /// √(1 + ln(scale) / ln(original)) for a context `scale` times the original (as both
    /// transformers and llama.cpp's converter compute it).
    fn longrope(&self, s: &Value, head_dim: usize) -> Result<RopeScaling> {
        let factors = |key: &str| -> Result<Vec<f32>> {
            let list = s[key]
                .as_array()
                .ok_or_else(|| self.bad(format!("rope_scaling lacks the list `{key}`")))?;
            let values = list
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| self.bad(format!("rope_scaling.{key} holds a non-number")))?;
            if values.len() != head_dim / 2 {
                return Err(self.bad(format!(
                    "rope_scaling.{key} has {} factors, expected {}",
                    values.len(),
                    head_dim / 2
                )));
            }
            Ok(values)
        };
        let original = match self.usize_key("original_max_position_embeddings")? {
            Some(o) => o,
            None => self.f64_key(s, "original_max_position_embeddings", None)? as usize,
        };
        let max = self
            .usize_key("max_position_embeddings")?
            .unwrap_or(original);
        let scale = max as f64 / original.max(1) as f64;
        // Phi 3.5 MoE names it `long_mscale` (equal to `short_mscale` in its checkpoints).
        let attn_factor = match s["attention_factor"].as_f64().or(s["long_mscale"].as_f64()) {
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

    /// The checkpoint's name of expert `e`'s matrix for a GGUF expert tensor name
    /// (`blk.N.ffn_gate_exps.weight`).
    fn expert_hf_name(&self, gguf: &str, e: usize) -> Option<String> {
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, rest) = rest.split_once('.')?;
        let part = rest.strip_suffix(".weight")?;
        // Phi 3.5 MoE names its experts as Mixtral does.
        let mixtral = self.arch == "mixtral" || self.arch == "phimoe";
        let hf = match part {
            "ffn_gate_exps" if mixtral => "w1",
            "ffn_down_exps" if mixtral => "w2",
            "ffn_up_exps" if mixtral => "w3",
            "ffn_gate_exps" => "gate_proj",
            "ffn_up_exps" => "up_proj",
            "ffn_down_exps" => "down_proj",
            _ => return None,
        };
        let block = if mixtral { "block_sparse_moe" } else { "mlp" };
        Some(format!(
            "model.layers.{layer}.{block}.experts.{e}.{hf}.weight"
        ))
    }

    /// A float matrix `[rows, cols]` (PyTorch order), in place.
    fn matrix(&self, gguf: &str, rows: usize, cols: usize) -> Result<(GgmlType, WeightBytes)> {
        let name = self
            .hf_name(gguf)
            .ok_or_else(|| self.bad(format!("cannot map tensor `{gguf}`")))?;
        self.matrix_named(&name, rows, cols)
    }

    fn matrix_named(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<(GgmlType, WeightBytes)> {
        let (file, info) = self.model.tensor(name).ok_or_else(|| {
            ModelError::Unsupported(format!("{}: missing tensor `{name}`", self.dir.display()))
        })?;
        let ty = match info.dtype {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::BF16,
            other => {
                return Err(ModelError::Unsupported(format!(
                    "{}: tensor `{name}` is {other}; only F32, F16 and BF16 checkpoints load",
                    file.path().display()
                )))
            }
        };
        if info.shape != [rows as u64, cols as u64] {
            return Err(ModelError::Unsupported(format!(
                "{}: tensor `{name}` has shape {:?}, expected [{rows}, {cols}]",
                file.path().display(),
                info.shape
            )));
        }
        let bytes = WeightBytes::Mapped {
            file: Arc::clone(file.file_bytes()),
            offset: (file.data_start() + info.data_offsets.0) as usize,
            len: info.size_bytes() as usize,
        };
        Ok((ty, bytes))
    }
}

impl Weights for HfWeights {
    fn source(&self) -> String {
        self.dir.display().to_string()
    }

    fn has(&self, name: &str) -> bool {
        self.hf_name(name)
            .is_some_and(|n| self.model.tensor(&n).is_some())
    }

    fn linear(&self, name: &str, in_features: usize, out_features: usize) -> Result<Linear> {
        let (ty, bytes) = self.matrix(name, out_features, in_features)?;
        let (ty, bytes) = self.store(ty, bytes)?;
        Ok(Linear::new(ty, out_features, in_features, bytes)?)
    }

    fn linear_rows(
        &self,
        name: &str,
        in_features: usize,
        total_rows: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Linear> {
        let (ty, bytes) = self.matrix(name, total_rows, in_features)?;
        let n = rows.len();
        let bytes = crate::weights::row_slice(bytes, ty, in_features, rows);
        let (ty, bytes) = self.store(ty, bytes)?;
        Ok(Linear::new(ty, n, in_features, bytes)?)
    }

    fn embedding(&self, name: &str, dim: usize, vocab: usize) -> Result<Embedding> {
        let (ty, bytes) = self.matrix(name, vocab, dim)?;
        let (ty, bytes) = self.store(ty, bytes)?;
        Ok(Embedding::new(ty, vocab, dim, bytes)?)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let hf = self
            .hf_name(name)
            .ok_or_else(|| self.bad(format!("cannot map tensor `{name}`")))?;
        let mut values = self.model.to_f32(&hf)?;
        let shift = self.norm_shift(name);
        if shift != 0.0 {
            values.iter_mut().for_each(|v| *v += shift);
        }
        if values.len() != len {
            return Err(ModelError::Unsupported(format!(
                "{}: tensor `{hf}` has {} values, expected {len}",
                self.dir.display(),
                values.len()
            )));
        }
        Ok(values)
    }

    /// Checkpoints in this layout rotate halves (NeoX) whatever the architecture does in GGUF.
    fn config(&self, _gguf_rope_style: RopeStyle) -> Result<ModelConfig> {
        let hidden_size = self.required("hidden_size")?;
        let n_heads = self.required("num_attention_heads")?;
        let head_dim = self.usize_key("head_dim")?.unwrap_or(hidden_size / n_heads);
        // Phi 2 rotates the first 40 % of each head.
        let rope_dims = match self.config["partial_rotary_factor"].as_f64() {
            Some(f) if f > 0.0 && f <= 1.0 => ((head_dim as f64 * f) as usize) & !1,
            Some(f) => return Err(self.bad(format!("partial_rotary_factor {f} is not in (0, 1]"))),
            None => head_dim,
        };
        let rope_base = self.config["rope_theta"].as_f64().unwrap_or(10_000.0) as f32;
        let rope_scaling = self.rope_scaling(head_dim, rope_base)?;
        Ok(ModelConfig {
            architecture: self.architecture()?,
            vocab_size: self.required("vocab_size")?,
            hidden_size,
            n_layers: self.required("num_hidden_layers")?,
            n_heads,
            n_kv_heads: self.usize_key("num_key_value_heads")?.unwrap_or(n_heads),
            head_dim,
            intermediate_size: self.required("intermediate_size")?,
            rms_norm_eps: self.config["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
            rope_base,
            rope_dims,
            rope_style: RopeStyle::Neox,
            rope_scaling,
            context_length: self.usize_key("max_position_embeddings")?.unwrap_or(2048),
        })
    }

    fn sliding_window(&self) -> Result<Option<usize>> {
        // Qwen 2 and 3 name a window but use it only with `use_sliding_window` (off in every
        // released checkpoint), and then only above `max_window_layers`.
        if self.arch.starts_with("qwen") {
            if self.config["use_sliding_window"].as_bool() == Some(true) {
                return Err(self.bad(format!(
                    "use_sliding_window is not supported for {}",
                    self.arch
                )));
            }
            return Ok(None);
        }
        self.usize_key("sliding_window")
    }

    /// Mixtral's `num_local_experts`, Qwen 3 MoE's `num_experts`, DeepSeek's
    /// `n_routed_experts` (with its scoring function, scale and expert groups). Every layer is
    /// sparse, except DeepSeek's `first_k_dense_replace` leading ones (its loader reads that).
    fn moe(&self) -> Result<Option<crate::layers::MoeConfig>> {
        use crate::layers::moe::{Gating, GroupScore};
        let Some(n_experts) = self
            .usize_key("num_local_experts")?
            .or(self.usize_key("num_experts")?)
            .or(self.usize_key("n_routed_experts")?)
            .filter(|&n| n > 0)
        else {
            return Ok(None);
        };
        let dense_layers = self.config["mlp_only_layers"]
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
        let expert_ff = match self.usize_key("moe_intermediate_size")? {
            Some(f) => f,
            None => self.required("intermediate_size")?,
        };
        // Mixtral (and Phi 3.5 MoE as llama.cpp computes it) always renormalises; Qwen 3 MoE
        // and DeepSeek say so when they do.
        let norm_topk = self.config["norm_topk_prob"]
            .as_bool()
            .unwrap_or(self.arch == "mixtral" || self.arch == "phimoe");
        let gating = match self.config["scoring_func"].as_str() {
            None | Some("softmax") => Gating::Softmax,
            Some("sigmoid") => Gating::Sigmoid,
            Some(other) => return Err(self.bad(format!("scoring_func `{other}` is not supported"))),
        };
        let score = match self.config["topk_method"].as_str() {
            None | Some("greedy") | Some("group_limited_greedy") => GroupScore::Max,
            Some("noaux_tc") => GroupScore::TopTwoSum,
            Some(other) => return Err(self.bad(format!("topk_method `{other}` is not supported"))),
        };
        let greedy = self.config["topk_method"].as_str() == Some("greedy");
        let source = self.source();
        let cfg = crate::layers::MoeConfig {
            gating,
            scale: self.hparam_f32("routed_scaling_factor")?.unwrap_or(1.0),
            ..crate::layers::MoeConfig::checked(
                n_experts,
                self.usize_key("num_experts_per_tok")?.unwrap_or(0),
                expert_ff,
                norm_topk,
                &source,
            )?
        };
        if greedy {
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

    fn expert_linears(
        &self,
        name: &str,
        n_experts: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Vec<Linear>> {
        (0..n_experts)
            .map(|e| {
                let hf = self
                    .expert_hf_name(name, e)
                    .ok_or_else(|| self.bad(format!("cannot map tensor `{name}`")))?;
                let (ty, bytes) = self.matrix_named(&hf, out_features, in_features)?;
                let (ty, bytes) = self.store(ty, bytes)?;
                Ok(Linear::new(ty, out_features, in_features, bytes)?)
            })
            .collect()
    }

    /// `kv_b_proj` is `[n_heads · (nope + v_dim), rank]`: each head's key rows, then its value
    /// rows. Value rows are used in place; key rows are transposed element by element (exact
    /// in any float type), as llama.cpp's converter does.
    fn mla_kv_b(
        &self,
        layer: usize,
        n_heads: usize,
        nope: usize,
        v_dim: usize,
        rank: usize,
    ) -> Result<(Vec<Linear>, Vec<Linear>)> {
        let name = format!("model.layers.{layer}.self_attn.kv_b_proj.weight");
        let (ty, bytes) = self.matrix_named(&name, n_heads * (nope + v_dim), rank)?;
        let elem = ty.bytes_for(1).unwrap_or(4) as usize;
        let (mut k_b, mut v_b) = (Vec::with_capacity(n_heads), Vec::with_capacity(n_heads));
        for h in 0..n_heads {
            let first = h * (nope + v_dim);
            let keys = crate::weights::row_slice(bytes.clone(), ty, rank, first..first + nope);
            let keys = keys.as_slice();
            let mut transposed = vec![0u8; keys.len()];
            for c in 0..nope {
                for r in 0..rank {
                    let (from, to) = ((c * rank + r) * elem, (r * nope + c) * elem);
                    transposed[to..to + elem].copy_from_slice(&keys[from..from + elem]);
                }
            }
            let (k_ty, keys) = self.store(ty, WeightBytes::Owned(Arc::new(transposed)))?;
            k_b.push(Linear::new(k_ty, rank, nope, keys)?);
            let values = crate::weights::row_slice(
                bytes.clone(),
                ty,
                rank,
                first + nope..first + nope + v_dim,
            );
            let (v_ty, values) = self.store(ty, values)?;
            v_b.push(Linear::new(v_ty, v_dim, rank, values)?);
        }
        Ok((k_b, v_b))
    }

    fn hparam_f32(&self, name: &str) -> Result<Option<f32>> {
        match &self.config[name] {
            Value::Null => Ok(None),
            v => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| self.bad(format!("`{name}` is not a number"))),
        }
    }

    fn sliding_layers(&self) -> Result<Option<Vec<bool>>> {
        match &self.config["layer_types"] {
            Value::Null => Ok(None),
            Value::Array(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => Err(self.bad(format!("layer type {t} is not known"))),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            other => Err(self.bad(format!("layer_types {other} is not a list"))),
        }
    }
}
