//! Errors of model loading and forward passes.

use std::fmt;

use mistralrs_paged_attn::KvCacheError;
use mistralrs_quant::QuantError;

#[derive(Debug)]
pub enum ModelError {
    /// Reading the model file failed or its content is malformed.
    Quant(QuantError),
    /// A block table or position that does not fit the KV cache.
    Cache(KvCacheError),
    /// The file describes a model we cannot build (unknown architecture, missing tensor,
    /// inconsistent hyperparameters); the message says which.
    Unsupported(String),
    /// A request that cannot run (token id past the vocabulary, prompt past the context).
    InvalidInput(String),
    /// The file lacks a tensor its architecture requires (`source` is the file or folder).
    MissingTensor { source: String, name: String },
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::Quant(e) => e.code(),
            ModelError::Cache(_) => "InvalidArgumentError",
            ModelError::Unsupported(_) | ModelError::MissingTensor { .. } => {
                "UnsupportedModelError"
            }
            ModelError::InvalidInput(_) => "InvalidArgumentError",
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Quant(e) => e.fmt(f),
            ModelError::Cache(e) => e.fmt(f),
            ModelError::Unsupported(s) | ModelError::InvalidInput(s) => f.write_str(s),
            ModelError::MissingTensor { source, name } => {
                write!(f, "{source}: missing tensor `{name}`")
            }
        }
    }
}

impl std::error::Error for ModelError {}

impl From<QuantError> for ModelError {
    fn from(e: QuantError) -> Self {
        ModelError::Quant(e)
    }
}

impl From<KvCacheError> for ModelError {
    fn from(e: KvCacheError) -> Self {
        ModelError::Cache(e)
    }
}
