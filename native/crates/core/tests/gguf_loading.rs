//! Loading models from tiny GGUFs written with the project's writer: the registry's identity
//! rules (`-a`, `llama` with experts, required and unused tensors) and the refusal of
//! hyperparameters that would make the arithmetic meaningless, each named by its key.

mod tiny;

use std::path::Path;
use std::sync::Arc;

use mistralrs_core::models::load_gguf;
use mistralrs_quant::gguf::{GgufFile, GgufValue, GgufWriter};
use mistralrs_quant::GgmlType;
use tiny::*;

#[test]
fn a_gguf_is_the_architecture_its_name_and_structure_say() {
    let m = loaded(load_gguf(
        gguf(metadata("llama", &[]), &llama_tensors()),
        None,
    ));
    assert_eq!(m.config().architecture, "llama");
    // Mistral's GGUFs say `llama`: `-a mistral` names them (mistral.rs's `-a` names too).
    for name in ["mistral", "MISTRAL"] {
        let m = loaded(load_gguf(
            gguf(metadata("llama", &[]), &llama_tensors()),
            Some(name),
        ));
        assert_eq!(m.config().architecture, "mistral");
    }
    // `-a` naming another architecture, or none known, is refused naming both.
    let e = gguf_error(
        gguf(metadata("llama", &[]), &llama_tensors()),
        Some("qwen3"),
    );
    assert_mentions(&e, &["`qwen3`", "not the file's", "`llama`"]);
    let e = gguf_error(gguf(metadata("llama", &[]), &llama_tensors()), Some("gpt2"));
    assert_mentions(&e, &["architecture `gpt2` is not known"]);
    // `llama` with experts is Mixtral: `-a llama` is refused, and without the experts'
    // tensors the file lacks what Mixtral requires.
    let experts = [
        ("llama.expert_count", Some(GgufValue::U32(4))),
        ("llama.expert_used_count", Some(GgufValue::U32(2))),
    ];
    let e = gguf_error(
        gguf(metadata("llama", &experts), &llama_tensors()),
        Some("llama"),
    );
    assert_mentions(&e, &["not the file's: `mixtral`", "`llama` with experts"]);
    let e = gguf_error(gguf(metadata("llama", &experts), &llama_tensors()), None);
    assert_mentions(
        &e,
        &["architecture `mixtral` requires tensor `blk.0.ffn_gate_exps.weight`"],
    );
    // `-a mixtral` on a dense file is refused before anything loads.
    let e = gguf_error(
        gguf(metadata("llama", &[]), &llama_tensors()),
        Some("mixtral"),
    );
    assert_mentions(&e, &["`mixtral`", "not the file's: `llama`"]);
    let e = gguf_error(gguf(metadata("gpt2", &[]), &llama_tensors()), None);
    assert_mentions(&e, &["architecture `gpt2` is not supported"]);
}

#[test]
fn a_gguf_without_what_its_architecture_requires_is_refused_naming_the_tensor() {
    let e = gguf_error(gguf(metadata("qwen3", &[]), &llama_tensors()), None);
    assert_mentions(
        &e,
        &["architecture `qwen3` requires tensor `blk.0.attn_q_norm.weight`"],
    );
    let e = gguf_error(gguf(metadata("qwen2", &[]), &llama_tensors()), None);
    assert_mentions(
        &e,
        &["architecture `qwen2` requires tensor `blk.0.attn_q.bias`"],
    );
    // With them, both load.
    let with_norms = [llama_tensors(), qk_norms()].concat();
    loaded(load_gguf(gguf(metadata("qwen3", &[]), &with_norms), None));
    let with_biases = [llama_tensors(), qkv_biases()].concat();
    loaded(load_gguf(gguf(metadata("qwen2", &[]), &with_biases), None));
    // Some of the biases but not all.
    let partial = [llama_tensors(), qkv_biases()[..1].to_vec()].concat();
    let e = gguf_error(gguf(metadata("llama", &[]), &partial), None);
    assert_mentions(&e, &["some of the Q, K and V biases"]);
}

#[test]
fn a_gguf_with_tensors_its_architecture_would_ignore_is_refused() {
    // Qwen 3's norms in a file that says `llama`, and biases in one that says `qwen3`.
    let with_norms = [llama_tensors(), qk_norms()].concat();
    let e = gguf_error(gguf(metadata("llama", &[]), &with_norms), None);
    assert_mentions(
        &e,
        &["tensor `blk.0.attn_q_norm.weight` (and 1 more) is not used by architecture `llama`"],
    );
    let all = [llama_tensors(), qk_norms(), qkv_biases()].concat();
    let e = gguf_error(gguf(metadata("qwen3", &[]), &all), None);
    assert_mentions(
        &e,
        &["tensor `blk.0.attn_q.bias` (and 2 more) is not used by architecture `qwen3`"],
    );
    let stray = [
        llama_tensors(),
        vec![("blk.1.attn_q.weight".to_string(), vec![D, D])],
    ]
    .concat();
    let e = gguf_error(gguf(metadata("llama", &[]), &stray), None);
    assert_mentions(&e, &["tensor `blk.1.attn_q.weight` is not used"]);
}

