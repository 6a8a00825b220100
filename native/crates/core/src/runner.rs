//! The runner of engine steps: a loaded model, its paged KV cache, and per-sequence sampling
//! state. One `step` = one forward pass over a batch of sequences plus sampling, so the
//! JavaScript side crosses into native code once per step.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::KvCache;
pub use mistralrs_paged_attn::KvDtype;
use mistralrs_quant::gguf::GgufFile;

use crate::grammar::Constraint;
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::{load_gguf, ForwardScratch, Model, SeqInput};
use crate::sampler::{Sampled, Sampler, SamplingParams};
use crate::speculative::{
    self, DraftModel, NgramParams, Proposal, Proposer, SpeculationStats, VerifyError,
};
pub use crate::weights_dtype::WeightDtype;

#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Tokens per KV block.
    pub block_size: usize,
    /// Tokens the KV pool holds in all (rounded up to whole blocks); defaults to the model's
    /// context length, capped at 8192.
    pub kv_tokens: Option<usize>,
    /// Or a memory budget in bytes, turned into as many whole blocks as fit (at least one).
    pub kv_bytes: Option<usize>,
    /// How the cache stores keys and values.
    pub kv_dtype: KvDtype,
    /// How a safetensors folder's float matrices are stored (`--dtype`); a GGUF refuses any
    /// but `Auto`.
    pub weight_dtype: WeightDtype,
    /// The architecture the caller expects (`-a`: an id, `model_type`, mistral.rs or GGUF
    /// name); a file of another architecture is refused.
    pub architecture: Option<String>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            block_size: 32,
            kv_tokens: None,
            kv_bytes: None,
            kv_dtype: KvDtype::F16,
            weight_dtype: WeightDtype::Auto,
            architecture: None,
        }
    }
}

/// One sequence's part of a step, as the engine sends it.
pub struct StepSeq<'a> {
    pub seq_id: u64,
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub block_table: &'a [u32],
    /// Sample a token after this step (false for a prefill chunk that is not the last).
    pub sample: bool,
    /// Also return the raw logits of the last token (tests, scoring).
    pub return_logits: bool,
    /// The tokens are generated ones: compute each row as its own decode step would (see
    /// [`SeqInput::decode_order`]).
    pub decode_order: bool,
    /// Propose and verify up to this many tokens after `tokens` (speculative decoding; the
    /// block table must cover them). 0, or a runner without a proposer, decodes plainly.
    pub speculate: usize,
}

#[derive(Default)]
pub struct StepOut {
    pub seq_id: u64,
    /// Proposed tokens the target kept, before `sampled` (speculative decoding).
    pub accepted: Vec<Sampled>,
    /// Tokens proposed for this sequence this step.
    pub proposed: usize,
    pub sampled: Option<Sampled>,
    /// Tokens the sequence's grammar forces after the sampled one (fed with it next step).
    pub forced: Vec<u32>,
    pub logits: Option<Vec<f32>>,
    /// Why this sequence failed this step; the others go on.
    pub error: Option<StepError>,
    /// Draws the sequence's generator has taken in all (a restarted sequence skips them).
    pub draws: usize,
}

/// A failure of one sequence in a step, which stops that sequence only.
#[derive(Debug, Clone, PartialEq)]
pub enum StepError {
    /// Its grammar allows no token.
    Constraint(String),
    /// The model's logits for it hold NaN or infinities (weights or activations that
    /// overflow): nothing sampled from them would mean anything.
    NonFiniteLogits(String),
}

impl StepError {
    /// A stable code for the engine to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            StepError::Constraint(_) => "ConstraintError",
            StepError::NonFiniteLogits(_) => "NonFiniteLogitsError",
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Constraint(m) | StepError::NonFiniteLogits(m) => f.write_str(m),
        }
    }
}

struct SeqState {
    sampler: Sampler,
    /// Every token the sequence has seen, for the penalties.
    history: Vec<u32>,
    /// The grammar its output must follow, if any.
    constraint: Option<Constraint>,
    /// The model's recurrent state for this sequence (empty for attention-only models).
    recurrent: Vec<f32>,
    /// The tokens `recurrent` has seen: a step must start there (or at 0, which starts over).
    recurrent_position: usize,
}

