//! Parsing the GGUF header: metadata and tensor infos, every field checked before use.
//!
//! The file is hostile input (llama.cpp has shipped a long run of parser CVEs, see
//! shared/research/reliability.md §1.1). The rules kept here:
//! - every count and length is compared with the bytes left *before* anything is allocated,
//!   using the fewest bytes one entry can take, so memory stays a small multiple of the file;
//! - all size arithmetic is checked; dims and element counts stay within i64 as in ggml;
//! - tensor data must follow ggml's layout exactly: offsets in info order, each one the padded
//!   end of the previous tensor, so no gaps, overlaps or reordering, and each range must lie in
//!   the file;
//! - recursion (nested arrays) is bounded, so the stack is too.

use std::collections::HashMap;
use std::fmt::Display;

use super::value::{GgufArray, GgufValue, GgufValueType};
use super::GgufTensorInfo;
use crate::GgmlType;

/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of arrays accepted (an array of arrays is depth 2).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// ggml's `GGUF_MAX_STRING_LENGTH` and `GGUF_MAX_ARRAY_ELEMENTS`: 1 GiB. Beside the bytes-left
/// check, these stop a large model file from turning one metadata entry into a giant copy.
pub const MAX_STRING_LEN: u64 = 1 << 30;
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const ALIGNMENT_KEY: &str = "general.alignment";

const MAGIC: &[u8; 4] = b"GGUF";
/// Fewest bytes a metadata entry takes: key length, one key byte, type id, one value byte.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Fewest bytes a tensor info takes: name length, one name byte, n_dims, type id, offset.
const MIN_TENSOR_BYTES: u64 = 8 + 1 + 4 + 4 + 8;

/// Most entries reserved ahead of parsing them. Counts are already bounded by the bytes left,
/// but a large model file would still let a lying count reserve gigabytes of address space
/// before the parse fails; beyond this, vectors grow with the entries actually read.
const MAX_PREALLOC: usize = 1 << 16;

/// A parse failure: what went wrong and at which byte. The caller adds the file name.
#[derive(Debug)]
pub(crate) struct Fail {
    pub at: u64,
    pub what: String,
}

impl Fail {
    fn new(at: usize, what: impl Into<String>) -> Fail {
        Fail {
            at: at as u64,
            what: what.into(),
        }
    }

    /// Prefixes the message with where in the structure the failure happened.
    fn context(self, prefix: impl Display) -> Fail {
        Fail {
            at: self.at,
            what: format!("{prefix}: {}", self.what),
        }
    }
}

type R<T> = std::result::Result<T, Fail>;

/// Everything in the header, validated.
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, GgufValue)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<GgufTensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    pub data_offset: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64) -> R<&'a [u8]> {
        if n > self.left() {
            let what = format!(
                "needs {n} bytes, only {} left (truncated file?)",
                self.left()
            );
            return Err(Fail::new(self.pos, what));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn fixed<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u32(&mut self) -> R<u32> {
        self.fixed().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> R<u64> {
        self.fixed().map(u64::from_le_bytes)
    }

    /// A u64 length followed by that many bytes of UTF-8. Strings that are not UTF-8 are an
    /// error rather than replaced: every converter writes UTF-8, and a silently altered token
    /// text would make the tokenizer wrong in ways that are hard to trace.
    fn string(&mut self) -> R<String> {
        let start = self.pos;
        let len = self.u64()?;
        if len > MAX_STRING_LEN || len > self.left() {
            let what = format!(
                "string length {len} exceeds the {} bytes left (limit {MAX_STRING_LEN})",
                self.left()
            );
            return Err(Fail::new(start, what));
        }
        let raw = self.take(len)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(Fail::new(
                start + 8 + e.valid_up_to(),
                "string is not valid UTF-8",
            )),
        }
    }
}

