//! Loading models from tiny GGUFs (written with the project's writer) and Hugging Face folders
//! (config.json + safetensors): the registry's identity rules (`-a`, `llama` with experts,
//! required and unused tensors) and the refusal of hyperparameters that would make the
//! arithmetic meaningless, each named by its key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mistralrs_core::models::{load_gguf, load_hf, Model};
use mistralrs_quant::gguf::{GgufFile, GgufValue, GgufWriter};
use mistralrs_quant::safetensors::{Dtype, SafetensorsWriter};
use mistralrs_quant::GgmlType;

const FILE: &str = "/virtual/tiny.gguf";
const D: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HD: usize = 8;
const FF: usize = 64;
const VOCAB: usize = 64;

/// Deterministic small values.
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
        .collect()
}

/// A one-layer Llama's tensors: GGUF name and PyTorch shape (`[out, in]`).
fn llama_tensors() -> Vec<(String, Vec<usize>)> {
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

fn qk_norms() -> Vec<(String, Vec<usize>)> {
    vec![
        ("blk.0.attn_q_norm.weight".into(), vec![HD]),
        ("blk.0.attn_k_norm.weight".into(), vec![HD]),
    ]
}

fn qkv_biases() -> Vec<(String, Vec<usize>)> {
    vec![
        ("blk.0.attn_q.bias".into(), vec![HEADS * HD]),
        ("blk.0.attn_k.bias".into(), vec![KV_HEADS * HD]),
        ("blk.0.attn_v.bias".into(), vec![KV_HEADS * HD]),
    ]
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The metadata of a one-layer `arch` model, with `changes` replacing or adding entries (a
/// `None` value removes one).
fn metadata(arch: &str, changes: &[(&str, Option<GgufValue>)]) -> Vec<(String, GgufValue)> {
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

fn gguf(meta: Vec<(String, GgufValue)>, tensors: &[(String, Vec<usize>)]) -> Arc<GgufFile> {
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

fn gguf_error(file: Arc<GgufFile>, requested: Option<&str>) -> String {
    match load_gguf(file, requested) {
        Err(e) => e.to_string(),
        Ok(m) => panic!("loaded as {}", m.config().architecture),
    }
}

fn loaded(model: mistralrs_core::model_error::Result<Box<dyn Model>>) -> Box<dyn Model> {
    match model {
        Ok(m) => m,
        Err(e) => panic!("refused: {e}"),
    }
}

fn assert_mentions(error: &str, needles: &[&str]) {
    for n in needles {
        assert!(error.contains(n), "`{error}` does not mention `{n}`");
    }
}

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

// ---- Hugging Face folders ----------------------------------------------------------------

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mistralrs-core-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The checkpoint name of a tiny Llama tensor.
fn hf_name(gguf: &str) -> String {
    let fixed = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
    ];
    if let Some((_, hf)) = fixed.iter().find(|(g, _)| *g == gguf) {
        return hf.to_string();
    }
    let rest = gguf.strip_prefix("blk.0.").expect("a layer tensor");
    let (part, kind) = rest.rsplit_once('.').expect("a kind");
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => panic!("no name for {other}"),
    };
    format!("model.layers.0.{hf}.{kind}")
}

/// A transformers 5 LlamaConfig of the tiny model (every field its class writes).
fn llama_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": D,
        "intermediate_size": FF,
        "num_hidden_layers": 1,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-5,
        "use_cache": true,
        "pad_token_id": null,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pretraining_tp": 1,
        "tie_word_embeddings": true,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "head_dim": HD,
        "dtype": "float32",
        "transformers_version": "5.25.0"
    })
}

fn hf_folder(test: &str, config: &serde_json::Value, tensors: &[(String, Vec<usize>)]) -> PathBuf {
    let dir = temp_dir(test);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut w = SafetensorsWriter::new();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n = shape.iter().product();
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        w.add_tensor(&hf_name(name), Dtype::F32, &shape, f32_bytes(&values(n, i)))
            .unwrap();
    }
    w.write(&dir.join("model.safetensors")).unwrap();
    dir
}

