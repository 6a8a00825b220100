//! Grammar masks on real vocabularies from `../shared/fixtures/vocab`: a byte-level BPE
//! (Llama 3) and a SentencePiece one with byte fallback (Llama 2). Whatever the constraint
//! allows must keep the output inside the language, tokens it forces must spell what it
//! requires, and special tokens must never be spelled by grammar text. A missing fixture fails the
//! test (see `mistralrs_common::test_support`).

mod common;

use std::sync::Arc;

use mistralrs_core::grammar::{Constraint, GrammarCompiler, GrammarKind};
use mistralrs_core::tokenizer::Tokenizer;

fn compiler(name: &str) -> Option<(Arc<Tokenizer>, GrammarCompiler)> {
    let dir = common::vocab_dir()?;
    let tok = Arc::new(
        Tokenizer::from_gguf_path(&dir.join(format!("ggml-vocab-{name}.gguf")))
            .unwrap_or_else(|e| panic!("{name}: {e}")),
    );
    let compiler = GrammarCompiler::new(Arc::clone(&tok)).unwrap_or_else(|e| panic!("{name}: {e}"));
    Some((tok, compiler))
}

fn allowed(c: &mut Constraint, vocab: usize) -> Vec<u32> {
    let mut logits = vec![0f32; vocab];
    c.mask_logits(&mut logits).expect("mask");
    (0..vocab as u32)
        .filter(|&i| logits[i as usize].is_finite())
        .collect()
}

/// Follows `text` through the constraint: at each step the longest allowed token that spells
/// the next bytes (as a model would pick one), forced tokens taken as they come. Returns how
/// many tokens were forced.
fn follow(tok: &Tokenizer, c: &mut Constraint, text: &str) -> usize {
    let vocab = tok.vocab_size();
    let bytes = text.as_bytes();
    let (mut at, mut forced) = (0, 0);
    while at < bytes.len() {
        let token = allowed(c, vocab)
            .into_iter()
            .filter(|&t| !tok.is_special(t))
            .map(|t| (t, tok.token_to_piece(t).unwrap()))
            .filter(|(_, p)| !p.is_empty() && bytes[at..].starts_with(p))
            .max_by_key(|(_, p)| p.len())
            .unwrap_or_else(|| panic!("nothing allowed continues {text:?} at byte {at}"));
        at += token.1.len();
        for f in c.accept(token.0).expect("accept") {
            let piece = tok.token_to_piece(f).unwrap();
            assert!(
                bytes[at..].starts_with(&piece),
                "forced {piece:?} at byte {at} of {text:?}"
            );
            at += piece.len();
            forced += 1;
        }
    }
    forced
}

#[test]
fn json_schema_masks_keep_the_output_valid_on_both_vocabulary_kinds() {
    for name in ["llama-bpe", "llama-spm"] {
        let Some((tok, compiler)) = compiler(name) else {
            return;
        };
        let schema = r#"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"], "additionalProperties": false}"#;
        let mut c = compiler
            .compile(GrammarKind::JsonSchema, schema)
            .expect("compile");
        // The only way to start is `{"name": "`: the first token is a prefix of it.
        for t in allowed(&mut c, tok.vocab_size()) {
            let piece = String::from_utf8(tok.token_to_piece(t).unwrap()).unwrap_or_default();
            assert!(
                r#"{"name": ""#.starts_with(&piece) && !piece.is_empty(),
                "{name}: {piece:?} allowed first"
            );
        }
        let forced = follow(&tok, &mut c, r#"{"name": "Ada", "age": 36}"#);
        assert!(
            forced > 0,
            "{name}: the key `\"age\": ` is forced, yet nothing was"
        );
        // Complete: only the end tokens remain.
        let end = allowed(&mut c, tok.vocab_size());
        assert!(
            !end.is_empty() && end.iter().all(|t| tok.eos_ids().contains(t)),
            "{name}: {end:?}"
        );
    }
}

#[test]
fn special_tokens_are_never_spelled_by_grammar_text() {
    let Some((tok, compiler)) = compiler("llama-bpe") else {
        return;
    };
    // The text of Llama 3's end-of-turn marker as a literal: it must be spelled byte by byte.
    let mut c = compiler
        .compile(GrammarKind::Regex, r"<\|eot_id\|>")
        .expect("compile");
    let first = allowed(&mut c, tok.vocab_size());
    assert!(
        !first.contains(&128009),
        "the special token itself is allowed"
    );
    follow(&tok, &mut c, "<|eot_id|>");
}

#[test]
fn resumed_constraints_continue_where_the_tokens_left_off() {
    let Some((tok, compiler)) = compiler("llama-spm") else {
        return;
    };
    let c = compiler
        .compile(GrammarKind::Lark, r#"start: "yes" | "no""#)
        .expect("compile");
    // The token spelling "ye" (SentencePiece would encode the word with a leading space).
    let ye = (0..tok.vocab_size() as u32)
        .find(|&t| !tok.is_special(t) && tok.token_to_piece(t).unwrap() == b"ye")
        .expect("a token spelling 'ye'");
    let mut resumed = c.resumed(&[ye]).expect("resume");
    let next = allowed(&mut resumed, tok.vocab_size());
    assert!(!next.is_empty());
    assert!(
        next.iter().all(|&t| tok.token_to_piece(t).unwrap() == b"s"),
        "after 'ye' only 's'"
    );
    assert!(
        c.resumed(&tok.encode("maybe", false, false).unwrap())
            .is_err(),
        "a rejected prefix is an error"
    );
}

#[test]
fn malformed_and_unsatisfiable_grammars_name_the_problem() {
    let Some((_, compiler)) = compiler("llama-bpe") else {
        return;
    };
    let cases = [
        (GrammarKind::Regex, "(a", "regex"),
        (GrammarKind::Lark, "start: undefined_rule", "undefined_rule"),
        (
            GrammarKind::JsonSchema,
            r#"{"type": "integer", "minimum": 3, "maximum": 1}"#,
            "minimum",
        ),
        (GrammarKind::JsonSchema, "{not json", "not valid JSON"),
        (GrammarKind::JsonSchema, "[1, 2]", "object or a boolean"),
        (GrammarKind::Llguidance, "", "malformed"),
    ];
    for (kind, value, needle) in cases {
        let err = compiler
            .compile(kind, value)
            .err()
            .unwrap_or_else(|| panic!("{value:?} compiled"));
        assert!(err.to_string().contains(needle), "{value:?}: {err}");
    }
    assert!(GrammarKind::parse("gbnf").is_err());
}