pub(crate) fn parse(bytes: &[u8]) -> R<Parsed> {
    let mut cur = Cursor { bytes, pos: 0 };
    let version = parse_preamble(&mut cur)?;
    let n_tensors = cur.u64().map_err(|f| f.context("tensor count"))?;
    let n_kv = cur.u64().map_err(|f| f.context("metadata count"))?;
    // u128: neither product can overflow, whatever the counts.
    let need = n_kv as u128 * MIN_KV_BYTES as u128 + n_tensors as u128 * MIN_TENSOR_BYTES as u128;
    if need > cur.left() as u128 {
        let what = format!(
            "header claims {n_tensors} tensors and {n_kv} metadata entries, which need at least \
             {need} bytes; only {} follow",
            cur.left()
        );
        return Err(Fail::new(8, what));
    }

    let (metadata, key_index, align_at) = parse_metadata(&mut cur, n_kv as usize)?;
    let alignment = match key_index.get(ALIGNMENT_KEY).map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(GgufValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(other) => {
            let what = format!(
                "{ALIGNMENT_KEY} must be a u32 power of two, found {} {other}",
                other.value_type()
            );
            return Err(Fail::new(align_at, what));
        }
    };

    let (tensors, tensor_index, info_pos) = parse_tensor_infos(&mut cur, n_tensors as usize)?;
    let data_offset = align_up(cur.pos as u64, alignment)
        .ok_or_else(|| Fail::new(cur.pos, "data section offset overflows"))?;
    check_layout(
        &tensors,
        &info_pos,
        alignment,
        data_offset,
        bytes.len() as u64,
    )?;
    Ok(Parsed {
        version,
        metadata,
        key_index,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}

fn parse_preamble(cur: &mut Cursor) -> R<u32> {
    let len = cur.bytes.len();
    let magic: [u8; 4] = cur.fixed().map_err(|_| {
        Fail::new(
            0,
            format!("file is {len} bytes, too short for a GGUF header"),
        )
    })?;
    if &magic != MAGIC {
        let what = format!("not a GGUF file: magic is {magic:02x?}, expected \"GGUF\"");
        return Err(Fail::new(0, what));
    }
    let version = cur.u32().map_err(|f| f.context("version"))?;
    match version {
        2 | 3 => Ok(version),
        1 => Err(Fail::new(
            4,
            "GGUF version 1 is not supported (only versions 2 and 3)",
        )),
        v if matches!(v.swap_bytes(), 1..=3) => {
            let what = format!(
                "the version field reads {v:#010x}: this is a big-endian GGUF file, and only \
                 little-endian files are supported"
            );
            Err(Fail::new(4, what))
        }
        v => Err(Fail::new(
            4,
            format!("unsupported GGUF version {v} (only versions 2 and 3)"),
        )),
    }
}

/// Entries in file order, their index by key, and where `general.alignment` starts.
type Metadata = (Vec<(String, GgufValue)>, HashMap<String, usize>, usize);

fn parse_metadata(cur: &mut Cursor, n_kv: usize) -> R<Metadata> {
    let mut metadata = Vec::with_capacity(n_kv.min(MAX_PREALLOC));
    let mut index = HashMap::with_capacity(n_kv.min(MAX_PREALLOC));
    let mut align_at = 0;
    for i in 0..n_kv {
        let start = cur.pos;
        let key = cur
            .string()
            .map_err(|f| f.context(format_args!("metadata entry {i}: key")))?;
        if key.is_empty() {
            return Err(Fail::new(
                start,
                format!("metadata entry {i} has an empty key"),
            ));
        }
        let ctx = |f: Fail| f.context(format_args!("metadata `{key}`"));
        let type_at = cur.pos;
        let type_id = cur.u32().map_err(ctx)?;
        let ty = GgufValueType::from_id(type_id)
            .ok_or_else(|| ctx(Fail::new(type_at, format!("unknown value type {type_id}"))))?;
        let value = read_value(cur, ty, 0).map_err(ctx)?;
        if index.insert(key.clone(), metadata.len()).is_some() {
            return Err(Fail::new(start, format!("duplicate metadata key `{key}`")));
        }
        if key == ALIGNMENT_KEY {
            align_at = start;
        }
        metadata.push((key, value));
    }
    Ok((metadata, index, align_at))
}

/// Reads one value of type `ty`; `depth` is how many arrays enclose it.
fn read_value(cur: &mut Cursor, ty: GgufValueType, depth: usize) -> R<GgufValue> {
    Ok(match ty {
        GgufValueType::U8 => GgufValue::U8(u8::from_le_bytes(cur.fixed()?)),
        GgufValueType::I8 => GgufValue::I8(i8::from_le_bytes(cur.fixed()?)),
        GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(cur.fixed()?)),
        GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(cur.fixed()?)),
        GgufValueType::U32 => GgufValue::U32(cur.u32()?),
        GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(cur.fixed()?)),
        GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(cur.fixed()?)),
        GgufValueType::U64 => GgufValue::U64(cur.u64()?),
        GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(cur.fixed()?)),
        GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(cur.fixed()?)),
        GgufValueType::Bool => GgufValue::Bool(read_bools(cur, 1)?.first() == Some(&true)),
        GgufValueType::String => GgufValue::String(cur.string()?),
        GgufValueType::Array => GgufValue::Array(read_array(cur, depth + 1)?),
    })
}

