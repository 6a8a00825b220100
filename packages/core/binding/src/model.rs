//! Models from JavaScript: load off-thread, then one `step` per engine step (an AsyncTask on
//! the libuv pool; the forward pass runs on the native thread pool).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::grammar::ConstraintHandle;
use crate::tokenizer::{tokenizer_error, TokenizerHandle};
use mistralrs_core::runner::{KvDtype, Runner, RunnerOptions, StepError, StepSeq, WeightDtype};
use mistralrs_core::sampler::{DryParams, Sampled, SamplingParams};
use mistralrs_core::speculative::{DraftModel, DraftOptions, NgramParams};
use mistralrs_core::tokenizer::Tokenizer;
use mistralrs_core::ModelError;
use mistralrs_napi_support::{guard, js_error};
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint32Array};
use napi::{Env, Task};
use napi_derive::napi;

pub(crate) fn model_error(err: ModelError) -> napi::Error {
    js_error(err.code(), err)
}

#[napi(object)]
pub struct LoadModelOptions {
    pub block_size: Option<u32>,
    pub kv_tokens: Option<u32>,
    /// A memory budget for the KV cache instead of a token count.
    pub kv_bytes: Option<f64>,
    /// `f16` (default) or `q8_0`.
    pub kv_cache_type: Option<String>,
    /// How a safetensors folder's float matrices are stored: `auto` (default: the checkpoint's
    /// types), `f32`, `f16` or `bf16`. A GGUF refuses any but `auto`.
    pub dtype: Option<String>,
    /// The architecture expected (`-a`): an id, `model_type`, mistral.rs or GGUF name. A file
    /// of another architecture is refused, naming both.
    pub architecture: Option<String>,
    /// Build a GGUF's tokenizer from the same open file while the weights load (then
    /// `takeTokenizer` hands it over); a Hugging Face folder's is in its own file.
    pub tokenizer: Option<bool>,
}

/// The chat templates of a GGUF's metadata (`tokenizer.chat_template`, and named variants
/// `tokenizer.chat_template.<name>`), with the text of its BOS and EOS tokens.
#[napi(object)]
pub struct GgufChatTemplates {
    /// `[key, template]` pairs.
    pub templates: Vec<Vec<String>>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

#[napi(object)]
pub struct ModelInfo {
    pub architecture: String,
    pub vocab_size: u32,
    pub hidden_size: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub context_length: u32,
    pub block_size: u32,
    pub n_blocks: u32,
    /// Bytes the KV cache holds.
    pub kv_cache_bytes: f64,
    /// Bytes a safetensors model's matrices take as stored (`dtype`); absent for a GGUF.
    pub weight_bytes: Option<f64>,
    /// Bytes of recurrent state each sequence carries (LFM2's short convolutions); 0 when the
    /// KV cache is the model's whole memory. Such a model runs without prefix caching and
    /// speculative decoding.
    pub recurrent_state_bytes: f64,
}

#[napi]
pub struct ModelHandle {
    /// `None` once released: the weights' mapping and the KV cache are freed then, not when
    /// JavaScript's collector gets to the handle.
    runner: Arc<Mutex<Option<Runner>>>,
    /// The tokenizer built from the model's file at load, until taken.
    tokenizer: Mutex<Option<Tokenizer>>,
}

/// Runs `f` on the runner, or fails when the model was released.
fn with_runner<T>(
    runner: &Mutex<Option<Runner>>,
    f: impl FnOnce(&mut Runner) -> napi::Result<T>,
) -> napi::Result<T> {
    crate::slot::with_loaded(runner, "model", f)
}

pub struct LoadModelTask {
    path: PathBuf,
    options: RunnerOptions,
    tokenizer: bool,
}

#[napi]
impl Task for LoadModelTask {
    type Output = (Runner, Option<Tokenizer>);
    type JsValue = ModelHandle;

