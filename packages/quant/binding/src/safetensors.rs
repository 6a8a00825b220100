//! safetensors files and sharded model folders from JavaScript.

use std::path::PathBuf;
use std::sync::Arc;

use mistralrs_napi_support::{guard, js_error};
use mistralrs_quant::safetensors::{Dtype, SafetensorsFile, SafetensorsModel, SafetensorsWriter};
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use serde_json::json;

use crate::quant_error;

pub enum Source {
    File(SafetensorsFile),
    Model(SafetensorsModel),
}

impl Source {
    fn data(&self, name: &str) -> mistralrs_quant::Result<&[u8]> {
        match self {
            Source::File(f) => f.tensor_data_by_name(name),
            Source::Model(m) => m.tensor_data(name),
        }
    }

    fn to_f32(&self, name: &str) -> mistralrs_quant::Result<Vec<f32>> {
        match self {
            Source::File(f) => f.to_f32(name),
            Source::Model(m) => m.to_f32(name),
        }
    }
}

/// An open safetensors file, or a model folder of shards.
#[napi]
pub struct SafetensorsHandle {
    source: Option<Arc<Source>>,
}

pub struct OpenSafetensorsTask {
    path: PathBuf,
}

#[napi]
impl Task for OpenSafetensorsTask {
    type Output = Source;
    type JsValue = SafetensorsHandle;

    fn compute(&mut self) -> napi::Result<Source> {
        guard(|| {
            let source = if self.path.is_dir() {
                Source::Model(SafetensorsModel::open_dir(&self.path).map_err(quant_error)?)
            } else {
                Source::File(SafetensorsFile::open(&self.path).map_err(quant_error)?)
            };
            Ok(source)
        })
    }

    fn resolve(&mut self, _env: Env, source: Source) -> napi::Result<SafetensorsHandle> {
        Ok(SafetensorsHandle {
            source: Some(Arc::new(source)),
        })
    }
}

/// Opens a `.safetensors` file, or a folder with `model.safetensors.index.json` or
/// `model.safetensors`.
#[napi(ts_return_type = "Promise<SafetensorsHandle>")]
pub fn open_safetensors(path: String) -> AsyncTask<OpenSafetensorsTask> {
    AsyncTask::new(OpenSafetensorsTask {
        path: PathBuf::from(path),
    })
}

#[napi]
impl SafetensorsHandle {
    fn source(&self) -> napi::Result<Arc<Source>> {
        self.source
            .clone()
            .ok_or_else(|| js_error("InvalidArgumentError", "the safetensors file is closed"))
    }

    /// `{ files: [{ path, metadata, tensors: [{ name, dtype, shape, dataOffsets, sizeBytes }] }] }`
    #[napi(catch_unwind)]
    pub fn header_json(&self) -> napi::Result<String> {
        let source = self.source()?;
        let file_json = |f: &SafetensorsFile| {
            let tensors: Vec<_> = f
                .tensors()
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "dtype": t.dtype.name(),
                        "shape": t.shape,
                        "dataOffsets": [t.data_offsets.0, t.data_offsets.1],
                        "sizeBytes": t.size_bytes(),
                    })
                })
                .collect();
            json!({ "path": f.path().display().to_string(), "metadata": f.metadata(), "tensors": tensors })
        };
        let files: Vec<_> = match &*source {
            Source::File(f) => vec![file_json(f)],
            Source::Model(m) => m.shards().iter().map(file_json).collect(),
        };
        Ok(json!({ "files": files }).to_string())
    }

    /// A copy of one tensor's raw bytes.
    #[napi(ts_return_type = "Promise<Uint8Array>")]
    pub fn tensor_bytes(&self, name: String) -> napi::Result<AsyncTask<SafetensorsTensorTask>> {
        Ok(AsyncTask::new(SafetensorsTensorTask {
            source: self.source()?,
            name,
            to_f32: false,
        }))
    }

    /// One tensor converted to f32 (F32, F16, BF16, F64 and the F8 types).
    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn tensor_f32(&self, name: String) -> napi::Result<AsyncTask<SafetensorsTensorTask>> {
        Ok(AsyncTask::new(SafetensorsTensorTask {
            source: self.source()?,
            name,
            to_f32: true,
        }))
    }

    #[napi]
    pub fn close(&mut self) {
        self.source = None;
    }
}

pub struct SafetensorsTensorTask {
    source: Arc<Source>,
    name: String,
    to_f32: bool,
}

#[napi]
impl Task for SafetensorsTensorTask {
    type Output = crate::gguf::TensorOutput;
    type JsValue = napi::Either<Uint8Array, Float32Array>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        use crate::gguf::TensorOutput;
        guard(|| {
            Ok(if self.to_f32 {
                TensorOutput::Floats(self.source.to_f32(&self.name).map_err(quant_error)?)
            } else {
                TensorOutput::Bytes(self.source.data(&self.name).map_err(quant_error)?.to_vec())
            })
        })
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        Ok(output.into_js())
    }
}

#[napi(object)]
pub struct SafetensorsTensorInput {
    pub name: String,
    /// A safetensors dtype name such as "BF16".
    pub dtype: String,
    /// Row-major: the last dimension is contiguous.
    pub shape: Vec<f64>,
    pub data: Uint8Array,
}

pub struct WriteSafetensorsTask {
    path: PathBuf,
    tensors: Vec<(String, Dtype, Vec<u64>, Uint8Array)>,
    metadata: Vec<(String, String)>,
}

#[napi]
impl Task for WriteSafetensorsTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        guard(|| {
            let mut writer = SafetensorsWriter::new();
            for (key, value) in &self.metadata {
                writer.add_metadata(key, value);
            }
            for (name, dtype, shape, data) in &self.tensors {
                writer
                    .add_tensor(name, *dtype, shape, &data[..])
                    .map_err(quant_error)?;
            }
            writer.write(&self.path).map_err(quant_error)
        })
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// Writes a safetensors file as Hugging Face does.
#[napi(ts_return_type = "Promise<void>")]
pub fn write_safetensors(
    path: String,
    tensors: Vec<SafetensorsTensorInput>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> napi::Result<AsyncTask<WriteSafetensorsTask>> {
    let mut parsed = Vec::with_capacity(tensors.len());
    for t in tensors {
        let dtype = Dtype::from_name(&t.dtype).ok_or_else(|| {
            js_error(
                "InvalidArgumentError",
                format!("tensor `{}`: unknown dtype {:?}", t.name, t.dtype),
            )
        })?;
        let shape = crate::gguf_write::dims_u64(&t.name, &t.shape)?;
        parsed.push((t.name, dtype, shape, t.data));
    }
    let mut metadata: Vec<_> = metadata.unwrap_or_default().into_iter().collect();
    metadata.sort();
    Ok(AsyncTask::new(WriteSafetensorsTask {
        path: PathBuf::from(path),
        tensors: parsed,
        metadata,
    }))
}
