//! The modules a sentence-transformers folder stacks after its transformer (`modules.json`):
//! pooling over the token states, dense layers, normalization. Each is read from its own
//! subfolder as sentence-transformers writes it, and applied in f32 as it computes them.

use std::path::{Path, PathBuf};

use mistralrs_quant::safetensors::SafetensorsModel;
use serde_json::Value;

use crate::model_error::{ModelError, Result};

/// One way token states become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingMode {
    Cls,
    Max,
    Mean,
    MeanSqrtLen,
    /// Position i (from 1) weighs i.
    WeightedMean,
    LastToken,
}

impl PoolingMode {
    /// sentence-transformers' names (`pooling_mode` of its current configs), and the legacy
    /// flags (`pooling_mode_mean_tokens: true`) in the order its converter reads them.
    const NAMES: [(PoolingMode, &'static str, &'static str); 6] = [
        (PoolingMode::Cls, "cls", "pooling_mode_cls_token"),
        (PoolingMode::Max, "max", "pooling_mode_max_tokens"),
        (PoolingMode::Mean, "mean", "pooling_mode_mean_tokens"),
        (
            PoolingMode::MeanSqrtLen,
            "mean_sqrt_len_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
        ),
        (
            PoolingMode::WeightedMean,
            "weightedmean",
            "pooling_mode_weightedmean_tokens",
        ),
        (
            PoolingMode::LastToken,
            "lasttoken",
            "pooling_mode_lasttoken",
        ),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(m, _, _)| *m == self)
            .map_or("", |(_, name, _)| name)
    }

    fn parse(name: &str) -> Option<PoolingMode> {
        Self::NAMES
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(m, _, _)| *m)
    }
}

/// How token states become one vector (`1_Pooling/config.json`): each mode's vector, in the
/// order the config lists them, concatenated.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooling {
    pub modes: Vec<PoolingMode>,
}

impl Pooling {
    /// The pooled vector of one sequence's states (`[len, d]`), appended to `out`.
    pub fn pool(&self, states: &[f32], d: usize, out: &mut Vec<f32>) {
        let len = states.len() / d;
        let rows = || states.chunks_exact(d);
        let sum = || {
            let mut sum = vec![0f32; d];
            for row in rows() {
                sum.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
            }
            sum
        };
        for mode in &self.modes {
            match mode {
                PoolingMode::Cls => out.extend_from_slice(&states[..d]),
                PoolingMode::Max => {
                    let mut m = vec![f32::NEG_INFINITY; d];
                    for row in rows() {
                        m.iter_mut().zip(row).for_each(|(a, &b)| *a = a.max(b));
                    }
                    out.extend(m);
                }
                PoolingMode::Mean => out.extend(sum().iter().map(|s| s / len as f32)),
                PoolingMode::MeanSqrtLen => {
                    out.extend(sum().iter().map(|s| s / (len as f32).sqrt()))
                }
                PoolingMode::WeightedMean => {
                    let mut sum = vec![0f32; d];
                    for (i, row) in rows().enumerate() {
                        let w = (i + 1) as f32;
                        sum.iter_mut().zip(row).for_each(|(a, &b)| *a += b * w);
                    }
                    let total = (len * (len + 1) / 2) as f32;
                    out.extend(sum.iter().map(|s| s / total));
                }
                PoolingMode::LastToken => out.extend_from_slice(&states[(len - 1) * d..]),
            }
        }
    }

    /// Modes in use, for messages and `info`.
    pub fn names(&self) -> Vec<&'static str> {
        self.modes.iter().map(|m| m.name()).collect()
    }

    fn modes(&self) -> usize {
        self.modes.len()
    }
}

/// `Dense`: `y = act(W·x + b)`.
pub struct Dense {
    /// `[out, in]`, row-major.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_features: usize,
    out_features: usize,
    tanh: bool,
}