    fn compute(&mut self) -> napi::Result<(Runner, Option<Tokenizer>)> {
        let loaded = guard(|| {
            let hf = self.path.is_dir();
            if !self.tokenizer || hf {
                let runner = Runner::load(&self.path, &self.options).map_err(model_error)?;
                return Ok((runner, None));
            }
            let (runner, tokenizer) =
                Runner::load_gguf_with(&self.path, &self.options, Tokenizer::from_gguf)
                    .map_err(model_error)?;
            Ok((runner, Some(tokenizer.map_err(tokenizer_error)?)))
        });
        // Repacking and converting weights (and building a tokenizer) frees what it read from.
        mistralrs_common::memory::return_freed_memory();
        loaded
    }

    fn resolve(
        &mut self,
        _env: Env,
        (runner, tokenizer): (Runner, Option<Tokenizer>),
    ) -> napi::Result<ModelHandle> {
        Ok(ModelHandle {
            runner: Arc::new(Mutex::new(Some(runner))),
            tokenizer: Mutex::new(tokenizer),
        })
    }
}

/// Loads the model of a GGUF file (or a Hugging Face folder) with a KV pool of `kvTokens` tokens.
#[napi(ts_return_type = "Promise<ModelHandle>")]
pub fn load_model(
    path: String,
    options: Option<LoadModelOptions>,
) -> napi::Result<AsyncTask<LoadModelTask>> {
    let mut opts = RunnerOptions::default();
    let tokenizer = options.as_ref().and_then(|o| o.tokenizer).unwrap_or(false);
    if let Some(o) = options {
        if let Some(b) = o.block_size {
            opts.block_size = b as usize;
        }
        opts.kv_tokens = o.kv_tokens.map(|t| t as usize);
        opts.kv_bytes = o
            .kv_bytes
            .filter(|b| b.is_finite() && *b >= 0.0)
            .map(|b| b as usize);
        opts.architecture = o.architecture;
        opts.kv_dtype = kv_dtype(o.kv_cache_type.as_deref())?;
        if let Some(name) = o.dtype.as_deref() {
            opts.weight_dtype = WeightDtype::parse(name).ok_or_else(|| {
                js_error(
                    "InvalidArgumentError",
                    format!("dtype `{name}` is not one of auto, f32, f16, bf16"),
                )
            })?;
        }
    }
    Ok(AsyncTask::new(LoadModelTask {
        path: PathBuf::from(path),
        options: opts,
        tokenizer,
    }))
}

#[napi(object)]
pub struct SamplingOptions {
    pub temperature: Option<f64>,
    pub top_k: Option<u32>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub penalty_last_n: Option<u32>,
    /// `[tokenId, bias]` pairs.
    pub logit_bias: Option<Vec<Vec<f64>>>,
    /// Integer seed (below 2^53).
    pub seed: Option<f64>,
    pub top_logprobs: Option<u32>,
    /// DRY: off unless a multiplier other than 0 is given.
    pub dry_multiplier: Option<f64>,
    /// Default 1.75.
    pub dry_base: Option<f64>,
    /// Default 2.
    pub dry_allowed_length: Option<u32>,
    /// Tokens searched for repeats; -1 (the default) is the whole history, 0 turns DRY off.
    pub dry_penalty_last_n: Option<i32>,
    /// Breakers as token sequences, head first (`TokenizerHandle.drySequenceBreakers`).
    pub dry_sequence_breakers: Option<Vec<Vec<u32>>>,
}

fn dry_params(o: &mut SamplingOptions) -> napi::Result<Option<DryParams>> {
    let multiplier = o.dry_multiplier.unwrap_or(0.0);
    if multiplier == 0.0 {
        return Ok(None);
    }
    let base = o.dry_base.unwrap_or(1.75);
    let penalty_last_n = o.dry_penalty_last_n.unwrap_or(-1);
    let usable = multiplier.is_finite() && multiplier > 0.0 && base.is_finite() && base >= 1.0;
    if !usable {
        return Err(js_error(
            "InvalidArgumentError",
            format!("DRY needs a positive multiplier and a base of at least 1, got {multiplier} and {base}"),
        ));
    }
    if penalty_last_n < -1 {
        return Err(js_error(
            "InvalidArgumentError",
            format!(
                "DRY's penalty_last_n must be -1 (all), 0 (off) or positive, got {penalty_last_n}"
            ),
        ));
    }
    Ok(Some(DryParams {
        multiplier: multiplier as f32,
        base: base as f32,
        allowed_length: o.dry_allowed_length.unwrap_or(2) as usize,
        penalty_last_n: usize::try_from(penalty_last_n).ok(),
        sequence_breakers: o.dry_sequence_breakers.take().unwrap_or_default(),
    }))
}

fn sampling_params(mut o: SamplingOptions) -> napi::Result<SamplingParams> {
    let d = SamplingParams::default();
    let dry = dry_params(&mut o)?;
    let logit_bias = o
        .logit_bias
        .unwrap_or_default()
        .into_iter()
        .map(|pair| match pair[..] {
            [t, b] if t >= 0.0 && t.fract() == 0.0 && t < u32::MAX as f64 => {
                Ok((t as u32, b as f32))
            }
            _ => Err(js_error(
                "InvalidArgumentError",
                format!("bad logit bias entry {pair:?}"),
            )),
        })
        .collect::<napi::Result<Vec<_>>>()?;
    Ok(SamplingParams {
        temperature: o.temperature.map_or(d.temperature, |v| v as f32),
        top_k: o.top_k.map_or(d.top_k, |v| v as usize),
        top_p: o.top_p.map_or(d.top_p, |v| v as f32),
        min_p: o.min_p.map_or(d.min_p, |v| v as f32),
        repetition_penalty: o
            .repetition_penalty
            .map_or(d.repetition_penalty, |v| v as f32),
        frequency_penalty: o
            .frequency_penalty
            .map_or(d.frequency_penalty, |v| v as f32),
        presence_penalty: o.presence_penalty.map_or(d.presence_penalty, |v| v as f32),
        penalty_last_n: o.penalty_last_n.map_or(d.penalty_last_n, |v| v as usize),
        logit_bias,
        dry,
        seed: o.seed.map(|s| s as u64),
        top_logprobs: o.top_logprobs.map(|n| n as usize),
    })
}

#[napi(object)]
pub struct StepInput {
    pub seq_id: u32,
    pub tokens: Uint32Array,
    pub start_pos: u32,
    pub block_table: Uint32Array,
    pub sample: bool,
    pub return_logits: Option<bool>,
    /// The tokens are generated ones: each row computed as its own decode step would be.
    pub decode_order: Option<bool>,
    /// Propose and verify up to this many tokens after `tokens` (the block table covers them).
    pub speculate: Option<u32>,
}

/// A proposed token the target kept, with its log-probabilities when asked.
#[napi(object)]
pub struct AcceptedToken {
    pub token: u32,
    pub logprob: Option<f64>,
    pub top_logprobs: Option<Vec<TokenLogprob>>,
}

#[napi(object)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f64,
}

