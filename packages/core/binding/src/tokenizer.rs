//! Tokenizers from JavaScript: load off-thread, encode and decode synchronously (prompt-sized
//! work) or off-thread, and an incremental decoder for streaming.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mistralrs_core::sampler::dry::{breaker_sequences, MAX_BREAKER_BYTES};
use mistralrs_core::tokenizer::{DecodeStream, TokenType, Tokenizer, TokenizerError};
use mistralrs_napi_support::{guard, js_error};
use napi::bindgen_prelude::{AsyncTask, Uint32Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;

fn tokenizer_error(err: TokenizerError) -> napi::Error {
    js_error(err.code(), err)
}

#[napi]
pub struct TokenizerHandle {
    pub(crate) inner: Arc<Tokenizer>,
}

#[napi(object)]
pub struct TokenizerInfo {
    pub vocab_size: u32,
    pub bos_id: Option<u32>,
    pub eos_ids: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub kind: String,
}

pub enum TokenizerSource {
    Gguf(PathBuf),
    Json {
        tokenizer: PathBuf,
        config: Option<PathBuf>,
    },
}

pub struct LoadTokenizerTask {
    source: TokenizerSource,
}

#[napi]
impl Task for LoadTokenizerTask {
    type Output = Tokenizer;
    type JsValue = TokenizerHandle;

    fn compute(&mut self) -> napi::Result<Tokenizer> {
        let tokenizer = guard(|| {
            match &self.source {
                TokenizerSource::Gguf(path) => Tokenizer::from_gguf_path(path),
                TokenizerSource::Json { tokenizer, config } => {
                    Tokenizer::from_tokenizer_json(tokenizer, config.as_deref())
                }
            }
            .map_err(tokenizer_error)
        });
        // Building a large vocabulary's tables (SentencePiece merges, say) frees more than it
        // keeps.
        mistralrs_common::memory::return_freed_memory();
        tokenizer
    }

    fn resolve(&mut self, _env: Env, tokenizer: Tokenizer) -> napi::Result<TokenizerHandle> {
        Ok(TokenizerHandle {
            inner: Arc::new(tokenizer),
        })
    }
}

/// The tokenizer of a GGUF file (`tokenizer.ggml.*`).
#[napi(ts_return_type = "Promise<TokenizerHandle>")]
pub fn tokenizer_from_gguf(path: String) -> AsyncTask<LoadTokenizerTask> {
    AsyncTask::new(LoadTokenizerTask {
        source: TokenizerSource::Gguf(PathBuf::from(path)),
    })
}

/// A Hugging Face `tokenizer.json` (and optionally its `tokenizer_config.json`).
#[napi(ts_return_type = "Promise<TokenizerHandle>")]
pub fn tokenizer_from_file(path: String, config: Option<String>) -> AsyncTask<LoadTokenizerTask> {
    AsyncTask::new(LoadTokenizerTask {
        source: TokenizerSource::Json {
            tokenizer: PathBuf::from(path),
            config: config.map(PathBuf::from),
        },
    })
}

pub struct EncodeTask {
    tokenizer: Arc<Tokenizer>,
    text: String,
    add_special: bool,
    parse_special: bool,
}

#[napi]
impl Task for EncodeTask {
    type Output = Vec<u32>;
    type JsValue = Uint32Array;

    fn compute(&mut self) -> napi::Result<Vec<u32>> {
        guard(|| {
            self.tokenizer
                .encode(&self.text, self.add_special, self.parse_special)
                .map_err(tokenizer_error)
        })
    }

    fn resolve(&mut self, _env: Env, ids: Vec<u32>) -> napi::Result<Uint32Array> {
        Ok(Uint32Array::new(ids))
    }
}

pub struct DryBreakersTask {
    tokenizer: Arc<Tokenizer>,
    breakers: Vec<String>,
}

#[napi]
impl Task for DryBreakersTask {
    type Output = Vec<Vec<u32>>;
    type JsValue = Vec<Vec<u32>>;

    fn compute(&mut self) -> napi::Result<Vec<Vec<u32>>> {
        guard(|| {
            let t = &self.tokenizer;
            if let Some(long) = self.breakers.iter().find(|b| b.len() > MAX_BREAKER_BYTES) {
                return Err(js_error(
                    "InvalidArgumentError",
                    format!(
                        "the DRY sequence breaker {long:?} has {} bytes; at most {MAX_BREAKER_BYTES} are allowed",
                        long.len()
                    ),
                ));
            }
            Ok(breaker_sequences(
                &self.breakers,
                t.vocab_size() as u32,
                |id| t.token_to_piece(id).unwrap_or_default(),
                |text| t.encode(text, false, false).unwrap_or_default(),
            ))
        })
    }

    fn resolve(&mut self, _env: Env, sequences: Vec<Vec<u32>>) -> napi::Result<Vec<Vec<u32>>> {
        Ok(sequences)
    }
}

fn token_type_name(t: TokenType) -> &'static str {
    match t {
        TokenType::Normal => "normal",
        TokenType::Unknown => "unknown",
        TokenType::Control => "control",
        TokenType::UserDefined => "user_defined",
        TokenType::Unused => "unused",
        TokenType::Byte => "byte",
    }
}

