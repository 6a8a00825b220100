//! Every vocab-only GGUF of llama.cpp's tokenizer fixtures (shared/fixtures/vocab) opens, and
//! its tokenizer metadata reads back with consistent array lengths.

use std::path::PathBuf;

use mistralrs_common::test_support::{fixture, shared_fixture};
use mistralrs_quant::gguf::{GgufArray, GgufFile};

#[test]
fn every_vocab_fixture_opens_and_reads_back() {
    let Some(dir) = fixture(shared_fixture("vocab")) else {
        return;
    };
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no *.gguf in {}", dir.display());

    for path in &paths {
        let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{e}"));
        let arch = file.get_string("general.architecture").unwrap();
        let model = file.get_string("tokenizer.ggml.model").unwrap();
        let tokens = file.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert!(!tokens.is_empty(), "{}: empty vocabulary", path.display());
        for key in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
            if let Some(value) = file.get(key) {
                let array = value
                    .as_array()
                    .unwrap_or_else(|| panic!("{key} is not an array"));
                assert_eq!(
                    array.len(),
                    tokens.len(),
                    "{}: {key} length",
                    path.display()
                );
            }
        }
        if file.contains_key("tokenizer.ggml.scores") {
            file.get_f32_array("tokenizer.ggml.scores").unwrap();
        }
        if file.contains_key("tokenizer.ggml.token_type") {
            file.get_i32_array("tokenizer.ggml.token_type").unwrap();
        }
        let merges = match file.get("tokenizer.ggml.merges").and_then(|v| v.as_array()) {
            Some(GgufArray::String(m)) => m.len(),
            Some(other) => panic!("merges are {} elements", other.element_type()),
            None => 0,
        };
        println!(
            "{}: v{} arch {arch}, tokenizer {model}, {} tokens, {merges} merges, {} keys, {} tensors",
            path.file_name().unwrap_or_default().to_string_lossy(),
            file.version(),
            tokens.len(),
            file.metadata().len(),
            file.tensors().len(),
        );
    }
}