#[napi(object)]
pub struct StepOutput {
    pub seq_id: u32,
    /// Proposed tokens the target kept, output before `token` (speculative decoding).
    pub accepted: Option<Vec<AcceptedToken>>,
    /// Tokens proposed this step.
    pub proposed: u32,
    /// Draws the sequence's generator has taken in all (pass back after a preemption).
    pub draws: f64,
    /// The sampled token, when `sample` was set.
    pub token: Option<u32>,
    pub logprob: Option<f64>,
    pub top_logprobs: Option<Vec<TokenLogprob>>,
    pub logits: Option<Float32Array>,
    /// Tokens the grammar forces after `token`: they are output, and fed with it.
    pub forced: Option<Vec<u32>>,
    /// Why this sequence failed this step (its grammar allows nothing; the model's logits are
    /// not finite); the others in the step go on.
    pub error: Option<String>,
    /// `ConstraintError` or `NonFiniteLogitsError`, with `error`.
    pub error_code: Option<String>,
}

fn token_logprobs(top: Vec<(u32, f32)>) -> Vec<TokenLogprob> {
    top.into_iter()
        .map(|(token, lp)| TokenLogprob {
            token,
            logprob: f64::from(lp),
        })
        .collect()
}

pub struct StepTask {
    runner: Arc<Mutex<Option<Runner>>>,
    batch: Vec<StepInput>,
}

