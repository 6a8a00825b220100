//! What one step computes for each sequence. Shared by the models and the attention layer
//! (which stores each sequence's keys and values through its block table), so that neither
//! imports the other.

/// One sequence's part of a step: its new tokens, where they start, and its block table.
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`; the cache already holds positions `0..start_pos`.
    pub start_pos: usize,
    pub block_table: &'a [u32],
    /// How many of the last tokens want their logits: 0 for a prefill chunk that is not the
    /// last, 1 for the token after a prompt or a decode step, k + 1 when k proposed tokens
    /// are verified (speculative decoding).
    pub logit_rows: usize,
    /// Every row is computed exactly as a decode step of that token alone would compute it
    /// (single-row orders in the products, the single-token attention order), so a generated
    /// token's logits are the same bits however many tokens were fed with it: a verify step
    /// accepts exactly what one-token steps would have produced.
    pub decode_order: bool,
}

impl SeqInput<'_> {
    /// The number of rows whose logits the step returns for this sequence.
    pub fn wanted_rows(&self) -> usize {
        self.logit_rows.min(self.tokens.len())
    }
}
