//! Text ↔ token ids, on Hugging Face's `tokenizers` crate (pure Rust: fancy-regex, no onig).
//!
//! A [`Tokenizer`] comes from a GGUF file's `tokenizer.ggml.*` metadata (the pipeline HF's
//! converters would write for that vocabulary is rebuilt in `gguf.rs` / `models.rs`, the
//! pre-tokenizer per `tokenizer.ggml.pre` in `pre_tokenizers.rs`) or from a `tokenizer.json`
//! (`json.rs`). Both give the same API; [`DecodeStream`] turns generated ids into text chunks.
//!
//! ```no_run
//! # fn main() -> Result<(), mistralrs_core::tokenizer::TokenizerError> {
//! use mistralrs_core::tokenizer::{DecodeStream, Tokenizer};
//! let tok = std::sync::Arc::new(Tokenizer::from_gguf_path("model.gguf".as_ref())?);
//! let ids = tok.encode("Hello world", true, false)?; // BOS per the file, "<s>" stays text
//! assert_eq!(tok.decode(&ids, true)?, "Hello world");
//! let mut stream = DecodeStream::new(tok.clone(), true);
//! for &id in &ids {
//!     if let Some(text) = stream.push(id)? {
//!         print!("{text}");
//!     }
//! }
//! print!("{}", stream.flush()?);
//! # Ok(()) }
//! ```
//!
//! Nothing here spawns threads: we call the single-sequence paths of `tokenizers`, never its
//! rayon-backed batch functions.

mod byte_level;
mod decode_stream;
mod error;
mod gguf;
mod json;
mod models;
mod pre_tokenizers;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use mistralrs_quant::gguf::GgufFile;
use tokenizers::{AddedVocabulary, Decoder, Model, OffsetType, PreTokenizer};

pub use decode_stream::DecodeStream;
pub use error::{Result, TokenizerError};

/// What a vocabulary entry is, with llama.cpp's GGUF token types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    Normal,
    Unknown,
    /// A special token (BOS, EOS, chat markers): matched in text only when asked to, and
    /// skipped by `decode(.., skip_special_tokens = true)`.
    Control,
    /// An added token that is always matched in text, and never skipped.
    UserDefined,
    Unused,
    /// A byte-fallback token "<0xAB>" standing for one byte.
    Byte,
}

/// How a token's vocabulary string maps to the text it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PieceStyle {
    /// GPT-2's byte-to-character spelling.
    ByteLevel,
    /// "▁" for a space, "<0xAB>" byte tokens.
    SentencePiece,
    /// "##" continues a word; other tokens start one.
    WordPiece,
    /// The string is the text.
    Raw,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
}

/// What the builders hand over; `Tokenizer::from_parts` derives the rest.
pub(crate) struct Parts {
    pub source: PathBuf,
    pub kind: &'static str,
    pub inner: tokenizers::Tokenizer,
    /// Vocabulary strings as stored in the file, by id.
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    pub style: PieceStyle,
    pub ids: SpecialIds,
    pub add_bos: bool,
    pub add_eos: bool,
    /// Ids put around the text when `add_special_tokens` and not `use_post_processor`.
    pub prefix: Vec<u32>,
    pub suffix: Vec<u32>,
    /// `add_special_tokens` runs the HF post-processor (tokenizer.json files).
    pub use_post_processor: bool,
}

/// A tokenizer. `Send + Sync`: encode and decode take `&self` and may run on many threads.
pub struct Tokenizer {
    source: PathBuf,
    kind: &'static str,
    inner: tokenizers::Tokenizer,
    /// The added vocabulary with special tokens left as text (`parse_special = false`).
    literal_added: AddedVocabulary,
    tokens: Vec<String>,
    types: Vec<TokenType>,
    /// Ids of HF special added tokens: skipped by `skip_special_tokens`.
    special: Vec<bool>,
    /// Strings handed to the decoder instead of the vocabulary's, for added tokens of
    /// byte-level vocabularies: their content is plain text, which the byte-level decoder
    /// would otherwise read as GPT-2's byte spelling ("ü" would become byte 0xFC).
    decoder_text: HashMap<u32, String>,
    style: PieceStyle,
    bos: Option<u32>,
    eos_ids: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    use_post_processor: bool,
}

