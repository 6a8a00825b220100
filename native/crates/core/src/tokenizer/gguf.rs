//! Building a tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Keys and defaults follow llama.cpp (`src/llama-vocab.cpp`, `llama_vocab::impl::load`):
//! - `tokenizer.ggml.model` picks the algorithm: `llama` (SentencePiece BPE), `gpt2`
//!   (byte-level BPE), `bert` (WordPiece), `t5` (Unigram). Anything else is refused, naming it.
//! - `tokens` is required; `scores` (llama, t5), `merges` (gpt2) and `token_type` must have
//!   one entry per token when present. Token types: 1 normal, 2 unknown, 3 control,
//!   4 user-defined, 5 unused, 6 byte (0 and other values read as normal, as llama.cpp's
//!   "undefined"). Control and unknown tokens become special added tokens, user-defined ones
//!   plain added tokens (matched in text before the model runs, as HF does).
//! - Special ids default per model as in llama.cpp (llama: bos 1, eos 2, unk 0; gpt2: bos and
//!   eos 11; bert: cls 101, unk 100, sep 102; t5: eos 1, unk 2); a default outside the
//!   vocabulary is dropped, an id given in the file outside it is an error.
//! - `add_bos_token` / `add_eos_token` / `add_sep_token` default as in llama.cpp: llama
//!   true/false, bert true (its CLS) and sep, t5 eos only, gpt2 false except the llama3,
//!   tekken and chameleon pre-tokenizers.
//! - A gpt2 vocabulary without `tokenizer.ggml.pre` is split as GPT-2 with a logged warning
//!   (llama.cpp does the same, with its own default regex); a `pre` value we do not know is an
//!   error naming it, as in llama.cpp: guessing would silently give the model wrong tokens.

use std::collections::HashMap;
use std::path::Path;

use mistralrs_quant::gguf::{GgufArray, GgufFile};
use tokenizers::AddedToken;

use super::error::{Result, TokenizerError};
use super::models::{self, SpmOptions, UnigramOptions, WordPieceOptions};
use super::pre_tokenizers;
use super::{Parts, PieceStyle, SpecialIds, TokenType};

const PREFIX: &str = "tokenizer.ggml.";

/// Reads the metadata; every error names the file and the key.
struct Meta<'a> {
    file: &'a GgufFile,
}

impl<'a> Meta<'a> {
    fn path(&self) -> &Path {
        self.file.path()
    }

    fn err(&self, what: impl Into<String>) -> TokenizerError {
        TokenizerError::format(self.path(), what)
    }

    fn quant<T>(&self, r: mistralrs_quant::Result<T>) -> Result<T> {
        r.map_err(|e| TokenizerError::from_quant(self.path(), e))
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>> {
        self.quant(self.file.get_string_opt(&format!("{PREFIX}{key}")))
    }

    fn u32(&self, key: &str) -> Result<Option<u32>> {
        self.quant(self.file.get_u32_opt(&format!("{PREFIX}{key}")))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.quant(self.file.get_bool_opt(&format!("{PREFIX}{key}")))
    }

    fn array(&self, key: &str) -> Option<&'a GgufArray> {
        self.file
            .get(&format!("{PREFIX}{key}"))
            .and_then(|v| v.as_array())
    }

    /// An optional array that must have `n` entries and the element kind `convert` accepts.
    fn per_token<T>(
        &self,
        key: &str,
        n: usize,
        want: &str,
        convert: impl Fn(&GgufArray) -> Option<Vec<T>>,
    ) -> Result<Option<Vec<T>>> {
        let full = format!("{PREFIX}{key}");
        let Some(value) = self.file.get(&full) else {
            return Ok(None);
        };
        let array = value.as_array().ok_or_else(|| {
            self.err(format!(
                "metadata `{full}` is {value}, expected an array of {want}"
            ))
        })?;
        let values = convert(array).ok_or_else(|| {
            self.err(format!(
                "metadata `{full}` is an array of {}, expected {want}",
                array.element_type()
            ))
        })?;
        if values.len() != n {
            return Err(self.err(format!(
                "metadata `{full}` has {} entries but `{PREFIX}tokens` has {n}",
                values.len()
            )));
        }
        Ok(Some(values))
    }
}

