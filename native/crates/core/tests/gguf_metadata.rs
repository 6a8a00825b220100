//! Tokenizers from small GGUF files written here with the project's own writer: the API on
//! hand-made vocabularies (no fixtures needed), and malformed metadata, which must give a
//! `FormatError` naming the file and the problem, never a panic.

use std::path::Path;
use std::sync::Arc;

use mistralrs_core::tokenizer::{DecodeStream, TokenType, Tokenizer, TokenizerError};
use mistralrs_quant::gguf::{GgufFile, GgufValue, GgufWriter};

const FILE: &str = "/virtual/tiny.gguf";

fn gguf(meta: Vec<(&str, GgufValue)>) -> GgufFile {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(k, v).expect("valid test metadata");
    }
    GgufFile::from_bytes(Path::new(FILE), w.to_bytes()).expect("readable test file")
}

/// A SentencePiece vocabulary in which "hello world" is two tokens; everything else falls
/// back to bytes. Scores rank the merges so that ▁hello and ▁world are reached.
fn spm_meta() -> Vec<(&'static str, GgufValue)> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut scores = vec![0.0f32; 3];
    let mut types = vec![2i32, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(6);
    }
    let words = [
        "\u{2581}",
        "h",
        "e",
        "l",
        "o",
        "w",
        "r",
        "d",
        "ll",
        "\u{2581}h",
        "\u{2581}he",
        "llo",
        "\u{2581}hello",
        "\u{2581}w",
        "or",
        "\u{2581}wor",
        "ld",
        "\u{2581}world",
    ];
    for (i, w) in words.iter().enumerate() {
        tokens.push(w.to_string());
        // Single characters rank lowest; merged pieces in the order listed.
        scores.push(if w.chars().count() == 1 {
            -100.0
        } else {
            -(i as f32)
        });
        types.push(1);
    }
    vec![
        ("tokenizer.ggml.model", "llama".into()),
        ("tokenizer.ggml.tokens", tokens.into()),
        ("tokenizer.ggml.scores", scores.into()),
        ("tokenizer.ggml.token_type", types.into()),
        ("tokenizer.ggml.bos_token_id", 1u32.into()),
        ("tokenizer.ggml.eos_token_id", 2u32.into()),
    ]
}

fn spm() -> Tokenizer {
    Tokenizer::from_gguf(&gguf(spm_meta())).expect("tiny llama vocabulary")
}

fn id_of(tok: &Tokenizer, text: &str) -> u32 {
    (0..tok.vocab_size() as u32)
        .find(|&i| tok.token_text(i).ok() == Some(text))
        .unwrap_or_else(|| panic!("{text:?} not in the vocabulary"))
}

#[test]
fn spm_encodes_decodes_and_adds_bos() {
    let tok = spm();
    assert_eq!(tok.model_kind(), "llama");
    let (hello, world) = (id_of(&tok, "\u{2581}hello"), id_of(&tok, "\u{2581}world"));
    assert_eq!(
        tok.encode("hello world", false, false).unwrap(),
        [hello, world]
    );
    assert!(tok.add_bos() && !tok.add_eos());
    assert_eq!(
        tok.encode("hello world", true, false).unwrap(),
        [1, hello, world]
    );
    assert_eq!(tok.decode(&[1, hello, world], true).unwrap(), "hello world");
    assert_eq!(
        tok.decode(&[1, hello, world], false).unwrap(),
        "<s> hello world"
    );
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), [2]);
    // Byte fallback for what the vocabulary lacks, back to the same text.
    let ids = tok.encode("hello 🦙!", false, false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), "hello 🦙!");
}

#[test]
fn pieces_and_types() {
    let tok = spm();
    let hello = id_of(&tok, "\u{2581}hello");
    assert_eq!(tok.token_to_piece(hello).unwrap(), b" hello");
    assert_eq!(tok.token_to_piece(3 + 0x0A).unwrap(), b"\n");
    assert_eq!(tok.token_text(3 + 0x0A).unwrap(), "<0x0A>");
    assert_eq!(tok.token_type(3 + 0x0A).unwrap(), TokenType::Byte);
    assert_eq!(tok.token_type(0).unwrap(), TokenType::Unknown);
    assert_eq!(tok.token_type(1).unwrap(), TokenType::Control);
    assert_eq!(tok.token_type(hello).unwrap(), TokenType::Normal);
    assert_eq!(tok.token_to_piece(1).unwrap(), b"<s>");
}

