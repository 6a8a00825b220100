//! Parsing and validating a safetensors header, with the rules of `huggingface/safetensors`
//! (shared/research/reliability.md §1.4):
//! - the 8-byte length is at most 100 MB and fits in the file;
//! - the header is a UTF-8 JSON object, starting with `{`, trailing spaces allowed;
//! - duplicate keys are refused (serde_json would keep the last one silently);
//! - `__metadata__` is a string-to-string map;
//! - every tensor has a known dtype, `begin <= end`, and `end - begin` equals the checked
//!   product of its shape times the dtype size;
//! - sorted by offset, the tensors cover the data exactly: no gap, no overlap, nothing after
//!   the last one (no room for a polyglot file or many tensors over the same bytes).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::{Dtype, SafetensorsTensorInfo};

/// `MAX_HEADER_SIZE` of the reference implementation.
pub const MAX_HEADER_LEN: u64 = 100_000_000;
pub const METADATA_KEY: &str = "__metadata__";

pub(crate) struct Header {
    /// Sorted by data offset.
    pub tensors: Vec<SafetensorsTensorInfo>,
    pub index: HashMap<String, usize>,
    pub metadata: BTreeMap<String, String>,
    /// File offset of the data: 8 + header length.
    pub data_start: u64,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Header, String> {
    let file_len = bytes.len() as u64;
    let len_bytes: [u8; 8] = match bytes.first_chunk() {
        Some(b) => *b,
        None => {
            return Err(format!(
                "file is {file_len} bytes, too short for the header length"
            ))
        }
    };
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_LEN {
        return Err(format!(
            "header length {header_len} exceeds the limit of {MAX_HEADER_LEN}"
        ));
    }
    if header_len > file_len - 8 {
        return Err(format!(
            "header length {header_len} exceeds the {} bytes after the length field",
            file_len - 8
        ));
    }
    let data_start = 8 + header_len;
    let json = &bytes[8..data_start as usize];
    if json.first() != Some(&b'{') {
        return Err("header does not start with `{`".to_string());
    }
    let root: Map<String, Value> =
        serde_json::from_slice(json).map_err(|e| format!("header is not a JSON object: {e}"))?;
    if let Some(dup) = duplicate_key(json, root.len()) {
        return Err(format!("duplicate key `{dup}` in the header"));
    }

    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(root.len());
    for (name, entry) in &root {
        if name == METADATA_KEY {
            metadata = parse_metadata(entry)?;
        } else {
            tensors.push(parse_tensor(name, entry).map_err(|e| format!("tensor `{name}`: {e}"))?);
        }
    }
    check_coverage(&mut tensors, file_len - data_start)?;
    let index = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    Ok(Header {
        tensors,
        index,
        metadata,
        data_start,
    })
}

fn parse_metadata(entry: &Value) -> Result<BTreeMap<String, String>, String> {
    let map = match entry {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(map) => map,
        _ => return Err(format!("{METADATA_KEY} is not an object")),
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(format!("{METADATA_KEY} value of `{k}` is not a string")),
        })
        .collect()
}

fn parse_tensor(name: &str, entry: &Value) -> Result<SafetensorsTensorInfo, String> {
    let obj = entry.as_object().ok_or("entry is not an object")?;
    let field = |key: &str| obj.get(key).ok_or_else(|| format!("missing `{key}`"));
    let dtype_name = field("dtype")?.as_str().ok_or("`dtype` is not a string")?;
    let dtype = Dtype::from_name(dtype_name)
        .ok_or_else(|| format!("unknown or unsupported dtype `{dtype_name}`"))?;
    let shape = u64_list(field("shape")?).ok_or("`shape` is not a list of unsigned integers")?;
    let offsets = u64_list(field("data_offsets")?)
        .filter(|o| o.len() == 2)
        .ok_or("`data_offsets` is not a pair of unsigned integers")?;
    let (begin, end) = (offsets[0], offsets[1]);
    if begin > end {
        return Err(format!(
            "data_offsets [{begin}, {end}] end before they begin"
        ));
    }
    let n_elements = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("element count of shape {shape:?} overflows"))?;
    let size = n_elements
        .checked_mul(dtype.size_bytes() as u64)
        .ok_or_else(|| format!("byte size of shape {shape:?} overflows"))?;
    if size != end - begin {
        return Err(format!(
            "shape {shape:?} of {dtype} takes {size} bytes but data_offsets [{begin}, {end}] \
             hold {}",
            end - begin
        ));
    }
    Ok(SafetensorsTensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        data_offsets: (begin, end),
        n_elements,
    })
}

fn u64_list(v: &Value) -> Option<Vec<u64>> {
    v.as_array()?.iter().map(Value::as_u64).collect()
}

/// Sorts by offset and checks that the tensors tile the data exactly.
fn check_coverage(tensors: &mut [SafetensorsTensorInfo], data_len: u64) -> Result<(), String> {
    tensors.sort_by_key(|t| t.data_offsets);
    let mut covered = 0u64;
    let mut previous: Option<&str> = None;
    for t in tensors.iter() {
        let (begin, end) = t.data_offsets;
        if begin > covered {
            return Err(format!(
                "data bytes {covered}..{begin} belong to no tensor (before `{}`)",
                t.name
            ));
        }
        if begin < covered {
            let prev = previous.unwrap_or("?");
            return Err(format!(
                "tensor `{}` at [{begin}, {end}] overlaps tensor `{prev}`",
                t.name
            ));
        }
        if end > data_len {
            return Err(format!(
                "tensor `{}` ends at data byte {end} but the data is only {data_len} bytes \
                 (truncated?)",
                t.name
            ));
        }
        covered = end;
        previous = Some(&t.name);
    }
    if covered != data_len {
        return Err(format!(
            "data is {data_len} bytes but the tensors cover only {covered}"
        ));
    }
    Ok(())
}

/// The first key that occurs twice in the top-level object of `json` (valid JSON whose object
/// has `unique` distinct keys), if any. serde_json keeps the last of duplicate keys, so a
/// shorter map than the key count is how a duplicate shows.
fn duplicate_key(json: &[u8], unique: usize) -> Option<String> {
    let keys = top_level_keys(json);
    if keys.len() == unique {
        return None;
    }
    let mut seen = HashSet::new();
    keys.into_iter()
        .filter_map(|raw| serde_json::from_slice::<String>(raw).ok())
        .find(|k| !seen.insert(k.clone()))
        .or_else(|| Some("?".to_string()))
}

/// Raw (still escaped, with quotes) spans of the keys of the top-level object. A flat scan: no
/// recursion, so nesting depth cannot exhaust the stack.
fn top_level_keys(json: &[u8]) -> Vec<&[u8]> {
    let mut keys = Vec::new();
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && expect_key {
                    keys.push(&json[start..(i + 1).min(json.len())]);
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && json[i] == b'{';
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicate_top_level_keys_only() {
        let json = br#"{"a": {"x": 1, "x": 2}, "b\"": "a", "c": [1, {"a": 3}]}"#;
        assert_eq!(top_level_keys(json).len(), 3);
        assert_eq!(duplicate_key(json, 3), None);
        let json = br#"{"a": 1, "\u0061": 2}"#;
        assert_eq!(duplicate_key(json, 1).as_deref(), Some("a"));
    }
}