fn ints(array: &GgufArray) -> Option<Vec<i64>> {
    Some(match array {
        GgufArray::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        GgufArray::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        GgufArray::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        GgufArray::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        GgufArray::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
        GgufArray::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
        GgufArray::I64(v) => v.clone(),
        _ => return None,
    })
}

fn floats(array: &GgufArray) -> Option<Vec<f32>> {
    Some(match array {
        GgufArray::F32(v) => v.clone(),
        // f64 and i32 scores occur in files from other converters; f32 keeps their order.
        GgufArray::F64(v) => v.iter().map(|&x| x as f32).collect(),
        GgufArray::I32(v) => v.iter().map(|&x| x as f32).collect(),
        _ => return None,
    })
}

fn token_type(raw: i64) -> TokenType {
    match raw {
        2 => TokenType::Unknown,
        3 => TokenType::Control,
        4 => TokenType::UserDefined,
        5 => TokenType::Unused,
        6 => TokenType::Byte,
        _ => TokenType::Normal,
    }
}

/// Reads a special id: `Ok(None)` when absent; an error when present but out of range.
fn special_id(meta: &Meta, key: &str, n: usize) -> Result<Option<u32>> {
    match meta.u32(key)? {
        Some(id) if id as usize >= n => Err(meta.err(format!(
            "metadata `{PREFIX}{key}` is {id}, beyond the vocabulary of {n} tokens"
        ))),
        other => Ok(other),
    }
}

/// A llama.cpp default id, kept only when the vocabulary has it.
fn default_id(id: u32, n: usize) -> Option<u32> {
    ((id as usize) < n).then_some(id)
}

pub(crate) fn build(file: &GgufFile) -> Result<Parts> {
    let meta = Meta { file };
    let model = meta
        .string("model")?
        .ok_or_else(|| meta.err(format!("missing metadata key `{PREFIX}model`")))?;
    let (owned_tokens, types) = read_tokens(&meta)?;
    let tokens = &owned_tokens[..];
    let profile = if model == "gpt2" {
        Some(bpe_profile(&meta, meta.string("pre")?)?)
    } else {
        None
    };
    let (ids, flags) = special_ids_and_flags(&meta, model, tokens.len(), profile)?;

    let (inner, kind, style) = match model {
        "llama" => (
            build_spm(&meta, tokens, &types, ids.unk)?,
            "llama",
            PieceStyle::SentencePiece,
        ),
        "gpt2" => {
            let profile = profile.ok_or_else(|| meta.err("internal: no pre-tokenizer profile"))?;
            (
                build_bpe(&meta, tokens, profile)?,
                "gpt2",
                PieceStyle::ByteLevel,
            )
        }
        "bert" => (
            build_wordpiece(&meta, tokens, ids.unk)?,
            "bert",
            PieceStyle::WordPiece,
        ),
        "t5" => (
            build_unigram(&meta, tokens, &types, ids.unk)?,
            "t5",
            PieceStyle::SentencePiece,
        ),
        other => {
            return Err(meta.err(format!(
                "unsupported tokenizer model `{other}` (metadata `{PREFIX}model`); \
                 supported: llama, gpt2, bert, t5"
            )))
        }
    };

    let mut parts = Parts {
        source: file.path().to_path_buf(),
        kind,
        inner,
        tokens: owned_tokens,
        types,
        style,
        ids,
        add_bos: flags.add_bos,
        add_eos: flags.add_eos,
        prefix: Vec::new(),
        suffix: Vec::new(),
        use_post_processor: false,
    };
    if parts.add_bos {
        parts.prefix.extend(parts.ids.bos);
    }
    if parts.add_eos {
        parts.suffix.extend(parts.ids.eos);
    }
    if flags.add_sep {
        parts.suffix.extend(parts.ids.sep);
    }
    let name = meta
        .quant(file.get_string_opt("general.name"))?
        .unwrap_or("")
        .to_lowercase();
    add_special_tokens(&mut parts, name.contains("phi-3") || name.contains("phi3"));
    Ok(parts)
}