#[test]
fn special_tokens_parse_only_when_asked() {
    let tok = spm();
    let parsed = tok.encode("<s>hello", false, true).unwrap();
    assert_eq!(parsed[0], 1);
    let literal = tok.encode("<s>hello", false, false).unwrap();
    assert!(!literal.contains(&1), "{literal:?}");
    assert_eq!(tok.decode(&literal, false).unwrap(), "<s>hello");
}

#[test]
fn ids_outside_the_vocabulary_are_errors() {
    let tok = spm();
    let n = tok.vocab_size() as u32;
    for result in [
        tok.decode(&[5, n], false).map(|_| ()),
        tok.token_to_piece(n).map(|_| ()),
        tok.token_text(n).map(|_| ()),
        tok.token_type(n).map(|_| ()),
    ] {
        let e = result.expect_err("out of range");
        assert_eq!(e.code(), "InvalidArgumentError");
        assert!(e.to_string().contains(&n.to_string()), "{e}");
    }
    let hello = id_of(&tok, "\u{2581}hello");
    let mut stream = DecodeStream::new(Arc::new(tok), false);
    assert!(stream.push(n).is_err());
    assert_eq!(stream.push(hello).unwrap().as_deref(), Some("hello"));
}

#[test]
fn stream_holds_back_split_characters_and_keeps_spaces() {
    let tok = Arc::new(spm());
    let ids = tok.encode("hello 🦙 world", false, false).unwrap();
    let mut stream = DecodeStream::new(tok.clone(), true);
    let mut chunks = Vec::new();
    for &id in &ids {
        if let Some(text) = stream.push(id).unwrap() {
            assert!(
                !text.contains('\u{fffd}'),
                "half a character emitted: {text:?}"
            );
            chunks.push(text);
        }
    }
    assert_eq!(stream.flush().unwrap(), "");
    // The first word loses SentencePiece's leading space; later ones keep theirs; the four
    // byte tokens of the emoji come out as one chunk once the last arrives.
    assert_eq!(chunks, ["hello", " ", "🦙", " world"]);
    assert_eq!(chunks.concat(), tok.decode(&ids, true).unwrap());

    // An unfinished character is held until flush, which hands it out as U+FFFD.
    let mut stream = DecodeStream::new(tok.clone(), true);
    assert_eq!(stream.push(3 + 0xF0).unwrap(), None);
    assert_eq!(stream.push(3 + 0x9F).unwrap(), None);
    let rest = stream.flush().unwrap();
    assert!(rest.contains('\u{fffd}'), "{rest:?}");
    // After a flush the stream starts afresh: the first word loses its space again.
    assert_eq!(
        stream
            .push(id_of(&tok, "\u{2581}world"))
            .unwrap()
            .as_deref(),
        Some("world")
    );
}

/// GPT-2's byte → character table, as byte-level vocabularies spell their tokens.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let moved = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + moved).expect("valid char")
}

/// A byte-level vocabulary without byte 0xFC's character, which is instead a user-defined
/// token "ü" (as DeepSeek's vocabularies have it), plus two merges.
fn gpt2_meta() -> Vec<(&'static str, GgufValue)> {
    let mut tokens: Vec<String> = (0..=255u8)
        .filter(|&b| b != 0xFC)
        .map(|b| byte_char(b).to_string())
        .collect();
    let mut types = vec![1i32; tokens.len()];
    for (t, ty) in [("<|endoftext|>", 3), ("ü", 4), ("he", 1), ("hel", 1)] {
        tokens.push(t.into());
        types.push(ty);
    }
    let eot = (tokens.len() - 4) as u32;
    vec![
        ("tokenizer.ggml.model", "gpt2".into()),
        ("tokenizer.ggml.pre", "gpt-2".into()),
        ("tokenizer.ggml.tokens", tokens.into()),
        ("tokenizer.ggml.token_type", types.into()),
        ("tokenizer.ggml.merges", vec!["h e", "he l"].into()),
        ("tokenizer.ggml.bos_token_id", eot.into()),
        ("tokenizer.ggml.eos_token_id", eot.into()),
    ]
}

