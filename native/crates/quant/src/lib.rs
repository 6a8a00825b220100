//! Model files and the numbers inside them.
//!
//! - [`gguf`] and [`safetensors`]: readers over mmap (data used in place) and writers.
//! - [`formats`]: one module per ggml block format: its block layout, dequantization,
//!   quantization and dot products (scalar reference plus AVX2 / AVX-512 paths).
//! - [`matmul`]: quantized matrix-vector and matrix-matrix products over the thread pool.
//! - [`gemm`]: the register-tiled kernels [`matmul`] uses for batches of tokens.

pub mod error;
pub mod formats;
pub mod gemm;
pub mod ggml_type;
pub mod gguf;
pub mod matmul;
pub mod safetensors;

pub use error::{QuantError, Result};
pub use ggml_type::GgmlType;
