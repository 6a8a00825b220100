//! Named tensors as layers (`Linear`, `Embedding`, f32 vectors), from a GGUF file or a Hugging
//! Face folder. Models ask for tensors by their GGUF names; each source maps them. Each source
//! remembers which of its tensors were read, so that a file whose tensors an architecture would
//! ignore (another architecture's, or a variant this build does not run) is refused.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use mistralrs_quant::formats::dequantize;
use mistralrs_quant::gguf::{GgufFile, GgufTensorInfo};

use crate::layers::{Embedding, Linear, WeightBytes};
use crate::model_error::{ModelError, Result};

/// Whether an architecture reads a tensor (a bias, a norm) that files may or may not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Read; a file without it is refused, naming the tensor.
    Required,
    /// Not read: a file that has it is refused, as every tensor no loader reads is.
    Absent,
    /// Read when present (as llama.cpp reads Q/K/V biases of Llama files).
    Optional,
}

impl Need {
    /// `Required` when `flag` is true, `Absent` when false, else `default` (a config flag such
    /// as `attention_bias` decides when the source has it).
    pub fn from_flag(flag: Option<bool>, default: Need) -> Need {
        match flag {
            Some(true) => Need::Required,
            Some(false) => Need::Absent,
            None => default,
        }
    }
}

/// The names a source has read, to find the tensors nothing read.
#[derive(Default)]
pub(crate) struct ReadTensors {
    read: RefCell<HashSet<String>>,
    /// Layers from this index on are deliberately skipped (DeepSeek's multi-token prediction
    /// layers, which follow the decoder's own).
    skip_layers_from: RefCell<Option<usize>>,
}

impl ReadTensors {
    pub fn mark(&self, name: &str) {
        self.read.borrow_mut().insert(name.to_string());
    }

    pub fn skip_layers_from(&self, layer: usize) {
        *self.skip_layers_from.borrow_mut() = Some(layer);
    }

    /// `names` that were neither read nor in a skipped layer (`layer_of` finds a name's layer).
    pub fn unused<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        layer_of: impl Fn(&str) -> Option<usize>,
    ) -> Vec<String> {
        let read = self.read.borrow();
        let skip = *self.skip_layers_from.borrow();
        names
            .filter(|n| !read.contains(*n))
            .filter(|n| !matches!((skip, layer_of(n)), (Some(first), Some(l)) if l >= first))
            .map(str::to_string)
            .collect()
    }
}

/// The layer index of `<prefix>N.` names (`blk.N.`, `model.layers.N.`).
pub(crate) fn layer_index(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.split('.').next()?.parse().ok()
}

/// A GGUF's `<arch>.expert_gating_func` as llama.cpp takes it: 1 softmax, 2 sigmoid. Files
/// without the key are softmax, except `deepseek2` files shaped as GLM-4.7-Flash (47 or 48
/// decoder layers over a 154880-token vocabulary), whose converter wrote none: sigmoid.
pub(crate) fn gguf_expert_gating(file: &GgufFile, arch: &str) -> Result<u32> {
    // 0 is llama.cpp's "none": the file does not say.
    if let Some(f) = file
        .get_u32_opt(&format!("{arch}.expert_gating_func"))?
        .filter(|&f| f != 0)
    {
        return Ok(f);
    }
    if arch == "deepseek2" {
        let blocks = file.get_u32_opt("deepseek2.block_count")?.unwrap_or(0);
        let mtp = file
            .get_u32_opt("deepseek2.nextn_predict_layers")?
            .unwrap_or(0);
        let vocab = match file.get_u32_opt("deepseek2.vocab_size")? {
            Some(v) => Some(v as usize),
            None if file.contains_key("tokenizer.ggml.tokens") => {
                Some(file.get_array("tokenizer.ggml.tokens")?.len())
            }
            None => None,
        };
        if matches!(blocks.saturating_sub(mtp), 47 | 48) && vocab == Some(154_880) {
            return Ok(2);
        }
    }
    Ok(1)
}