/// The vocabulary's tokens (checked: not empty, unique, 32-bit ids) and their types.
fn read_tokens(meta: &Meta<'_>) -> Result<(Vec<String>, Vec<TokenType>)> {
    let stored = meta.quant(meta.file.get_str_array(&format!("{PREFIX}tokens")))?;
    // An empty token would be an added token matching everywhere; llama.cpp renames such
    // entries "[EMPTY_<id>]" (with a warning), and so do we.
    let tokens: Vec<String> = stored
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.clone()
            }
        })
        .collect();
    if tokens.iter().zip(stored).any(|(t, s)| t != s) {
        log::warn!(
            "{}: empty tokens renamed [EMPTY_<id>]",
            meta.path().display()
        );
    }
    let n = tokens.len();
    if n == 0 {
        return Err(meta.err(format!("metadata `{PREFIX}tokens` is empty")));
    }
    if u32::try_from(n).is_err() {
        return Err(meta.err(format!("{n} tokens do not fit 32-bit ids")));
    }
    let types: Vec<TokenType> = match meta.per_token("token_type", n, "integers", ints)? {
        Some(raw) => raw.into_iter().map(token_type).collect(),
        None => vec![TokenType::Normal; n],
    };
    check_unique(meta, &tokens)?;
    Ok((tokens, types))
}

/// The special token ids and whether to add BOS, EOS and SEP: llama.cpp's defaults for the
/// model, then the file's keys; an id that must be added must exist.
fn special_ids_and_flags(
    meta: &Meta<'_>,
    model: &str,
    n: usize,
    profile: Option<&pre_tokenizers::BpeProfile>,
) -> Result<(SpecialIds, Flags)> {
    let (mut ids, mut flags) = defaults(model, n);
    if let Some(p) = profile {
        flags.add_bos = p.add_bos;
    }
    if matches!(meta.string("pre")?, Some("glm4" | "chatglm-bpe")) {
        ids.bos = None; // llama.cpp: GLM vocabularies have no BOS unless the file names one
    }
    read_special_ids(meta, n, &mut ids)?;
    flags.add_bos = meta.bool("add_bos_token")?.unwrap_or(flags.add_bos);
    flags.add_eos = meta.bool("add_eos_token")?.unwrap_or(flags.add_eos);
    flags.add_sep = meta.bool("add_sep_token")?.unwrap_or(flags.add_sep);
    for (on, id, what) in [
        (
            flags.add_bos,
            ids.bos,
            "add_bos_token is true but there is no bos_token_id",
        ),
        (
            flags.add_eos,
            ids.eos,
            "add_eos_token is true but there is no eos_token_id",
        ),
        (
            flags.add_sep,
            ids.sep,
            "add_sep_token is true but there is no seperator_token_id",
        ),
    ] {
        if on && id.is_none() {
            return Err(meta.err(what));
        }
    }
    Ok((ids, flags))
}

struct Flags {
    add_bos: bool,
    add_eos: bool,
    add_sep: bool,
}

fn defaults(model: &str, n: usize) -> (SpecialIds, Flags) {
    let mut ids = SpecialIds::default();
    let mut flags = Flags {
        add_bos: false,
        add_eos: false,
        add_sep: false,
    };
    match model {
        "llama" => {
            ids.bos = default_id(1, n);
            ids.eos = default_id(2, n);
            ids.unk = default_id(0, n);
            flags.add_bos = true;
        }
        "gpt2" => {
            ids.bos = default_id(11, n);
            ids.eos = default_id(11, n);
        }
        "bert" => {
            ids.bos = default_id(101, n);
            ids.unk = default_id(100, n);
            ids.sep = default_id(102, n);
            flags.add_bos = true;
            flags.add_sep = true;
        }
        "t5" => {
            ids.eos = default_id(1, n);
            ids.unk = default_id(2, n);
            flags.add_eos = true;
        }
        _ => {}
    }
    (ids, flags)
}

fn read_special_ids(meta: &Meta, n: usize, ids: &mut SpecialIds) -> Result<()> {
    // BERT files name their CLS token `cls_token_id`; llama.cpp uses it as BOS.
    let cls = special_id(meta, "cls_token_id", n)?;
    if let Some(bos) = special_id(meta, "bos_token_id", n)?.or(cls) {
        ids.bos = Some(bos);
    }
    for (key, slot) in [
        ("eos_token_id", &mut ids.eos),
        ("eot_token_id", &mut ids.eot),
        ("eom_token_id", &mut ids.eom),
        ("unknown_token_id", &mut ids.unk),
        ("seperator_token_id", &mut ids.sep), // llama.cpp's spelling
        ("padding_token_id", &mut ids.pad),
    ] {
        if let Some(id) = special_id(meta, key, n)? {
            *slot = Some(id);
        }
    }
    Ok(())
}