/// Each change must be refused with a message naming `key`.
fn assert_refused_naming(changes: &[(&str, Option<GgufValue>)], key: &str) {
    let e = gguf_error(gguf(metadata("llama", changes), &llama_tensors()), None);
    assert_mentions(&e, &[FILE, key]);
}

#[test]
fn meaningless_gguf_hyperparameters_are_refused_naming_the_key() {
    let f = |v: f32| Some(GgufValue::F32(v));
    let u = |v: u32| Some(GgufValue::U32(v));
    for base in [f32::NAN, f32::INFINITY, 0.0, -10_000.0] {
        assert_refused_naming(&[("llama.rope.freq_base", f(base))], "llama.rope.freq_base");
    }
    for eps in [f32::NAN, -1e-5, 0.0, f32::INFINITY] {
        let key = "llama.attention.layer_norm_rms_epsilon";
        assert_refused_naming(&[(key, f(eps))], key);
    }
    for (key, value) in [
        ("llama.attention.head_count", 0),
        ("llama.attention.head_count_kv", 0),
        ("llama.attention.head_count_kv", 3),
        ("llama.attention.head_count", 100_000),
        ("llama.embedding_length", 0),
        ("llama.block_count", 0),
        ("llama.block_count", 1_000_000),
        ("llama.feed_forward_length", 0),
        ("llama.context_length", 0),
        ("llama.context_length", u32::MAX),
        ("llama.vocab_size", 0),
        ("llama.attention.key_length", 0),
        ("llama.attention.key_length", 100_000),
    ] {
        assert_refused_naming(&[(key, u(value))], key);
    }
    // Odd rotary dimensions, more than the head, none.
    for dims in [5, 16, 0] {
        let key = "llama.rope.dimension_count";
        assert_refused_naming(&[(key, u(dims))], key);
    }
    // A head size from the hidden size that does not divide.
    assert_refused_naming(
        &[
            ("llama.attention.head_count", u(3)),
            ("llama.attention.head_count_kv", u(3)),
        ],
        "llama.embedding_length",
    );
    // A u64 context that would wrap in 32 bits.
    assert_refused_naming(
        &[(
            "llama.context_length",
            Some(GgufValue::U64((1 << 32) + 128)),
        )],
        "llama.context_length",
    );
    // A negative integer where a count is.
    assert_refused_naming(
        &[("llama.block_count", Some(GgufValue::I32(-1)))],
        "llama.block_count",
    );
    // Scalings that divide by zero or produce NaN angles.
    for factor in [f32::NAN, -2.0, f32::INFINITY] {
        let key = "llama.rope.scaling.factor";
        assert_refused_naming(
            &[
                ("llama.rope.scaling.type", Some("linear".into())),
                (key, f(factor)),
            ],
            key,
        );
    }
    let yarn = |key: &'static str, value: f32| {
        vec![
            ("llama.rope.scaling.type", Some("yarn".into())),
            ("llama.rope.scaling.factor", f(4.0)),
            (key, f(value)),
        ]
    };
    for (key, value) in [
        ("llama.rope.scaling.yarn_beta_fast", f32::NAN),
        ("llama.rope.scaling.yarn_beta_slow", -1.0),
        ("llama.rope.scaling.attn_factor", 0.0),
        // YaRN divides by ln(base).
        ("llama.rope.freq_base", 1.0),
    ] {
        assert_refused_naming(&yarn(key, value), "rope scaling");
    }
    assert_refused_naming(
        &[
            ("llama.rope.scaling.type", Some("yarn".into())),
            ("llama.rope.scaling.factor", f(4.0)),
            ("llama.rope.scaling.original_context_length", u(0)),
        ],
        "the original context is 0",
    );
    assert_refused_naming(
        &[("llama.attention.sliding_window", u(0))],
        "llama.attention.sliding_window",
    );
    // Experts that cannot be routed.
    for (count, used) in [(4, 0), (4, 5)] {
        let e = gguf_error(
            gguf(
                metadata(
                    "llama",
                    &[
                        ("llama.expert_count", u(count)),
                        ("llama.expert_used_count", u(used)),
                    ],
                ),
                &llama_tensors(),
            ),
            None,
        );
        assert_mentions(&e, &["cannot be routed"]);
    }
}

#[test]
fn rotation_factor_tensors_must_be_finite_and_positive() {
    for bad in [f32::NAN, 0.0, -1.0] {
        let mut w = GgufWriter::new();
        for (k, v) in metadata("llama", &[]) {
            w.add_metadata(&k, v).unwrap();
        }
        for (i, (name, shape)) in llama_tensors().iter().enumerate() {
            let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
            let n = shape.iter().product();
            w.add_tensor(name, &dims, GgmlType::F32, f32_bytes(&values(n, i)))
                .unwrap();
        }
        let mut factors = vec![1.0f32; HD / 2];
        factors[1] = bad;
        w.add_tensor(
            "rope_freqs.weight",
            &[(HD / 2) as u64],
            GgmlType::F32,
            f32_bytes(&factors),
        )
        .unwrap();
        let file = Arc::new(GgufFile::from_bytes(Path::new(FILE), w.to_bytes()).unwrap());
        assert_mentions(
            &gguf_error(file, None),
            &["rope scaling tensors", "frequency factor"],
        );
    }
}
