//! Embedding models from JavaScript: load off-thread, then one `embed` per batch of inputs
//! (an AsyncTask on the libuv pool; the encoder runs on the native thread pool).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::model::model_error;
use mistralrs_core::embedding::Embedder;
use mistralrs_core::runner::WeightDtype;
use mistralrs_napi_support::{guard, js_error};
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint32Array};
use napi::{Env, Task};
use napi_derive::napi;

#[napi(object)]
pub struct LoadEmbeddingModelOptions {
    /// `auto` (default), `f32`, `f16` or `bf16`: how the transformer's matrices are stored.
    pub dtype: Option<String>,
    /// The architecture expected (`-a`); a folder of another is refused.
    pub architecture: Option<String>,
}

#[napi(object)]
pub struct EmbeddingModelInfo {
    pub architecture: String,
    pub vocab_size: u32,
    pub hidden_size: u32,
    pub n_layers: u32,
    /// The width of the embeddings.
    pub dimensions: u32,
    /// Tokens an input may hold.
    pub max_tokens: u32,
    pub context_length: u32,
    /// Pooling modes, in the order their vectors concatenate.
    pub pooling: Vec<String>,
    pub dense_layers: u32,
    pub normalize: bool,
    pub bidirectional: bool,
    pub weight_bytes: f64,
}

type Shared = Arc<Mutex<Option<Embedder>>>;

#[napi]
pub struct EmbeddingModelHandle {
    /// `None` once released.
    embedder: Shared,
}

fn with_embedder<T>(
    embedder: &Mutex<Option<Embedder>>,
    f: impl FnOnce(&mut Embedder) -> napi::Result<T>,
) -> napi::Result<T> {
    crate::slot::with_loaded(embedder, "embedding model", f)
}

pub struct LoadEmbeddingTask {
    path: PathBuf,
    architecture: Option<String>,
    dtype: WeightDtype,
}

#[napi]
impl Task for LoadEmbeddingTask {
    type Output = Embedder;
    type JsValue = EmbeddingModelHandle;

    fn compute(&mut self) -> napi::Result<Embedder> {
        let loaded = guard(|| {
            Embedder::load(&self.path, self.architecture.as_deref(), self.dtype)
                .map_err(model_error)
        });
        mistralrs_common::memory::return_freed_memory();
        loaded
    }

    fn resolve(&mut self, _env: Env, embedder: Embedder) -> napi::Result<EmbeddingModelHandle> {
        Ok(EmbeddingModelHandle {
            embedder: Arc::new(Mutex::new(Some(embedder))),
        })
    }
}

/// Loads the embedding model of a sentence-transformers folder.
#[napi(ts_return_type = "Promise<EmbeddingModelHandle>")]
pub fn load_embedding_model(
    path: String,
    options: Option<LoadEmbeddingModelOptions>,
) -> napi::Result<AsyncTask<LoadEmbeddingTask>> {
    let (dtype, architecture) = options.map_or((None, None), |o| (o.dtype, o.architecture));
    let dtype = match dtype.as_deref() {
        None => WeightDtype::Auto,
        Some(name) => WeightDtype::parse(name).ok_or_else(|| {
            js_error(
                "InvalidArgumentError",
                format!("dtype `{name}` is not one of auto, f32, f16, bf16"),
            )
        })?,
    };
    Ok(AsyncTask::new(LoadEmbeddingTask {
        path: PathBuf::from(path),
        architecture,
        dtype,
    }))
}

/// What a batch computes: the embeddings, or the final token states before pooling (tests).
#[derive(Clone, Copy)]
enum Output {
    Embeddings,
    HiddenStates,
}

pub struct EmbedTask {
    embedder: Shared,
    batch: Vec<Uint32Array>,
    output: Output,
}

#[napi]
impl Task for EmbedTask {
    type Output = Vec<Vec<f32>>;
    type JsValue = Vec<Float32Array>;

    fn compute(&mut self) -> napi::Result<Vec<Vec<f32>>> {
        guard(|| {
            let batch: Vec<&[u32]> = self.batch.iter().map(|s| &s[..]).collect();
            with_embedder(&self.embedder, |e| {
                match self.output {
                    Output::Embeddings => e.embed(&batch),
                    Output::HiddenStates => e.hidden_states(&batch),
                }
                .map_err(model_error)
            })
        })
    }

    fn resolve(&mut self, _env: Env, output: Vec<Vec<f32>>) -> napi::Result<Vec<Float32Array>> {
        Ok(output.into_iter().map(Float32Array::new).collect())
    }
}

#[napi]
impl EmbeddingModelHandle {
    #[napi(catch_unwind)]
    pub fn info(&self) -> napi::Result<EmbeddingModelInfo> {
        with_embedder(&self.embedder, |e| {
            let c = e.config();
            let head = e.head();
            Ok(EmbeddingModelInfo {
                architecture: c.architecture.clone(),
                vocab_size: c.vocab_size as u32,
                hidden_size: c.hidden_size as u32,
                n_layers: c.n_layers as u32,
                dimensions: e.dimensions() as u32,
                max_tokens: e.max_tokens() as u32,
                context_length: c.context_length as u32,
                pooling: head.pooling.names().into_iter().map(String::from).collect(),
                dense_layers: head.dense.len() as u32,
                normalize: head.normalize,
                bidirectional: e.bidirectional(),
                weight_bytes: e.weight_bytes() as f64,
            })
        })
    }

    /// One embedding per input (token ids), computed in one pass.
    #[napi(ts_return_type = "Promise<Array<Float32Array>>")]
    pub fn embed(&self, batch: Vec<Uint32Array>) -> AsyncTask<EmbedTask> {
        AsyncTask::new(EmbedTask {
            embedder: Arc::clone(&self.embedder),
            batch,
            output: Output::Embeddings,
        })
    }

    /// The final norm's output for every token of each input (`[len × hidden]` each), before
    /// pooling: what transformers' `last_hidden_state` holds.
    #[napi(ts_return_type = "Promise<Array<Float32Array>>")]
    pub fn hidden_states(&self, batch: Vec<Uint32Array>) -> AsyncTask<EmbedTask> {
        AsyncTask::new(EmbedTask {
            embedder: Arc::clone(&self.embedder),
            batch,
            output: Output::HiddenStates,
        })
    }

    /// Frees the model now; every later call fails. A batch in flight finishes first.
    #[napi(catch_unwind)]
    pub fn release(&self) -> napi::Result<()> {
        crate::slot::release(&self.embedder, "embedding model")
    }
}
