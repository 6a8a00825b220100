//! A draft model: a smaller model with the target's tokenizer guesses the next tokens one at a
//! time, batched over every speculating sequence of the step. Its KV cache has as many blocks
//! of the same size as the target's, so a sequence's block table serves both: the draft
//! writes the same positions in its own cache. It catches up lazily: on a sequence's first
//! proposal it computes the whole context, afterwards only what the target kept since.

use std::collections::HashMap;
use std::path::Path;

use crate::batch::SeqInput;
use crate::model_error::{ModelError, Result};
use crate::runner::{Runner, RunnerOptions};
use crate::sampler::{argmax, pick, Rng, Sampler, SamplingParams};

use super::Proposal;

/// How the draft proposes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DraftOptions {
    /// Stop a sequence's proposals at the first token the draft gives less than this
    /// probability (llama.cpp's `--draft-p-min`): unlikely guesses cost verify rows.
    pub p_min: f32,
}

impl Default for DraftOptions {
    fn default() -> Self {
        DraftOptions { p_min: 0.0 }
    }
}

struct DraftSeq {
    /// Positions of the draft's cache that hold this sequence's context.
    cached: usize,
    sampler: Sampler,
    seed: u64,
}

pub struct DraftModel {
    runner: Runner,
    sequences: HashMap<u64, DraftSeq>,
    options: DraftOptions,
}

/// One sequence's request for proposals: its whole context (what the target holds plus the
/// tokens it feeds this step; the draft keeps it to append its guesses), its block table, and
/// at most how many tokens to guess.
pub struct DraftRequest<'a> {
    pub seq_id: u64,
    pub context: Vec<u32>,
    pub block_table: &'a [u32],
    pub max_tokens: usize,
}

