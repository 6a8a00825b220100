//! A Hugging Face model folder (`config.json` + safetensors) as a weight source: GGUF tensor
//! names map onto the checkpoint's names through the architecture's own table
//! ([`HfCheckpoint`], declared in its `models/<id>.rs`), `config.json` onto `ModelConfig`
//! ([`crate::hf_config`]). Float tensors (F32, F16, BF16) are used in place in the mapped
//! shards, or stored in the type `--dtype` asks for (`weights_dtype`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mistralrs_quant::safetensors::{Dtype, SafetensorsModel};
use mistralrs_quant::GgmlType;

use crate::hf_config::{HfConfig, HfDefaults};
use crate::layers::{Embedding, Linear, RopeStyle, WeightBytes};
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::weights::{layer_index, ReadTensors, Weights};
use crate::weights_dtype::{store_as, WeightDtype};

/// How one architecture's checkpoint names and stores the tensors its loader asks for by GGUF
/// name, and what its `config.json` leaves to the class defaults.
pub struct HfCheckpoint {
    /// Whole-model tensors by GGUF stem (`token_embd` → `model.embed_tokens`); the kind
    /// (`.weight`, `.bias`) carries over.
    pub globals: &'static [(&'static str, &'static str)],
    /// Per-layer tensors: `blk.N.<part>.<kind>` → `model.layers.N.<name>.<kind>`. Tables are
    /// searched in order (an architecture's own before the family's it shares); an entry
    /// whose part includes the kind (`exp_probs_b.bias`) maps to a whole name.
    pub layer_parts: &'static [&'static [(&'static str, &'static str)]],
    /// Each expert's matrices (`blk.N.ffn_{gate,up,down}_exps`), one tensor per expert.
    pub experts: Option<HfExperts>,
    /// Added to norm weights (Gemma stores them as offsets from 1; the GGUF converter adds it).
    pub norm_offset: f32,
    pub defaults: HfDefaults,
}

