//! GGUF files from JavaScript: open (off-thread), the header as JSON, tensor data and
//! dequantized tensors, and writing.

use std::path::PathBuf;
use std::sync::Arc;

use mistralrs_napi_support::{guard, js_error};
use mistralrs_quant::formats;
use mistralrs_quant::gguf::{GgufArray, GgufFile, GgufValue};
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use serde_json::{json, Value};

use crate::quant_error;

/// An open GGUF file; the data stays mapped until the object is collected or closed.
#[napi]
pub struct GgufHandle {
    file: Option<Arc<GgufFile>>,
}

impl GgufHandle {
    fn file(&self) -> napi::Result<Arc<GgufFile>> {
        self.file
            .clone()
            .ok_or_else(|| js_error("InvalidArgumentError", "the GGUF file is closed"))
    }
}

pub struct OpenGgufTask {
    path: PathBuf,
}

#[napi]
impl Task for OpenGgufTask {
    type Output = GgufFile;
    type JsValue = GgufHandle;

    fn compute(&mut self) -> napi::Result<GgufFile> {
        guard(|| GgufFile::open(&self.path).map_err(quant_error))
    }

    fn resolve(&mut self, _env: Env, file: GgufFile) -> napi::Result<GgufHandle> {
        Ok(GgufHandle {
            file: Some(Arc::new(file)),
        })
    }
}

/// Opens and validates a GGUF file (the tensor data is memory-mapped, not read).
#[napi(ts_return_type = "Promise<GgufHandle>")]
pub fn open_gguf(path: String) -> AsyncTask<OpenGgufTask> {
    AsyncTask::new(OpenGgufTask {
        path: PathBuf::from(path),
    })
}

#[napi]
impl GgufHandle {
    /// The header as JSON: version, alignment, offsets, typed metadata and tensor infos.
    /// 64-bit integers and non-finite floats are strings (JSON has neither).
    #[napi(catch_unwind)]
    pub fn header_json(&self) -> napi::Result<String> {
        let file = self.file()?;
        let metadata: Vec<Value> = file
            .metadata()
            .iter()
            .map(|(key, value)| {
                json!({ "key": key, "type": value.value_type().name(), "value": value_json(value) })
            })
            .collect();
        let tensors: Vec<Value> = file
            .tensors()
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "dims": t.dims,
                    "type": t.ty.name(),
                    "offset": t.offset,
                    "nElements": t.n_elements,
                    "sizeBytes": t.size_bytes,
                })
            })
            .collect();
        let header = json!({
            "path": file.path().display().to_string(),
            "version": file.version(),
            "alignment": file.alignment(),
            "dataOffset": file.data_offset(),
            "fileSize": file.file_size(),
            "metadata": metadata,
            "tensors": tensors,
        });
        Ok(header.to_string())
    }

    /// A copy of one tensor's raw bytes.
    #[napi(ts_return_type = "Promise<Uint8Array>")]
    pub fn tensor_bytes(&self, name: String) -> napi::Result<AsyncTask<TensorTask>> {
        Ok(AsyncTask::new(TensorTask {
            file: self.file()?,
            name,
            dequantize: false,
        }))
    }

    /// One tensor dequantized to f32 (ggml order: the first dimension is contiguous).
    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn dequantize_tensor(&self, name: String) -> napi::Result<AsyncTask<TensorTask>> {
        Ok(AsyncTask::new(TensorTask {
            file: self.file()?,
            name,
            dequantize: true,
        }))
    }

    /// Releases the mapping now rather than when the object is collected. Pending reads keep
    /// their own reference and finish normally.
    #[napi]
    pub fn close(&mut self) {
        self.file = None;
    }
}

/// A tensor handed to JavaScript: raw bytes or converted floats, moved without a copy.
pub enum TensorOutput {
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
}

impl TensorOutput {
    pub fn into_js(self) -> napi::Either<Uint8Array, Float32Array> {
        match self {
            TensorOutput::Bytes(b) => napi::Either::A(Uint8Array::new(b)),
            TensorOutput::Floats(f) => napi::Either::B(Float32Array::new(f)),
        }
    }
}

pub struct TensorTask {
    file: Arc<GgufFile>,
    name: String,
    dequantize: bool,
}

#[napi]
impl Task for TensorTask {
    type Output = TensorOutput;
    type JsValue = napi::Either<Uint8Array, Float32Array>;

    fn compute(&mut self) -> napi::Result<TensorOutput> {
        guard(|| {
            let info = self.file.tensor(&self.name).ok_or_else(|| {
                js_error(
                    "InvalidArgumentError",
                    format!(
                        "{}: no tensor named {:?}",
                        self.file.path().display(),
                        self.name
                    ),
                )
            })?;
            let data = self.file.tensor_data(info);
            if !self.dequantize {
                return Ok(TensorOutput::Bytes(data.to_vec()));
            }
            let n = usize::try_from(info.n_elements)
                .map_err(|_| js_error("InvalidArgumentError", "tensor too large"))?;
            let mut out = vec![0f32; n];
            formats::dequantize(info.ty, data, &mut out).map_err(quant_error)?;
            Ok(TensorOutput::Floats(out))
        })
    }

    fn resolve(&mut self, _env: Env, output: TensorOutput) -> napi::Result<Self::JsValue> {
        Ok(output.into_js())
    }
}

fn float_json(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("NaN")
    } else if v > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

fn value_json(value: &GgufValue) -> Value {
    match value {
        GgufValue::U8(v) => json!(v),
        GgufValue::I8(v) => json!(v),
        GgufValue::U16(v) => json!(v),
        GgufValue::I16(v) => json!(v),
        GgufValue::U32(v) => json!(v),
        GgufValue::I32(v) => json!(v),
        GgufValue::F32(v) => float_json(f64::from(*v)),
        GgufValue::Bool(v) => json!(v),
        GgufValue::String(v) => json!(v),
        GgufValue::Array(a) => array_json(a),
        GgufValue::U64(v) => json!(v.to_string()),
        GgufValue::I64(v) => json!(v.to_string()),
        GgufValue::F64(v) => float_json(*v),
    }
}

fn array_json(array: &GgufArray) -> Value {
    let items: Vec<Value> = match array {
        GgufArray::U8(v) => v.iter().map(|x| json!(x)).collect(),
        GgufArray::I8(v) => v.iter().map(|x| json!(x)).collect(),
        GgufArray::U16(v) => v.iter().map(|x| json!(x)).collect(),
        GgufArray::I16(v) => v.iter().map(|x| json!(x)).collect(),
        GgufArray::U32(v) => v.iter().map(|x| json!(x)).collect(),
        GgufArray::I32(v) => v.iter().map(|x| json!(x)).collect(),
        GgufArray::F32(v) => v.iter().map(|x| float_json(f64::from(*x))).collect(),
        GgufArray::Bool(v) => v.iter().map(|x| json!(x)).collect(),
        GgufArray::String(v) => v.iter().map(|x| json!(x)).collect(),
        GgufArray::Array(v) => v.iter().map(array_json).collect(),
        GgufArray::U64(v) => v.iter().map(|x| json!(x.to_string())).collect(),
        GgufArray::I64(v) => v.iter().map(|x| json!(x.to_string())).collect(),
        GgufArray::F64(v) => v.iter().map(|x| float_json(*x)).collect(),
    };
    json!({ "itemType": array.element_type().name(), "items": items })
}
