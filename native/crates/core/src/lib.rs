//! The engine's native core: tokenizers now; model architectures, shared layers, the sampler,
//! grammar-constrained decoding and the runner of one engine step to follow.
//!
//! - [`tokenizer`]: text ↔ token ids from GGUF metadata or `tokenizer.json`, and incremental
//!   decoding for streaming.

pub mod layers;
pub mod model_config;
pub mod model_error;
pub mod models;
pub mod runner;
pub mod sampler;
pub mod tokenizer;
pub mod weights;

pub use model_config::ModelConfig;
pub use model_error::ModelError;
pub use tokenizer::{DecodeStream, TokenType, Tokenizer, TokenizerError};
