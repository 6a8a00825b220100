//! Errors of this crate. Every error that concerns a file names it.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum QuantError {
    /// The file could not be opened or mapped.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file's content is malformed; `what` says how.
    Format { path: PathBuf, what: String },
    /// A tensor type that exists but that this build cannot compute with.
    UnsupportedType { name: String },
    /// A call with arguments that cannot work (lengths that disagree, a row length that is
    /// not a multiple of the block size, ...).
    InvalidArgument(String),
}

pub type Result<T> = std::result::Result<T, QuantError>;

impl QuantError {
    pub fn format(path: &Path, what: impl Into<String>) -> QuantError {
        QuantError::Format {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> QuantError {
        QuantError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>) -> QuantError {
        QuantError::InvalidArgument(what.into())
    }

    /// A stable code for callers (the bindings map it onto `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            QuantError::Io { .. } => "IoError",
            QuantError::Format { .. } => "FormatError",
            QuantError::UnsupportedType { .. } => "UnsupportedTypeError",
            QuantError::InvalidArgument(_) => "InvalidArgumentError",
        }
    }
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            QuantError::Format { path, what } => write!(f, "{}: {what}", path.display()),
            QuantError::UnsupportedType { name } => {
                write!(f, "tensor type {name} is not supported by this build")
            }
            QuantError::InvalidArgument(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for QuantError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QuantError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