#[test]
fn byte_level_vocabulary_with_added_tokens() {
    let tok = Tokenizer::from_gguf(&gguf(gpt2_meta())).expect("tiny gpt2 vocabulary");
    assert_eq!(tok.model_kind(), "gpt2");
    assert!(!tok.add_bos());
    let ids = tok.encode("Führer help", false, false).unwrap();
    let u = id_of(&tok, "ü");
    assert!(
        ids.contains(&u) && ids.contains(&id_of(&tok, "hel")),
        "{ids:?}"
    );
    assert_eq!(tok.decode(&ids, false).unwrap(), "Führer help");
    assert_eq!(tok.token_to_piece(u).unwrap(), "ü".as_bytes());
    let space = id_of(&tok, &byte_char(b' ').to_string());
    assert_eq!(tok.token_to_piece(space).unwrap(), b" ");

    let eot = id_of(&tok, "<|endoftext|>");
    assert_eq!(
        tok.encode("a<|endoftext|>", false, true).unwrap().last(),
        Some(&eot)
    );
    assert!(!tok
        .encode("a<|endoftext|>", false, false)
        .unwrap()
        .contains(&eot));
    assert_eq!(tok.decode(&[eot], true).unwrap(), "");
    assert_eq!(tok.eos_ids(), [eot]);
}

fn t5_meta() -> Vec<(&'static str, GgufValue)> {
    let words = [
        "<pad>",
        "</s>",
        "<unk>",
        "\u{2581}",
        "\u{2581}hello",
        "\u{2581}world",
        "h",
        "e",
        "l",
        "o",
    ];
    let scores: Vec<f32> = (0..words.len())
        .map(|i| if i < 3 { 0.0 } else { -(i as f32) })
        .collect();
    let mut types = vec![1i32; words.len()];
    types[..3].copy_from_slice(&[3, 3, 2]);
    vec![
        ("tokenizer.ggml.model", "t5".into()),
        ("tokenizer.ggml.tokens", words.to_vec().into()),
        ("tokenizer.ggml.scores", scores.into()),
        ("tokenizer.ggml.token_type", types.into()),
        ("tokenizer.ggml.add_space_prefix", true.into()),
    ]
}

#[test]
fn t5_unigram_vocabulary() {
    let tok = Tokenizer::from_gguf(&gguf(t5_meta())).expect("tiny t5 vocabulary");
    assert_eq!(tok.model_kind(), "t5");
    assert!(tok.add_eos() && !tok.add_bos());
    assert_eq!(tok.encode("hello world", false, false).unwrap(), [4, 5]);
    assert_eq!(tok.encode("hello world", true, false).unwrap(), [4, 5, 1]);
    assert_eq!(tok.decode(&[4, 5, 1], true).unwrap(), "hello world");
    assert_eq!(tok.eos_ids(), [1]);
}

#[test]
fn empty_tokens_are_renamed_not_matched_everywhere() {
    let mut meta = t5_meta();
    let words = [
        "<pad>",
        "</s>",
        "",
        "\u{2581}",
        "\u{2581}hello",
        "\u{2581}world",
        "h",
        "e",
        "l",
        "o",
    ];
    meta = with(meta, "tokenizer.ggml.tokens", Some(words.to_vec().into()));
    let tok = Tokenizer::from_gguf(&gguf(meta)).expect("loads");
    assert_eq!(tok.token_text(2).unwrap(), "[EMPTY_2]");
    assert_eq!(tok.encode("hello world", false, true).unwrap(), [4, 5]);
}

