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
    /// Architecture ids the native model registry can build.
    pub architectures: Vec<String>,
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
    }
}
