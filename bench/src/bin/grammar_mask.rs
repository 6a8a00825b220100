//! The cost of constrained decoding per token: llguidance's mask for a JSON schema, computed
//! and applied to a row of logits, as a generation that writes a valid document sees it, on
//! the vocabularies of the given GGUF files (SmolLM2's 49k, Gemma 3's 262k).
//!
//! `cargo run --release -p mistralrs-bench --bin grammar_mask -- FILE.gguf [FILE.gguf ...]`
//!
//! The "model" follows a fixed document: at each step it takes the allowed token that spells
//! the longest next piece of it, as a model following the grammar would pick one token out of
//! the mask. Tokens the grammar forces are read without a mask, as the engine feeds them.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mistralrs_core::grammar::{GrammarCompiler, GrammarKind};
use mistralrs_core::Tokenizer;

const SCHEMA: &str = r##"{
  "$defs": {"item": {"type": "object", "properties": {
    "sku": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3}$"},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
    "price": {"type": "number"}}, "required": ["sku", "quantity", "price"], "additionalProperties": false}},
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "status": {"enum": ["new", "paid", "shipped"]},
    "customer": {"type": "object", "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
      "required": ["name", "email"], "additionalProperties": false},
    "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1},
    "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}
  },
  "required": ["id", "status", "customer", "items", "note"],
  "additionalProperties": false
}"##;

const DOCUMENT: &str = r#"{"id": 40213, "status": "paid", "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}, "items": [{"sku": "AB123", "quantity": 2, "price": 19.99}, {"sku": "XY042", "quantity": 1, "price": 250.5}, {"sku": "QQ777", "quantity": 12, "price": 3.25}], "note": "Leave the parcel with the neighbour, please."}"#;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(path: &Path) -> Result<(), String> {
    let tokenizer = Arc::new(Tokenizer::from_gguf_path(path).map_err(|e| e.to_string())?);
    let vocab = tokenizer.vocab_size();
    let pieces: Vec<Vec<u8>> = (0..vocab as u32)
        .map(|id| {
            if tokenizer.is_special(id) {
                Vec::new()
            } else {
                tokenizer.token_to_piece(id).unwrap_or_default()
            }
        })
        .collect();
    let t = Instant::now();
    let compiler = GrammarCompiler::new(Arc::clone(&tokenizer)).map_err(|e| e.to_string())?;
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut constraint = compiler
        .compile(GrammarKind::JsonSchema, SCHEMA)
        .map_err(|e| e.to_string())?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;

    let doc = DOCUMENT.as_bytes();
    let mut at = 0;
    let mut logits = vec![0f32; vocab];
    let mut mask_us = Vec::new();
    let (mut sampled, mut forced) = (0usize, 0usize);
    while at < doc.len() {
        logits.iter_mut().for_each(|l| *l = 0.0);
        let t = Instant::now();
        constraint
            .mask_logits(&mut logits)
            .map_err(|e| e.to_string())?;
        mask_us.push(t.elapsed().as_secs_f64() * 1e6);
        let rest = &doc[at..];
        let token = (0..vocab)
            .filter(|&i| {
                logits[i].is_finite() && !pieces[i].is_empty() && rest.starts_with(&pieces[i])
            })
            .max_by_key(|&i| pieces[i].len())
            .ok_or_else(|| format!("no allowed token continues the document at byte {at}"))?;
        at += pieces[token].len();
        sampled += 1;
        for f in constraint.accept(token as u32).map_err(|e| e.to_string())? {
            at += pieces[f as usize].len();
            forced += 1;
        }
    }
    let mut sorted = mask_us.clone();
    sorted.sort_by(f64::total_cmp);
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    println!(
        "{:<40} vocab {:>6}  trie {:>6.0} ms  compile {:>5.1} ms  tokens {:>3} sampled + {:>3} forced  mask µs: mean {:>6.0}  p50 {:>6.0}  p95 {:>6.0}  max {:>6.0}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        vocab,
        setup_ms,
        compile_ms,
        sampled,
        forced,
        mean,
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.95),
        sorted[sorted.len() - 1],
    );
    Ok(())
}

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: grammar_mask FILE.gguf [FILE.gguf ...]");
        std::process::exit(2);
    }
    for p in paths {
        if let Err(e) = run(Path::new(&p)) {
            eprintln!("{p}: {e}");
            std::process::exit(1);
        }
    }
}
