//! Decode steps (one query token per sequence), split across the region's threads by keys
//! instead of by KV head. Split by KV head, a model with 3 KV heads leaves one of 2 threads
//! idle a third of the time, and one latent head (DeepSeek's MLA) leaves all but one idle;
//! at long contexts attention is most of a step.
//!
//! The arithmetic is exactly the per-KV-head path's (that of llama.cpp's vector kernels):
//! every score is the same dot product, every softmax runs over the whole row, and each of
//! an output element's 32 accumulators adds its keys in increasing order. Only who computes
//! what changes, in four phases separated by barriers:
//!
//! 1. scores, one (KV head, key block) per item, for every query head of the group;
//! 2. the softmax of each query head's row;
//! 3. the value sums, one (KV head, group of 8 accumulators) per item: the keys `j` with
//!    `(j % 32) / 8` equal to the group's index, in order;
//! 4. each output element, the 32 accumulators added as llama.cpp's `ggml_vec_dot_f16` adds
//!    them.
//!
//! Every function here is `#[inline(always)]`, generic over the kernels, and takes scratch by
//! argument: the region's entry point (`attend_batch`) is compiled with the CPU's vector
//! features, and so is all of this (a closure or a call that is not inlined would lose them).

use std::cell::RefCell;

use mistralrs_common::numerics::VecDotF16Acc;
use mistralrs_common::ParallelCtx;

use crate::cache::KvCache;
use crate::kernels::{read_rows, softmax_row, Kernels};
use crate::params::SeqAttention;
use crate::scratch::Scratch;

/// Accumulators per output element (`ggml_vec_dot_f16`: 4 registers of 8 lanes).
const SLOTS: usize = 32;

/// Whether a sequence takes this path.
pub(crate) fn is_decode(s: &SeqAttention<'_>) -> bool {
    s.positions.len() == 1 && s.params.single_token_step
}

/// The keys a decode sequence attends to: `(first, end)`.
fn key_range(s: &SeqAttention<'_>) -> (usize, usize) {
    let pos = s.positions[0];
    let start = s
        .params
        .sliding_window
        .map_or(0, |w| (pos + 1).saturating_sub(w));
    (start, pos + 1)
}

/// The shared buffers of one region: each decode sequence's scores (`[n_heads, keys]`) and
/// output accumulators (`[n_heads, 32, head_dim]`). Threads write disjoint parts of them,
/// phases apart.
pub struct DecodeWork {
    scores: Vec<f32>,
    lanes: Vec<f32>,
    /// Per sequence of the batch, where its scores and accumulators start (decode ones only).
    at: Vec<Option<(usize, usize)>>,
    scores_ptr: *mut f32,
    lanes_ptr: *mut f32,
}

// SAFETY: threads of a region write disjoint ranges through the raw pointers (an item's rows
// belong to one thread) and read only what barriers separate from the writes.
unsafe impl Sync for DecodeWork {}

thread_local! {
    /// The calling thread's buffers, reused from step to step.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = RefCell::new(Default::default());
}

impl DecodeWork {
    /// Sizes the buffers for `seqs` (on the thread that starts the region).
    pub fn prepare(seqs: &[SeqAttention<'_>]) -> DecodeWork {
        let (mut scores, mut lanes) = BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let (mut n_scores, mut n_lanes) = (0, 0);
        let at = seqs
            .iter()
            .map(|s| {
                is_decode(s).then(|| {
                    let (start, end) = key_range(s);
                    let here = (n_scores, n_lanes);
                    n_scores += s.params.n_heads * (end - start);
                    n_lanes += s.params.n_heads * SLOTS * s.params.head_dim;
                    here
                })
            })
            .collect();
        scores.clear();
        scores.resize(n_scores, 0.0);
        lanes.clear();
        lanes.resize(n_lanes, 0.0);
        let (scores_ptr, lanes_ptr) = (scores.as_mut_ptr(), lanes.as_mut_ptr());
        DecodeWork {
            scores,
            lanes,
            at,
            scores_ptr,
            lanes_ptr,
        }
    }

    /// Whether sequence `i` of the batch takes this path.
    #[inline(always)]
    pub(crate) fn takes(&self, i: usize) -> bool {
        self.at[i].is_some()
    }

    /// Whether any sequence takes this path (else no phase, and no barrier, runs).
    #[inline(always)]
    pub(crate) fn any(&self) -> bool {
        self.at.iter().any(Option::is_some)
    }

    /// Phase 1's items of sequence `i` (0 for the others).
    #[inline(always)]
    pub(crate) fn score_items(&self, cache: &KvCache, i: usize, s: &SeqAttention<'_>) -> usize {
        if self.at[i].is_none() {
            return 0;
        }
        let bs = cache.config().block_size;
        let (start, end) = key_range(s);
        s.params.n_kv_heads * ((end - 1) / bs - start / bs + 1)
    }

    /// # Safety
    /// `range` must lie inside the scores and be written by this thread alone in this phase.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn scores_mut(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.scores_ptr.add(range.start), range.len())
    }

