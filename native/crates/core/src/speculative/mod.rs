//! Speculative decoding: a proposer guesses the next few tokens of a sequence, the target
//! model computes all of them in one pass (every row in decode order, so each row's logits
//! are the bits a one-token step would give), and [`verify`] keeps the longest prefix the
//! target agrees with plus one token of its own. Greedy, the output is exactly the target's
//! greedy output; sampling, the accepted tokens follow the target's distribution exactly
//! (rejection sampling, Leviathan et al. 2023).
//!
//! Proposers: [`ngram`] (prompt lookup: the continuation of the last earlier occurrence of
//! the context's final n-gram; free) and [`draft`] (a smaller model sharing the tokenizer,
//! run batched over its own KV cache, which shares the target's block tables).

pub mod draft;
pub mod ngram;
pub mod verify;

pub use draft::{DraftModel, DraftOptions};
pub use ngram::NgramParams;
pub use verify::{verify, Verified, VerifyError};

/// What a proposer guessed for one sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Proposal {
    pub tokens: Vec<u32>,
    /// For each token, the distribution it was drawn from (`(token, probability)`), when the
    /// proposer drew at random; empty when it chose deterministically (probability 1).
    pub dists: Vec<Vec<(u32, f64)>>,
}

/// Where a model's proposals come from.
pub enum Proposer {
    Ngram(NgramParams),
    Draft(Box<DraftModel>),
}

/// Counts of a runner's speculation so far (llama.cpp and mistral.rs report the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpeculationStats {
    /// Verify steps that carried at least one proposed token.
    pub verify_steps: u64,
    pub proposed: u64,
    pub accepted: u64,
}
