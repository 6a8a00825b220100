//! Loading a Hugging Face `tokenizer.json`, with the special-token settings of an optional
//! `tokenizer_config.json` (`bos_token`, `eos_token` as strings or AddedToken objects,
//! `add_bos_token`, `add_eos_token`; `chat_template` is read on the TypeScript side).
//!
//! The file's own post-processor decides what `add_special_tokens` adds, unless the config's
//! `add_bos_token` / `add_eos_token` disagree with it: then, as transformers' Llama and Gemma
//! tokenizers do, BOS / EOS are added by those flags instead. Truncation and padding stored in
//! the file are dropped: an engine never wants its prompts cut silently.

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer as HfTokenizer;
use tokenizers::{Encoding, ModelWrapper};

use super::error::{Result, TokenizerError};
use super::{Parts, PieceStyle, SpecialIds, TokenType};

pub(crate) fn build(path: &Path, config_path: Option<&Path>) -> Result<Parts> {
    let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    let mut inner = HfTokenizer::from_bytes(&bytes)
        .map_err(|e| TokenizerError::format(path, format!("invalid tokenizer.json: {e}")))?;
    drop(bytes);
    inner
        .with_truncation(None)
        .map_err(|e| TokenizerError::engine(path, "cannot disable truncation", e))?;
    inner.with_padding(None);
    let config = match config_path {
        Some(p) => Some(read_config(p)?),
        None => None,
    };

    let (tokens, types) = vocabulary(path, &inner)?;
    let style = piece_style(&inner);
    let token_id = |field: &str| -> Option<u32> {
        let value = config.as_ref()?.get(field)?;
        let text = match value {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("content")?.as_str()?,
            _ => return None,
        };
        inner.token_to_id(text)
    };
    let mut ids = SpecialIds {
        bos: token_id("bos_token"),
        eos: token_id("eos_token"),
        unk: token_id("unk_token"),
        pad: token_id("pad_token"),
        ..SpecialIds::default()
    };

    // What the file's post-processor adds around a sequence, seen on an empty input.
    let template = inner
        .post_process(Encoding::default(), None, true)
        .map_err(|e| TokenizerError::engine(path, "post-processor", e))?;
    let template = template.get_ids();
    if ids.bos.is_none() && config.is_none() {
        // No config: the first token the template adds is the sequence start (BERT's CLS).
        ids.bos = template.first().copied();
    }
    let adds_bos = ids.bos.is_some() && template.first() == ids.bos.as_ref();
    let adds_eos = ids.eos.is_some() && template.last() == ids.eos.as_ref();
    let flag = |field: &str| {
        config
            .as_ref()
            .and_then(|c| c.get(field))
            .and_then(Value::as_bool)
    };
    // A flag without its token (Qwen's `bos_token: null`) adds nothing.
    let add_bos = flag("add_bos_token").unwrap_or(adds_bos) && ids.bos.is_some();
    let add_eos = flag("add_eos_token").unwrap_or(adds_eos) && ids.eos.is_some();
    let use_post_processor = add_bos == adds_bos && add_eos == adds_eos;
    let (mut prefix, mut suffix) = (Vec::new(), Vec::new());
    if !use_post_processor {
        if add_bos {
            prefix.extend(ids.bos);
        }
        if add_eos {
            suffix.extend(ids.eos);
        }
    }
    Ok(Parts {
        source: path.to_path_buf(),
        kind: "tokenizer.json",
        inner,
        tokens,
        types,
        style,
        ids,
        add_bos,
        add_eos,
        prefix,
        suffix,
        use_post_processor,
    })
}

fn read_config(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| TokenizerError::format(path, format!("invalid tokenizer_config.json: {e}")))?;
    if !value.is_object() {
        return Err(TokenizerError::format(
            path,
            "tokenizer_config.json is not a JSON object",
        ));
    }
    Ok(value)
}

/// Id → token string and type over the model's vocabulary plus the added tokens. Ids without
/// a token (a gap in the file) read as empty, unused tokens.
fn vocabulary(path: &Path, inner: &HfTokenizer) -> Result<(Vec<String>, Vec<TokenType>)> {
    let vocab = inner.get_vocab(true);
    let n = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    // A gap-ridden id space is a broken file, not a reason to allocate gigabytes.
    if n > vocab.len().saturating_mul(2).max(1024) {
        return Err(TokenizerError::format(
            path,
            format!(
                "token ids reach {} but the vocabulary has {} entries",
                n - 1,
                vocab.len()
            ),
        ));
    }
    let mut tokens = vec![String::new(); n];
    let mut types = vec![TokenType::Unused; n];
    let byte_fallback = match inner.get_model() {
        ModelWrapper::BPE(bpe) => bpe.byte_fallback,
        ModelWrapper::Unigram(u) => u.byte_fallback(),
        _ => false,
    };
    let unk = match inner.get_model() {
        ModelWrapper::BPE(bpe) => bpe.unk_token.clone(),
        ModelWrapper::WordPiece(wp) => Some(wp.unk_token.clone()),
        ModelWrapper::WordLevel(wl) => Some(wl.unk_token.clone()),
        ModelWrapper::Unigram(_) => None,
    };
    for (text, id) in vocab {
        let ty = if byte_fallback && is_byte_token(&text) {
            TokenType::Byte
        } else if unk.as_deref() == Some(text.as_str()) {
            TokenType::Unknown
        } else {
            TokenType::Normal
        };
        types[id as usize] = ty;
        tokens[id as usize] = text;
    }
    for (id, added) in inner.get_added_tokens_decoder() {
        if let Some(slot) = types.get_mut(id as usize) {
            *slot = if added.special {
                TokenType::Control
            } else {
                TokenType::UserDefined
            };
        }
    }
    Ok((tokens, types))
}

/// "<0xAB>": a byte-fallback token.
pub(crate) fn is_byte_token(text: &str) -> bool {
    text.len() == 6
        && text.starts_with("<0x")
        && text.ends_with('>')
        && text[3..5].bytes().all(|b| b.is_ascii_hexdigit())
}

/// How a token string maps to text, read from the decoder the file declares.
fn piece_style(inner: &HfTokenizer) -> PieceStyle {
    let Some(decoder) = inner.get_decoder() else {
        return PieceStyle::Raw;
    };
    let json = serde_json::to_value(decoder).unwrap_or(Value::Null);
    let mut types = Vec::new();
    collect_types(&json, &mut types);
    if types.contains(&"ByteLevel".to_string()) {
        PieceStyle::ByteLevel
    } else if types
        .iter()
        .any(|t| t == "ByteFallback" || t == "Metaspace")
    {
        PieceStyle::SentencePiece
    } else if types.contains(&"WordPiece".to_string()) {
        PieceStyle::WordPiece
    } else if json.to_string().contains('\u{2581}') {
        PieceStyle::SentencePiece
    } else {
        PieceStyle::Raw
    }
}

fn collect_types(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(t)) = o.get("type") {
                out.push(t.clone());
            }
            o.values().for_each(|x| collect_types(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_types(x, out)),
        _ => {}
    }
}
