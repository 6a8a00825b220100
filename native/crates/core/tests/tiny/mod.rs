//! A one-layer Llama of tiny sizes for the loading tests: its tensors by GGUF name, written
//! as a GGUF with the project's writer.
#![allow(dead_code)] // each test binary uses a part

use std::path::Path;
use std::sync::Arc;

use mistralrs_core::models::{load_gguf, Model};
use mistralrs_quant::gguf::{GgufFile, GgufValue, GgufWriter};
use mistralrs_quant::GgmlType;

pub const FILE: &str = "/virtual/tiny.gguf";
pub const D: usize = 32;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HD: usize = 8;
pub const FF: usize = 64;
pub const VOCAB: usize = 64;

/// Deterministic small values.
pub fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
        .collect()
}

/// A one-layer Llama's tensors: GGUF name and PyTorch shape (`[out, in]`).
pub fn llama_tensors() -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        ("token_embd.weight".to_string(), vec![VOCAB, D]),
        ("output_norm.weight".to_string(), vec![D]),
    ];
    for (name, shape) in [
        ("attn_norm.weight", vec![D]),
        ("attn_q.weight", vec![HEADS * HD, D]),
        ("attn_k.weight", vec![KV_HEADS * HD, D]),
        ("attn_v.weight", vec![KV_HEADS * HD, D]),
        ("attn_output.weight", vec![D, HEADS * HD]),
        ("ffn_norm.weight", vec![D]),
        ("ffn_gate.weight", vec![FF, D]),
        ("ffn_up.weight", vec![FF, D]),
        ("ffn_down.weight", vec![D, FF]),
    ] {
        t.push((format!("blk.0.{name}"), shape));
    }
    t
}

pub fn qk_norms() -> Vec<(String, Vec<usize>)> {
    vec![
        ("blk.0.attn_q_norm.weight".into(), vec![HD]),
        ("blk.0.attn_k_norm.weight".into(), vec![HD]),
    ]
}

pub fn qkv_biases() -> Vec<(String, Vec<usize>)> {
    vec![
        ("blk.0.attn_q.bias".into(), vec![HEADS * HD]),
        ("blk.0.attn_k.bias".into(), vec![KV_HEADS * HD]),
        ("blk.0.attn_v.bias".into(), vec![KV_HEADS * HD]),
    ]
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The metadata of a one-layer `arch` model, with `changes` replacing or adding entries (a
/// `None` value removes one).
pub fn metadata(arch: &str, changes: &[(&str, Option<GgufValue>)]) -> Vec<(String, GgufValue)> {
    let mut meta: Vec<(String, GgufValue)> = vec![
        ("general.architecture".into(), arch.into()),
        (format!("{arch}.vocab_size"), GgufValue::U32(VOCAB as u32)),
        (format!("{arch}.context_length"), GgufValue::U32(128)),
        (format!("{arch}.embedding_length"), GgufValue::U32(D as u32)),
        (format!("{arch}.block_count"), GgufValue::U32(1)),
        (
            format!("{arch}.feed_forward_length"),
            GgufValue::U32(FF as u32),
        ),
        (
            format!("{arch}.attention.head_count"),
            GgufValue::U32(HEADS as u32),
        ),
        (
            format!("{arch}.attention.head_count_kv"),
            GgufValue::U32(KV_HEADS as u32),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            GgufValue::F32(1e-5),
        ),
        (format!("{arch}.rope.freq_base"), GgufValue::F32(10_000.0)),
    ];
    for (key, value) in changes {
        meta.retain(|(k, _)| k != key);
        if let Some(v) = value {
            meta.push((key.to_string(), v.clone()));
        }
    }
    meta
}

pub fn gguf(meta: Vec<(String, GgufValue)>, tensors: &[(String, Vec<usize>)]) -> Arc<GgufFile> {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(&k, v).expect("valid test metadata");
    }
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product();
        let mut v = values(n, i);
        if name.ends_with("norm.weight") {
            v.iter_mut().for_each(|x| *x += 1.0);
        }
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        w.add_tensor(name, &dims, GgmlType::F32, f32_bytes(&v))
            .expect("valid test tensor");
    }
    Arc::new(GgufFile::from_bytes(Path::new(FILE), w.to_bytes()).expect("readable test file"))
}

pub fn gguf_error(file: Arc<GgufFile>, requested: Option<&str>) -> String {
    match load_gguf(file, requested) {
        Err(e) => e.to_string(),
        Ok(m) => panic!("loaded as {}", m.config().architecture),
    }
}

pub fn loaded(model: mistralrs_core::model_error::Result<Box<dyn Model>>) -> Box<dyn Model> {
    match model {
        Ok(m) => m,
        Err(e) => panic!("refused: {e}"),
    }
}

pub fn assert_mentions(error: &str, needles: &[&str]) {
    for n in needles {
        assert!(error.contains(n), "`{error}` does not mention `{n}`");
    }
}
