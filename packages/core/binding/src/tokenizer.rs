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

pub(crate) fn tokenizer_error(err: TokenizerError) -> napi::Error {
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

/// See `TokenizerHandle::text_bound`.
#[napi(object)]
pub struct TextBound {
    pub bytes_per_token: u32,
    /// Bytes that no token spells: they produce no token, so they do not count.
    pub uncounted_bytes: Vec<u32>,
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

    /// The most bytes of input text one token can stand for, and the bytes no token spells
    /// (a byte-level vocabulary drops them), or null where no bound holds: WordPiece and
    /// Unigram, a SentencePiece vocabulary without every byte (its unknown runs become one
    /// token), a byte-level one that cannot spell a byte that normalisation may produce.
    /// Text with N other bytes then has at least N / bound tokens, which lets a prompt far
    /// past the context be refused without tokenizing it.
    #[napi(catch_unwind)]
    pub fn text_bound(&self) -> napi::Result<Option<TextBound>> {
        let t = &self.inner;
        let encode = |text: &str| t.encode(text, false, false).map_err(tokenizer_error);
        let factor = match t.model_kind() {
            // SentencePiece's normaliser only adds text (a space prefix, 3-byte "▁" for " ").
            "llama" => 1,
            // A byte-level BPE may normalise to NFC first, which composes at most 3 bytes
            // into 1 (a Hangul syllable from its three jamo). Seen at work on "e" + U+0301.
            "gpt2" if encode("e\u{301}")? == encode("\u{e9}")? => 3,
            "gpt2" => 1,
            _ => return Ok(None),
        };
        let mut spelled = [false; 256];
        let mut longest = 1usize;
        for id in 0..t.vocab_size() as u32 {
            let piece = t.token_to_piece(id).map_err(tokenizer_error)?;
            if let [byte] = piece[..] {
                spelled[byte as usize] = true;
            }
            let text = t.token_text(id).map_err(tokenizer_error)?.len();
            longest = longest.max(piece.len()).max(text);
        }
        // 0xC0, 0xC1 and 0xF5.. never occur in UTF-8 text.
        let occurs = |b: usize| !matches!(b, 0xC0 | 0xC1 | 0xF5..=0xFF);
        let unspelled: Vec<u32> = (0..256)
            .filter(|&b| occurs(b) && !spelled[b])
            .map(|b| b as u32)
            .collect();
        // NFC neither makes nor takes ASCII controls or the lead bytes of planes 1 to 16;
        // other unspelled bytes could come out of a composition the count cannot foresee.
        let countable = unspelled.iter().all(|b| !(0x80..0xF0).contains(b));
        if (t.model_kind() == "llama" && !unspelled.is_empty()) || !countable {
            return Ok(None);
        }
        Ok(u32::try_from(longest * factor)
            .ok()
            .map(|bytes_per_token| TextBound {
                bytes_per_token,
                uncounted_bytes: unspelled,
            }))
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