/// `model.layers.N.<block>.experts.E.<gate|up|down>.weight`.
pub struct HfExperts {
    pub block: &'static str,
    /// Names of the gate, up and down matrices.
    pub names: [&'static str; 3],
}

/// The final norm and the head, as most decoders name them.
pub const DECODER_GLOBALS: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

pub struct HfWeights {
    dir: PathBuf,
    model: SafetensorsModel,
    config: HfConfig,
    /// The architecture id (`model_type` as the registry spells it).
    arch: &'static str,
    layout: &'static HfCheckpoint,
    read: ReadTensors,
    /// The type matrices are stored in, and the bytes they take so far.
    dtype: WeightDtype,
    stored_bytes: AtomicUsize,
    /// A bare transformer's checkpoint (transformers' `Gemma3TextModel`, `Qwen3Model`: what
    /// sentence-transformers saves) names its tensors without the `model.` of a `…ForCausalLM`.
    bare: bool,
}

impl HfWeights {
    /// The folder's shards, read as `layout` names them.
    pub fn open(
        dir: &Path,
        config: HfConfig,
        arch: &'static str,
        layout: &'static HfCheckpoint,
    ) -> Result<HfWeights> {
        let model = SafetensorsModel::open_dir(dir)?;
        let bare = !model.tensor_names().any(|n| n.starts_with("model."))
            && model.tensor_names().any(|n| n.starts_with("layers."));
        Ok(HfWeights {
            dir: dir.to_path_buf(),
            bare,
            model,
            config,
            arch,
            layout,
            read: ReadTensors::default(),
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

    /// The checkpoint's name for a GGUF tensor name.
    fn hf_name(&self, gguf: &str) -> Option<String> {
        let name = self.causal_lm_name(gguf)?;
        Some(match name.strip_prefix("model.") {
            Some(bare) if self.bare => bare.to_string(),
            _ => name,
        })
    }

    /// A GGUF tensor's name in a `…ForCausalLM` checkpoint.
    fn causal_lm_name(&self, gguf: &str) -> Option<String> {
        let (stem, kind) = gguf.rsplit_once('.')?;
        if let Some((_, hf)) = self.layout.globals.iter().find(|(g, _)| *g == stem) {
            return Some(format!("{hf}.{kind}"));
        }
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, rest) = rest.split_once('.')?;
        let (part, kind) = rest.rsplit_once('.')?;
        for table in self.layout.layer_parts {
            for (g, hf) in table.iter() {
                if *g == rest {
                    return Some(format!("model.layers.{layer}.{hf}"));
                }
                if *g == part {
                    return Some(format!("model.layers.{layer}.{hf}.{kind}"));
                }
            }
        }
        None
    }

    /// The checkpoint's name of expert `e`'s matrix for a GGUF expert tensor name
    /// (`blk.N.ffn_gate_exps.weight`).
    fn expert_hf_name(&self, gguf: &str, e: usize) -> Option<String> {
        let experts = self.layout.experts.as_ref()?;
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, rest) = rest.split_once('.')?;
        let which = match rest.strip_suffix(".weight")? {
            "ffn_gate_exps" => 0,
            "ffn_up_exps" => 1,
            "ffn_down_exps" => 2,
            _ => return None,
        };
        let root = if self.bare { "" } else { "model." };
        Some(format!(
            "{root}layers.{layer}.{}.experts.{e}.{}.weight",
            experts.block, experts.names[which]
        ))
    }

    fn bad(&self, what: impl std::fmt::Display) -> ModelError {
        self.config.bad(what)
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
        self.read.mark(name);
        let (file, info) = self
            .model
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor {
                source: self.dir.display().to_string(),
                name: name.to_string(),
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

    fn vector_2d(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
        self.vector(name, rows * cols)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let hf = self
            .hf_name(name)
            .ok_or_else(|| self.bad(format!("cannot map tensor `{name}`")))?;
        self.read.mark(&hf);
        if self.model.tensor(&hf).is_none() {
            return Err(ModelError::MissingTensor {
                source: self.source(),
                name: hf,
            });
        }
        let mut values = self.model.to_f32(&hf)?;
        let shift = self.layout.norm_offset;
        if shift != 0.0 && name.ends_with("norm.weight") {
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

    fn config(&self, _gguf_rope_style: RopeStyle) -> Result<ModelConfig> {
        self.config.model_config(self.arch, &self.layout.defaults)
    }

    fn sliding_window(&self) -> Result<Option<usize>> {
        self.config.sliding_window()
    }

    fn local_rope_base(&self) -> Result<Option<f32>> {
        self.config.local_rope_base()
    }

    fn moe(&self) -> Result<Option<crate::layers::MoeConfig>> {
        self.config.moe(&self.layout.defaults)
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
        let gguf = format!("blk.{layer}.attn_kv_b.weight");
        let name = self
            .hf_name(&gguf)
            .ok_or_else(|| self.bad(format!("cannot map tensor `{gguf}`")))?;
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
        Ok(self.config.f64_key(name)?.map(|v| v as f32))
    }

    fn hparam_u32(&self, name: &str) -> Result<Option<u32>> {
        match self.config.uniform_usize(name)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| self.bad(format!("`{name}` {v} is implausibly large"))),
        }
    }

    fn hparam_bool(&self, name: &str) -> Result<Option<bool>> {
        self.config.bool_key(name)
    }

    fn leading_dense_layers(&self) -> Result<Option<usize>> {
        self.config.leading_dense_layers()
    }

    fn hparam_list(&self, name: &str) -> Result<Option<Vec<usize>>> {
        self.config.usize_list(name)
    }

    fn sliding_layers(&self) -> Result<Option<Vec<bool>>> {
        self.config.sliding_layers()
    }

    /// Every tensor no loader read, except rotary tables some checkpoints carry as buffers
    /// (`rotary_emb.inv_freq`, recomputed here from the config).
    fn unused_tensors(&self) -> Vec<String> {
        self.read
            .unused(self.model.tensor_names(), |n| {
                layer_index(
                    n,
                    if self.bare {
                        "layers."
                    } else {
                        "model.layers."
                    },
                )
            })
            .into_iter()
            .filter(|n| !n.ends_with("rotary_emb.inv_freq"))
            .collect()
    }

    fn skip_layers_from(&self, first: usize) {
        self.read.skip_layers_from(first);
    }
}
