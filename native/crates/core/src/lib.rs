//! The engine's native core.
//!
//! - [`tokenizer`]: text ↔ token ids from GGUF metadata or `tokenizer.json`, and incremental
//!   decoding for streaming.
//! - [`models`]: one file per architecture over the shared [`layers`], and the registry that
//!   names them; [`weights`] reads them from GGUF, [`weights_hf`] and [`hf_config`] from a
//!   Hugging Face folder, [`model_config`] describes them.
//! - [`sampler`]: choosing tokens from logits; [`grammar`]: the token masks of constrained
//!   decoding (llguidance).
//! - [`embedding`]: embedding models: a transformer run as an encoder, then the
//!   sentence-transformers modules (pooling, dense layers, normalization).
//! - [`speculative`]: proposals (prompt lookup, a draft model) and their exact verification.
//! - [`runner`]: one engine step (forward pass over the paged KV cache, then sampling) per
//!   native call.

pub mod batch;
pub mod embedding;
pub mod grammar;
pub mod hf_config;
pub mod layers;
pub mod model_config;
pub mod model_error;
pub mod models;
pub mod runner;
pub mod sampler;
pub mod speculative;
pub mod tokenizer;
pub mod weights;
pub mod weights_dtype;
pub mod weights_hf;

pub use model_config::ModelConfig;
pub use model_error::ModelError;
pub use tokenizer::{DecodeStream, TokenType, Tokenizer, TokenizerError};
