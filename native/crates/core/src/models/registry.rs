//! The architectures this build runs, keyed by the Hugging Face `model_type` transformers writes
//! (`qwen3_moe`, `phimoe`, `deepseek_v3`), with the GGUF `general.architecture` llama.cpp's
//! converter writes and mistral.rs's `-a` names as aliases in the same table. Adding a model is
//! one file and one row here.
//!
//! Identity is explicit: a folder is the architecture its `model_type` names; a GGUF the first
//! row whose GGUF name and structure it matches (`llama` with experts is Mixtral). An `-a` that
//! names another architecture than the file's is refused, naming both. After loading, a file
//! with tensors its architecture did not read is refused: it is another architecture, or a
//! variant this build does not run.

use std::path::Path;
use std::sync::Arc;

use mistralrs_quant::gguf::GgufFile;

use super::{
    deepseek_v2, deepseek_v3, gemma, gemma2, gemma3, glm4, glm4_moe, glm4_moe_lite, gpt_oss,
    granitemoehybrid, hunyuan_v1_dense, hunyuan_v1_moe, lfm2, lfm2_moe, llama, mistral, mixtral,
    phi, phi3, phimoe, qwen2, qwen3, qwen3_moe, qwen3_next, smollm3, starcoder2, Model,
};
use crate::hf_config::HfConfig;
use crate::model_error::{ModelError, Result};
use crate::weights::{GgufWeights, Weights};
use crate::weights_dtype::WeightDtype;
use crate::weights_hf::{HfCheckpoint, HfWeights};

type Loader = fn(&dyn Weights) -> Result<Box<dyn Model>>;

/// Which GGUFs of an architecture's `general.architecture` are it, when several rows share
/// the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufMatch {
    Any,
    /// No `<arch>.expert_count` (Llama, Mistral).
    Dense,
    /// Experts (`llama` with `llama.expert_count` is Mixtral).
    Sparse,
    /// A softmax router (`deepseek2` files of DeepSeek V2).
    SoftmaxRouter,
    /// A sigmoid router (`expert_gating_func` 2: `deepseek2` files of DeepSeek V3).
    SigmoidRouter,
}

impl GgufMatch {
    fn matches(self, file: &GgufFile, arch: &str) -> Result<bool> {
        let experts = file
            .get_u32_opt(&format!("{arch}.expert_count"))?
            .is_some_and(|n| n > 0);
        let sigmoid = crate::weights::gguf_expert_gating(file, arch)? == 2;
        Ok(match self {
            GgufMatch::Any => true,
            GgufMatch::Dense => !experts,
            GgufMatch::Sparse => experts,
            GgufMatch::SoftmaxRouter => !sigmoid,
            GgufMatch::SigmoidRouter => sigmoid,
        })
    }

    /// What a matching file has, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            GgufMatch::Any => "",
            GgufMatch::Dense => "without experts",
            GgufMatch::Sparse => "with experts",
            GgufMatch::SoftmaxRouter => "with a softmax router",
            GgufMatch::SigmoidRouter => "with a sigmoid router",
        }
    }
}

/// One architecture: its names, how its files are recognised, its loader and its
/// checkpoint's tensor names.
pub struct Architecture {
    /// transformers' `model_type`, the id everywhere (its file `models/<id>.rs`,
    /// `ModelConfig::architecture`, the engine's `info.architecture`).
    pub id: &'static str,
    /// Other `model_type`s a checkpoint of it may carry (`gemma3_text`).
    pub model_types: &'static [&'static str],
    /// The `general.architecture` of its GGUFs, as llama.cpp's converter writes it.
    pub gguf: &'static str,
    pub gguf_match: GgufMatch,
    /// mistral.rs's `-a` names for it, where they differ from the id.
    pub cli_names: &'static [&'static str],
    pub load: Loader,
    pub hf: &'static HfCheckpoint,
}

impl Architecture {
    fn named(&self, name: &str) -> bool {
        let same = |n: &&str| n.eq_ignore_ascii_case(name);
        same(&self.id) || self.model_types.iter().any(same) || self.cli_names.iter().any(same)
    }
}

