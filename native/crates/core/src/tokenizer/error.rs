//! Errors of the tokenizer. Every error that concerns a file names it; `code()` is stable and
//! the binding maps it onto the JavaScript error's `code`.

use std::fmt;
use std::path::{Path, PathBuf};

use mistralrs_quant::QuantError;

#[derive(Debug)]
pub enum TokenizerError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file's content is malformed or describes a tokenizer we cannot build; `what` says
    /// which key or entry and how.
    Format { path: PathBuf, what: String },
    /// A call with arguments that cannot work (a token id outside the vocabulary, ...).
    InvalidArgument(String),
}

pub type Result<T> = std::result::Result<T, TokenizerError>;

impl TokenizerError {
    pub fn format(path: &Path, what: impl Into<String>) -> TokenizerError {
        TokenizerError::Format {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> TokenizerError {
        TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>) -> TokenizerError {
        TokenizerError::InvalidArgument(what.into())
    }

    /// A stable code for callers: `FormatError`, `InvalidArgumentError` or `IoError`.
    pub fn code(&self) -> &'static str {
        match self {
            TokenizerError::Io { .. } => "IoError",
            TokenizerError::Format { .. } => "FormatError",
            TokenizerError::InvalidArgument(_) => "InvalidArgumentError",
        }
    }

    /// Wraps an error of the `tokenizers` crate met while building from or running on `path`.
    pub(crate) fn engine(path: &Path, context: &str, err: impl fmt::Display) -> TokenizerError {
        TokenizerError::format(path, format!("{context}: {err}"))
    }

    /// Converts a GGUF reader error; errors without a file name get `path`.
    pub(crate) fn from_quant(path: &Path, err: QuantError) -> TokenizerError {
        match err {
            QuantError::Io { path, source } => TokenizerError::Io { path, source },
            QuantError::Format { path, what } => TokenizerError::Format { path, what },
            other => TokenizerError::format(path, other.to_string()),
        }
    }
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            TokenizerError::Format { path, what } => write!(f, "{}: {what}", path.display()),
            TokenizerError::InvalidArgument(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for TokenizerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenizerError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
