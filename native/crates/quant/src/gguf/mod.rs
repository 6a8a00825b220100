//! GGUF files (versions 2 and 3, little-endian): a reader over a read-only memory map and a
//! writer.
//!
//! ```no_run
//! # fn main() -> mistralrs_quant::Result<()> {
//! use mistralrs_quant::gguf::GgufFile;
//! let file = GgufFile::open("model.gguf".as_ref())?;
//! let arch = file.get_string("general.architecture")?;
//! let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
//! for info in file.tensors() {
//!     let bytes: &[u8] = file.tensor_data(info); // in place, in the mapping
//!     println!("{} {:?} {} {} bytes", info.name, info.dims, info.ty, bytes.len());
//! }
//! # let _ = (arch, tokens); Ok(()) }
//! ```
//!
//! What the reader accepts and refuses (see `reader.rs` for the checks):
//! - strings must be UTF-8, otherwise the file is refused naming the key and byte offset;
//! - dims may be 0 (an empty tensor, as ggml allows); at most 4 dims; rows whole blocks;
//! - types ggml never assigned or has retired are refused by id; types this crate cannot
//!   compute with are read (check [`GgmlType::is_supported`] before using the data);
//! - `general.alignment` must be a u32 power of two; tensor offsets must follow ggml's layout;
//! - duplicate keys or tensor names, and empty ones, are refused.
//! - tensor names past ggml's 63-byte `GGML_MAX_NAME` are accepted (they are bounded by the
//!   file like any string); a caller handing them to ggml must check;
//! - numeric getters accept any integer width whose value fits (writers disagree on widths)
//!   and refuse floats, bools and out-of-range values; array getters want the exact type.
//!
//! Errors are [`QuantError::Format`] naming the file, with the key or tensor and the byte
//! offset in the message.

pub(crate) mod bytes;
mod reader;
mod split;
mod value;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use bytes::FileBytes;
pub use reader::{MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{GgufArray, GgufValue, GgufValueType};
pub use writer::GgufWriter;

use crate::{GgmlType, QuantError, Result};

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// In ggml order: `dims[0]` is `ne[0]`, the row length (contiguous elements).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte offset of the data relative to the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub size_bytes: u64,
    /// Which file of a split GGUF holds the data: 0 for the opened one, `k` for its part `k + 1`.
    pub part: usize,
}

/// An open GGUF file: validated header plus the mapped bytes.
pub struct GgufFile {
    path: PathBuf,
    bytes: Arc<FileBytes>,
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
    /// The other files of a split GGUF (llama.cpp's gguf-split), in order; empty otherwise.
    parts: Vec<split::SplitPart>,
}

/// Generates a required getter (`Err` when the key is missing) and an optional one (`Ok(None)`
/// when missing); both fail when the value has the wrong type or is out of range.
macro_rules! scalar_getters {
    ($($get:ident, $opt:ident, $ty:ty, $conv:ident, $want:literal;)*) => {$(
        #[doc = concat!("The value of `key` as ", $want, "; an error if missing or of another type.")]
        pub fn $get(&self, key: &str) -> Result<$ty> {
            self.$opt(key)?.ok_or_else(|| self.missing(key))
        }

        #[doc = concat!("The value of `key` as ", $want, ", or `None` if the key is absent.")]
        pub fn $opt(&self, key: &str) -> Result<Option<$ty>> {
            match self.get(key) {
                None => Ok(None),
                Some(v) => v.$conv().map(Some).ok_or_else(|| self.mismatch(key, v, $want)),
            }
        }
    )*};
}

/// Generates a getter borrowing an array of one element type.
macro_rules! array_getters {
    ($($get:ident, $variant:ident, $ty:ty, $want:literal;)*) => {$(
        #[doc = concat!("The array at `key`, which must hold ", $want, ".")]
        pub fn $get(&self, key: &str) -> Result<&[$ty]> {
            match self.get(key) {
                None => Err(self.missing(key)),
                Some(GgufValue::Array(GgufArray::$variant(v))) => Ok(v),
                Some(v) => Err(self.mismatch(key, v, $want)),
            }
        }
    )*};
}