#[napi]
impl TokenizerHandle {
    #[napi(catch_unwind)]
    pub fn info(&self) -> TokenizerInfo {
        let t = &self.inner;
        TokenizerInfo {
            vocab_size: t.vocab_size() as u32,
            bos_id: t.bos_id(),
            eos_ids: t.eos_ids(),
            add_bos: t.add_bos(),
            add_eos: t.add_eos(),
            kind: t.model_kind().to_string(),
        }
    }

    #[napi(catch_unwind)]
    pub fn encode(
        &self,
        text: String,
        add_special: bool,
        parse_special: bool,
    ) -> napi::Result<Uint32Array> {
        let ids = self
            .inner
            .encode(&text, add_special, parse_special)
            .map_err(tokenizer_error)?;
        Ok(Uint32Array::new(ids))
    }

    #[napi(ts_return_type = "Promise<Uint32Array>")]
    pub fn encode_async(
        &self,
        text: String,
        add_special: bool,
        parse_special: bool,
    ) -> AsyncTask<EncodeTask> {
        AsyncTask::new(EncodeTask {
            tokenizer: Arc::clone(&self.inner),
            text,
            add_special,
            parse_special,
        })
    }

    #[napi(catch_unwind)]
    pub fn decode(&self, ids: Uint32Array, skip_special: bool) -> napi::Result<String> {
        self.inner
            .decode(&ids, skip_special)
            .map_err(tokenizer_error)
    }

    #[napi(catch_unwind)]
    pub fn token_to_piece(&self, id: u32) -> napi::Result<Uint8Array> {
        Ok(Uint8Array::new(
            self.inner.token_to_piece(id).map_err(tokenizer_error)?,
        ))
    }

    #[napi(catch_unwind)]
    pub fn token_text(&self, id: u32) -> napi::Result<String> {
        Ok(self
            .inner
            .token_text(id)
            .map_err(tokenizer_error)?
            .to_string())
    }

    #[napi(catch_unwind)]
    pub fn token_type(&self, id: u32) -> napi::Result<String> {
        Ok(token_type_name(self.inner.token_type(id).map_err(tokenizer_error)?).to_string())
    }

    /// DRY's sequence breakers (text) as token sequences, head first, read against this
    /// vocabulary as llama.cpp reads them (a scan of every token: off the JavaScript thread).
    #[napi(ts_return_type = "Promise<Array<Array<number>>>")]
    pub fn dry_sequence_breakers(&self, breakers: Vec<String>) -> AsyncTask<DryBreakersTask> {
        AsyncTask::new(DryBreakersTask {
            tokenizer: Arc::clone(&self.inner),
            breakers,
        })
    }

    #[napi]
    pub fn create_decoder(&self, skip_special: bool) -> DecoderHandle {
        DecoderHandle {
            stream: Mutex::new(DecodeStream::new(Arc::clone(&self.inner), skip_special)),
        }
    }
}

/// Incremental decoding state of one generation.
#[napi]
pub struct DecoderHandle {
    stream: Mutex<DecodeStream>,
}

#[napi]
impl DecoderHandle {
    /// The text completed by `id`, "" while a character is incomplete.
    #[napi(catch_unwind)]
    pub fn push(&self, id: u32) -> napi::Result<String> {
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| js_error("InternalError", "decoder poisoned"))?;
        Ok(stream
            .push(id)
            .map_err(tokenizer_error)?
            .unwrap_or_default())
    }

    #[napi(catch_unwind)]
    pub fn flush(&self) -> napi::Result<String> {
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| js_error("InternalError", "decoder poisoned"))?;
        stream.flush().map_err(tokenizer_error)
    }
}