fn hf_error(
    test: &str,
    config: &serde_json::Value,
    tensors: &[(String, Vec<usize>)],
    requested: Option<&str>,
) -> String {
    let dir = hf_folder(test, config, tensors);
    let result = load_hf(&dir, requested);
    std::fs::remove_dir_all(&dir).unwrap();
    match result {
        Err(e) => e.to_string(),
        Ok(m) => panic!("loaded as {}", m.config().architecture),
    }
}

/// `config` with `key` set to `value` (`pointer` syntax: `/rope_parameters/rope_theta`).
fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = llama_config();
    *c.pointer_mut(key).unwrap_or_else(|| panic!("no {key}")) = value;
    c
}

fn with_new(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = llama_config();
    c[key] = value;
    c
}

#[test]
fn a_folder_is_the_architecture_its_model_type_names() {
    let dir = hf_folder("hf-llama", &llama_config(), &llama_tensors());
    assert_eq!(loaded(load_hf(&dir, None)).config().architecture, "llama");
    assert_eq!(
        loaded(load_hf(&dir, Some("llama"))).config().architecture,
        "llama"
    );
    let e = match load_hf(&dir, Some("mistral")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("-a mistral accepted on a llama folder"),
    };
    std::fs::remove_dir_all(&dir).unwrap();
    assert_mentions(&e, &["`mistral`", "not the folder's: model_type `llama`"]);
    // llama.cpp's and mistral.rs's names are not transformers' model_type.
    let e = hf_error(
        "hf-qwen3moe",
        &with("/model_type", "qwen3moe".into()),
        &llama_tensors(),
        None,
    );
    assert_mentions(&e, &["model_type `qwen3moe` is not supported"]);
    // Requirements and unused tensors, as for GGUFs, by the checkpoint's names.
    let e = hf_error(
        "hf-qwen2",
        &with("/model_type", "qwen2".into()),
        &llama_tensors(),
        None,
    );
    assert_mentions(
        &e,
        &["architecture `qwen2` requires tensor `model.layers.0.self_attn.q_proj.bias`"],
    );
    let e = hf_error(
        "hf-qwen3",
        &with("/model_type", "qwen3".into()),
        &llama_tensors(),
        None,
    );
    assert_mentions(
        &e,
        &["architecture `qwen3` requires tensor `model.layers.0.self_attn.q_norm.weight`"],
    );
    let with_norms = [llama_tensors(), qk_norms()].concat();
    let e = hf_error("hf-llama-norms", &llama_config(), &with_norms, None);
    assert_mentions(&e, &["tensor `model.layers.0.self_attn.q_norm.weight` (and 1 more) is not used by architecture `llama`"]);
    // attention_bias decides whether Llama's biases are required.
    let e = hf_error(
        "hf-llama-bias",
        &with("/attention_bias", true.into()),
        &llama_tensors(),
        None,
    );
    assert_mentions(
        &e,
        &["requires tensor `model.layers.0.self_attn.q_proj.bias`"],
    );
    // A mixture of experts with no experts in its config.
    let mut mixtral = with("/model_type", "mixtral".into());
    mixtral.as_object_mut().unwrap().remove("num_local_experts");
    let e = hf_error("hf-mixtral", &mixtral, &llama_tensors(), None);
    assert_mentions(
        &e,
        &["`mixtral` is a mixture of experts, but the file gives no expert count"],
    );
    // A multimodal checkpoint's text model is under text_config.
    let gemma =
        serde_json::json!({"model_type": "gemma3", "text_config": {"model_type": "gemma3_text"}});
    let e = hf_error("hf-gemma3-mm", &gemma, &llama_tensors(), None);
    assert_mentions(&e, &["multimodal checkpoint"]);
}