impl Dense {
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        (0..self.out_features)
            .map(|r| {
                let row = &self.weight[r * self.in_features..(r + 1) * self.in_features];
                let mut y = row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>();
                if let Some(b) = &self.bias {
                    y += b[r];
                }
                if self.tanh {
                    y.tanh()
                } else {
                    y
                }
            })
            .collect()
    }
}

/// The modules after the transformer, in order.
pub struct SentenceTransformerHead {
    pub pooling: Pooling,
    pub dense: Vec<Dense>,
    pub normalize: bool,
    /// `sentence_bert_config.json`'s `max_seq_length`: longer inputs are truncated or refused.
    pub max_seq_length: Option<usize>,
}

impl SentenceTransformerHead {
    /// The modules of `dir/modules.json` for a transformer of width `hidden`.
    pub fn read(dir: &Path, hidden: usize) -> Result<SentenceTransformerHead> {
        let modules_path = dir.join("modules.json");
        let modules = read_json(&modules_path)?;
        let list = modules
            .as_array()
            .ok_or_else(|| bad(&modules_path, "is not a list of modules"))?;
        let mut head = SentenceTransformerHead {
            pooling: Pooling { modes: Vec::new() },
            dense: Vec::new(),
            normalize: false,
            max_seq_length: read_max_seq_length(dir)?,
        };
        let mut width = hidden;
        let mut seen_transformer = false;
        let mut seen_pooling = false;
        for (i, module) in list.iter().enumerate() {
            let kind = module["type"].as_str().unwrap_or_default();
            // `sentence_transformers.models.Dense` and the like: the class name decides.
            let class = kind.rsplit('.').next().unwrap_or_default();
            let sub = module["path"].as_str().unwrap_or_default();
            let sub_dir = contained(dir, sub, &modules_path)?;
            let out_of_order = |what: &str| {
                bad(
                    &modules_path,
                    format!("module {i} (`{class}`) comes {what}"),
                )
            };
            match class {
                "Transformer" => {
                    if i != 0 {
                        return Err(out_of_order("after others; it must be first"));
                    }
                    seen_transformer = true;
                }
                "Pooling" => {
                    if !seen_transformer || seen_pooling {
                        return Err(out_of_order("out of order"));
                    }
                    head.pooling = read_pooling(&sub_dir, width)?;
                    width *= head.pooling.modes();
                    seen_pooling = true;
                }
                "Dense" => {
                    if !seen_pooling {
                        return Err(out_of_order("before the pooling"));
                    }
                    let dense = read_dense(&sub_dir, width)?;
                    width = dense.out_features;
                    head.dense.push(dense);
                }
                "Normalize" => {
                    if !seen_pooling {
                        return Err(out_of_order("before the pooling"));
                    }
                    head.normalize = true;
                }
                other => {
                    return Err(bad(
                        &modules_path,
                        format!(
                            "module {i} is `{kind}`; the modules run here are Transformer, Pooling, Dense and Normalize, not `{other}`"
                        ),
                    ))
                }
            }
        }
        if !seen_pooling {
            return Err(bad(&modules_path, "has no Pooling module"));
        }
        Ok(head)
    }

    /// The width of the vectors this head outputs.
    pub fn dimensions(&self, hidden: usize) -> usize {
        self.dense
            .last()
            .map_or(hidden * self.pooling.modes(), |d| d.out_features)
    }

    /// One sequence's embedding from its final token states (`[len, hidden]`).
    pub fn apply(&self, states: &[f32], hidden: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(hidden * self.pooling.modes());
        self.pooling.pool(states, hidden, &mut v);
        for dense in &self.dense {
            v = dense.forward(&v);
        }
        if self.normalize {
            normalize(&mut v);
        }
        v
    }
}

/// `v / max(‖v‖, 1e-12)`, as torch's `F.normalize`.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