macro_rules! arch {
    ($id:literal, $module:ident, gguf $gguf:literal $match:ident $(, model_types $($mt:literal)+)? $(, cli $($cli:literal)+)?) => {
        Architecture {
            id: $id,
            model_types: &[$($($mt),+)?],
            gguf: $gguf,
            gguf_match: GgufMatch::$match,
            cli_names: &[$($($cli),+)?],
            load: $module::load,
            hf: &$module::HF,
        }
    };
}

/// Every architecture. Where several share a GGUF name, the first whose structure a file
/// matches is the file's (Mistral's GGUFs cannot be told from Llama's: `-a mistral` names it).
pub const ARCHITECTURES: &[Architecture] = &[
    arch!("llama", llama, gguf "llama" Dense),
    arch!("mistral", mistral, gguf "llama" Dense),
    arch!("mixtral", mixtral, gguf "llama" Sparse),
    arch!("phi", phi, gguf "phi2" Any, cli "phi2"),
    arch!("phi3", phi3, gguf "phi3" Any),
    arch!("phimoe", phimoe, gguf "phimoe" Any, cli "phi3.5moe"),
    arch!("starcoder2", starcoder2, gguf "starcoder2" Any),
    arch!("gemma", gemma, gguf "gemma" Any),
    arch!("gemma2", gemma2, gguf "gemma2" Any),
    arch!("gemma3", gemma3, gguf "gemma3" Any, model_types "gemma3_text"),
    arch!("qwen2", qwen2, gguf "qwen2" Any),
    arch!("qwen3", qwen3, gguf "qwen3" Any),
    arch!("qwen3_moe", qwen3_moe, gguf "qwen3moe" Any, cli "qwen3moe"),
    arch!("deepseek_v2", deepseek_v2, gguf "deepseek2" SoftmaxRouter, cli "deepseekv2"),
    arch!("deepseek_v3", deepseek_v3, gguf "deepseek2" SigmoidRouter, cli "deepseekv3"),
    arch!("smollm3", smollm3, gguf "smollm3" Any),
    arch!("glm4", glm4, gguf "glm4" Any),
    arch!("glm4_moe", glm4_moe, gguf "glm4moe" Any, cli "glm4moe"),
    arch!("glm4_moe_lite", glm4_moe_lite, gguf "deepseek2" SigmoidRouter, cli "glm4moelite"),
    arch!("gpt_oss", gpt_oss, gguf "gpt-oss" Any, cli "gptoss"),
    arch!("hunyuan_v1_dense", hunyuan_v1_dense, gguf "hunyuan-dense" Any),
    arch!("hunyuan_v1_moe", hunyuan_v1_moe, gguf "hunyuan-moe" Any),
    arch!("granitemoehybrid", granitemoehybrid, gguf "granitehybrid" Any),
    arch!("lfm2", lfm2, gguf "lfm2" Any),
    arch!("lfm2_moe", lfm2_moe, gguf "lfm2moe" Any),
    arch!("qwen3_next", qwen3_next, gguf "qwen3next" Any, cli "qwen3next"),
];

/// Architecture ids this build can run.
pub fn supported_architectures() -> Vec<&'static str> {
    ARCHITECTURES.iter().map(|a| a.id).collect()
}

/// The architecture a name means: an id or `model_type`, a mistral.rs `-a` name, or a GGUF
/// `general.architecture` (the first row of that name: `llama`, `deepseek_v2`). Case is
/// ignored.
pub fn resolve_architecture(name: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.named(name)).or_else(|| {
        ARCHITECTURES
            .iter()
            .find(|a| a.gguf.eq_ignore_ascii_case(name))
    })
}

/// Every name the table knows, with the id it means and its kind (`model_type`, `cli`,
/// `gguf`), in table order.
pub fn architecture_names() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut names = Vec::new();
    for a in ARCHITECTURES {
        names.push((a.id, a.id, "model_type"));
        names.extend(a.model_types.iter().map(|&n| (n, a.id, "model_type")));
        names.extend(a.cli_names.iter().map(|&n| (n, a.id, "cli")));
        names.push((a.gguf, a.id, "gguf"));
    }
    names
}

