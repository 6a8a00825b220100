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

/// `model.layers.N.<block>.experts.E.<gate|up|down>.weight`, or stacked.
pub struct HfExperts {
    pub block: &'static str,
    /// Names of the gate, up and down matrices (or of the stacked tensors).
    pub names: [&'static str; 3],
    pub stack: ExpertStack,
}

/// How a checkpoint stores its experts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertStack {
    /// One matrix per expert and kind: `<block>.experts.E.<name>.weight`.
    PerExpert,
    /// gpt-oss: `<block>.experts.gate_up_proj` `[experts, in, 2 · ff]` (transposed, gate and
    /// up columns interleaved) with `gate_up_proj_bias`, and `down_proj` `[experts, ff, out]`
    /// with `down_proj_bias`.
    GptOss,
    /// Granite: `<block>.<gate/up name>.weight` `[experts, 2 · ff, in]` (each expert's gate
    /// rows, then its up rows) and `<block>.<down name>.weight` `[experts, out, ff]`: cut in
    /// place.
    GateUpRows,
}

/// `mlp.experts.E.{gate,up,down}_proj` (Qwen 3 MoE, DeepSeek, GLM 4 MoE, HunYuan MoE).
pub const MLP_EXPERTS: HfExperts = HfExperts {
    block: "mlp",
    names: ["gate_proj", "up_proj", "down_proj"],
    stack: ExpertStack::PerExpert,
};

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

    /// The layer and kind of a GGUF expert tensor name (`blk.N.ffn_gate_exps.weight`), with
    /// the layout's experts.
    fn expert_kind<'g>(&self, gguf: &'g str) -> Result<(&HfExperts, &'g str, &'g str)> {
        let parsed = gguf
            .strip_prefix("blk.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(layer, rest)| Some((layer, rest.strip_suffix(".weight")?)));
        match (self.layout.experts.as_ref(), parsed) {
            (Some(experts), Some((layer, kind))) => Ok((experts, layer, kind)),
            _ => Err(self.bad(format!("cannot map tensor `{gguf}`"))),
        }
    }

    /// The stacked experts' tensor of `gguf`'s layer and kind (see [`ExpertStack::GptOss`]):
    /// which of gate, up and down it is, its type and bytes, checked to be
    /// `[n_experts, in, out]` (gate and up: `out` is twice the hidden size, interleaved).
    fn stacked_experts(
        &self,
        gguf: &str,
        n_experts: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<(usize, GgmlType, WeightBytes)> {
        let (experts, layer, kind) = self.expert_kind(gguf)?;
        let (tensor, which, cols) = match kind {
            "ffn_gate_exps" => ("gate_up_proj", 0, 2 * out_features),
            "ffn_up_exps" => ("gate_up_proj", 1, 2 * out_features),
            "ffn_down_exps" => ("down_proj", 2, out_features),
            _ => return Err(self.bad(format!("cannot map tensor `{gguf}`"))),
        };
        let root = if self.bare { "" } else { "model." };
        let name = format!("{root}layers.{layer}.{}.experts.{tensor}", experts.block);
        let (ty, bytes) = self.float_tensor(&name, &[n_experts, in_features, cols])?;
        Ok((which, ty, bytes))
    }

    /// gpt-oss's MXFP4 experts, when the checkpoint has them (`quantization_config`
    /// `mxfp4`): `<tensor>_blocks` `[experts, rows, in/32, 16]` and `<tensor>_scales`
    /// `[experts, rows, in/32]` (E8M0 exponents, ggml's bias), rows as in the float layout's
    /// columns (gate `2j`, up `2j + 1`, down `j`). Each expert's rows become ggml MXFP4
    /// blocks: the exponent, then the codes with element j in the low nibble and j + 16 in
    /// the high one (the checkpoint pairs elements 2i and 2i + 1 in a byte, low first; both
    /// index E2M1 in the same order, as llama.cpp's converter moves them). None when the
    /// checkpoint stores the experts as floats.
    fn mxfp4_experts(
        &self,
        gguf: &str,
        n_experts: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Option<Vec<Linear>>> {
        let (experts, layer, kind) = self.expert_kind(gguf)?;
        let (tensor, which, rows) = match kind {
            "ffn_gate_exps" => ("gate_up_proj", 0, 2 * out_features),
            "ffn_up_exps" => ("gate_up_proj", 1, 2 * out_features),
            "ffn_down_exps" => ("down_proj", 2, out_features),
            _ => return Err(self.bad(format!("cannot map tensor `{gguf}`"))),
        };
        let root = if self.bare { "" } else { "model." };
        let base = format!("{root}layers.{layer}.{}.experts.{tensor}", experts.block);
        let (blocks_name, scales_name) = (format!("{base}_blocks"), format!("{base}_scales"));
        if self.model.tensor(&blocks_name).is_none() {
            return Ok(None);
        }
        let nb = in_features / 32;
        if !in_features.is_multiple_of(32) {
            return Err(self.bad(format!(
                "MXFP4 experts of {in_features} inputs: not whole blocks of 32"
            )));
        }
        let raw = |name: &str, shape: &[usize]| -> Result<&[u8]> {
            self.read.mark(name);
            let (file, info) =
                self.model
                    .tensor(name)
                    .ok_or_else(|| ModelError::MissingTensor {
                        source: self.dir.display().to_string(),
                        name: name.to_string(),
                    })?;
            let shaped = info
                .shape
                .iter()
                .copied()
                .eq(shape.iter().map(|&d| d as u64));
            if info.dtype != Dtype::U8 || !shaped {
                return Err(ModelError::Unsupported(format!(
                    "{}: MXFP4 tensor `{name}` is {} {:?}, expected U8 {shape:?}",
                    file.path().display(),
                    info.dtype,
                    info.shape
                )));
            }
            Ok(file.tensor_data(info))
        };
        let blocks = raw(&blocks_name, &[n_experts, rows, nb, 16])?;
        let scales = raw(&scales_name, &[n_experts, rows, nb])?;
        let (step, first) = if which == 2 { (1, 0) } else { (2, which) };
        (0..n_experts)
            .map(|e| {
                let mut out = vec![0u8; out_features * nb * 17];
                for (j, dst_row) in out.chunks_exact_mut(nb * 17).enumerate() {
                    let r = e * rows + step * j + first;
                    for (b, dst) in dst_row.chunks_exact_mut(17).enumerate() {
                        let src = &blocks[(r * nb + b) * 16..(r * nb + b + 1) * 16];
                        let code = |k: usize| (src[k / 2] >> (4 * (k % 2))) & 0x0F;
                        dst[0] = scales[r * nb + b];
                        for (i, byte) in dst[1..].iter_mut().enumerate() {
                            *byte = code(i) | code(i + 16) << 4;
                        }
                    }
                }
                Ok(Linear::new(
                    GgmlType::MXFP4,
                    out_features,
                    in_features,
                    WeightBytes::Owned(Arc::new(out)),
                )?)
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Granite's stacked experts ([`ExpertStack::GateUpRows`]): each expert's rows of the
    /// `[experts, rows, in]` tensor of `gguf`'s layer and kind, in place.
    fn gate_up_row_experts(
        &self,
        gguf: &str,
        n_experts: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Vec<Linear>> {
        let (experts, layer, kind) = self.expert_kind(gguf)?;
        // Rows per expert, and where this kind's rows start in each.
        let (which, per_expert, first) = match kind {
            "ffn_gate_exps" => (0, 2 * out_features, 0),
            "ffn_up_exps" => (1, 2 * out_features, out_features),
            "ffn_down_exps" => (2, out_features, 0),
            _ => return Err(self.bad(format!("cannot map tensor `{gguf}`"))),
        };
        let root = if self.bare { "" } else { "model." };
        let name = format!(
            "{root}layers.{layer}.{}.{}.weight",
            experts.block, experts.names[which]
        );
        let (ty, all) = self.float_tensor(&name, &[n_experts, per_expert, in_features])?;
        (0..n_experts)
            .map(|e| {
                let start = e * per_expert + first;
                let rows = crate::weights::row_slice(
                    all.clone(),
                    ty,
                    in_features,
                    start..start + out_features,
                );
                let (ty, bytes) = self.store(ty, rows)?;
                Ok(Linear::new(ty, out_features, in_features, bytes)?)
            })
            .collect()
    }

    fn matrix_named(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<(GgmlType, WeightBytes)> {
        self.float_tensor(name, &[rows, cols])
    }

    /// The float tensor `name` of `shape` (PyTorch order), marked read: its type and bytes,
    /// in place.
    fn float_tensor(&self, name: &str, shape: &[usize]) -> Result<(GgmlType, WeightBytes)> {
        self.read.mark(name);
        let (file, info) = self
            .model
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor {
                source: self.dir.display().to_string(),
                name: name.to_string(),
            })?;
        let ty = float_type(info.dtype).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "{}: tensor `{name}` is {}; only F32, F16 and BF16 checkpoints load",
                file.path().display(),
                info.dtype
            ))
        })?;
        if !info
            .shape
            .iter()
            .copied()
            .eq(shape.iter().map(|&d| d as u64))
        {
            return Err(ModelError::Unsupported(format!(
                "{}: tensor `{name}` has shape {:?}, expected {shape:?}",
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

    /// Stacked experts' biases: `gate_up_proj_bias` `[experts, 2 · ff]` (gate and up
    /// interleaved) and `down_proj_bias` `[experts, out]`.
    fn expert_vectors(&self, name: &str, n_experts: usize, len: usize) -> Result<Vec<Vec<f32>>> {
        let Some(experts) = self
            .layout
            .experts
            .as_ref()
            .filter(|e| e.stack == ExpertStack::GptOss)
        else {
            let all = self.vector_2d(name, n_experts, len)?;
            return Ok(all.chunks_exact(len).map(<[f32]>::to_vec).collect());
        };
        let parsed = name
            .strip_prefix("blk.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(layer, rest)| Some((layer, rest.strip_suffix(".bias")?)));
        let (tensor, interleaved) = match parsed.map(|p| p.1) {
            Some("ffn_gate_exps") => ("gate_up_proj_bias", Some(0)),
            Some("ffn_up_exps") => ("gate_up_proj_bias", Some(1)),
            Some("ffn_down_exps") => ("down_proj_bias", None),
            _ => return Err(self.bad(format!("cannot map tensor `{name}`"))),
        };
        let layer = parsed.map_or("", |p| p.0);
        let root = if self.bare { "" } else { "model." };
        let hf = format!("{root}layers.{layer}.{}.experts.{tensor}", experts.block);
        self.read.mark(&hf);
        if self.model.tensor(&hf).is_none() {
            return Err(ModelError::MissingTensor {
                source: self.source(),
                name: hf,
            });
        }
        let values = self.model.to_f32(&hf)?;
        let width = if interleaved.is_some() { 2 * len } else { len };
        if values.len() != n_experts * width {
            return Err(self.bad(format!(
                "tensor `{hf}` has {} values, expected {n_experts} × {width}",
                values.len()
            )));
        }
        Ok(values
            .chunks_exact(width)
            .map(|row| match interleaved {
                Some(first) => row.iter().skip(first).step_by(2).copied().collect(),
                None => row.to_vec(),
            })
            .collect())
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
        // A gated delta net's own norm (Qwen 3 Next's `linear_attn.norm`) is stored as applied.
        if shift != 0.0 && name.ends_with("norm.weight") && !name.ends_with("ssm_norm.weight") {
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
        let stack = self.layout.experts.as_ref().map(|e| e.stack);
        if stack == Some(ExpertStack::GateUpRows) {
            return self.gate_up_row_experts(name, n_experts, in_features, out_features);
        }
        if stack == Some(ExpertStack::GptOss) {
            if let Some(mxfp4) = self.mxfp4_experts(name, n_experts, in_features, out_features)? {
                return Ok(mxfp4);
            }
            let (which, ty, data) =
                self.stacked_experts(name, n_experts, in_features, out_features)?;
            let data = data.as_slice();
            let elem = ty.bytes_for(1).unwrap_or(4) as usize;
            // Column `c` of each expert's `[in, cols]` block is row `j` of ours: gate `2j`, up
            // `2j + 1`, down `j`. Element by element: exact in any float type.
            let (cols, (step, first)) = match which {
                2 => (out_features, (1, 0)),
                w => (2 * out_features, (2, w)),
            };
            return (0..n_experts)
                .map(|e| {
                    let block =
                        &data[e * in_features * cols * elem..(e + 1) * in_features * cols * elem];
                    let mut rows = vec![0u8; out_features * in_features * elem];
                    for j in 0..out_features {
                        let c = step * j + first;
                        for i in 0..in_features {
                            let (from, to) = ((i * cols + c) * elem, (j * in_features + i) * elem);
                            rows[to..to + elem].copy_from_slice(&block[from..from + elem]);
                        }
                    }
                    let (ty, bytes) = self.store(ty, WeightBytes::Owned(Arc::new(rows)))?;
                    Ok(Linear::new(ty, out_features, in_features, bytes)?)
                })
                .collect();
        }
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

    fn attention_layers(&self, n_layers: usize) -> Result<Option<Vec<bool>>> {
        self.config.attention_layers(n_layers)
    }

    fn hparam_str(&self, name: &str) -> Result<Option<String>> {
        self.config.str_key(name)
    }

    /// Every tensor no loader read, except rotary tables some checkpoints carry as buffers
    /// (`rotary_emb.inv_freq`, recomputed here from the config) and a multi-token-prediction
    /// head kept apart from the layers.
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
            // The multi-token-prediction head (Qwen 3 Next's `mtp.*`) is never run.
            .filter(|n| !n.starts_with("mtp.") && !n.starts_with("model.mtp."))
            .collect()
    }

    fn skip_layers_from(&self, first: usize) {
        self.read.skip_layers_from(first);
    }
}

/// The ggml type of a float safetensors dtype.
fn float_type(dtype: Dtype) -> Option<GgmlType> {
    match dtype {
        Dtype::F32 => Some(GgmlType::F32),
        Dtype::F16 => Some(GgmlType::F16),
        Dtype::BF16 => Some(GgmlType::BF16),
        _ => None,
    }
}