fn bad(path: &Path, what: impl std::fmt::Display) -> ModelError {
    ModelError::Unsupported(format!("{}: {what}", path.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e))?;
    serde_json::from_str(&text).map_err(|e| bad(path, format!("not valid JSON: {e}")))
}

/// A module's folder, which must stay inside the model's (`path` comes from the file).
fn contained(dir: &Path, sub: &str, modules_path: &Path) -> Result<PathBuf> {
    let safe = Path::new(sub)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !safe {
        return Err(bad(
            modules_path,
            format!("module path `{sub}` leads outside the model's folder"),
        ));
    }
    Ok(dir.join(sub))
}

/// `sentence_bert_config.json`'s `max_seq_length`, else (as sentence-transformers falls back
/// to the tokenizer's limit) `tokenizer_config.json`'s `model_max_length` when it is a real
/// limit (transformers writes a huge number for "none").
fn read_max_seq_length(dir: &Path) -> Result<Option<usize>> {
    for (file, key) in [
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
    ] {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        match &read_json(&path)?[key] {
            Value::Null => continue,
            v => match v.as_f64() {
                Some(n) if (1.0..1e9).contains(&n) => return Ok(Some(n as usize)),
                Some(n) if n >= 1e9 => continue,
                _ => return Err(bad(&path, format!("`{key}` is {v}, not a positive number"))),
            },
        }
    }
    Ok(None)
}

fn read_pooling(dir: &Path, hidden: usize) -> Result<Pooling> {
    let path = dir.join("config.json");
    let c = read_json(&path)?;
    // `embedding_dimension` (sentence-transformers 6), `word_embedding_dimension` before.
    let width = c["embedding_dimension"]
        .as_u64()
        .or_else(|| c["word_embedding_dimension"].as_u64());
    if let Some(d) = width {
        if d as usize != hidden {
            return Err(bad(
                &path,
                format!("pools vectors of {d}, but the transformer's are {hidden} wide"),
            ));
        }
    }
    if c["include_prompt"].as_bool() == Some(false) {
        return Err(bad(
            &path,
            "`include_prompt: false` (pooling without the prompt's tokens) is not supported",
        ));
    }
    let named = |name: &str| {
        PoolingMode::parse(name).ok_or_else(|| {
            bad(
                &path,
                format!(
                    "pooling mode `{name}` is not one of {}",
                    PoolingMode::NAMES.map(|(_, n, _)| n).join(", ")
                ),
            )
        })
    };
    let modes = match &c["pooling_mode"] {
        Value::String(name) => vec![named(name)?],
        Value::Array(names) => names
            .iter()
            .map(|n| named(n.as_str().unwrap_or_default()))
            .collect::<Result<Vec<_>>>()?,
        Value::Null => PoolingMode::NAMES
            .iter()
            .filter(|(_, _, flag)| c[*flag].as_bool() == Some(true))
            .map(|(m, _, _)| *m)
            .collect(),
        other => return Err(bad(&path, format!("`pooling_mode` is {other}"))),
    };
    if modes.is_empty() {
        return Err(bad(&path, "names no pooling mode"));
    }
    Ok(Pooling { modes })
}