pub struct StepRaw {
    seq_id: u32,
    accepted: Vec<Sampled>,
    proposed: usize,
    draws: usize,
    token: Option<u32>,
    logprob: Option<f32>,
    top: Option<Vec<(u32, f32)>>,
    logits: Option<Vec<f32>>,
    forced: Vec<u32>,
    error: Option<StepError>,
}

#[napi]
impl Task for StepTask {
    type Output = Vec<StepRaw>;
    type JsValue = Vec<StepOutput>;

    fn compute(&mut self) -> napi::Result<Vec<StepRaw>> {
        guard(|| {
            let batch: Vec<StepSeq<'_>> = self
                .batch
                .iter()
                .map(|s| StepSeq {
                    seq_id: u64::from(s.seq_id),
                    tokens: &s.tokens,
                    start_pos: s.start_pos as usize,
                    block_table: &s.block_table,
                    sample: s.sample,
                    return_logits: s.return_logits.unwrap_or(false),
                    decode_order: s.decode_order.unwrap_or(false),
                    speculate: s.speculate.unwrap_or(0) as usize,
                })
                .collect();
            let out = with_runner(&self.runner, |r| r.step(&batch).map_err(model_error))?;
            Ok(out
                .into_iter()
                .map(|o| StepRaw {
                    seq_id: o.seq_id as u32,
                    accepted: o.accepted,
                    proposed: o.proposed,
                    draws: o.draws,
                    token: o.sampled.as_ref().map(|s| s.token),
                    logprob: o.sampled.as_ref().and_then(|s| s.logprob),
                    top: o
                        .sampled
                        .as_ref()
                        .filter(|s| s.logprob.is_some())
                        .map(|s| s.top.clone()),
                    logits: o.logits,
                    forced: o.forced,
                    error: o.error,
                })
                .collect())
        })
    }

    fn resolve(&mut self, _env: Env, output: Vec<StepRaw>) -> napi::Result<Vec<StepOutput>> {
        Ok(output
            .into_iter()
            .map(|o| StepOutput {
                seq_id: o.seq_id,
                accepted: (!o.accepted.is_empty()).then(|| {
                    o.accepted
                        .into_iter()
                        .map(|s| AcceptedToken {
                            token: s.token,
                            logprob: s.logprob.map(f64::from),
                            top_logprobs: s.logprob.map(|_| token_logprobs(s.top)),
                        })
                        .collect()
                }),
                proposed: o.proposed as u32,
                draws: o.draws as f64,
                token: o.token,
                logprob: o.logprob.map(f64::from),
                top_logprobs: o.top.map(token_logprobs),
                logits: o.logits.map(Float32Array::new),
                forced: (!o.forced.is_empty()).then_some(o.forced),
                error_code: o.error.as_ref().map(|e| e.code().to_string()),
                error: o.error.map(|e| e.to_string()),
            })
            .collect())
    }
}

#[napi(object)]
pub struct LoadDraftOptions {
    /// Stop proposing at the first guess the draft gives less probability than this.
    pub p_min: Option<f64>,
    /// The draft's KV cache type: `f16` (default) or `q8_0`.
    pub kv_cache_type: Option<String>,
}

#[napi(object)]
pub struct DraftInfo {
    pub architecture: String,
    pub vocab_size: u32,
    pub n_layers: u32,
    pub kv_cache_bytes: f64,
}

#[napi(object)]
pub struct SpeculationCounts {
    pub verify_steps: f64,
    pub proposed: f64,
    pub accepted: f64,
}

pub struct LoadDraftTask {
    runner: Arc<Mutex<Option<Runner>>>,
    path: PathBuf,
    kv_dtype: KvDtype,
    options: DraftOptions,
}

#[napi]
impl Task for LoadDraftTask {
    type Output = DraftInfo;
    type JsValue = DraftInfo;

    fn compute(&mut self) -> napi::Result<DraftInfo> {
        guard(|| {
            let (blocks, vocab) = with_runner(&self.runner, |r| {
                Ok(((r.block_size(), r.n_blocks()), r.config().vocab_size))
            })?;
            let base = RunnerOptions {
                kv_dtype: self.kv_dtype,
                ..RunnerOptions::default()
            };
            let draft = DraftModel::load(&self.path, &base, blocks, vocab, self.options)
                .map_err(model_error)?;
            mistralrs_common::memory::return_freed_memory();
            let c = draft.runner().config();
            let info = DraftInfo {
                architecture: c.architecture.clone(),
                vocab_size: c.vocab_size as u32,
                n_layers: c.n_layers as u32,
                kv_cache_bytes: draft.runner().kv_cache_bytes() as f64,
            };
            with_runner(&self.runner, |r| {
                r.attach_draft(draft);
                Ok(())
            })?;
            Ok(info)
        })
    }