impl Tokenizer {
    /// From the `tokenizer.ggml.*` metadata of an open GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        Ok(Tokenizer::from_parts(gguf::build(file)?))
    }

    /// Opens a GGUF file (memory-mapped; only its metadata is read) and builds its tokenizer.
    pub fn from_gguf_path(path: &Path) -> Result<Tokenizer> {
        let file = GgufFile::open(path).map_err(|e| TokenizerError::from_quant(path, e))?;
        Tokenizer::from_gguf(&file)
    }

    /// From a Hugging Face `tokenizer.json`, with an optional `tokenizer_config.json`.
    pub fn from_tokenizer_json(path: &Path, config_path: Option<&Path>) -> Result<Tokenizer> {
        Ok(Tokenizer::from_parts(json::build(path, config_path)?))
    }

    fn from_parts(p: Parts) -> Tokenizer {
        let added = p.inner.get_added_vocabulary();
        let mut literal_added = added.clone();
        literal_added.set_encode_special_tokens(true);
        let n = p.tokens.len();
        let mut special = vec![false; n];
        let mut decoder_text = HashMap::new();
        for (id, token) in added.get_added_tokens_decoder() {
            let Some(slot) = special.get_mut(*id as usize) else {
                continue;
            };
            *slot = token.special;
            if p.style == PieceStyle::ByteLevel {
                let spelled = byte_level::encode(&token.content);
                if spelled != token.content {
                    decoder_text.insert(*id, spelled);
                }
            }
        }
        let eos_ids = end_of_generation(&p.tokens, &p.ids);
        Tokenizer {
            source: p.source,
            kind: p.kind,
            inner: p.inner,
            literal_added,
            tokens: p.tokens,
            types: p.types,
            special,
            decoder_text,
            style: p.style,
            bos: p.ids.bos,
            eos_ids,
            add_bos: p.add_bos,
            add_eos: p.add_eos,
            prefix: p.prefix,
            suffix: p.suffix,
            use_post_processor: p.use_post_processor,
        }
    }

    /// Token ids of `text`. `add_special_tokens`: BOS / EOS as the file says (`add_bos()`,
    /// `add_eos()`; for BERT its CLS and SEP). `parse_special`: special tokens written in the
    /// text ("<|im_start|>") become their ids; when false they are split as plain text.
    /// User-defined tokens are matched either way, as in HF and llama.cpp.
    pub fn encode(
        &self,
        text: &str,
        add_special_tokens: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        // The steps of HF's `encode_fast`, run by hand so that the choice of added
        // vocabulary is per call instead of a setting of the shared tokenizer.
        let added = if parse_special {
            self.inner.get_added_vocabulary()
        } else {
            &self.literal_added
        };
        let mut pieces = added.extract_and_normalize(self.inner.get_normalizer(), text);
        if let Some(pre) = self.inner.get_pre_tokenizer() {
            pre.pre_tokenize(&mut pieces)
                .map_err(|e| self.engine_error("pre-tokenizer", e))?;
        }
        let model = self.inner.get_model();
        pieces
            .tokenize(|piece| model.tokenize(piece.get()))
            .map_err(|e| self.engine_error("model", e))?;
        let encoding = pieces
            .into_encoding(None, 0, OffsetType::None)
            .map_err(|e| self.engine_error("encoding", e))?;
        if !add_special_tokens {
            return Ok(encoding.get_ids().to_vec());
        }
        if self.use_post_processor {
            let encoding = self
                .inner
                .post_process(encoding, None, true)
                .map_err(|e| self.engine_error("post-processor", e))?;
            return Ok(encoding.get_ids().to_vec());
        }
        let body = encoding.get_ids();
        let mut ids = Vec::with_capacity(self.prefix.len() + body.len() + self.suffix.len());
        ids.extend_from_slice(&self.prefix);
        ids.extend_from_slice(body);
        ids.extend_from_slice(&self.suffix);
        Ok(ids)
    }

    /// The text of `ids`. Ids outside the vocabulary are an error naming the id.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let mut pieces = Vec::with_capacity(ids.len());
        for &id in ids {
            self.check_id(id)?;
            if skip_special_tokens && self.special[id as usize] {
                continue;
            }
            if let Some(text) = self.decoder_text.get(&id) {
                pieces.push(text.clone());
            } else if let Some(text) = self.inner.id_to_token(id) {
                pieces.push(text);
            }
        }
        match self.inner.get_decoder() {
            Some(decoder) => decoder
                .decode(pieces)
                .map_err(|e| self.engine_error("decoder", e)),
            None => Ok(pieces.join(" ")),
        }
    }

    /// How many ids there are (including added tokens).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Tokens that end generation: EOS, EOT, EOM and the end-of-turn tokens llama.cpp
    /// recognises by their text ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", ...), sorted.
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_ids.clone()
    }

    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// The bytes of text a token stands for on its own: a byte token's byte, "▁" as a space,
    /// a byte-level token's bytes, a WordPiece continuation without "##" (a word start gets a
    /// leading space, as llama.cpp spells it). Added and special tokens give their content.
    /// Decoders that look at neighbours (SentencePiece's first-space strip) are not applied.
    pub fn token_to_piece(&self, id: u32) -> Result<Vec<u8>> {
        self.check_id(id)?;
        let ty = self.types[id as usize];
        let text = self.inner.id_to_token(id).unwrap_or_default();
        let added =
            matches!(ty, TokenType::Control | TokenType::UserDefined) || self.special[id as usize];
        Ok(match self.style {
            _ if added && self.style != PieceStyle::SentencePiece => text.into_bytes(),
            PieceStyle::ByteLevel => byte_level::decode(&text).unwrap_or_else(|| text.into_bytes()),
            PieceStyle::SentencePiece => match byte_token_value(&text) {
                Some(b) if ty == TokenType::Byte => vec![b],
                _ => text.replace(models::SPIECE_UNDERLINE, " ").into_bytes(),
            },
            PieceStyle::WordPiece => match text.strip_prefix("##") {
                Some(rest) => rest.as_bytes().to_vec(),
                None => format!(" {text}").into_bytes(),
            },
            PieceStyle::Raw => text.into_bytes(),
        })
    }

    /// The vocabulary string as stored in the file (a GGUF token, or a tokenizer.json entry).
    pub fn token_text(&self, id: u32) -> Result<&str> {
        self.check_id(id)?;
        Ok(&self.tokens[id as usize])
    }

    pub fn token_type(&self, id: u32) -> Result<TokenType> {
        self.check_id(id)?;
        Ok(self.types[id as usize])
    }

    /// A control token (BOS, EOS, chat markers) or a special added token: text never spells it.
    pub fn is_special(&self, id: u32) -> bool {
        let i = id as usize;
        i < self.tokens.len() && (self.types[i] == TokenType::Control || self.special[i])
    }

    /// "llama", "gpt2", "bert", "t5" (the GGUF `tokenizer.ggml.model`) or "tokenizer.json".
    pub fn model_kind(&self) -> &str {
        self.kind
    }

    /// The file the tokenizer came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    fn check_id(&self, id: u32) -> Result<()> {
        if (id as usize) < self.tokens.len() {
            Ok(())
        } else {
            Err(TokenizerError::invalid(format!(
                "token id {id} is outside the vocabulary of {} tokens ({})",
                self.tokens.len(),
                self.source.display()
            )))
        }
    }

    fn engine_error(&self, stage: &str, err: impl std::fmt::Display) -> TokenizerError {
        TokenizerError::engine(&self.source, stage, err)
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

fn byte_token_value(text: &str) -> Option<u8> {
    json::is_byte_token(text)
        .then(|| u8::from_str_radix(&text[3..5], 16).ok())
        .flatten()
}

/// Texts llama.cpp treats as end of generation wherever they appear in a vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

/// EOS, EOT, EOM plus the texts above, with llama.cpp's two exceptions: harmony-style
/// vocabularies (having "<|return|>" and "<|call|>", or "<|calls|>" and "<|flush|>") do not
/// end on "<|end|>", and Gemma 4 style ones (having "<|tool_response>") not on "</s>".
fn end_of_generation(tokens: &[String], ids: &SpecialIds) -> Vec<u32> {
    let mut eog: BTreeSet<u32> = [ids.eos, ids.eot, ids.eom].into_iter().flatten().collect();
    let mut by_text: HashMap<&str, u32> = HashMap::new();
    for (id, t) in (0u32..).zip(tokens) {
        if EOG_TEXTS.contains(&t.as_str()) {
            eog.insert(id);
            by_text.entry(t.as_str()).or_insert(id);
        }
    }
    let has = |t: &str| by_text.contains_key(t);
    if (has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>")) {
        if let Some(end) = by_text.get("<|end|>") {
            eog.remove(end);
        }
    }
    if has("<|tool_response>") {
        if let Some(s) = by_text.get("</s>") {
            eog.remove(s);
        }
    }
    eog.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
        check::<DecodeStream>();
    }

    #[test]
    fn eog_exceptions() {
        let tokens: Vec<String> = ["a", "<|end|>", "<|return|>", "<|call|>", "</s>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ids = SpecialIds {
            eos: Some(0),
            ..SpecialIds::default()
        };
        assert_eq!(end_of_generation(&tokens, &ids), [0, 2, 3, 4]);
    }
}