/// Bools are one byte; anything but 0 or 1 is refused (ggml would read it through a C `bool`,
/// which is undefined behaviour, so no valid writer produces it).
fn read_bools(cur: &mut Cursor, n: u64) -> R<Vec<bool>> {
    let start = cur.pos;
    let raw = cur.take(n)?;
    raw.iter()
        .enumerate()
        .map(|(i, &b)| match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Fail::new(
                start + i,
                format!("bool byte is {b}, not 0 or 1"),
            )),
        })
        .collect()
}

/// Reads `n` little-endian numbers of `N` bytes each, in one bounds check.
fn read_numbers<T, const N: usize>(cur: &mut Cursor, n: u64, conv: fn([u8; N]) -> T) -> R<Vec<T>> {
    // `n * N` cannot overflow: the caller bounded `n` by the bytes left.
    let raw = cur.take(n * N as u64)?;
    let (chunks, _) = raw.as_chunks::<N>();
    Ok(chunks.iter().map(|c| conv(*c)).collect())
}

/// Reads an array body (element type, length, elements); `depth` counts this array.
fn read_array(cur: &mut Cursor, depth: usize) -> R<GgufArray> {
    let start = cur.pos;
    let type_id = cur.u32()?;
    let ty = GgufValueType::from_id(type_id)
        .ok_or_else(|| Fail::new(start, format!("unknown array element type {type_id}")))?;
    let n = cur.u64()?;
    if ty == GgufValueType::Array && depth >= MAX_ARRAY_DEPTH {
        let what = format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels");
        return Err(Fail::new(start, what));
    }
    // Every element takes at least `min_encoded_size` bytes, so this bounds the allocation
    // below by a small multiple of the bytes that are really there.
    if n > MAX_ARRAY_LEN || n > cur.left() / ty.min_encoded_size() {
        let what = format!(
            "array of {n} {ty} elements needs at least {} bytes per element, only {} bytes left \
             (limit {MAX_ARRAY_LEN} elements)",
            ty.min_encoded_size(),
            cur.left()
        );
        return Err(Fail::new(start, what));
    }
    Ok(match ty {
        GgufValueType::U8 => GgufArray::U8(read_numbers(cur, n, u8::from_le_bytes)?),
        GgufValueType::I8 => GgufArray::I8(read_numbers(cur, n, i8::from_le_bytes)?),
        GgufValueType::U16 => GgufArray::U16(read_numbers(cur, n, u16::from_le_bytes)?),
        GgufValueType::I16 => GgufArray::I16(read_numbers(cur, n, i16::from_le_bytes)?),
        GgufValueType::U32 => GgufArray::U32(read_numbers(cur, n, u32::from_le_bytes)?),
        GgufValueType::I32 => GgufArray::I32(read_numbers(cur, n, i32::from_le_bytes)?),
        GgufValueType::F32 => GgufArray::F32(read_numbers(cur, n, f32::from_le_bytes)?),
        GgufValueType::U64 => GgufArray::U64(read_numbers(cur, n, u64::from_le_bytes)?),
        GgufValueType::I64 => GgufArray::I64(read_numbers(cur, n, i64::from_le_bytes)?),
        GgufValueType::F64 => GgufArray::F64(read_numbers(cur, n, f64::from_le_bytes)?),
        GgufValueType::Bool => GgufArray::Bool(read_bools(cur, n)?),
        GgufValueType::String => {
            let mut out = Vec::with_capacity((n as usize).min(MAX_PREALLOC));
            for i in 0..n {
                out.push(
                    cur.string()
                        .map_err(|f| f.context(format_args!("element {i}")))?,
                );
            }
            GgufArray::String(out)
        }
        GgufValueType::Array => {
            let mut out = Vec::with_capacity((n as usize).min(MAX_PREALLOC));
            for i in 0..n {
                let inner = read_array(cur, depth + 1);
                out.push(inner.map_err(|f| f.context(format_args!("element {i}")))?);
            }
            GgufArray::Array(out)
        }
    })
}

type TensorInfos = (Vec<GgufTensorInfo>, HashMap<String, usize>, Vec<usize>);

