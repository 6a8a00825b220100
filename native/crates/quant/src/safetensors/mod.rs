//! safetensors files: a reader over a read-only memory map, sharded model directories, and a
//! writer.
//!
//! ```no_run
//! # fn main() -> mistralrs_quant::Result<()> {
//! use mistralrs_quant::safetensors::{SafetensorsFile, SafetensorsModel};
//! let file = SafetensorsFile::open("model.safetensors".as_ref())?;
//! for info in file.tensors() {
//!     let bytes: &[u8] = file.tensor_data(info); // in place, in the mapping
//!     println!("{} {} {:?} {} bytes", info.name, info.dtype, info.shape, bytes.len());
//! }
//! let model = SafetensorsModel::open_dir("models/llama".as_ref())?; // one file or sharded
//! let embeddings: Vec<f32> = model.to_f32("model.embed_tokens.weight")?;
//! # let _ = embeddings; Ok(()) }
//! ```
//!
//! Data is not aligned beyond what the file gives (the header is padded to 8 bytes, so data
//! starts 8-aligned, but offsets inside it need not be), so [`SafetensorsFile::to_f32`] reads
//! bytes rather than casting. Duplicate keys in the top-level header object are refused;
//! duplicates inside one tensor's entry (two `dtype` fields) keep the last, as serde_json does.

mod convert;
mod header;
mod model;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::gguf::FileBytes;
pub use header::MAX_HEADER_LEN;
pub use model::{SafetensorsModel, INDEX_FILE, SINGLE_FILE};
pub use writer::SafetensorsWriter;

use crate::{QuantError, Result};

/// Element types, named as in the header.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    BOOL,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    /// Power-of-two scales (MXFP4 block scales): 2^(e - 127), 0xFF is NaN.
    F8_E8M0,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    I64,
    U64,
    F64,
}

const DTYPES: &[(Dtype, &str, usize)] = &[
    (Dtype::BOOL, "BOOL", 1),
    (Dtype::U8, "U8", 1),
    (Dtype::I8, "I8", 1),
    (Dtype::F8_E5M2, "F8_E5M2", 1),
    (Dtype::F8_E4M3, "F8_E4M3", 1),
    (Dtype::F8_E8M0, "F8_E8M0", 1),
    (Dtype::I16, "I16", 2),
    (Dtype::U16, "U16", 2),
    (Dtype::F16, "F16", 2),
    (Dtype::BF16, "BF16", 2),
    (Dtype::I32, "I32", 4),
    (Dtype::U32, "U32", 4),
    (Dtype::F32, "F32", 4),
    (Dtype::I64, "I64", 8),
    (Dtype::U64, "U64", 8),
    (Dtype::F64, "F64", 8),
];

impl Dtype {
    pub fn all() -> impl Iterator<Item = Dtype> {
        DTYPES.iter().map(|row| row.0)
    }

    /// The dtype with this header name (exact case, as the format specifies).
    pub fn from_name(name: &str) -> Option<Dtype> {
        DTYPES.iter().find(|row| row.1 == name).map(|row| row.0)
    }

    pub fn name(self) -> &'static str {
        DTYPES
            .iter()
            .find(|row| row.0 == self)
            .map_or("?", |row| row.1)
    }

    pub fn size_bytes(self) -> usize {
        DTYPES
            .iter()
            .find(|row| row.0 == self)
            .map_or(1, |row| row.2)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetensorsTensorInfo {
    pub name: String,
    pub dtype: Dtype,
    /// Row-major (PyTorch order): the last dimension is contiguous.
    pub shape: Vec<u64>,
    /// `[begin, end)` relative to the start of the data (after the header).
    pub data_offsets: (u64, u64),
    pub n_elements: u64,
}

impl SafetensorsTensorInfo {
    pub fn size_bytes(&self) -> u64 {
        self.data_offsets.1 - self.data_offsets.0
    }
}

/// An open safetensors file: validated header plus the mapped bytes.
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Arc<FileBytes>,
    tensors: Vec<SafetensorsTensorInfo>,
    index: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
    data_start: u64,
}

impl SafetensorsFile {
    /// Maps `path` read-only and parses its header. Tensor data stays in the mapping.
    pub fn open(path: &Path) -> Result<SafetensorsFile> {
        SafetensorsFile::from_file_bytes(path, Arc::new(FileBytes::map(path)?))
    }

    /// Parses a file held in memory; `path` only names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<SafetensorsFile> {
        SafetensorsFile::from_file_bytes(path, Arc::new(FileBytes::from_vec(bytes)))
    }

    pub fn from_file_bytes(path: &Path, bytes: Arc<FileBytes>) -> Result<SafetensorsFile> {
        let header = header::parse(&bytes)
            .map_err(|what| QuantError::format(path, format!("invalid safetensors: {what}")))?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            bytes,
            tensors: header.tensors,
            index: header.index,
            metadata: header.metadata,
            data_start: header.data_start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor infos in data order.
    pub fn tensors(&self) -> &[SafetensorsTensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&SafetensorsTensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The `__metadata__` map (empty when absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// File offset where the data starts (8 + header length).
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    pub fn file_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The whole file; clone the `Arc` to keep the mapping alive beside this struct.
    pub fn file_bytes(&self) -> &Arc<FileBytes> {
        &self.bytes
    }

    /// The bytes of a tensor of this file, in place. Ranges were checked when the file was
    /// opened; an info from another file whose range does not fit gives an empty slice.
    pub fn tensor_data(&self, info: &SafetensorsTensorInfo) -> &[u8] {
        let (begin, end) = info.data_offsets;
        let start = self.data_start.checked_add(begin).map(usize::try_from);
        let stop = self.data_start.checked_add(end).map(usize::try_from);
        match (start, stop) {
            (Some(Ok(s)), Some(Ok(e))) => self.bytes.get(s..e).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The bytes of the tensor called `name`; an error naming the file if there is none.
    pub fn tensor_data_by_name(&self, name: &str) -> Result<&[u8]> {
        Ok(self.tensor_data(self.require(name)?))
    }

    /// The tensor converted to f32: F32, F64, F16, BF16, F8_E4M3, F8_E5M2 and F8_E8M0.
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.require(name)?;
        convert::to_f32(info.dtype, self.tensor_data(info)).ok_or_else(|| {
            QuantError::invalid(format!(
                "{}: tensor `{name}` is {}, which cannot be converted to f32",
                self.path.display(),
                info.dtype
            ))
        })
    }

    fn require(&self, name: &str) -> Result<&SafetensorsTensorInfo> {
        self.tensor(name)
            .ok_or_else(|| QuantError::format(&self.path, format!("no tensor named `{name}`")))
    }
}

impl fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .field("metadata", &self.metadata.len())
            .finish()
    }
}
