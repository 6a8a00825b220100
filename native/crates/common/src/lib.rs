//! Pieces every native crate shares: which SIMD paths this CPU offers, and the one thread pool
//! of the process.

pub mod cpu;
pub mod memory;
pub mod numerics;
/// Fixture lookup and skip reports for the crates' tests.
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod thread_pool;

pub use cpu::{cpu_features, selected_isa, CpuFeatures, Isa};
pub use thread_pool::{ParallelCtx, ThreadPool};