    fn resolve(&mut self, _env: Env, info: DraftInfo) -> napi::Result<DraftInfo> {
        Ok(info)
    }
}

fn kv_dtype(name: Option<&str>) -> napi::Result<KvDtype> {
    match name {
        None | Some("f16") => Ok(KvDtype::F16),
        Some("q8_0") => Ok(KvDtype::Q8_0),
        Some(other) => Err(js_error(
            "InvalidArgumentError",
            format!("KV cache type `{other}` is not one of f16, q8_0"),
        )),
    }
}

#[napi]
impl ModelHandle {
    /// The tokenizer built from the model's own file at load (`tokenizer: true`), once.
    #[napi(catch_unwind)]
    pub fn take_tokenizer(&self) -> napi::Result<Option<TokenizerHandle>> {
        let mut slot = self
            .tokenizer
            .lock()
            .map_err(|_| js_error("InternalError", "model state poisoned"))?;
        Ok(slot.take().map(|t| TokenizerHandle { inner: Arc::new(t) }))
    }

    /// The chat templates in the model's GGUF metadata (None for a Hugging Face folder, whose
    /// templates are in its tokenizer config).
    #[napi(catch_unwind)]
    pub fn gguf_chat_templates(&self) -> napi::Result<Option<GgufChatTemplates>> {
        with_runner(&self.runner, |r| {
            let Some(file) = r.gguf_file() else {
                return Ok(None);
            };
            const KEY: &str = "tokenizer.chat_template";
            let templates = file
                .metadata()
                .iter()
                .filter(|(key, _)| *key == KEY || key.starts_with("tokenizer.chat_template."))
                .filter_map(|(key, value)| Some(vec![key.to_string(), value.as_str()?.to_string()]))
                .collect();
            let token_text = |id_key: &str| -> Option<String> {
                let id = file.get_u32_opt(id_key).ok()??;
                file.get_str_array("tokenizer.ggml.tokens")
                    .ok()?
                    .get(id as usize)
                    .cloned()
            };
            Ok(Some(GgufChatTemplates {
                templates,
                bos_token: token_text("tokenizer.ggml.bos_token_id"),
                eos_token: token_text("tokenizer.ggml.eos_token_id"),
            }))
        })
    }

    #[napi(catch_unwind)]
    pub fn info(&self) -> napi::Result<ModelInfo> {
        with_runner(&self.runner, |r| {
            let c = r.config();
            Ok(ModelInfo {
                architecture: c.architecture.clone(),
                vocab_size: c.vocab_size as u32,
                hidden_size: c.hidden_size as u32,
                n_layers: c.n_layers as u32,
                n_heads: c.n_heads as u32,
                n_kv_heads: c.n_kv_heads as u32,
                head_dim: c.head_dim as u32,
                context_length: c.context_length as u32,
                block_size: r.block_size() as u32,
                n_blocks: r.n_blocks() as u32,
                kv_cache_bytes: r.kv_cache_bytes() as f64,
                weight_bytes: r.weight_bytes().map(|b| b as f64),
                recurrent_state_bytes: (r.recurrent_state_len() * std::mem::size_of::<f32>())
                    as f64,
            })
        })
    }