fn read_dense(dir: &Path, in_width: usize) -> Result<Dense> {
    let path = dir.join("config.json");
    let c = read_json(&path)?;
    let features = |key: &str| {
        c[key]
            .as_u64()
            .filter(|&n| n > 0)
            .map(|n| n as usize)
            .ok_or_else(|| {
                bad(
                    &path,
                    format!("`{key}` is missing or not a positive number"),
                )
            })
    };
    let (in_features, out_features) = (features("in_features")?, features("out_features")?);
    if in_features != in_width {
        return Err(bad(
            &path,
            format!("takes vectors of {in_features}, but receives {in_width}"),
        ));
    }
    let activation = c["activation_function"]
        .as_str()
        .unwrap_or("torch.nn.modules.activation.Tanh");
    let tanh = match activation.rsplit('.').next() {
        Some("Identity") => false,
        Some("Tanh") => true,
        _ => {
            return Err(bad(
                &path,
                format!("activation `{activation}` is not supported (Identity, Tanh)"),
            ))
        }
    };
    if !dir.join("model.safetensors").is_file() {
        return Err(bad(
            dir,
            "has no model.safetensors (a pytorch_model.bin is not read: pickles can run code)",
        ));
    }
    let weights = SafetensorsModel::open_dir(dir)?;
    let tensor = |name: &str, shape: &[u64]| -> Result<Option<Vec<f32>>> {
        let Some((file, info)) = weights.tensor(name) else {
            return Ok(None);
        };
        if info.shape != shape {
            return Err(bad(
                file.path(),
                format!("`{name}` has shape {:?}, expected {shape:?}", info.shape),
            ));
        }
        Ok(Some(weights.to_f32(name)?))
    };
    let out = out_features as u64;
    let weight = tensor("linear.weight", &[out, in_features as u64])?
        .ok_or_else(|| bad(dir, "its model.safetensors lacks `linear.weight`"))?;
    let bias = tensor("linear.bias", &[out])?;
    if c["bias"].as_bool() == Some(true) && bias.is_none() {
        return Err(bad(
            dir,
            "its config has a bias, but the weights lack `linear.bias`",
        ));
    }
    Ok(Dense {
        weight,
        bias,
        in_features,
        out_features,
        tanh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tokens of width 2: `[1, -2]` then `[3, 4]`.
    const STATES: [f32; 4] = [1.0, -2.0, 3.0, 4.0];

    fn pooled(modes: &[PoolingMode]) -> Vec<f32> {
        let mut out = Vec::new();
        Pooling {
            modes: modes.to_vec(),
        }
        .pool(&STATES, 2, &mut out);
        out
    }

    #[test]
    fn each_mode_pools_as_sentence_transformers_defines_it() {
        use PoolingMode::*;
        assert_eq!(pooled(&[Cls]), [1.0, -2.0]);
        assert_eq!(pooled(&[LastToken]), [3.0, 4.0]);
        assert_eq!(pooled(&[Max]), [3.0, 4.0]);
        assert_eq!(pooled(&[Mean]), [2.0, 1.0]);
        let sqrt2 = 2f32.sqrt();
        assert_eq!(pooled(&[MeanSqrtLen]), [4.0 / sqrt2, 2.0 / sqrt2]);
        // Weights 1 and 2, over their sum 3.
        assert_eq!(pooled(&[WeightedMean]), [7.0 / 3.0, 6.0 / 3.0]);
        // Several modes concatenate in the order given.
        assert_eq!(pooled(&[LastToken, Cls]), [3.0, 4.0, 1.0, -2.0]);
    }

    #[test]
    fn normalize_is_torch_f_normalize() {
        let mut v = [3.0f32, 4.0];
        normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0.0f32; 3];
        normalize(&mut zero);
        assert_eq!(zero, [0.0; 3]);
    }

    #[test]
    fn both_config_formats_name_the_modes() {
        let dir = std::env::temp_dir().join(format!("st-pooling-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let read = |config: &str| {
            std::fs::write(dir.join("config.json"), config).unwrap();
            read_pooling(&dir, 4).map(|p| p.names())
        };
        assert_eq!(
            read(r#"{"pooling_mode": "lasttoken"}"#).unwrap(),
            ["lasttoken"]
        );
        assert_eq!(
            read(r#"{"pooling_mode": ["max", "cls"], "embedding_dimension": 4}"#).unwrap(),
            ["max", "cls"]
        );
        assert_eq!(
            read(r#"{"word_embedding_dimension": 4, "pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}"#)
                .unwrap(),
            ["cls", "mean"]
        );
        assert!(read(r#"{"pooling_mode": "mean", "embedding_dimension": 8}"#).is_err());
        assert!(read(r#"{"pooling_mode_mean_tokens": false}"#).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