/// What a model's loader reads: tensors by GGUF name, and the config.
pub trait Weights {
    /// The file or folder, for messages.
    fn source(&self) -> String;
    fn has(&self, name: &str) -> bool;
    /// A `[out, in]` linear layer.
    fn linear(&self, name: &str, in_features: usize, out_features: usize) -> Result<Linear>;
    /// Rows `rows` of a `[total_rows, in]` matrix as a linear layer of their own (the parts of
    /// a fused projection, e.g. Phi 3's QKV).
    fn linear_rows(
        &self,
        name: &str,
        in_features: usize,
        total_rows: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Linear>;
    fn embedding(&self, name: &str, dim: usize, vocab: usize) -> Result<Embedding>;
    /// A vector (norm weights, biases) as f32.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>>;
    /// The config; `rope_style` is the rotation the architecture uses on GGUF weights
    /// (checkpoints in Hugging Face layout always rotate halves).
    fn config(
        &self,
        rope_style: crate::layers::RopeStyle,
    ) -> Result<crate::model_config::ModelConfig>;
    /// Tokens a sliding-window layer sees, when the model has such layers.
    fn sliding_window(&self) -> Result<Option<usize>>;
    /// A float hyperparameter: `<arch>.<name>` in a GGUF, `name` in `config.json`.
    fn hparam_f32(&self, name: &str) -> Result<Option<f32>>;
    /// An integer hyperparameter, likewise.
    fn hparam_u32(&self, name: &str) -> Result<Option<u32>> {
        Ok(self
            .hparam_f32(name)?
            .filter(|v| *v >= 0.0)
            .map(|v| v as u32))
    }
    /// Which layers use the sliding window, when the source says so layer by layer.
    fn sliding_layers(&self) -> Result<Option<Vec<bool>>> {
        Ok(None)
    }
    /// LayerNorm's epsilon (GPT-style models): `<arch>.attention.layer_norm_epsilon` in a
    /// GGUF; `layer_norm_eps` (Phi) or `norm_epsilon` (Starcoder 2) in `config.json`.
    fn layer_norm_eps(&self) -> Result<f32> {
        for key in [
            "attention.layer_norm_epsilon",
            "layer_norm_eps",
            "norm_epsilon",
            "layer_norm_epsilon",
        ] {
            if let Some(eps) = self.hparam_f32(key)? {
                if !(eps.is_finite() && eps > 0.0) {
                    return Err(ModelError::Unsupported(format!(
                        "{}: the LayerNorm epsilon `{key}` is {eps}; it must be a positive number (it divides)",
                        self.source()
                    )));
                }
                return Ok(eps);
            }
        }
        Ok(1e-5)
    }
    /// The mixture-of-experts router's configuration, for sparse models.
    fn moe(&self) -> Result<Option<crate::layers::MoeConfig>> {
        Ok(None)
    }
    /// The `n_experts` matrices `[out, in]` of one kind in a layer (`blk.N.ffn_gate_exps`,
    /// `ffn_up_exps`, `ffn_down_exps`): one 3-D tensor in a GGUF, one tensor per expert in a
    /// checkpoint.
    fn expert_linears(
        &self,
        name: &str,
        n_experts: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Vec<Linear>>;

    /// One vector of `len` per expert from a `[n_experts, len]` tensor (gpt-oss's expert
    /// biases, `blk.N.ffn_{gate,up,down}_exps.bias`).
    fn expert_vectors(&self, name: &str, n_experts: usize, len: usize) -> Result<Vec<Vec<f32>>> {
        let all = self.vector_2d(name, n_experts, len)?;
        Ok(all.chunks_exact(len).map(<[f32]>::to_vec).collect())
    }

    /// A small `[rows, cols]` tensor as f32, row-major (biases of stacked experts).
    fn vector_2d(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>>;

    /// DeepSeek's decompression of the latent KV, split for absorbed attention, per head:
    /// `k_b` (`[kv_lora_rank, nope]`, a query's unrotated part into the latent space) and
    /// `v_b` (`[v_dim, kv_lora_rank]`, the latent attention output back to a value head). A
    /// GGUF holds them as 3-D `blk.N.attn_k_b` / `attn_v_b`; a checkpoint as `kv_b_proj`,
    /// whose key rows are transposed here.
    fn mla_kv_b(
        &self,
        layer: usize,
        n_heads: usize,
        nope: usize,
        v_dim: usize,
        rank: usize,
    ) -> Result<(Vec<Linear>, Vec<Linear>)>;

    fn vector_opt(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A vector the architecture needs as `need` says: `None` when absent from the file and
    /// optional, or not wanted at all.
    fn vector_as(&self, name: &str, len: usize, need: Need) -> Result<Option<Vec<f32>>> {
        match need {
            Need::Required => self.vector(name, len).map(Some),
            Need::Optional => self.vector_opt(name, len),
            Need::Absent => Ok(None),
        }
    }

    /// The RoPE base of sliding-window layers when the model gives them their own (Gemma 3):
    /// `<arch>.rope.freq_base_swa` in a GGUF, the local layers' `rope_theta` in `config.json`.
    fn local_rope_base(&self) -> Result<Option<f32>> {
        Ok(None)
    }

    /// A boolean hyperparameter (`attention_bias`), likewise.
    fn hparam_bool(&self, _name: &str) -> Result<Option<bool>> {
        Ok(None)
    }

    /// How many leading layers of a sparse model are dense: `<arch>.leading_dense_block_count`
    /// in a GGUF; `first_k_dense_replace`, or the leading `dense` entries of `mlp_layer_types`
    /// (GLM-4.7-Flash), in `config.json`.
    fn leading_dense_layers(&self) -> Result<Option<usize>> {
        Ok(self
            .hparam_u32("leading_dense_block_count")?
            .map(|n| n as usize))
    }

    /// A list of whole numbers from `config.json` (SmolLM3's `no_rope_layers`); GGUF files
    /// carry none of those read here.
    fn hparam_list(&self, _name: &str) -> Result<Option<Vec<usize>>> {
        Ok(None)
    }

    /// A string hyperparameter from `config.json` (Granite's `position_embedding_type`);
    /// GGUF files carry none of those read here.
    fn hparam_str(&self, _name: &str) -> Result<Option<String>> {
        Ok(None)
    }

    /// Which of a hybrid model's `n_layers` layers attend (the others are recurrent: short
    /// convolutions, state-space or linear attention): a GGUF's `attention.recurrent_layers`
    /// (its first `n_layers`: multi-token-prediction layers may follow) or per-layer
    /// `attention.head_count_kv` (0 for a recurrent layer, as llama.cpp reads it), a
    /// checkpoint's `layer_types` (or `full_attn_idxs`). None when the source says nothing.
    fn attention_layers(&self, _n_layers: usize) -> Result<Option<Vec<bool>>> {
        Ok(None)
    }

    /// Tensors of the source that nothing has read so far (after loading: what the
    /// architecture would ignore), by the source's own names.
    fn unused_tensors(&self) -> Vec<String>;

    /// Marks the tensors of layers `first..` as deliberately not read.
    fn skip_layers_from(&self, first: usize);
}

/// Rows `rows` of a matrix whose rows hold `in_features` elements of `ty`, in place.
pub(crate) fn row_slice(
    bytes: WeightBytes,
    ty: mistralrs_quant::GgmlType,
    in_features: usize,
    rows: std::ops::Range<usize>,
) -> WeightBytes {
    let row_bytes = ty.bytes_for(in_features as u64).unwrap_or(0) as usize;
    match bytes {
        WeightBytes::Mapped { file, offset, .. } => WeightBytes::Mapped {
            file,
            offset: offset + rows.start * row_bytes,
            len: rows.len() * row_bytes,
        },
        WeightBytes::Owned(v) => WeightBytes::Owned(std::sync::Arc::new(
            v[rows.start * row_bytes..rows.end * row_bytes].to_vec(),
        )),
    }
}

pub struct GgufWeights {
    file: Arc<GgufFile>,
    /// The registry's id of the architecture being loaded (which may be more specific than
    /// the file's `general.architecture`: `mixtral` for `llama` with experts).
    arch: &'static str,
    read: ReadTensors,
}

impl GgufWeights {
    pub fn new(file: Arc<GgufFile>, arch: &'static str) -> GgufWeights {
        GgufWeights {
            file,
            arch,
            read: ReadTensors::default(),
        }
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    fn info(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.read.mark(name);
        self.file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor {
                source: self.source(),
                name: name.to_string(),
            })
    }

    fn bytes(&self, info: &GgufTensorInfo) -> WeightBytes {
        let (file, offset) = self.file.tensor_location(info);
        WeightBytes::Mapped {
            file: Arc::clone(file),
            offset: offset as usize,
            len: info.size_bytes as usize,
        }
    }

    /// Checks a tensor's shape (ggml order: `[in, out]` for a matrix).
    fn expect_dims(&self, info: &GgufTensorInfo, dims: &[usize]) -> Result<()> {
        let got: Vec<usize> = info.dims.iter().map(|&d| d as usize).collect();
        if got != dims {
            return Err(ModelError::Unsupported(format!(
                "{}: tensor `{}` has shape {got:?}, expected {dims:?}",
                self.file.path().display(),
                info.name
            )));
        }
        Ok(())
    }
}

impl Weights for GgufWeights {
    fn source(&self) -> String {
        self.file.path().display().to_string()
    }

    fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    fn config(
        &self,
        rope_style: crate::layers::RopeStyle,
    ) -> Result<crate::model_config::ModelConfig> {
        let cfg = crate::model_config::ModelConfig::from_gguf(&self.file, rope_style)?;
        Ok(crate::model_config::ModelConfig {
            architecture: self.arch.to_string(),
            ..cfg
        })
    }

    fn local_rope_base(&self) -> Result<Option<f32>> {
        let arch = self.file.get_string("general.architecture")?;
        crate::model_config::positive(
            &self.source(),
            &format!("{arch}.rope.freq_base_swa"),
            crate::model_config::arch_f32(&self.file, arch, "rope.freq_base_swa")?,
        )
    }

    fn hparam_f32(&self, name: &str) -> Result<Option<f32>> {
        let arch = self.file.get_string("general.architecture")?;
        crate::model_config::arch_f32(&self.file, arch, name)
    }

    fn hparam_u32(&self, name: &str) -> Result<Option<u32>> {
        let arch = self.file.get_string("general.architecture")?;
        crate::model_config::arch_u32(&self.file, arch, name)
    }

    fn hparam_bool(&self, name: &str) -> Result<Option<bool>> {
        let arch = self.file.get_string("general.architecture")?;
        Ok(self.file.get_bool_opt(&format!("{arch}.{name}"))?)
    }

    fn attention_layers(&self, n_layers: usize) -> Result<Option<Vec<bool>>> {
        use mistralrs_quant::gguf::{GgufArray, GgufValue};
        let arch = self.file.get_string("general.architecture")?;
        let key = format!("{arch}.attention.recurrent_layers");
        if let Some(value) = self.file.get(&key) {
            let GgufValue::Array(GgufArray::Bool(recurrent)) = value else {
                return Err(ModelError::Unsupported(format!(
                    "{}: `{key}` is not an array of booleans",
                    self.source()
                )));
            };
            if recurrent.len() < n_layers {
                return Err(ModelError::Unsupported(format!(
                    "{}: `{key}` has {} entries for {n_layers} layers",
                    self.source(),
                    recurrent.len()
                )));
            }
            return Ok(Some(recurrent[..n_layers].iter().map(|r| !r).collect()));
        }
        let key = format!("{arch}.attention.head_count_kv");
        Ok(
            crate::model_config::per_layer_u32(&self.file, &key, n_layers)?
                .map(|heads| heads.iter().map(|&h| h > 0).collect()),
        )
    }

    fn unused_tensors(&self) -> Vec<String> {
        self.read
            .unused(self.file.tensors().iter().map(|t| t.name.as_str()), |n| {
                layer_index(n, "blk.")
            })
    }

    fn skip_layers_from(&self, first: usize) {
        self.read.skip_layers_from(first);
    }

    /// `<arch>.expert_count` and friends. llama.cpp renormalises the chosen weights by default
    /// for every architecture read here (Mixtral as `llama`, Qwen 3 MoE) except DeepSeek's,
    /// whose files say so when they do.
    fn moe(&self) -> Result<Option<crate::layers::MoeConfig>> {
        use crate::layers::moe::{Gating, GroupScore};
        let arch = self.file.get_string("general.architecture")?;
        let key = |k: &str| crate::model_config::arch_u32(&self.file, arch, k);
        let Some(n_experts) = key("expert_count")?.filter(|&n| n > 0) else {
            return Ok(None);
        };
        let n_used = key("expert_used_count")?.unwrap_or(0) as usize;
        let expert_ff = match key("expert_feed_forward_length")? {
            Some(f) => f,
            None => key("feed_forward_length")?.unwrap_or(0),
        } as usize;
        let norm_topk = self
            .file
            .get_bool_opt(&format!("{arch}.expert_weights_norm"))?
            .unwrap_or(arch != "deepseek2");
        let source = self.source();
        let gating = match gguf_expert_gating(&self.file, arch)? {
            0 | 1 => Gating::Softmax,
            2 => Gating::Sigmoid,
            other => {
                return Err(ModelError::Unsupported(format!(
                    "{source}: expert gating function {other} is not supported"
                )))
            }
        };
        // Group scores as each model's reference computes them (llama.cpp sums the top two
        // for every model; DeepSeek V2, the softmax-gated one, takes the best expert).
        let score = match gating {
            Gating::Softmax | Gating::SoftmaxWeight => GroupScore::Max,
            Gating::Sigmoid => GroupScore::TopTwoSum,
        };
        let cfg = crate::layers::MoeConfig {
            gating,
            scale: crate::model_config::positive(
                &source,
                &format!("{arch}.expert_weights_scale"),
                self.hparam_f32("expert_weights_scale")?,
            )?
            .unwrap_or(1.0),
            ..crate::layers::MoeConfig::checked(
                n_experts as usize,
                n_used,
                expert_ff,
                norm_topk,
                &source,
            )?
        };
        cfg.with_groups(
            key("expert_group_count")?.unwrap_or(0) as usize,
            key("expert_group_used_count")?.unwrap_or(0) as usize,
            score,
            &source,
        )
        .map(Some)
    }

    /// One `[in, out, n_experts]` tensor, cut into each expert's rows.
    fn expert_linears(
        &self,
        name: &str,
        n_experts: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Vec<Linear>> {
        let info = self.info(name)?;
        self.expect_dims(info, &[in_features, out_features, n_experts])?;
        (0..n_experts)
            .map(|e| {
                let rows = e * out_features..(e + 1) * out_features;
                Ok(Linear::new(
                    info.ty,
                    out_features,
                    in_features,
                    row_slice(self.bytes(info), info.ty, in_features, rows),
                )?)
            })
            .collect()
    }

    fn mla_kv_b(
        &self,
        layer: usize,
        n_heads: usize,
        nope: usize,
        v_dim: usize,
        rank: usize,
    ) -> Result<(Vec<Linear>, Vec<Linear>)> {
        let k_b = format!("blk.{layer}.attn_k_b.weight");
        if !self.has(&k_b) && self.has(&format!("blk.{layer}.attn_kv_b.weight")) {
            return Err(ModelError::Unsupported(format!(
                "{}: an older DeepSeek conversion (one `attn_kv_b` matrix, before llama.cpp split it into `attn_k_b` and `attn_v_b`); convert the model again",
                self.source()
            )));
        }
        Ok((
            self.expert_linears(&k_b, n_heads, nope, rank)?,
            self.expert_linears(
                &format!("blk.{layer}.attn_v_b.weight"),
                n_heads,
                rank,
                v_dim,
            )?,
        ))
    }

    fn sliding_window(&self) -> Result<Option<usize>> {
        let arch = self.file.get_string("general.architecture")?;
        match crate::model_config::arch_u32(&self.file, arch, "attention.sliding_window")? {
            Some(0) => Err(ModelError::Unsupported(format!(
                "{}: `{arch}.attention.sliding_window` is 0; a window must hold at least one token",
                self.source()
            ))),
            w => Ok(w.map(|v| v as usize)),
        }
    }

    /// Stored `[in, out]` in ggml order.
    fn linear(&self, name: &str, in_features: usize, out_features: usize) -> Result<Linear> {
        let info = self.info(name)?;
        // A single row may be stored 1-D (Qwen 3 Next's shared-expert gate), as ggml reads it.
        if !(out_features == 1 && info.dims.len() == 1) {
            self.expect_dims(info, &[in_features, out_features])?;
        } else {
            self.expect_dims(info, &[in_features])?;
        }
        Ok(Linear::new(
            info.ty,
            out_features,
            in_features,
            self.bytes(info),
        )?)
    }

    fn linear_rows(
        &self,
        name: &str,
        in_features: usize,
        total_rows: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Linear> {
        let info = self.info(name)?;
        self.expect_dims(info, &[in_features, total_rows])?;
        Ok(Linear::new(
            info.ty,
            rows.len(),
            in_features,
            row_slice(self.bytes(info), info.ty, in_features, rows),
        )?)
    }

    fn embedding(&self, name: &str, dim: usize, vocab: usize) -> Result<Embedding> {
        let info = self.info(name)?;
        self.expect_dims(info, &[dim, vocab])?;
        Ok(Embedding::new(info.ty, vocab, dim, self.bytes(info))?)
    }

    fn vector_2d(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        self.expect_dims(info, &[cols, rows])?;
        let mut out = vec![0f32; rows * cols];
        dequantize(info.ty, self.file.tensor_data(info), &mut out)?;
        Ok(out)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        self.expect_dims(info, &[len])?;
        let mut out = vec![0f32; len];
        dequantize(info.ty, self.file.tensor_data(info), &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mistralrs_quant::gguf::{GgufFile, GgufWriter};

    use super::gguf_expert_gating;

    fn file(meta: &[(&str, u32)]) -> GgufFile {
        let mut w = GgufWriter::new();
        for &(k, v) in meta {
            w.add_metadata(k, v).expect("metadata");
        }
        GgufFile::from_bytes(Path::new("test.gguf"), w.to_bytes()).expect("parse")
    }

    #[test]
    fn expert_gating_is_the_files_or_told_by_shape_as_llama_cpp_does() {
        let glm_flash = [
            ("deepseek2.block_count", 48),
            ("deepseek2.nextn_predict_layers", 1),
            ("deepseek2.vocab_size", 154_880),
        ];
        assert_eq!(
            gguf_expert_gating(&file(&glm_flash), "deepseek2").ok(),
            Some(2)
        );
        let mut said = glm_flash.to_vec();
        said.push(("deepseek2.expert_gating_func", 1));
        assert_eq!(gguf_expert_gating(&file(&said), "deepseek2").ok(), Some(1));
        said.pop();
        said.push(("deepseek2.expert_gating_func", 0));
        assert_eq!(gguf_expert_gating(&file(&said), "deepseek2").ok(), Some(2));
        // DeepSeek V2 (27 layers, another vocabulary): softmax.
        let v2 = [
            ("deepseek2.block_count", 27),
            ("deepseek2.vocab_size", 102_400),
        ];
        assert_eq!(gguf_expert_gating(&file(&v2), "deepseek2").ok(), Some(1));
        // The shape rule is deepseek2's only.
        assert_eq!(
            gguf_expert_gating(&file(&[("glm4moe.block_count", 47)]), "glm4moe").ok(),
            Some(1)
        );
    }
}