pub struct Runner {
    model: Box<dyn Model>,
    cache: KvCache,
    scratch: ForwardScratch,
    sequences: HashMap<u64, SeqState>,
    block_size: usize,
    file: Option<Arc<GgufFile>>,
    /// Bytes the matrices of a safetensors model take as stored.
    weight_bytes: Option<usize>,
    /// Where speculative proposals come from, if anywhere.
    proposer: Option<Proposer>,
    stats: SpeculationStats,
}

impl Runner {
    /// A GGUF file, or a Hugging Face folder (one with `config.json`).
    pub fn load(path: &Path, options: &RunnerOptions) -> Result<Runner> {
        if path.is_dir() && path.join("config.json").is_file() {
            let (model, weight_bytes) = crate::models::load_hf(
                path,
                options.architecture.as_deref(),
                options.weight_dtype,
            )?;
            let mut runner = Runner::new(model, options)?;
            runner.weight_bytes = Some(weight_bytes);
            Ok(runner)
        } else {
            Runner::load_gguf(path, options)
        }
    }

    pub fn load_gguf(path: &Path, options: &RunnerOptions) -> Result<Runner> {
        Ok(Runner::load_gguf_with(path, options, |_| ())?.0)
    }

    /// A GGUF model, and `side(file)` run on a second thread while the weights load, on the
    /// same open file (the caller's tokenizer and chat template come from it: the file is
    /// opened and its metadata parsed once per model).
    pub fn load_gguf_with<T: Send>(
        path: &Path,
        options: &RunnerOptions,
        side: impl FnOnce(&GgufFile) -> T + Send,
    ) -> Result<(Runner, T)> {
        if options.weight_dtype != WeightDtype::Auto {
            return Err(ModelError::InvalidInput(format!(
                "{}: a GGUF's weights keep the types in the file; --dtype {} applies to safetensors folders only",
                path.display(),
                options.weight_dtype.name()
            )));
        }
        let file = Arc::new(GgufFile::open(path)?);
        let (model, side) = std::thread::scope(|scope| {
            let side = scope.spawn(|| side(&file));
            let model = load_gguf(Arc::clone(&file), options.architecture.as_deref());
            (model, side.join())
        });
        let side = side.map_err(|_| {
            ModelError::InvalidInput(format!(
                "{}: reading the file's metadata failed",
                path.display()
            ))
        })?;
        let mut runner = Runner::new(model?, options)?;
        runner.file = Some(file);
        Ok((runner, side))
    }

    /// The GGUF file the model was loaded from (None for a Hugging Face folder).
    pub fn gguf_file(&self) -> Option<&GgufFile> {
        self.file.as_deref()
    }

