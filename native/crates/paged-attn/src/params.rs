//! What one attention call takes: the heads' parameters, a sequence's inputs (block table,
//! queries, positions) and the output it writes, checked against the cache before a parallel
//! region starts; and how a sequence's work splits into items.

use crate::cache::{KvCache, KvCacheError};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams<'a> {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies q·k; usually `1/sqrt(head_dim)`.
    pub scale: f32,
    /// `cap · tanh(s / cap)` on the scores (Gemma 2).
    pub softcap: Option<f32>,
    /// Keys more than `window - 1` positions behind the query are masked (sliding layers).
    pub sliding_window: Option<usize>,
    /// One logit per query head that joins every softmax's denominator and attends to
    /// nothing (gpt-oss's attention sinks).
    pub sinks: Option<&'a [f32]>,
    /// The sequence has one query token in this step (a decode step): llama.cpp then sums its
    /// products with its vector-dot kernel instead of its matrix kernel, in another order, and
    /// we follow it. Set per sequence, so that a sequence's results never depend on what else
    /// shares its step.
    pub single_token_step: bool,
}

/// The output of a parallel `attend`: every thread of the region holds a copy and writes only
/// its own `(token, head)` rows, so no thread ever holds a `&mut` to the whole buffer.
#[derive(Clone, Copy)]
pub struct AttnOut {
    ptr: *mut f32,
    len: usize,
}
// SAFETY: every (token, head) row is written by exactly one thread, inside the region.
unsafe impl Send for AttnOut {}
unsafe impl Sync for AttnOut {}

impl AttnOut {
    /// Wraps `out` for the threads of one region.
    ///
    /// # Safety
    /// `out` must outlive every use of the returned value (the region), and nothing else may
    /// touch `out` meanwhile.
    pub unsafe fn new(out: &mut [f32]) -> AttnOut {
        AttnOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }

    pub(crate) fn get(self) -> *mut f32 {
        self.ptr
    }

    /// Elements `start..start + len` (checked against the buffer's length).
    ///
    /// # Safety
    /// No other thread may touch those elements while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn rows(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(
            start + len <= self.len,
            "attention output rows out of bounds"
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

/// One sequence's attention in a batch whose sequences share a parallel region: `check` it
/// once, then every thread runs its share of the batch's items through `run`.
pub struct SeqAttention<'a> {
    pub table: &'a [u32],
    pub q: &'a [f32],
    pub positions: &'a [usize],
    pub params: AttentionParams<'a>,
    pub out: AttnOut,
}

impl SeqAttention<'_> {
    /// Validates the inputs against the cache (before the region).
    pub fn check(&self, cache: &KvCache) -> Result<(), KvCacheError> {
        check(
            cache,
            self.table,
            self.q,
            self.positions,
            &self.params,
            self.out.len,
        )
    }

    /// Work items of this sequence (a KV head × a chunk of query tokens each).
    pub fn items(&self) -> usize {
        n_items(self.positions.len(), &self.params)
    }
}

pub(crate) fn check(
    cache: &KvCache,
    table: &[u32],
    q: &[f32],
    positions: &[usize],
    p: &AttentionParams,
    out_len: usize,
) -> Result<(), KvCacheError> {
    let cfg = cache.config();
    let bad = |what: String| Err(KvCacheError::OutOfRange(what));
    if p.head_dim != cfg.head_dim || p.n_kv_heads != cfg.n_kv_heads {
        return bad(format!(
            "attention params {p:?} do not match the cache {cfg:?}"
        ));
    }
    if p.n_kv_heads == 0 || !p.n_heads.is_multiple_of(p.n_kv_heads) {
        return bad(format!(
            "{} heads cannot share {} KV heads",
            p.n_heads, p.n_kv_heads
        ));
    }
    if p.sinks.is_some_and(|s| s.len() != p.n_heads) {
        return bad(format!(
            "{} attention sinks for {} heads",
            p.sinks.map_or(0, <[f32]>::len),
            p.n_heads
        ));
    }
    let row = p.n_heads * p.head_dim;
    if q.len() != positions.len() * row || out_len != q.len() {
        return bad(format!(
            "q ({}) and out ({out_len}) must be [{} tokens, {} heads, {}]",
            q.len(),
            positions.len(),
            p.n_heads,
            p.head_dim
        ));
    }
    let max_pos = positions.iter().copied().max().unwrap_or(0);
    cache.check_table(table, max_pos + 1)
}

/// Query tokens handled together: each block of keys and values is converted from f16 once
/// for all of them (and for every query head sharing the KV head).
pub(crate) const Q_CHUNK: usize = 16;

/// Work items: (KV head, chunk of query tokens) pairs.
pub(crate) fn n_items(n_tokens: usize, p: &AttentionParams) -> usize {
    p.n_kv_heads * n_tokens.div_ceil(Q_CHUNK)
}
