//! Writing GGUF version 3 files in ggml's layout: header, metadata, tensor infos, then the
//! data section at the alignment, each tensor padded with zeros to the alignment.
//!
//! Everything is validated when added, with the reader's rules, so whatever the writer
//! produces the reader accepts.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{self, Write};
use std::path::Path;

use super::bytes::write_atomically;
use super::reader::{
    align_up, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS,
    MAX_STRING_LEN,
};
use super::value::{GgufArray, GgufValue};
use crate::{GgmlType, QuantError, Result};

const VERSION: u32 = 3;

/// Collects metadata and tensors, then writes them as one GGUF file. Tensor data is borrowed
/// or owned (`&[u8]` or `Vec<u8>`), so a converter can pass slices of a mapped source file.
pub struct GgufWriter<'a> {
    metadata: Vec<(String, GgufValue)>,
    keys: HashSet<String>,
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
    alignment: u64,
}

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Cow<'a, [u8]>,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl<'a> GgufWriter<'a> {
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Adds a metadata entry; entries are written in the order added. `general.alignment`
    /// must be a u32 power of two and sets the alignment of the data.
    pub fn add_metadata(&mut self, key: &str, value: impl Into<GgufValue>) -> Result<()> {
        let value = value.into();
        if key.is_empty() {
            return Err(QuantError::invalid("GGUF metadata keys cannot be empty"));
        }
        if self.keys.contains(key) {
            return Err(QuantError::invalid(format!(
                "duplicate GGUF metadata key `{key}`"
            )));
        }
        if let Some(problem) = check_value(&value) {
            return Err(QuantError::invalid(format!(
                "GGUF metadata `{key}`: {problem}"
            )));
        }
        if key == ALIGNMENT_KEY {
            match value {
                GgufValue::U32(a) if a.is_power_of_two() => self.alignment = u64::from(a),
                _ => {
                    return Err(QuantError::invalid(format!(
                        "{ALIGNMENT_KEY} must be a u32 power of two, got {} {value}",
                        value.value_type()
                    )))
                }
            }
        }
        self.keys.insert(key.to_string());
        self.metadata.push((key.to_string(), value));
        Ok(())
    }

    /// Adds a tensor; `dims` in ggml order (`dims[0]` is the row length). `data` must hold
    /// exactly the bytes that many elements of `ty` take.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let data = data.into();
        let fail = |what: String| QuantError::invalid(format!("GGUF tensor `{name}`: {what}"));
        if name.is_empty() {
            return Err(QuantError::invalid("GGUF tensor names cannot be empty"));
        }
        if self.names.contains(name) {
            return Err(fail("duplicate tensor name".to_string()));
        }
        if dims.len() > MAX_DIMS {
            return Err(fail(format!("{} dims, at most {MAX_DIMS}", dims.len())));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64))
            .ok_or_else(|| fail(format!("dims {dims:?} overflow int64")))?;
        let row = dims.first().copied().unwrap_or(1);
        if row % ty.block_size() as u64 != 0 {
            let block = ty.block_size();
            return Err(fail(format!(
                "rows of {row} are not whole {ty} blocks of {block}"
            )));
        }
        let expected = ty.bytes_for(n_elements);
        if expected != Some(data.len() as u64) {
            return Err(fail(format!(
                "{n_elements} {ty} elements take {expected:?} bytes, got {}",
                data.len()
            )));
        }
        self.names.insert(name.to_string());
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(())
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Writes the whole file to `out`.
    pub fn write_to<W: Write>(&self, out: W) -> io::Result<()> {
        let mut out = Counting {
            inner: out,
            written: 0,
        };
        out.write_all(b"GGUF")?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        out.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_string(&mut out, key)?;
            out.write_all(&value.value_type().id().to_le_bytes())?;
            write_value(&mut out, value)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_string(&mut out, &t.name)?;
            out.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                out.write_all(&d.to_le_bytes())?;
            }
            out.write_all(&t.ty.id().to_le_bytes())?;
            out.write_all(&offset.to_le_bytes())?;
            offset = self.padded(offset + t.data.len() as u64)?;
        }
        self.pad(&mut out)?;
        for t in &self.tensors {
            out.write_all(&t.data)?;
            self.pad(&mut out)?;
        }
        out.inner.flush()
    }

    /// The whole file in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Writes to a temporary file beside `path`, then renames it over `path`, so a reader never
    /// sees a half-written file and a failure leaves any old file in place.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomically(path, |out| self.write_to(out))
    }

    fn padded(&self, offset: u64) -> io::Result<u64> {
        align_up(offset, self.alignment)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "GGUF size overflows u64"))
    }

    fn pad<W: Write>(&self, out: &mut Counting<W>) -> io::Result<()> {
        let target = self.padded(out.written)?;
        let zeros = [0u8; 64];
        let mut left = target - out.written;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            out.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// Counts bytes so that padding can be computed without seeking.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Why the reader would refuse `value`, if it would.
fn check_value(value: &GgufValue) -> Option<String> {
    match value {
        GgufValue::String(s) if s.len() as u64 > MAX_STRING_LEN => Some(format!(
            "string of {} bytes exceeds {MAX_STRING_LEN}",
            s.len()
        )),
        GgufValue::Array(a) if a.depth() > MAX_ARRAY_DEPTH => Some(format!(
            "arrays nested {} deep, at most {MAX_ARRAY_DEPTH}",
            a.depth()
        )),
        GgufValue::Array(a) => check_array(a),
        _ => None,
    }
}

fn check_array(a: &GgufArray) -> Option<String> {
    if a.len() as u64 > MAX_ARRAY_LEN {
        return Some(format!(
            "array of {} elements exceeds {MAX_ARRAY_LEN}",
            a.len()
        ));
    }
    match a {
        GgufArray::String(v) => v
            .iter()
            .find(|s| s.len() as u64 > MAX_STRING_LEN)
            .map(|s| format!("string of {} bytes exceeds {MAX_STRING_LEN}", s.len())),
        GgufArray::Array(v) => v.iter().find_map(check_array),
        _ => None,
    }
}

fn write_string<W: Write>(out: &mut W, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

fn write_value<W: Write>(out: &mut W, value: &GgufValue) -> io::Result<()> {
    match value {
        GgufValue::U8(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::I8(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::U16(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::I16(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::U32(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::I32(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::F32(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::U64(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::I64(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::F64(v) => out.write_all(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.write_all(&[u8::from(*v)]),
        GgufValue::String(s) => write_string(out, s),
        GgufValue::Array(a) => write_array(out, a),
    }
}

/// Little-endian numbers gathered into one buffer, so that a large array is one write rather
/// than one per element.
macro_rules! write_numbers {
    ($out:expr, $values:expr) => {{
        let mut buf = Vec::with_capacity($values.len() * 8);
        for x in $values.iter() {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        $out.write_all(&buf)
    }};
}

/// Element type, length, then the elements without their type (nested arrays carry their own
/// element type and length).
fn write_array<W: Write>(out: &mut W, array: &GgufArray) -> io::Result<()> {
    out.write_all(&array.element_type().id().to_le_bytes())?;
    out.write_all(&(array.len() as u64).to_le_bytes())?;
    match array {
        GgufArray::U8(v) => out.write_all(v),
        GgufArray::I8(v) => write_numbers!(out, v),
        GgufArray::U16(v) => write_numbers!(out, v),
        GgufArray::I16(v) => write_numbers!(out, v),
        GgufArray::U32(v) => write_numbers!(out, v),
        GgufArray::I32(v) => write_numbers!(out, v),
        GgufArray::F32(v) => write_numbers!(out, v),
        GgufArray::U64(v) => write_numbers!(out, v),
        GgufArray::I64(v) => write_numbers!(out, v),
        GgufArray::F64(v) => write_numbers!(out, v),
        GgufArray::Bool(v) => out.write_all(&v.iter().map(|&b| u8::from(b)).collect::<Vec<_>>()),
        GgufArray::String(v) => v.iter().try_for_each(|s| write_string(out, s)),
        GgufArray::Array(v) => v.iter().try_for_each(|a| write_array(out, a)),
    }
}