    pub fn new(mut model: Box<dyn Model>, options: &RunnerOptions) -> Result<Runner> {
        let block_size = options.block_size.clamp(1, 4096);
        let n_blocks = match (options.kv_bytes, options.kv_tokens) {
            (Some(bytes), _) => {
                let per_block = model
                    .kv_cache_config(block_size, 1, options.kv_dtype)
                    .bytes_per_block();
                (bytes / per_block.max(1)).max(1)
            }
            (None, tokens) => tokens
                .unwrap_or(model.config().context_length.min(8192))
                .max(block_size)
                .div_ceil(block_size),
        };
        model.set_context((n_blocks * block_size).min(model.config().context_length));
        let cache = KvCache::new(model.kv_cache_config(block_size, n_blocks, options.kv_dtype))?;
        Ok(Runner {
            model,
            cache,
            scratch: ForwardScratch::default(),
            sequences: HashMap::new(),
            block_size,
            file: None,
            weight_bytes: None,
            proposer: None,
            stats: SpeculationStats::default(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// Bytes a safetensors model's matrices take as stored (None for a GGUF: used in place).
    pub fn weight_bytes(&self) -> Option<usize> {
        self.weight_bytes
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn n_blocks(&self) -> usize {
        self.cache.config().n_blocks
    }

    pub fn kv_cache_bytes(&self) -> usize {
        self.cache.size_bytes()
    }

    pub fn gguf(&self) -> Option<&Arc<GgufFile>> {
        self.file.as_ref()
    }

    /// Registers a sequence with its sampling parameters and, optionally, the grammar its
    /// output follows (already advanced past any tokens it generated before a preemption).
    pub fn add_sequence(
        &mut self,
        seq_id: u64,
        params: SamplingParams,
        constraint: Option<Constraint>,
    ) {
        if let Some(Proposer::Draft(draft)) = self.proposer.as_mut() {
            draft.add_sequence(seq_id, &params);
        }
        self.sequences.insert(
            seq_id,
            SeqState {
                sampler: Sampler::new(params),
                history: Vec::new(),
                constraint,
                recurrent: Vec::new(),
                recurrent_position: 0,
            },
        );
    }

    /// A restarted sequence's generator continues after the `draws` it made before.
    pub fn skip_draws(&mut self, seq_id: u64, draws: usize) {
        if let Some(state) = self.sequences.get_mut(&seq_id) {
            state.sampler.skip_draws(draws);
        }
    }

    /// Tokens the sequence has seen without a step (a cached prompt prefix).
    pub fn extend_history(&mut self, seq_id: u64, tokens: &[u32]) {
        if let Some(state) = self.sequences.get_mut(&seq_id) {
            state.history.extend_from_slice(tokens);
        }
    }

    pub fn remove_sequence(&mut self, seq_id: u64) {
        self.sequences.remove(&seq_id);
        if let Some(Proposer::Draft(draft)) = self.proposer.as_mut() {
            draft.remove_sequence(seq_id);
        }
    }

    /// Proposals by prompt lookup from now on (replacing any draft model).
    pub fn use_ngram_proposals(&mut self, params: NgramParams) {
        self.proposer = Some(Proposer::Ngram(params));
    }

    /// Proposals by `draft` from now on (loaded by [`DraftModel::load`] for this runner's
    /// blocks and vocabulary). Sequences already registered are not drafted for.
    pub fn attach_draft(&mut self, draft: DraftModel) {
        self.proposer = Some(Proposer::Draft(Box::new(draft)));
    }

    pub fn speculation_stats(&self) -> SpeculationStats {
        self.stats
    }

    /// Floats of recurrent state the model keeps per sequence (0: its memory is the KV cache
    /// alone). Such a model cannot start a sequence from cached blocks or take back tokens, so
    /// prefix caching and speculative decoding are off for it.
    pub fn recurrent_state_len(&self) -> usize {
        self.model.recurrent_state_len()
    }

    /// One forward pass of the model over `inputs` on this runner's cache, for sequences that
    /// are not registered (a draft model's): refused for a model with recurrent state.
    pub(crate) fn forward(&mut self, inputs: &[SeqInput<'_>], logits: &mut Vec<f32>) -> Result<()> {
        if self.recurrent_state_len() > 0 {
            return Err(ModelError::Unsupported(format!(
                "`{}` keeps a recurrent state per sequence and cannot run as a draft model",
                self.config().architecture
            )));
        }
        self.model.forward(
            ThreadPool::global(),
            &mut self.cache,
            inputs,
            &mut self.scratch,
            logits,
        )
    }

    /// One forward pass over the step's sequences, each with its recurrent state when the
    /// model keeps one: a sequence fed from position 0 starts from zeros (a new or recomputed
    /// one); any other must continue where its state is.
    fn forward_step(
        &mut self,
        batch: &[StepSeq<'_>],
        inputs: &[SeqInput<'_>],
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let len = self.model.recurrent_state_len();
        if len == 0 {
            return self.forward(inputs, logits);
        }
        for s in batch {
            let state = self.sequence(s.seq_id)?;
            if s.start_pos != 0 && s.start_pos != state.recurrent_position {
                return Err(ModelError::InvalidInput(format!(
                    "sequence {}: the model's recurrent state holds {} tokens, but the step starts at {} (a recurrent model cannot start from cached blocks or take tokens back)",
                    s.seq_id, state.recurrent_position, s.start_pos
                )));
            }
        }
        let mut states = Vec::with_capacity(batch.len());
        for s in batch {
            let state = self.sequence(s.seq_id)?;
            let mut values = std::mem::take(&mut state.recurrent);
            if s.start_pos == 0 || values.len() != len {
                values.clear();
                values.resize(len, 0.0);
            }
            // Until the pass succeeds, the state is at no position a step could start from.
            state.recurrent_position = usize::MAX;
            states.push(values);
        }
        let result = self.model.forward_recurrent(
            ThreadPool::global(),
            &mut self.cache,
            inputs,
            &mut states,
            &mut self.scratch,
            logits,
        );
        for ((s, input), values) in batch.iter().zip(inputs).zip(states) {
            let state = self.sequence(s.seq_id)?;
            state.recurrent = values;
            if result.is_ok() {
                state.recurrent_position = s.start_pos + input.tokens.len();
            }
        }
        result
    }

    fn sequence(&mut self, seq_id: u64) -> Result<&mut SeqState> {
        self.sequences
            .get_mut(&seq_id)
            .ok_or_else(|| ModelError::InvalidInput(format!("unknown sequence id {seq_id}")))
    }

    /// Each speculating sequence's proposal (empty where there is none).
    fn proposals(&mut self, batch: &[StepSeq<'_>]) -> Result<Vec<Proposal>> {
        let mut out = vec![Proposal::default(); batch.len()];
        if self.recurrent_state_len() > 0 {
            // A recurrent state cannot take back the proposals the target rejects.
            return Ok(out);
        }
        let wanted: Vec<usize> = batch
            .iter()
            .enumerate()
            .filter(|(_, s)| s.sample && s.speculate > 0 && !s.tokens.is_empty())
            .map(|(i, _)| i)
            .collect();
        if wanted.is_empty() {
            return Ok(out);
        }
        // Each sequence's whole context: what the target holds, then this step's tokens.
        let context = |s: &StepSeq<'_>| {
            let history = self
                .sequences
                .get(&s.seq_id)
                .map_or(&[][..], |st| &st.history);
            [&history[..s.start_pos.min(history.len())], s.tokens].concat()
        };
        match self.proposer.as_ref() {
            None => {}
            Some(Proposer::Ngram(params)) => {
                for &i in &wanted {
                    let s = &batch[i];
                    out[i].tokens = speculative::ngram::propose(&context(s), s.speculate, *params);
                }
            }
            Some(Proposer::Draft(_)) => {
                // The draft needs the history to line up with the cache.
                let (drafted, requests): (Vec<usize>, Vec<_>) = wanted
                    .iter()
                    .map(|&i| (i, context(&batch[i])))
                    .filter(|(i, c)| c.len() == batch[*i].start_pos + batch[*i].tokens.len())
                    .map(|(i, context)| {
                        let s = &batch[i];
                        let request = speculative::draft::DraftRequest {
                            seq_id: s.seq_id,
                            context,
                            block_table: s.block_table,
                            max_tokens: s.speculate,
                        };
                        (i, request)
                    })
                    .unzip();
                if let Some(Proposer::Draft(draft)) = self.proposer.as_mut() {
                    for (i, p) in drafted.into_iter().zip(draft.propose(requests)?) {
                        out[i] = p;
                    }
                }
            }
        }
        let vocab = self.config().vocab_size;
        for (p, s) in out.iter_mut().zip(batch) {
            // The block table covers `speculate` positions after the tokens, no more.
            let keep = p
                .tokens
                .iter()
                .take(s.speculate)
                .take_while(|&&t| (t as usize) < vocab)
                .count();
            p.tokens.truncate(keep);
            p.dists.truncate(keep);
        }
        Ok(out)
    }

    /// Runs one forward pass over `batch` and samples where asked; a speculating sequence
    /// also feeds its proposal and keeps what the target agrees with. The sampled token is not
    /// fed back here: the engine sends it in the next step (it may stop first).
    pub fn step(&mut self, batch: &[StepSeq<'_>]) -> Result<Vec<StepOut>> {
        for s in batch {
            if !self.sequences.contains_key(&s.seq_id) {
                return Err(ModelError::InvalidInput(format!(
                    "unknown sequence id {}",
                    s.seq_id
                )));
            }
        }
        let proposals = self.proposals(batch)?;
        // A speculating sequence's tokens, then its proposal (others feed their tokens as given).
        let fed: Vec<Vec<u32>> = batch
            .iter()
            .zip(&proposals)
            .map(|(s, p)| match p.tokens.is_empty() {
                true => Vec::new(),
                false => [s.tokens, &p.tokens].concat(),
            })
            .collect();
        let inputs: Vec<SeqInput<'_>> = batch
            .iter()
            .zip(&fed)
            .zip(&proposals)
            .map(|((s, with_proposal), p)| SeqInput {
                tokens: if p.tokens.is_empty() {
                    s.tokens
                } else {
                    with_proposal
                },
                start_pos: s.start_pos,
                block_table: s.block_table,
                logit_rows: usize::from(s.sample || s.return_logits) + p.tokens.len(),
                decode_order: s.decode_order || !p.tokens.is_empty(),
            })
            .collect();
        let mut logits = Vec::new();
        self.forward_step(batch, &inputs, &mut logits)?;

        let vocab = self.model.config().vocab_size;
        let mut rows = &mut logits[..];
        let mut out = Vec::with_capacity(batch.len());
        for ((s, input), proposal) in batch.iter().zip(&inputs).zip(&proposals) {
            let (mine, rest) = std::mem::take(&mut rows).split_at_mut(input.wanted_rows() * vocab);
            rows = rest;
            let state = self.sequences.get_mut(&s.seq_id).ok_or_else(|| {
                ModelError::InvalidInput(format!("unknown sequence id {}", s.seq_id))
            })?;
            state.history.extend_from_slice(s.tokens);
            let mut step_out = StepOut {
                seq_id: s.seq_id,
                proposed: proposal.tokens.len(),
                ..StepOut::default()
            };
            let end = s.start_pos + s.tokens.len();
            if !mine.is_empty() {
                match non_finite(&mine[..vocab], end) {
                    Some(error) => step_out.error = Some(error),
                    None if proposal.tokens.is_empty() => {
                        step_out.logits = s.return_logits.then(|| mine.to_vec());
                        if s.sample {
                            if let Err(e) = sample_constrained(state, mine, &mut step_out) {
                                step_out.error = Some(StepError::Constraint(e.to_string()));
                            }
                        }
                    }
                    None => {
                        let verified = speculative::verify(
                            &mut state.sampler,
                            state.constraint.as_mut(),
                            &mut state.history,
                            mine,
                            vocab,
                            proposal,
                        );
                        match verified {
                            Ok(v) => {
                                self.stats.verify_steps += 1;
                                self.stats.proposed += proposal.tokens.len() as u64;
                                self.stats.accepted += v.accepted.len() as u64;
                                step_out.accepted = v.accepted;
                                step_out.sampled = Some(v.last);
                                step_out.forced = v.forced;
                            }
                            Err(VerifyError::NonFinite(i)) => {
                                let row = &mine[i * vocab..(i + 1) * vocab];
                                step_out.error = non_finite(row, end + i);
                            }
                            Err(VerifyError::Grammar(e)) => {
                                step_out.error = Some(StepError::Constraint(e.to_string()))
                            }
                        }
                        if let Some(Proposer::Draft(draft)) = self.proposer.as_mut() {
                            draft.settle(s.seq_id, end + step_out.accepted.len());
                        }
                    }
                }
            }
            step_out.draws = state.sampler.draws();
            out.push(step_out);
        }
        Ok(out)
    }
}

/// The error of a logits row that holds NaN or infinities (before any mask or bias: the
/// model's own output), for the token at `position`.
fn non_finite(row: &[f32], position: usize) -> Option<StepError> {
    let nan = row.iter().filter(|v| v.is_nan()).count();
    let infinite = row.iter().filter(|v| v.is_infinite()).count();
    (nan + infinite > 0).then(|| {
        StepError::NonFiniteLogits(format!(
            "the model's logits after {position} tokens are not finite ({nan} NaN, {infinite} infinite of {}): its weights or activations overflow; this sequence was stopped",
            row.len()
        ))
    })
}

/// Masks the row by the sequence's grammar (if any), samples, and advances the grammar.
fn sample_constrained(state: &mut SeqState, row: &mut [f32], out: &mut StepOut) -> Result<()> {
    if let Some(c) = state.constraint.as_mut() {
        c.mask_logits(row)?;
    }
    let sampled = state.sampler.sample(row, &state.history);
    if let Some(c) = state.constraint.as_mut() {
        out.forced = c.accept(sampled.token)?;
    }
    out.sampled = Some(sampled);
    Ok(())
}