fn parse_tensor_infos(cur: &mut Cursor, n_tensors: usize) -> R<TensorInfos> {
    let reserve = n_tensors.min(MAX_PREALLOC);
    let mut tensors = Vec::with_capacity(reserve);
    let mut index = HashMap::with_capacity(reserve);
    let mut positions = Vec::with_capacity(reserve);
    for i in 0..n_tensors {
        let start = cur.pos;
        let name = cur
            .string()
            .map_err(|f| f.context(format_args!("tensor info {i}: name")))?;
        if name.is_empty() {
            return Err(Fail::new(
                start,
                format!("tensor info {i} has an empty name"),
            ));
        }
        let info = read_tensor_info(cur, name, start)
            .map_err(|f| f.context(format_args!("tensor info {i}")))?;
        if index.insert(info.name.clone(), tensors.len()).is_some() {
            return Err(Fail::new(
                start,
                format!("duplicate tensor name `{}`", info.name),
            ));
        }
        tensors.push(info);
        positions.push(start);
    }
    Ok((tensors, index, positions))
}

fn read_tensor_info(cur: &mut Cursor, name: String, start: usize) -> R<GgufTensorInfo> {
    let fail = |what: String| Fail::new(start, format!("`{name}`: {what}"));
    let n_dims = cur.u32()?;
    if n_dims as usize > MAX_DIMS {
        return Err(fail(format!(
            "{n_dims} dimensions, at most {MAX_DIMS} allowed"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for j in 0..n_dims {
        let d = cur.u64()?;
        // ggml keeps dims in int64_t; larger values would be negative there.
        if d > i64::MAX as u64 {
            return Err(fail(format!(
                "dimension {j} is {d}, beyond the int64 range of ggml"
            )));
        }
        dims.push(d);
    }
    let type_id = cur.u32()?;
    let ty = GgmlType::from_id(type_id).ok_or_else(|| {
        fail(format!(
            "unknown ggml type id {type_id} (never assigned, or retired by ggml)"
        ))
    })?;
    let offset = cur.u64()?;
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| fail(format!("element count of dims {dims:?} overflows int64")))?;
    // Zero-sized dims are accepted, as ggml does (an empty tensor has no data). Rows must be
    // whole blocks: ggml checks ne[0], which also makes the element count a whole number.
    let block = ty.block_size() as u64;
    let row = dims.first().copied().unwrap_or(1);
    if row % block != 0 {
        let what = format!("rows of {row} elements are not whole {ty} blocks of {block}");
        return Err(fail(what));
    }
    let size_bytes = ty
        .bytes_for(n_elements)
        .ok_or_else(|| fail(format!("byte size of {n_elements} {ty} elements overflows")))?;
    Ok(GgufTensorInfo {
        name,
        dims,
        ty,
        offset,
        n_elements,
        size_bytes,
        part: 0,
    })
}

/// Offsets must be exactly where ggml's writer puts them: the first at 0, each next one at the
/// previous end rounded up to the alignment. Each range must lie inside the file.
fn check_layout(
    tensors: &[GgufTensorInfo],
    positions: &[usize],
    alignment: u64,
    data_offset: u64,
    file_len: u64,
) -> R<()> {
    let mut expected = 0u64;
    for (t, &at) in tensors.iter().zip(positions) {
        let fail = |what: String| Fail::new(at, format!("tensor `{}`: {what}", t.name));
        if t.offset % alignment != 0 {
            return Err(fail(format!(
                "offset {} is not a multiple of {alignment}",
                t.offset
            )));
        }
        if t.offset != expected {
            return Err(fail(format!(
                "offset {} but {expected} expected (tensor data must follow in info order, \
                 each padded to the alignment {alignment})",
                t.offset
            )));
        }
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.size_bytes))
            .filter(|&end| end <= file_len)
            .ok_or_else(|| {
                fail(format!(
                    "{} bytes of data at file offset {} + {} do not fit in the {file_len}-byte \
                     file (truncated?)",
                    t.size_bytes, data_offset, t.offset
                ))
            })?;
        debug_assert!(end <= file_len);
        expected = t
            .offset
            .checked_add(t.size_bytes)
            .and_then(|e| align_up(e, alignment))
            .ok_or_else(|| fail("end offset overflows".to_string()))?;
    }
    Ok(())
}

/// `value` rounded up to a multiple of `alignment` (a power of two), or `None` on overflow.
pub(crate) fn align_up(value: u64, alignment: u64) -> Option<u64> {
    value
        .checked_add(alignment - 1)
        .map(|v| v & !(alignment - 1))
}