fn known(name: &str) -> ModelError {
    ModelError::Unsupported(format!(
        "architecture `{name}` is not known (supported: {})",
        supported_architectures().join(", ")
    ))
}

/// Builds the model a GGUF file describes; `requested` is `-a`, which must name the file's
/// architecture.
pub fn load_gguf(file: Arc<GgufFile>, requested: Option<&str>) -> Result<Box<dyn Model>> {
    let name = file.get_string("general.architecture")?.to_string();
    let source = file.path().display().to_string();
    let mut detected = None;
    for a in ARCHITECTURES.iter().filter(|a| a.gguf == name) {
        if a.gguf_match.matches(&file, &name)? {
            detected = Some(a);
            break;
        }
    }
    let detected = detected.ok_or_else(|| {
        ModelError::Unsupported(format!(
            "{source}: architecture `{name}` is not supported (supported: {})",
            supported_architectures().join(", ")
        ))
    })?;
    let arch = match requested {
        None => detected,
        Some(r) => {
            let wanted = resolve_architecture(r).ok_or_else(|| known(r))?;
            if wanted.gguf != name || !wanted.gguf_match.matches(&file, &name)? {
                let structure = detected.gguf_match.describe();
                return Err(ModelError::Unsupported(format!(
                    "{source}: the architecture requested (`{r}`, that is `{}`) is not the file's: `{}` (GGUF `general.architecture` `{name}`{}{structure})",
                    wanted.id,
                    detected.id,
                    if structure.is_empty() { "" } else { " " },
                )));
            }
            wanted
        }
    };
    let weights = GgufWeights::new(file, arch.id);
    build(arch, &weights)
}

/// Builds the model of a Hugging Face folder (`config.json` and safetensors), its matrices
/// stored in `dtype`; `requested` is `-a`, which must name the architecture of the config's
/// `model_type`. Also returns the bytes its matrices take as stored.
pub fn load_hf(
    dir: &Path,
    requested: Option<&str>,
    dtype: WeightDtype,
) -> Result<(Box<dyn Model>, usize)> {
    let config = HfConfig::read(dir)?;
    let model_type = config.model_type()?.to_string();
    let arch = ARCHITECTURES
        .iter()
        .find(|a| a.id == model_type || a.model_types.contains(&model_type.as_str()))
        .ok_or_else(|| {
            config.bad(format!(
                "model_type `{model_type}` is not supported (supported: {})",
                supported_architectures().join(", ")
            ))
        })?;
    if config.has_text_config() {
        return Err(config.bad(format!(
            "a multimodal checkpoint (`{model_type}` with a `text_config`) is not supported; the text-only checkpoints load"
        )));
    }
    if let Some(r) = requested {
        let wanted = resolve_architecture(r).ok_or_else(|| known(r))?;
        if wanted.id != arch.id {
            return Err(config.bad(format!(
                "the architecture requested (`{r}`, that is `{}`) is not the folder's: model_type `{model_type}` (`{}`)",
                wanted.id, arch.id
            )));
        }
    }
    let weights = HfWeights::open(dir, config, arch.id, arch.hf)?.with_dtype(dtype);
    let model = build(arch, &weights)?;
    Ok((model, weights.stored_bytes()))
}

/// Runs `arch`'s loader, then refuses the file if it holds tensors the loader did not read.
fn build(arch: &Architecture, w: &dyn Weights) -> Result<Box<dyn Model>> {
    let model = (arch.load)(w).map_err(|e| match e {
        ModelError::MissingTensor { source, name } => ModelError::Unsupported(format!(
            "{source}: architecture `{}` requires tensor `{name}`, which the file lacks",
            arch.id
        )),
        e => e,
    })?;
    let unused = w.unused_tensors();
    if let Some(first) = unused.first() {
        return Err(ModelError::Unsupported(format!(
            "{}: tensor `{first}`{} is not used by architecture `{}`: the file is of another architecture, or a variant of it this build does not run",
            w.source(),
            match unused.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            },
            arch.id
        )));
    }
    Ok(model)
}
