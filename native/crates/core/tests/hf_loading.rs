//! Loading models from Hugging Face folders (`config.json` as transformers 5 writes it, and
//! safetensors): a folder is the architecture its `model_type` names, what it requires, and
//! the refusal of config values that would make the arithmetic meaningless, each named by its
//! key.

mod tiny;

use std::path::PathBuf;

use mistralrs_core::model_error::Result;
use mistralrs_core::models::{load_hf, Model};
use mistralrs_core::runner::WeightDtype;
use mistralrs_quant::safetensors::{Dtype, SafetensorsWriter};
use tiny::*;

/// The folder's model, its matrices in the checkpoint's types.
fn load_folder(dir: &std::path::Path, requested: Option<&str>) -> Result<Box<dyn Model>> {
    load_hf(dir, requested, WeightDtype::Auto).map(|(model, _)| model)
}

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
    let result = load_folder(&dir, requested);
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
    assert_eq!(
        loaded(load_folder(&dir, None)).config().architecture,
        "llama"
    );
    assert_eq!(
        loaded(load_folder(&dir, Some("llama")))
            .config()
            .architecture,
        "llama"
    );
    let e = match load_folder(&dir, Some("mistral")) {
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
        json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "truncate": "no"}),
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