/// Replaces (or with `None` removes) one key of a metadata list.
fn with(
    mut meta: Vec<(&'static str, GgufValue)>,
    key: &'static str,
    value: Option<GgufValue>,
) -> Vec<(&'static str, GgufValue)> {
    meta.retain(|(k, _)| *k != key);
    if let Some(v) = value {
        meta.push((key, v));
    }
    meta
}

fn format_error(meta: Vec<(&'static str, GgufValue)>) -> TokenizerError {
    let e = Tokenizer::from_gguf(&gguf(meta)).expect_err("malformed metadata must be refused");
    assert_eq!(e.code(), "FormatError", "{e}");
    assert!(
        e.to_string().starts_with(FILE),
        "the message names the file: {e}"
    );
    e
}

#[test]
fn malformed_metadata_is_refused_with_a_clear_error() {
    let cases: Vec<(Vec<(&'static str, GgufValue)>, &str)> = vec![
        (
            with(
                spm_meta(),
                "tokenizer.ggml.scores",
                Some(vec![0.0f32; 3].into()),
            ),
            "tokenizer.ggml.scores` has 3 entries",
        ),
        (
            with(
                spm_meta(),
                "tokenizer.ggml.token_type",
                Some(vec![1i32; 5].into()),
            ),
            "tokenizer.ggml.token_type` has 5 entries",
        ),
        (
            with(
                spm_meta(),
                "tokenizer.ggml.token_type",
                Some(vec![1.0f32; 5].into()),
            ),
            "expected integers",
        ),
        (
            with(
                spm_meta(),
                "tokenizer.ggml.bos_token_id",
                Some(100_000u32.into()),
            ),
            "bos_token_id` is 100000, beyond the vocabulary",
        ),
        (
            with(
                spm_meta(),
                "tokenizer.ggml.eot_token_id",
                Some(999_999u32.into()),
            ),
            "eot_token_id",
        ),
        (
            with(spm_meta(), "tokenizer.ggml.model", Some("rwkv".into())),
            "unsupported tokenizer model `rwkv`",
        ),
        (
            with(spm_meta(), "tokenizer.ggml.model", None),
            "missing metadata key `tokenizer.ggml.model`",
        ),
        (
            with(spm_meta(), "tokenizer.ggml.tokens", None),
            "tokenizer.ggml.tokens",
        ),
        (
            with(
                spm_meta(),
                "tokenizer.ggml.tokens",
                Some(vec![1i32, 2].into()),
            ),
            "tokenizer.ggml.tokens",
        ),
        (
            with(
                spm_meta(),
                "tokenizer.ggml.tokens",
                Some(Vec::<String>::new().into()),
            ),
            "is empty",
        ),
        (
            with(spm_meta(), "tokenizer.ggml.scores", None),
            "missing metadata key `tokenizer.ggml.scores`",
        ),
        (
            with(
                spm_meta(),
                "tokenizer.ggml.bos_token_id",
                Some("one".into()),
            ),
            "bos_token_id",
        ),
        (
            with(
                spm_meta(),
                "tokenizer.ggml.tokens",
                Some(vec!["a"; 3 + 256 + 18].into()),
            ),
            "duplicate token \"a\"",
        ),
        (
            with(
                gpt2_meta(),
                "tokenizer.ggml.merges",
                Some(vec!["h e", "zz y"].into()),
            ),
            "merges`[1] \"zz y\" needs \"zz\"",
        ),
        (
            with(
                gpt2_meta(),
                "tokenizer.ggml.merges",
                Some(vec!["h e", "e l"].into()),
            ),
            "merges`[1] \"e l\" needs \"el\"",
        ),
        (
            with(
                gpt2_meta(),
                "tokenizer.ggml.merges",
                Some(vec!["he"].into()),
            ),
            "merges`[0] \"he\" is not two tokens",
        ),
        (
            with(gpt2_meta(), "tokenizer.ggml.merges", None),
            "missing metadata key `tokenizer.ggml.merges`",
        ),
        (
            with(
                gpt2_meta(),
                "tokenizer.ggml.pre",
                Some("no-such-pre".into()),
            ),
            "unsupported pre-tokenizer `no-such-pre`",
        ),
        (
            with(t5_meta(), "tokenizer.ggml.add_bos_token", Some(true.into())),
            "add_bos_token is true but there is no bos_token_id",
        ),
    ];
    for (meta, want) in cases {
        let e = format_error(meta);
        assert!(e.to_string().contains(want), "want {want:?} in: {e}");
    }
}

#[test]
fn tokenizer_json_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("mistralrs-core-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.json");
    let e = Tokenizer::from_tokenizer_json(&missing, None).unwrap_err();
    assert_eq!(e.code(), "IoError");
    assert!(e.to_string().contains("missing.json"), "{e}");

    let bad = dir.join("tokenizer.json");
    std::fs::write(&bad, r#"{"model": {"type": "BPE", "vocab": 3}}"#).unwrap();
    let e = Tokenizer::from_tokenizer_json(&bad, None).unwrap_err();
    assert_eq!(e.code(), "FormatError");
    assert!(
        e.to_string()
            .contains("tokenizer.json: invalid tokenizer.json"),
        "{e}"
    );

    let e = Tokenizer::from_gguf_path(&dir.join("missing.gguf")).unwrap_err();
    assert_eq!(e.code(), "IoError", "{e}");
    std::fs::write(dir.join("junk.gguf"), b"not a gguf").unwrap();
    let e = Tokenizer::from_gguf_path(&dir.join("junk.gguf")).unwrap_err();
    assert_eq!(e.code(), "FormatError", "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
