//! What the native layer sees of the machine.

use mistralrs_common::{cpu_features, selected_isa, ThreadPool};
use napi_derive::napi;

#[napi(object)]
pub struct RuntimeInfo {
    /// CPU features our kernels care about, e.g. `["avx2", "fma", "avx512vnni"]`.
    pub cpu_features: Vec<String>,
    /// The best tier the CPU offers.
    pub best_isa: String,
    /// The tier kernels use (lowered by `MISTRALRS_ISA`).
    pub selected_isa: String,
    /// Threads of the process's pool (`MISTRALRS_NUM_THREADS` or the available cores).
    pub threads: u32,
    /// Architecture ids the native model registry can build (Hugging Face `model_type`s).
    pub architectures: Vec<String>,
    /// The registry's rows: each architecture's names.
    pub architecture_table: Vec<ArchitectureEntry>,
}

/// One row of the native model registry.
#[napi(object)]
pub struct ArchitectureEntry {
    /// transformers' `model_type`: the id.
    pub id: String,
    /// Other `model_type`s of its checkpoints (`gemma3_text`).
    pub model_types: Vec<String>,
    /// The `general.architecture` of its GGUFs.
    pub gguf: String,
    /// What tells its GGUFs from others of the same name (`with experts`), or empty.
    pub gguf_match: String,
    /// mistral.rs's `-a` names that differ from the id.
    pub cli_names: Vec<String>,
}

#[napi(catch_unwind)]
pub fn runtime_info() -> RuntimeInfo {
    let features = cpu_features();
    RuntimeInfo {
        cpu_features: features.names().into_iter().map(String::from).collect(),
        best_isa: features.best_isa().name().to_string(),
        selected_isa: selected_isa().name().to_string(),
        threads: ThreadPool::global().n_threads() as u32,
        architectures: mistralrs_core::models::supported_architectures()
            .into_iter()
            .map(String::from)
            .collect(),
        architecture_table: mistralrs_core::models::ARCHITECTURES
            .iter()
            .map(|a| ArchitectureEntry {
                id: a.id.to_string(),
                model_types: a.model_types.iter().map(|s| s.to_string()).collect(),
                gguf: a.gguf.to_string(),
                gguf_match: a.gguf_match.describe().to_string(),
                cli_names: a.cli_names.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
    }
}

/// The architecture id a name means (an id or `model_type`, a mistral.rs `-a` name, a GGUF
/// `general.architecture`), or null when the registry does not know it.
#[napi(catch_unwind)]
pub fn resolve_architecture(name: String) -> Option<String> {
    mistralrs_core::models::resolve_architecture(&name).map(|a| a.id.to_string())
}