impl GgufFile {
    /// Maps `path` read-only and parses its header. Tensor data stays in the mapping. The first
    /// part of a split GGUF (`name-00001-of-0000N.gguf`, with `split.count` > 1) opens its other
    /// parts beside it: their tensors join this file's, as llama.cpp loads them.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let mut file = GgufFile::from_file_bytes(path, Arc::new(FileBytes::map(path)?))?;
        file.open_split_parts()?;
        Ok(file)
    }

    /// Parses a file held in memory; `path` only names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<GgufFile> {
        GgufFile::from_file_bytes(path, Arc::new(FileBytes::from_vec(bytes)))
    }

    pub fn from_file_bytes(path: &Path, bytes: Arc<FileBytes>) -> Result<GgufFile> {
        let parsed = reader::parse(&bytes).map_err(|f| {
            QuantError::format(path, format!("invalid GGUF: {} (at byte {})", f.what, f.at))
        })?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            bytes,
            version: parsed.version,
            metadata: parsed.metadata,
            key_index: parsed.key_index,
            tensors: parsed.tensors,
            tensor_index: parsed.tensor_index,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            parts: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, or 32 when absent.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts, from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn file_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The whole file; clone the `Arc` to keep the mapping alive beside this struct.
    pub fn file_bytes(&self) -> &Arc<FileBytes> {
        &self.bytes
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.key_index.contains_key(key)
    }

    scalar_getters! {
        get_u32, get_u32_opt, u32, to_u32, "an integer that fits u32";
        get_u64, get_u64_opt, u64, to_u64, "an integer that fits u64";
        get_i32, get_i32_opt, i32, to_i32, "an integer that fits i32";
        get_i64, get_i64_opt, i64, to_i64, "an integer that fits i64";
        get_f32, get_f32_opt, f32, to_f32, "an f32 or f64";
        get_f64, get_f64_opt, f64, to_f64, "an f32 or f64";
        get_bool, get_bool_opt, bool, as_bool, "a bool";
    }

    /// The string at `key`.
    pub fn get_string(&self, key: &str) -> Result<&str> {
        self.get_string_opt(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn get_string_opt(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.mismatch(key, v, "a string")),
        }
    }

    /// The array at `key`, of any element type.
    pub fn get_array(&self, key: &str) -> Result<&GgufArray> {
        match self.get(key) {
            None => Err(self.missing(key)),
            Some(v) => v
                .as_array()
                .ok_or_else(|| self.mismatch(key, v, "an array")),
        }
    }

    array_getters! {
        get_str_array, String, String, "strings";
        get_f32_array, F32, f32, "f32";
        get_i32_array, I32, i32, "i32";
        get_u32_array, U32, u32, "u32";
        get_u8_array, U8, u8, "u8";
    }

    /// Tensor infos in file order (which is also data order).
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor of this file, in place. The range was checked against the file
    /// when it was opened; an info from another file whose range does not fit gives an empty
    /// slice rather than bytes of the wrong tensor or a panic.
    pub fn tensor_data(&self, info: &GgufTensorInfo) -> &[u8] {
        let (bytes, start) = self.tensor_location(info);
        let end = start.checked_add(info.size_bytes);
        let range = match (usize::try_from(start), end.map(usize::try_from)) {
            (Ok(s), Some(Ok(e))) => s..e,
            _ => return &[],
        };
        bytes.get(range).unwrap_or(&[])
    }

    /// The mapping that holds a tensor's data (this file's, or a split part's) and the data's
    /// offset in it.
    pub fn tensor_location(&self, info: &GgufTensorInfo) -> (&Arc<FileBytes>, u64) {
        let (bytes, data_offset) = match info.part.checked_sub(1).and_then(|i| self.parts.get(i)) {
            Some(part) => (&part.bytes, part.data_offset),
            None => (&self.bytes, self.data_offset),
        };
        (bytes, data_offset.saturating_add(info.offset))
    }

    /// The bytes of the tensor called `name`; an error naming the file if there is none.
    pub fn tensor_data_by_name(&self, name: &str) -> Result<&[u8]> {
        let info = self
            .tensor(name)
            .ok_or_else(|| QuantError::format(&self.path, format!("no tensor named `{name}`")))?;
        Ok(self.tensor_data(info))
    }

    fn missing(&self, key: &str) -> QuantError {
        QuantError::format(&self.path, format!("missing metadata key `{key}`"))
    }

    fn mismatch(&self, key: &str, value: &GgufValue, want: &str) -> QuantError {
        let found = match value {
            GgufValue::Array(a) => format!("an array of {} {}", a.len(), a.element_type()),
            v => format!("{} {v}", v.value_type()),
        };
        QuantError::format(
            &self.path,
            format!("metadata `{key}` is {found}, expected {want}"),
        )
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}