#[test]
fn meaningless_config_values_are_refused_naming_the_key() {
    use serde_json::json;
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            with("/rope_parameters/rope_theta", json!(0.0)),
            "rope_parameters.rope_theta",
        ),
        (
            with("/rope_parameters/rope_theta", json!(-10000.0)),
            "rope_parameters.rope_theta",
        ),
        (with("/rms_norm_eps", json!(0.0)), "rms_norm_eps"),
        (with("/rms_norm_eps", json!(-1e-6)), "rms_norm_eps"),
        (
            with("/num_attention_heads", json!(0)),
            "num_attention_heads",
        ),
        (
            with("/num_key_value_heads", json!(3)),
            "num_key_value_heads",
        ),
        (
            with("/num_key_value_heads", json!(0)),
            "num_key_value_heads",
        ),
        (with("/head_dim", json!(0)), "head_dim"),
        (with("/head_dim", json!(-8)), "head_dim"),
        (
            with("/max_position_embeddings", json!(0)),
            "max_position_embeddings",
        ),
        (
            with("/max_position_embeddings", json!(1u64 << 40)),
            "max_position_embeddings",
        ),
        (
            with("/max_position_embeddings", json!(1e30)),
            "max_position_embeddings",
        ),
        (
            with("/max_position_embeddings", json!("4096")),
            "max_position_embeddings",
        ),
        (
            with("/num_hidden_layers", json!(u64::MAX)),
            "num_hidden_layers",
        ),
        (with("/vocab_size", json!(0)), "vocab_size"),
        (with("/intermediate_size", json!(0)), "intermediate_size"),
        (
            with_new("partial_rotary_factor", json!(1.5)),
            "partial_rotary_factor",
        ),
        (
            with_new("partial_rotary_factor", json!(0.0)),
            "partial_rotary_factor",
        ),
        (with_new("sliding_window", json!(0)), "sliding_window"),
        (
            with_new("use_sliding_window", json!(true)),
            "use_sliding_window",
        ),
        // transformers 4's keys.
        (with_new("rope_theta", json!(-1.0)), "rope_theta"),
        (with("/hidden_size", json!(30)), "hidden_size"),
    ];
    for (i, (config, key)) in cases.iter().enumerate() {
        let mut config = config.clone();
        if key == &"rope_theta" || key == &"hidden_size" {
            // v4 has no rope_parameters; a hidden size with no head_dim must divide.
            config.as_object_mut().unwrap().remove("rope_parameters");
            config.as_object_mut().unwrap().remove("head_dim");
        }
        let e = hf_error(&format!("hf-bad-{i}"), &config, &llama_tensors(), None);
        assert_mentions(&e, &["config.json", key]);
    }
    let scaling = |s: serde_json::Value| {
        let mut params = s;
        params["rope_theta"] = json!(10000.0);
        with("/rope_parameters", params)
    };
    let bad_scalings = [
        json!({"rope_type": "linear", "factor": -2.0}),
        json!({"rope_type": "linear", "factor": 0.0}),
        json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 0.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        json!({"rope_type": "yarn", "factor": 4.0, "beta_fast": -32.0}),
        json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 0}),
        json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "truncate": false}),
        json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "mscale": 1.0, "mscale_all_dim": 0.5}),
        json!({"rope_type": "longrope", "short_factor": [1.0, 1.0, 1.0, 1.0], "long_factor": [1.0, 1.0, 1.0, 0.0], "original_max_position_embeddings": 64}),
        json!({"rope_type": "longrope", "short_factor": [1.0, 1.0], "long_factor": [1.0, 1.0], "original_max_position_embeddings": 64}),
        json!({"rope_type": "dynamic", "factor": 2.0}),
    ];
    for (i, s) in bad_scalings.iter().enumerate() {
        let e = hf_error(
            &format!("hf-scaling-{i}"),
            &scaling(s.clone()),
            &llama_tensors(),
            None,
        );
        assert_mentions(&e, &["config.json", "rope_parameters"]);
    }
}