impl DraftModel {
    /// Loads the draft at `path` with a KV cache of `n_blocks` blocks of `block_size` tokens
    /// (the target's), and refuses one whose vocabulary differs from `vocab` tokens.
    pub fn load(
        path: &Path,
        base: &RunnerOptions,
        (block_size, n_blocks): (usize, usize),
        target_vocab: usize,
        options: DraftOptions,
    ) -> Result<DraftModel> {
        let runner = Runner::load(
            path,
            &RunnerOptions {
                block_size,
                kv_tokens: Some(block_size * n_blocks),
                kv_bytes: None,
                architecture: None,
                ..base.clone()
            },
        )?;
        if runner.recurrent_state_len() > 0 {
            return Err(ModelError::Unsupported(format!(
                "{}: `{}` keeps a recurrent state per sequence, which cannot take back rejected proposals; a draft model must be attention-only",
                path.display(),
                runner.config().architecture
            )));
        }
        let vocab = runner.config().vocab_size;
        if vocab != target_vocab {
            return Err(ModelError::InvalidInput(format!(
                "{}: the draft model has {vocab} tokens in its vocabulary and the target {target_vocab}; a draft must share the target's tokenizer",
                path.display()
            )));
        }
        if runner.n_blocks() != n_blocks || runner.block_size() != block_size {
            return Err(ModelError::InvalidInput(format!(
                "{}: the draft's KV cache could not take the target's {n_blocks} blocks of {block_size}",
                path.display()
            )));
        }
        Ok(DraftModel {
            runner,
            sequences: HashMap::new(),
            options,
        })
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Registers a sequence: the draft draws with the target's parameters (and its own
    /// generator) and starts with nothing cached.
    pub fn add_sequence(&mut self, seq_id: u64, params: &SamplingParams) {
        let seed = params.seed.unwrap_or(0x5EED) ^ 0xD4AF_7000_0000_0001;
        let sampler = Sampler::new(SamplingParams {
            seed: Some(seed),
            top_logprobs: None,
            ..params.clone()
        });
        self.sequences.insert(
            seq_id,
            DraftSeq {
                cached: 0,
                sampler,
                seed,
            },
        );
    }

    pub fn remove_sequence(&mut self, seq_id: u64) {
        self.sequences.remove(&seq_id);
    }

    /// After a verify step: the sequence's first `valid` positions are what the target kept;
    /// anything the draft wrote past them is stale.
    pub fn settle(&mut self, seq_id: u64, valid: usize) {
        if let Some(s) = self.sequences.get_mut(&seq_id) {
            s.cached = s.cached.min(valid);
        }
    }

    /// Proposals for every request, one draft pass per guessed position (the first also
    /// catches each sequence's draft cache up with its context).
    pub fn propose(&mut self, mut requests: Vec<DraftRequest<'_>>) -> Result<Vec<Proposal>> {
        let context_limit = self.runner.config().context_length;
        let mut proposals: Vec<Proposal> = vec![Proposal::default(); requests.len()];
        // Per request: the tokens the draft has seen or guessed, and whether it goes on.
        let mut seen: Vec<Vec<u32>> = requests
            .iter_mut()
            .map(|r| std::mem::take(&mut r.context))
            .collect();
        let mut active: Vec<bool> = requests
            .iter()
            .zip(&seen)
            .map(|(r, context)| {
                r.max_tokens > 0
                    && self.sequences.contains_key(&r.seq_id)
                    && context.len() + r.max_tokens <= context_limit
            })
            .collect();
        let vocab = self.runner.config().vocab_size;
        for _ in 0..requests.iter().map(|r| r.max_tokens).max().unwrap_or(0) {
            let members: Vec<usize> = (0..requests.len()).filter(|&i| active[i]).collect();
            if members.is_empty() {
                break;
            }
            let starts: Vec<usize> = members
                .iter()
                .map(|&i| {
                    let s = &self.sequences[&requests[i].seq_id];
                    s.cached.min(seen[i].len() - 1)
                })
                .collect();
            let inputs: Vec<SeqInput<'_>> = members
                .iter()
                .zip(&starts)
                .map(|(&i, &start)| SeqInput {
                    tokens: &seen[i][start..],
                    start_pos: start,
                    block_table: requests[i].block_table,
                    logit_rows: 1,
                    // After its first catch-up the draft feeds generated tokens: in decode
                    // order, its guesses are what it would give one token at a time.
                    decode_order: start > 0,
                })
                .collect();
            let mut logits = Vec::new();
            self.runner.forward(&inputs, &mut logits)?;
            drop(inputs);
            for (&i, row) in members.iter().zip(logits.chunks_exact_mut(vocab)) {
                let request = &requests[i];
                let Some(state) = self.sequences.get_mut(&request.seq_id) else {
                    continue;
                };
                state.cached = seen[i].len();
                let Some(guess) = guess(state, row, &seen[i], self.options.p_min > 0.0) else {
                    active[i] = false;
                    continue;
                };
                if guess.probability < f64::from(self.options.p_min) {
                    active[i] = false;
                    continue;
                }
                let proposal = &mut proposals[i];
                proposal.tokens.push(guess.token);
                if let Some(d) = guess.dist {
                    proposal.dists.push(d);
                }
                seen[i].push(guess.token);
                active[i] = proposal.tokens.len() < request.max_tokens;
            }
        }
        Ok(proposals)
    }
}

/// The draft's token after `context` from its logits row: greedy, or drawn from its processed
/// distribution (returned, for the target's acceptance rule) with a generator seeded by the
/// position, so a preempted sequence guesses as before. Also the guess's probability (a
/// greedy guess's only `with_probability`, else 1).
fn guess(
    state: &mut DraftSeq,
    row: &mut [f32],
    context: &[u32],
    with_probability: bool,
) -> Option<Guess> {
    if row.iter().any(|v| !v.is_finite()) {
        return None;
    }
    state.sampler.process(row, context);
    if state.sampler.is_greedy() {
        let token = argmax(row);
        // A softmax over the vocabulary per pass, only when `p_min` needs it.
        let probability = match with_probability {
            true => {
                let max = row[token as usize];
                1.0 / row.iter().map(|&l| f64::from(l - max).exp()).sum::<f64>()
            }
            false => 1.0,
        };
        return Some(Guess {
            token,
            dist: None,
            probability,
        });
    }
    let dist = state.sampler.candidates(row);
    if dist.is_empty() {
        return None;
    }
    let position = context.len() as u64;
    let r = Rng::new(state.seed ^ position.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_f64();
    let token = pick(&dist, r);
    let probability = dist.iter().find(|c| c.0 == token).map_or(0.0, |c| c.1);
    Some(Guess {
        token,
        dist: Some(dist),
        probability,
    })
}

/// The draft's guess at one position.
struct Guess {
    token: u32,
    /// The distribution it was drawn from (None when chosen greedily).
    dist: Option<Vec<(u32, f64)>>,
    /// The draft's probability of it.
    probability: f64,
}