    /// # Safety
    /// As for `scores_mut`, on the accumulators.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn lanes_mut(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.lanes_ptr.add(range.start), range.len())
    }

    /// Phase 1, item `item` of sequence `i`: the scores of one key block for every query
    /// head sharing one KV head.
    #[inline(always)]
    pub(crate) fn scores<K: Kernels>(
        &self,
        cache: &KvCache,
        layer: usize,
        i: usize,
        s: &SeqAttention<'_>,
        item: usize,
        scratch: &mut Scratch,
    ) {
        let Some((at, _)) = self.at[i] else { return };
        let p = &s.params;
        let (hd, bs) = (p.head_dim, cache.config().block_size);
        let group = p.n_heads / p.n_kv_heads;
        let (start, end) = key_range(s);
        let n_blocks = (end - 1) / bs - start / bs + 1;
        let (kv_head, b) = (item / n_blocks, start / bs + item % n_blocks);
        let (lo, hi) = (start.max(b * bs), end.min((b + 1) * bs));
        let keys_len = end - start;
        scratch.block.resize(bs * hd, 0.0);
        let keys = &mut scratch.block[..(hi - lo) * hd];
        read_rows::<K>(
            cache,
            false,
            layer,
            s.table[b] as usize,
            kv_head,
            lo - b * bs..hi - b * bs,
            keys,
        );
        for h in kv_head * group..(kv_head + 1) * group {
            scratch.q.clear();
            scratch.q.extend_from_slice(&s.q[h * hd..(h + 1) * hd]);
            // Scaling by 1 is exact: this is the rounding alone.
            K::scale_round_f16(&mut scratch.q, 1.0);
            let row = at + h * keys_len;
            // SAFETY: keys lo..hi of head h: this item's alone.
            let out = unsafe { self.scores_mut(row + lo - start..row + hi - start) };
            for (o, k) in out.iter_mut().zip(keys.chunks_exact(hd)) {
                let mut score = K::dot_f16_order(k, &scratch.q) * p.scale;
                if let Some(cap) = p.softcap {
                    score = (score * (1.0 / cap)).tanh() * cap;
                }
                *o = score;
            }
        }
    }

    /// This thread's share of a phase's items, numbered across the decode sequences in order,
    /// `per_seq` of them for each. A function pointer, not a closure: a closure would not
    /// inherit the caller's target features.
    #[inline(always)]
    fn share(
        &self,
        ctx: &ParallelCtx,
        seqs: &[SeqAttention<'_>],
        per_seq: fn(&SeqAttention<'_>) -> usize,
    ) -> std::ops::Range<usize> {
        let total = seqs
            .iter()
            .enumerate()
            .filter(|(i, _)| self.takes(*i))
            .map(|(_, s)| per_seq(s))
            .sum();
        ctx.split(total, 1)
    }

    /// Phases 2 to 4, after phase 1 (the caller's) and a barrier; every thread of `ctx` calls
    /// it.
    #[inline(always)]
    pub(crate) fn finish<K: Kernels>(
        &self,
        ctx: &ParallelCtx,
        cache: &KvCache,
        layer: usize,
        seqs: &[SeqAttention<'_>],
        scratch: &mut Scratch,
    ) {
        let heads: fn(&SeqAttention<'_>) -> usize = |s| s.params.n_heads;
        let groups: fn(&SeqAttention<'_>) -> usize = |s| s.params.n_kv_heads * SLOTS / 8;

        let mine = self.share(ctx, seqs, heads);
        let mut first = 0;
        for (i, s) in seqs.iter().enumerate() {
            for h in own_items(self.takes(i), &mine, &mut first, heads(s)) {
                let (start, end) = key_range(s);
                let at = self.at[i].map_or(0, |a| a.0) + h * (end - start);
                // SAFETY: head h's row: this item's alone.
                let sink = s.params.sinks.map(|sinks| sinks[h]);
                softmax_row::<K>(
                    unsafe { self.scores_mut(at..at + end - start) },
                    start,
                    end,
                    sink,
                );
            }
        }
        ctx.barrier();

        let mine = self.share(ctx, seqs, groups);
        let mut first = 0;
        for (i, s) in seqs.iter().enumerate() {
            for item in own_items(self.takes(i), &mine, &mut first, groups(s)) {
                self.value_sums::<K>(cache, layer, i, s, item, scratch);
            }
        }
        ctx.barrier();

        let mine = self.share(ctx, seqs, heads);
        let mut first = 0;
        for (i, s) in seqs.iter().enumerate() {
            for h in own_items(self.takes(i), &mine, &mut first, heads(s)) {
                let hd = s.params.head_dim;
                let at = self.at[i].map_or(0, |a| a.1) + h * SLOTS * hd;
                let lanes = &self.lanes[at..at + SLOTS * hd];
                // SAFETY: head h's output row belongs to this item; bounds checked by `check`.
                let out = unsafe { std::slice::from_raw_parts_mut(s.out.get().add(h * hd), hd) };
                for (d, o) in out.iter_mut().enumerate() {
                    let mut acc = VecDotF16Acc::new();
                    for k in 0..SLOTS {
                        acc.add(k, lanes[k * hd + d], 1.0);
                    }
                    *o = acc.sum();
                }
            }
        }
    }

    /// Phase 3, item `item` of sequence `i`: for one KV head and one group of 8 accumulators,
    /// the keys that feed them, in order, weighted by each query head's probabilities.
    #[inline(always)]
    fn value_sums<K: Kernels>(
        &self,
        cache: &KvCache,
        layer: usize,
        i: usize,
        s: &SeqAttention<'_>,
        item: usize,
        scratch: &mut Scratch,
    ) {
        let Some((scores_at, lanes_at)) = self.at[i] else {
            return;
        };
        let p = &s.params;
        let (hd, bs) = (p.head_dim, cache.config().block_size);
        let group = p.n_heads / p.n_kv_heads;
        let (kv_head, acc) = (item / (SLOTS / 8), item % (SLOTS / 8));
        let (start, end) = key_range(s);
        let keys_len = end - start;
        scratch.block.resize(8 * hd, 0.0);
        // Runs of 8 keys: j in [32m + 8·acc, 32m + 8·acc + 8), cut where blocks end.
        let mut run = start / SLOTS * SLOTS + 8 * acc;
        while run < end {
            let mut lo = run.max(start);
            let run_end = (run + 8).min(end);
            while lo < run_end {
                let b = lo / bs;
                let hi = run_end.min((b + 1) * bs);
                let values = &mut scratch.block[..(hi - lo) * hd];
                read_rows::<K>(
                    cache,
                    true,
                    layer,
                    s.table[b] as usize,
                    kv_head,
                    lo - b * bs..hi - b * bs,
                    values,
                );
                for h in kv_head * group..(kv_head + 1) * group {
                    let probs = &self.scores[scores_at + h * keys_len..][..keys_len];
                    for (j, v) in (lo..hi).zip(values.chunks_exact(hd)) {
                        let pj = probs[j - start];
                        let slot = lanes_at + (h * SLOTS + j % SLOTS) * hd;
                        // SAFETY: slot j % 32 of head h: in this item's group alone.
                        let lane = unsafe { self.lanes_mut(slot..slot + hd) };
                        K::axpy(lane, v, pj);
                    }
                }
                lo = hi;
            }
            run += SLOTS;
        }
    }
}

/// A decode sequence's own item indices within this thread's share `mine` of a phase, its
/// items numbered from `first` on (which moves past them); none for other sequences.
#[inline(always)]
fn own_items(
    decode: bool,
    mine: &std::ops::Range<usize>,
    first: &mut usize,
    n: usize,
) -> std::ops::Range<usize> {
    if !decode {
        return 0..0;
    }
    let (lo, hi) = (mine.start.max(*first), mine.end.min(*first + n));
    let own = if lo < hi {
        lo - *first..hi - *first
    } else {
        0..0
    };
    *first += n;
    own
}

impl Drop for DecodeWork {
    fn drop(&mut self) {
        let buffers = (
            std::mem::take(&mut self.scores),
            std::mem::take(&mut self.lanes),
        );
        BUFFERS.with(|b| *b.borrow_mut() = buffers);
    }
}