    /// Registers a sequence and its sampling parameters; `history` is what it has seen already
    /// without stepping through it (a prompt prefix whose cache blocks it shares), for the
    /// penalties. After a preemption: `constraint` (the grammar its output follows) is
    /// advanced past `generated`, and the generator past the `draws` it had taken.
    #[napi(catch_unwind)]
    pub fn add_sequence(
        &self,
        seq_id: u32,
        sampling: Option<SamplingOptions>,
        history: Option<Uint32Array>,
        constraint: Option<&ConstraintHandle>,
        generated: Option<Uint32Array>,
        draws: Option<f64>,
    ) -> napi::Result<()> {
        let params = match sampling {
            Some(o) => sampling_params(o)?,
            None => SamplingParams::default(),
        };
        let constraint = match constraint {
            Some(c) => Some(
                c.inner
                    .resumed(generated.as_deref().unwrap_or(&[]))
                    .map_err(model_error)?,
            ),
            None => None,
        };
        with_runner(&self.runner, |r| {
            r.add_sequence(u64::from(seq_id), params, constraint);
            r.skip_draws(u64::from(seq_id), draws.unwrap_or(0.0) as usize);
            if let Some(h) = history {
                r.extend_history(u64::from(seq_id), &h);
            }
            Ok(())
        })
    }

    #[napi(catch_unwind)]
    pub fn remove_sequence(&self, seq_id: u32) -> napi::Result<()> {
        with_runner(&self.runner, |r| {
            r.remove_sequence(u64::from(seq_id));
            Ok(())
        })
    }

    /// Speculative decoding by prompt lookup: match the context's last `maxN` down to `minN`
    /// tokens (defaults 4 and 2) against earlier text and propose what followed.
    #[napi(catch_unwind)]
    pub fn use_ngram_proposals(&self, min_n: Option<u32>, max_n: Option<u32>) -> napi::Result<()> {
        let d = NgramParams::default();
        let params = NgramParams {
            min_n: min_n.map_or(d.min_n, |n| n as usize),
            max_n: max_n.map_or(d.max_n, |n| n as usize),
        };
        if params.min_n == 0 || params.min_n > params.max_n {
            return Err(js_error(
                "InvalidArgumentError",
                format!(
                    "n-gram sizes must satisfy 1 <= min ({}) <= max ({})",
                    params.min_n, params.max_n
                ),
            ));
        }
        with_runner(&self.runner, |r| {
            r.use_ngram_proposals(params);
            Ok(())
        })
    }

    /// Loads a draft model (same tokenizer; a GGUF or Hugging Face folder) whose proposals
    /// the model verifies from now on. Its KV cache gets as many blocks as the model's.
    #[napi(ts_return_type = "Promise<DraftInfo>")]
    pub fn load_draft(
        &self,
        path: String,
        options: Option<LoadDraftOptions>,
    ) -> napi::Result<AsyncTask<LoadDraftTask>> {
        let o = options.unwrap_or(LoadDraftOptions {
            p_min: None,
            kv_cache_type: None,
        });
        let kv_dtype = kv_dtype(o.kv_cache_type.as_deref())?;
        let p_min = o.p_min.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&p_min) {
            return Err(js_error(
                "InvalidArgumentError",
                format!("the draft's minimum probability must be in [0, 1], got {p_min}"),
            ));
        }
        Ok(AsyncTask::new(LoadDraftTask {
            runner: Arc::clone(&self.runner),
            path: PathBuf::from(path),
            kv_dtype,
            options: DraftOptions {
                p_min: p_min as f32,
            },
        }))
    }

    /// Speculation so far: verify steps, tokens proposed, tokens kept.
    #[napi(catch_unwind)]
    pub fn speculation_stats(&self) -> napi::Result<SpeculationCounts> {
        with_runner(&self.runner, |r| {
            let s = r.speculation_stats();
            Ok(SpeculationCounts {
                verify_steps: s.verify_steps as f64,
                proposed: s.proposed as f64,
                accepted: s.accepted as f64,
            })
        })
    }

    /// Frees the model now (weights, KV cache, sequences); every later call fails. A step in
    /// flight finishes first (it holds the lock).
    #[napi(catch_unwind)]
    pub fn release(&self) -> napi::Result<()> {
        crate::slot::release(&self.runner, "model")
    }

    /// One engine step over `batch`; resolves with one output per sequence, in order.
    #[napi(ts_return_type = "Promise<Array<StepOutput>>")]
    pub fn step(&self, batch: Vec<StepInput>) -> AsyncTask<StepTask> {
        AsyncTask::new(StepTask {
            runner: Arc::clone(&self.runner),
            batch,
        })
    }
}
