//! A speed check, not an assertion (the machines are shared and noisy): load time and the time
//! to encode ~100 kB of English text with a few vocabularies, printed. Run with
//! `cargo test --release -p mistralrs-core --test encode_speed -- --nocapture`.

mod common;

use std::path::Path;
use std::time::Instant;

use mistralrs_core::tokenizer::Tokenizer;

/// ~100 kB of English: the licence texts Debian ships, else the vector inputs repeated.
fn english_text(dir: &Path, bytes: usize) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir("/usr/share/common-licenses") {
        let mut paths: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(t) = std::fs::read_to_string(&p) {
                text.push_str(&t);
                text.push('\n');
            }
            if text.len() >= bytes {
                break;
            }
        }
    }
    let fallback =
        std::fs::read_to_string(dir.join("ggml-vocab-llama-spm.gguf.inp")).unwrap_or_default();
    while text.len() < bytes && !fallback.is_empty() {
        text.push_str(&fallback);
    }
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

#[test]
fn encode_speed() {
    let Some(dir) = common::vocab_dir() else {
        return;
    };
    let text = english_text(&dir, 100_000);
    println!("\ntext: {} bytes", text.len());
    for name in [
        "llama-bpe",
        "llama-spm",
        "gpt-2",
        "bert-bge",
        "deepseek-llm",
        "falcon",
    ] {
        let path = dir.join(format!("ggml-vocab-{name}.gguf"));
        let t = Instant::now();
        let Ok(tok) = Tokenizer::from_gguf_path(&path) else {
            println!("{name}: missing");
            continue;
        };
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        // The first run fills the BPE word cache; later runs of the same text hit it.
        let mut runs = Vec::new();
        let mut n = 0;
        for _ in 0..3 {
            let t = Instant::now();
            n = tok.encode(&text, false, false).expect("encode").len();
            runs.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let best = runs.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{name:<14} load {load_ms:7.1} ms   encode first {:7.1} ms, best of 3 {best:7.1} ms   {n} tokens",
            runs[0]
        );
    }
}
