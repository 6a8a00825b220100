//! Writing GGUF files from JavaScript. Metadata arrives in the same typed JSON form that
//! `GgufHandle::header_json` produces, so a file read and written back is unchanged.

use std::path::PathBuf;

use mistralrs_napi_support::{guard, js_error};
use mistralrs_quant::gguf::{GgufArray, GgufValue, GgufValueType, GgufWriter};
use mistralrs_quant::GgmlType;
use napi::bindgen_prelude::{AsyncTask, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use serde_json::Value;

use crate::quant_error;

#[napi(object)]
pub struct GgufTensorInput {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<f64>,
    /// A ggml type name such as "Q4_K".
    pub r#type: String,
    /// Exactly the bytes `dims` elements of `type` take.
    pub data: Uint8Array,
}

pub struct WriteGgufTask {
    path: PathBuf,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Uint8Array)>,
}

#[napi]
impl Task for WriteGgufTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        guard(|| {
            let mut writer = GgufWriter::new();
            for (key, value) in &self.metadata {
                writer
                    .add_metadata(key, value.clone())
                    .map_err(quant_error)?;
            }
            for (name, dims, ty, data) in &self.tensors {
                writer
                    .add_tensor(name, dims, *ty, &data[..])
                    .map_err(quant_error)?;
            }
            writer.write(&self.path).map_err(quant_error)
        })
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// Writes a GGUF v3 file. `metadata_json` is an array of `{ key, type, value }` entries.
#[napi(ts_return_type = "Promise<void>")]
pub fn write_gguf(
    path: String,
    metadata_json: String,
    tensors: Vec<GgufTensorInput>,
) -> napi::Result<AsyncTask<WriteGgufTask>> {
    let invalid = |what: String| js_error("InvalidArgumentError", what);
    let entries: Vec<Value> = serde_json::from_str(&metadata_json)
        .map_err(|e| invalid(format!("metadata is not a JSON array: {e}")))?;
    let mut metadata = Vec::with_capacity(entries.len());
    for entry in &entries {
        let key = entry["key"]
            .as_str()
            .ok_or_else(|| invalid("a metadata entry has no key".into()))?;
        let ty = entry["type"].as_str().unwrap_or_default();
        let value = wire_value(ty, &entry["value"])
            .map_err(|what| invalid(format!("metadata `{key}`: {what}")))?;
        metadata.push((key.to_string(), value));
    }
    let mut parsed = Vec::with_capacity(tensors.len());
    for t in tensors {
        let ty = GgmlType::from_name(&t.r#type)
            .ok_or_else(|| invalid(format!("tensor `{}`: unknown type {:?}", t.name, t.r#type)))?;
        let dims = dims_u64(&t.name, &t.dims)?;
        parsed.push((t.name, dims, ty, t.data));
    }
    Ok(AsyncTask::new(WriteGgufTask {
        path: PathBuf::from(path),
        metadata,
        tensors: parsed,
    }))
}

/// JavaScript numbers as dimensions: whole, non-negative and exact (below 2^53).
pub(crate) fn dims_u64(tensor: &str, dims: &[f64]) -> napi::Result<Vec<u64>> {
    dims.iter()
        .map(|&d| {
            (d.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(&d))
                .then_some(d as u64)
                .ok_or_else(|| {
                    js_error(
                        "InvalidArgumentError",
                        format!("tensor `{tensor}`: bad dimension {d}"),
                    )
                })
        })
        .collect()
}

fn value_type(name: &str) -> Result<GgufValueType, String> {
    (0..=12)
        .filter_map(GgufValueType::from_id)
        .find(|t| t.name() == name)
        .ok_or_else(|| format!("unknown value type {name:?}"))
}

fn int<T: TryFrom<i128>>(v: &Value) -> Result<T, String> {
    let wide: Option<i128> = match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    wide.and_then(|w| T::try_from(w).ok())
        .ok_or_else(|| format!("{v} is not a valid integer here"))
}

fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{v} is not a number")),
        Value::String(s) if s == "NaN" => Ok(f64::NAN),
        Value::String(s) if s == "Infinity" => Ok(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => Err(format!("{v} is not a number")),
    }
}

fn wire_value(ty: &str, v: &Value) -> Result<GgufValue, String> {
    Ok(match value_type(ty)? {
        GgufValueType::U8 => GgufValue::U8(int(v)?),
        GgufValueType::I8 => GgufValue::I8(int(v)?),
        GgufValueType::U16 => GgufValue::U16(int(v)?),
        GgufValueType::I16 => GgufValue::I16(int(v)?),
        GgufValueType::U32 => GgufValue::U32(int(v)?),
        GgufValueType::I32 => GgufValue::I32(int(v)?),
        GgufValueType::U64 => GgufValue::U64(int(v)?),
        GgufValueType::I64 => GgufValue::I64(int(v)?),
        GgufValueType::F32 => GgufValue::F32(float(v)? as f32),
        GgufValueType::F64 => GgufValue::F64(float(v)?),
        GgufValueType::Bool => {
            GgufValue::Bool(v.as_bool().ok_or_else(|| format!("{v} is not a bool"))?)
        }
        GgufValueType::String => GgufValue::String(
            v.as_str()
                .ok_or_else(|| format!("{v} is not a string"))?
                .to_string(),
        ),
        GgufValueType::Array => GgufValue::Array(wire_array(v, 0)?),
    })
}

fn wire_array(v: &Value, depth: usize) -> Result<GgufArray, String> {
    if depth > mistralrs_quant::gguf::MAX_ARRAY_DEPTH {
        return Err("arrays nested too deeply".to_string());
    }
    let item_type = value_type(v["itemType"].as_str().unwrap_or_default())?;
    let items = v["items"]
        .as_array()
        .ok_or_else(|| "an array needs `items`".to_string())?;
    let all = |f: &dyn Fn(&Value) -> Result<GgufValue, String>| {
        items.iter().map(f).collect::<Result<Vec<_>, _>>()
    };
    let scalars = all(&|item| wire_value(item_type.name(), item));
    macro_rules! collect {
        ($variant:ident) => {
            GgufArray::$variant(
                scalars?
                    .into_iter()
                    .filter_map(|s| match s {
                        GgufValue::$variant(x) => Some(x),
                        _ => None,
                    })
                    .collect(),
            )
        };
    }
    Ok(match item_type {
        GgufValueType::Array => GgufArray::Array(
            items
                .iter()
                .map(|item| wire_array(item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        GgufValueType::U8 => collect!(U8),
        GgufValueType::I8 => collect!(I8),
        GgufValueType::U16 => collect!(U16),
        GgufValueType::I16 => collect!(I16),
        GgufValueType::U32 => collect!(U32),
        GgufValueType::I32 => collect!(I32),
        GgufValueType::U64 => collect!(U64),
        GgufValueType::I64 => collect!(I64),
        GgufValueType::F32 => collect!(F32),
        GgufValueType::F64 => collect!(F64),
        GgufValueType::Bool => collect!(Bool),
        GgufValueType::String => collect!(String),
    })
}
