//! What one step computes for each sequence. Shared by the models and the attention layer
//! (which stores each sequence's keys and values through its block table), so that neither
//! imports the other.

/// One sequence's part of a step: its new tokens, where they start, and its block table.
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`; the cache already holds positions `0..start_pos`.
    pub start_pos: usize,
    pub block_table: &'a [u32],
    /// Whether the logits of the last token are wanted (false for a prefill chunk that is
    /// not the last).
    pub want_logits: bool,
}
