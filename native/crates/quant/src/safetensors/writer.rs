//! Writing safetensors files as Hugging Face does: 8-byte header length, JSON header padded
//! with spaces to a multiple of 8 (so data starts 8-aligned), then the data, tensors in the
//! order added, back to back.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::header::{MAX_HEADER_LEN, METADATA_KEY};
use super::Dtype;
use crate::gguf::bytes::write_atomically;
use crate::{QuantError, Result};

/// Collects tensors and metadata, then writes one safetensors file. Data is borrowed or owned.
#[derive(Default)]
pub struct SafetensorsWriter<'a> {
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
    metadata: BTreeMap<String, String>,
}

struct PendingTensor<'a> {
    name: String,
    dtype: Dtype,
    shape: Vec<u64>,
    data: Cow<'a, [u8]>,
}

impl<'a> SafetensorsWriter<'a> {
    pub fn new() -> Self {
        SafetensorsWriter::default()
    }

    /// Adds (or replaces) one `__metadata__` entry.
    pub fn add_metadata(&mut self, key: &str, value: &str) {
        self.metadata.insert(key.to_string(), value.to_string());
    }

    /// Adds a tensor; `data` must hold exactly the bytes of `shape` in `dtype`.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[u64],
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let data = data.into();
        let fail =
            |what: String| QuantError::invalid(format!("safetensors tensor `{name}`: {what}"));
        if name == METADATA_KEY {
            return Err(fail("the name is reserved for metadata".to_string()));
        }
        if !self.names.insert(name.to_string()) {
            return Err(fail("duplicate tensor name".to_string()));
        }
        let size = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.size_bytes() as u64));
        if size != Some(data.len() as u64) {
            self.names.remove(name);
            return Err(fail(format!(
                "shape {shape:?} of {dtype} takes {size:?} bytes, got {}",
                data.len()
            )));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            data,
        });
        Ok(())
    }

    /// The padded JSON header.
    fn header(&self) -> io::Result<Vec<u8>> {
        let mut root = Map::new();
        if !self.metadata.is_empty() {
            let meta = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())));
            root.insert(METADATA_KEY.to_string(), Value::Object(meta.collect()));
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            let end = offset + t.data.len() as u64;
            let entry =
                json!({ "dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, end] });
            root.insert(t.name.clone(), entry);
            offset = end;
        }
        let mut header = serde_json::to_vec(&Value::Object(root)).map_err(io::Error::other)?;
        header.resize(header.len().next_multiple_of(8), b' ');
        if header.len() as u64 > MAX_HEADER_LEN {
            let what = format!("header of {} bytes exceeds {MAX_HEADER_LEN}", header.len());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        }
        Ok(header)
    }

    /// Writes the whole file to `out`.
    pub fn write_to<W: Write>(&self, mut out: W) -> io::Result<()> {
        let header = self.header()?;
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        for t in &self.tensors {
            out.write_all(&t.data)?;
        }
        out.flush()
    }

    /// The whole file in memory.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .map_err(|e| QuantError::invalid(format!("safetensors: {e}")))?;
        Ok(out)
    }

    /// Writes to a temporary file beside `path`, then renames it over `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomically(path, |out| self.write_to(out))
    }
}