fn bpe_profile(meta: &Meta, pre: Option<&str>) -> Result<&'static pre_tokenizers::BpeProfile> {
    let Some(pre) = pre else {
        log::warn!(
            "{}: no `{PREFIX}pre`; splitting text as GPT-2 does, which may not match the model",
            meta.path().display()
        );
        return pre_tokenizers::bpe_profile("gpt-2")
            .ok_or_else(|| meta.err("internal: no gpt-2 profile"));
    };
    pre_tokenizers::bpe_profile(pre).ok_or_else(|| {
        meta.err(format!(
            "unsupported pre-tokenizer `{pre}` (metadata `{PREFIX}pre`) for a byte-level BPE \
             vocabulary; known types: {}",
            pre_tokenizers::known_pre_types()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn check_unique(meta: &Meta, tokens: &[String]) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if let Some(first) = seen.insert(t, i) {
            return Err(meta.err(format!(
                "duplicate token {t:?} in `{PREFIX}tokens` (ids {first} and {i})"
            )));
        }
    }
    Ok(())
}

fn unk_text(tokens: &[String], unk: Option<u32>) -> Option<String> {
    unk.map(|id| tokens[id as usize].clone())
}

fn build_spm(
    meta: &Meta,
    tokens: &[String],
    types: &[TokenType],
    unk: Option<u32>,
) -> Result<tokenizers::Tokenizer> {
    let scores = meta
        .per_token("scores", tokens.len(), "f32", floats)?
        .ok_or_else(|| {
            meta.err(format!(
                "missing metadata key `{PREFIX}scores` (needed by a llama vocabulary)"
            ))
        })?;
    let vocab = models::vocab_of(tokens);
    // Byte tokens are reached through byte fallback, never by merging: leave them out of the
    // merge derivation as the SentencePiece model has them as type BYTE.
    let merge_scores: Vec<f32> = scores
        .iter()
        .zip(types)
        .map(|(&s, &t)| {
            if t == TokenType::Byte {
                f32::NEG_INFINITY
            } else {
                s
            }
        })
        .collect();
    let merges = models::spm_merges(tokens, &merge_scores, &vocab);
    let opts = SpmOptions {
        add_space_prefix: meta.bool("add_space_prefix")?.unwrap_or(true),
        unk: unk_text(tokens, unk),
    };
    models::spm(vocab, merges, &opts)
        .map_err(|e| meta.err(format!("cannot build the llama tokenizer: {e}")))
}

fn build_bpe(
    meta: &Meta,
    tokens: &[String],
    profile: &pre_tokenizers::BpeProfile,
) -> Result<tokenizers::Tokenizer> {
    let key = format!("{PREFIX}merges");
    let stored = meta.array("merges").ok_or_else(|| {
        meta.err(format!(
            "missing metadata key `{key}` (needed by a gpt2 vocabulary)"
        ))
    })?;
    let GgufArray::String(stored) = stored else {
        return Err(meta.err(format!(
            "metadata `{key}` is an array of {}, expected strings",
            stored.element_type()
        )));
    };
    let mut merges = Vec::with_capacity(stored.len());
    for (i, merge) in stored.iter().enumerate() {
        // As llama.cpp: the first space after the first character separates the two tokens,
        // so a left token that is itself a space still parses.
        let first = merge.chars().next().map_or(0, char::len_utf8);
        let Some(at) = merge[first..].find(' ').map(|p| p + first) else {
            return Err(meta.err(format!(
                "`{key}`[{i}] {merge:?} is not two tokens separated by a space"
            )));
        };
        merges.push((merge[..at].to_string(), merge[at + 1..].to_string()));
    }
    // The BPE builder checks every merge against the vocabulary (both tokens and the merged
    // one); only when it refuses do we look for the culprit, to name it with its index.
    models::byte_level_bpe(models::vocab_of(tokens), merges, profile).map_err(|e| {
        let vocab = models::vocab_of(tokens);
        let culprit = stored.iter().enumerate().find_map(|(i, merge)| {
            let first = merge.chars().next().map_or(0, char::len_utf8);
            let at = merge[first..].find(' ')? + first;
            let (l, r) = (&merge[..at], &merge[at + 1..]);
            let merged = format!("{l}{r}");
            let missing = [l, r, merged.as_str()]
                .into_iter()
                .find(|t| !vocab.contains_key(*t))?;
            Some(format!(
                "`{key}`[{i}] {merge:?} needs {missing:?}, which is not in the vocabulary"
            ))
        });
        meta.err(
            culprit.unwrap_or_else(|| {
                format!("cannot build the gpt2 tokenizer ({}): {e}", profile.name)
            }),
        )
    })
}

fn build_wordpiece(
    meta: &Meta,
    tokens: &[String],
    unk: Option<u32>,
) -> Result<tokenizers::Tokenizer> {
    let hf_tokens: Vec<String> = tokens.iter().map(|t| models::wordpiece_token(t)).collect();
    check_unique(meta, &hf_tokens)?;
    let lowercase = meta.bool("normalizer.lowercase")?.unwrap_or(true);
    let opts = WordPieceOptions {
        unk: unk_text(&hf_tokens, unk).unwrap_or_else(|| "[UNK]".into()),
        lowercase,
        strip_accents: meta.bool("normalizer.strip_accents")?.unwrap_or(lowercase),
    };
    models::wordpiece(models::vocab_of(&hf_tokens), &opts)
        .map_err(|e| meta.err(format!("cannot build the bert tokenizer: {e}")))
}

fn build_unigram(
    meta: &Meta,
    tokens: &[String],
    types: &[TokenType],
    unk: Option<u32>,
) -> Result<tokenizers::Tokenizer> {
    let scores = meta
        .per_token("scores", tokens.len(), "f32", floats)?
        .ok_or_else(|| {
            meta.err(format!(
                "missing metadata key `{PREFIX}scores` (needed by a t5 vocabulary)"
            ))
        })?;
    let charsmap = match meta.array("precompiled_charsmap") {
        None => None,
        Some(GgufArray::U8(v)) => Some(v.clone()),
        Some(GgufArray::I8(v)) => Some(v.iter().map(|&b| b as u8).collect()),
        Some(other) => {
            return Err(meta.err(format!(
                "metadata `{PREFIX}precompiled_charsmap` is an array of {}, expected bytes",
                other.element_type()
            )))
        }
    };
    let opts = UnigramOptions {
        unk: unk.map(|u| u as usize),
        byte_fallback: types.contains(&TokenType::Byte),
        add_space_prefix: meta.bool("add_space_prefix")?.unwrap_or(false),
        remove_extra_whitespaces: meta.bool("remove_extra_whitespaces")?.unwrap_or(false),
        precompiled_charsmap: charsmap,
    };
    let pieces = tokens
        .iter()
        .cloned()
        .zip(scores.iter().map(|&s| f64::from(s)))
        .collect();
    models::unigram(pieces, &opts)
        .map_err(|e| meta.err(format!("cannot build the t5 tokenizer: {e}")))
}

/// Registers control and unknown tokens as special added tokens and user-defined ones as
/// plain added tokens, in one call each so the matcher is built once.
///
/// `phi3_rstrip`: Phi-3's tokenizer.json has its chat markers (and "</s>") swallow the
/// whitespace after them; llama.cpp recreates that for models named Phi-3, and so do we.
fn add_special_tokens(parts: &mut Parts, phi3_rstrip: bool) {
    let mut special = Vec::new();
    let mut plain = Vec::new();
    for (text, ty) in parts.tokens.iter().zip(&parts.types) {
        let rstrip = phi3_rstrip && !matches!(text.as_str(), "<unk>" | "<s>" | "<|endoftext|>");
        match ty {
            TokenType::Control | TokenType::Unknown => {
                special.push(AddedToken::from(text.clone(), true).rstrip(rstrip))
            }
            TokenType::UserDefined => {
                // Matched on the raw text, as tokenizer.json files mark them (`normalized:
                // false`): a prepended "▁" must not hide them after punctuation.
                plain.push(
                    AddedToken::from(text.clone(), false)
                        .rstrip(rstrip)
                        .normalized(false),
                )
            }
            _ => {}
        }
    }
    if parts.style == PieceStyle::WordPiece {
        // The model holds HF spellings; "[CLS]"-style specials are the same in both.
        for t in special.iter_mut().chain(plain.iter_mut()) {
            t.content = models::wordpiece_token(&t.content);
        }
    }
    parts.inner.add_special_tokens(&special);
    parts.inner.add_tokens(&plain);
}
