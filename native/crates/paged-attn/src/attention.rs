//! Causal attention that reads keys and values through a block table: one code path for
//! prefill (many query tokens) and decode (one), with grouped-query sharing, logit
//! soft-capping and sliding windows.

use std::ops::Range;

use mistralrs_common::numerics::{hsum8, VecDotF16Acc};
use mistralrs_common::ParallelCtx;

use crate::cache::{KvCache, KvCacheError};
use crate::decode::DecodeWork;
#[cfg(target_arch = "x86_64")]
use crate::kernels::Avx2;
use crate::kernels::{read_rows, softmax_row, Kernels, Portable};
use crate::params::{AttentionParams, AttnOut, SeqAttention, Q_CHUNK};
use crate::scratch::{self, Scratch};

/// Attention of one sequence (`seq`: its queries `[n_tokens, n_heads, head_dim]`, query token
/// `i` at absolute position `positions[i]` with its own key and value already in the cache,
/// its block table and its output). Every thread of `ctx` must call it with the same
/// arguments; each computes its share of the (token, head) pairs.
pub fn attend(
    ctx: &ParallelCtx,
    cache: &KvCache,
    layer: usize,
    seq: &SeqAttention<'_>,
) -> Result<(), KvCacheError> {
    seq.check(cache)?;
    attend_items(cache, layer, seq, ctx.split(seq.items(), 1));
    Ok(())
}

/// Attention for every sequence of a batch: each thread of `ctx` takes its share of all the
/// batch's items, so many short sequences (decode steps) fill the threads in one region.
/// Decode sequences (one query token) are split by keys (see `decode.rs`), in the buffers of
/// `work`, prepared for the same `seqs` before the region. Every sequence must have passed
/// `check`.
pub fn attend_batch(
    ctx: &ParallelCtx,
    cache: &KvCache,
    layer: usize,
    seqs: &[SeqAttention<'_>],
    work: &DecodeWork,
) {
    let mut scratch = scratch::take();
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::selected_isa() >= mistralrs_common::Isa::Avx2 {
        // SAFETY: the tier implies AVX2, FMA and F16C.
        unsafe { attend_batch_avx2(ctx, cache, layer, seqs, work, &mut scratch) };
        scratch::give_back(scratch);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::cpu_features().fma {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe { attend_batch_fma(ctx, cache, layer, seqs, work, &mut scratch) };
        scratch::give_back(scratch);
        return;
    }
    attend_batch_body::<Portable>(ctx, cache, layer, seqs, work, &mut scratch);
    scratch::give_back(scratch);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_batch_avx2(
    ctx: &ParallelCtx,
    cache: &KvCache,
    layer: usize,
    seqs: &[SeqAttention<'_>],
    work: &DecodeWork,
    scratch: &mut Scratch,
) {
    attend_batch_body::<Avx2>(ctx, cache, layer, seqs, work, scratch);
}

/// The portable kernels with `mul_add` as one instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn attend_batch_fma(
    ctx: &ParallelCtx,
    cache: &KvCache,
    layer: usize,
    seqs: &[SeqAttention<'_>],
    work: &DecodeWork,
    scratch: &mut Scratch,
) {
    attend_batch_body::<Portable>(ctx, cache, layer, seqs, work, scratch);
}

#[inline(always)]
fn attend_batch_body<K: Kernels>(
    ctx: &ParallelCtx,
    cache: &KvCache,
    layer: usize,
    seqs: &[SeqAttention<'_>],
    work: &DecodeWork,
    scratch: &mut Scratch,
) {
    let items = |i: usize, s: &SeqAttention<'_>| {
        if work.takes(i) {
            work.score_items(cache, i, s)
        } else {
            s.items()
        }
    };
    let total: usize = seqs.iter().enumerate().map(|(i, s)| items(i, s)).sum();
    let mine = ctx.split(total, 1);
    let mut first = 0;
    for (i, s) in seqs.iter().enumerate() {
        let n = items(i, s);
        let (lo, hi) = (mine.start.max(first), mine.end.min(first + n));
        if lo < hi && work.takes(i) {
            for item in lo - first..hi - first {
                work.scores::<K>(cache, layer, i, s, item, scratch);
            }
        } else if lo < hi {
            attend_items_body::<K>(cache, layer, s, lo - first..hi - first, scratch);
        }
        first += n;
    }
    if work.any() {
        ctx.barrier();
        work.finish::<K>(ctx, cache, layer, seqs, scratch);
    }
}

/// The same on the calling thread alone (tests, tiny inputs).
pub fn attend_serial(
    cache: &KvCache,
    layer: usize,
    table: &[u32],
    q: &[f32],
    positions: &[usize],
    params: &AttentionParams,
    out: &mut [f32],
) -> Result<(), KvCacheError> {
    let seq = SeqAttention {
        table,
        q,
        positions,
        params: *params,
        // SAFETY: `out` is borrowed mutably for the whole call, on this thread alone.
        out: unsafe { AttnOut::new(out) },
    };
    seq.check(cache)?;
    attend_items(cache, layer, &seq, 0..seq.items());
    Ok(())
}

/// Dispatches to a copy of the kernel compiled with FMA where the CPU has it: the emulated
/// arithmetic is all `mul_add`, one instruction there and a library call otherwise.
fn attend_items(cache: &KvCache, layer: usize, seq: &SeqAttention<'_>, items: Range<usize>) {
    let mut scratch = scratch::take();
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::cpu_features().fma {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe { attend_items_fma(cache, layer, seq, items, &mut scratch) };
        scratch::give_back(scratch);
        return;
    }
    attend_items_body::<Portable>(cache, layer, seq, items, &mut scratch);
    scratch::give_back(scratch);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn attend_items_fma(
    cache: &KvCache,
    layer: usize,
    seq: &SeqAttention<'_>,
    items: Range<usize>,
    scratch: &mut Scratch,
) {
    attend_items_body::<Portable>(cache, layer, seq, items, scratch);
}

/// Items `items` of a sequence (see [`Item`]); `scratch` is taken out of the thread-local by
/// the caller rather than used inside `with`'s closure, which would not inherit the caller's
/// target features.
#[inline(always)]
fn attend_items_body<K: Kernels>(
    cache: &KvCache,
    layer: usize,
    seq: &SeqAttention<'_>,
    items: Range<usize>,
    scratch: &mut Scratch,
) {
    let n_chunks = seq.positions.len().div_ceil(Q_CHUNK);
    scratch
        .block
        .resize(cache.config().block_size * seq.params.head_dim, 0.0);
    for item in items {
        let chunk = item % n_chunks;
        let item = Item {
            cache,
            layer,
            seq,
            kv_head: item / n_chunks,
            tokens: chunk * Q_CHUNK..((chunk + 1) * Q_CHUNK).min(seq.positions.len()),
        };
        let keys = item.gather_queries::<K>(scratch);
        item.scores::<K>(scratch, keys.clone());
        item.softmax::<K>(scratch);
        item.values::<K>(scratch, keys);
        item.write_outputs(scratch);
    }
}

/// One work item of a prompt chunk: a KV head and up to [`Q_CHUNK`] query tokens, with every
/// query head sharing that KV head. Each block of keys and values is read once for all of
/// them. Phases share the thread's scratch: the queries in f16 precision, each query's key
/// range and scores, the output lanes.
struct Item<'a> {
    cache: &'a KvCache,
    layer: usize,
    seq: &'a SeqAttention<'a>,
    kv_head: usize,
    tokens: Range<usize>,
}

impl Item<'_> {
    /// The item's queries (every token of the chunk times every head of the group), rounded
    /// to f16 as llama.cpp's K·Q sees them; query `i` covers keys `ranges[i]` and keeps its
    /// scores at `offsets[i]`. Returns the keys any of them reads.
    #[inline(always)]
    fn gather_queries<K: Kernels>(&self, scratch: &mut Scratch) -> Range<usize> {
        let p = &self.seq.params;
        let (hd, group) = (p.head_dim, p.n_heads / p.n_kv_heads);
        scratch.q.clear();
        scratch.ranges.clear();
        scratch.offsets.clear();
        let mut total = 0;
        for t in self.tokens.clone() {
            let pos = self.seq.positions[t];
            let start = p.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in self.kv_head * group..(self.kv_head + 1) * group {
                let row = (t * p.n_heads + h) * hd;
                let at = scratch.q.len();
                scratch.q.extend_from_slice(&self.seq.q[row..row + hd]);
                // Scaling by 1 is exact: this is the rounding alone.
                K::scale_round_f16(&mut scratch.q[at..], 1.0);
                scratch.ranges.push((start, pos + 1, row));
                scratch.offsets.push(total);
                total += pos + 1 - start;
            }
        }
        scratch.scores.clear();
        scratch.scores.resize(total, 0.0);
        let first = scratch.ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let last = scratch.ranges.iter().map(|r| r.1).max().unwrap_or(0);
        first..last
    }

    /// Every query's scores, one key block at a time (four keys at a time where the order
    /// allows: independent FMA chains).
    #[inline(always)]
    fn scores<K: Kernels>(&self, scratch: &mut Scratch, keys_read: Range<usize>) {
        let p = &self.seq.params;
        let (hd, bs) = (p.head_dim, self.cache.config().block_size);
        let mut b = keys_read.start / bs;
        while b * bs < keys_read.end {
            let keys = &mut scratch.block[..]; // [block_size, head_dim]
            let block = self.seq.table[b] as usize;
            read_rows::<K>(
                self.cache,
                false,
                self.layer,
                block,
                self.kv_head,
                0..bs,
                keys,
            );
            let key = |j: usize| &keys[(j - b * bs) * hd..(j - b * bs + 1) * hd];
            for (i, &(start, end, _)) in scratch.ranges.iter().enumerate() {
                let (lo, hi) = (start.max(b * bs), end.min((b + 1) * bs));
                let qi = &scratch.q[i * hd..(i + 1) * hd];
                let at = scratch.offsets[i];
                let scores = &mut scratch.scores[at..at + end - start];
                let mut set = |j: usize, dot: f32| {
                    let mut score = dot * p.scale;
                    if let Some(cap) = p.softcap {
                        // As llama.cpp: scale by the reciprocal, tanh, scale back.
                        score = (score * (1.0 / cap)).tanh() * cap;
                    }
                    scores[j - start] = score;
                };
                let mut j = lo;
                if !p.single_token_step {
                    while j + 4 <= hi {
                        let dots = K::dot8_x4(qi, [key(j), key(j + 1), key(j + 2), key(j + 3)]);
                        for (k, dot) in dots.into_iter().enumerate() {
                            set(j + k, dot);
                        }
                        j += 4;
                    }
                }
                for j in j..hi {
                    let dot = if p.single_token_step {
                        K::dot_f16_order(key(j), qi)
                    } else {
                        K::dot8(qi, key(j))
                    };
                    set(j, dot);
                }
            }
            b += 1;
        }
    }

    /// Each query's softmax as ggml computes it (see [`softmax_row`]).
    #[inline(always)]
    fn softmax<K: Kernels>(&self, scratch: &mut Scratch) {
        let p = &self.seq.params;
        for (i, &(start, end, q_row)) in scratch.ranges.iter().enumerate() {
            let row = &mut scratch.scores[scratch.offsets[i]..scratch.offsets[i] + end - start];
            // The query's head: its row of q is `(token · n_heads + head) · head_dim`.
            let sink = p.sinks.map(|s| s[(q_row / p.head_dim) % p.n_heads]);
            softmax_row::<K>(row, start, end, sink);
        }
    }

    /// The outputs' lanes, one value block at a time: lane `j % 8` of query `i` accumulates key
    /// `j`'s value with one FMA per element (32 lanes in single-token steps), the order of
    /// llama.cpp's KQ·V product.
    #[inline(always)]
    fn values<K: Kernels>(&self, scratch: &mut Scratch, keys_read: Range<usize>) {
        let p = &self.seq.params;
        let (hd, bs) = (p.head_dim, self.cache.config().block_size);
        let n_q = scratch.ranges.len();
        let slots = slots(p);
        scratch.lanes.clear();
        scratch.lanes.resize(n_q * slots * hd, 0.0); // [n_queries, slots, head_dim]
        let mut b = keys_read.start / bs;
        while b * bs < keys_read.end {
            let values = &mut scratch.block[..]; // [block_size, head_dim]
            let block = self.seq.table[b] as usize;
            read_rows::<K>(
                self.cache,
                true,
                self.layer,
                block,
                self.kv_head,
                0..bs,
                values,
            );
            for (i, &(start, end, _)) in scratch.ranges.iter().enumerate() {
                let (lo, hi) = (start.max(b * bs), end.min((b + 1) * bs));
                if lo >= hi {
                    continue;
                }
                let probs = &scratch.scores[scratch.offsets[i] + lo - start..];
                let v = &values[(lo - b * bs) * hd..(hi - b * bs) * hd];
                let lanes = &mut scratch.lanes[i * slots * hd..(i + 1) * slots * hd];
                if slots == 8 {
                    K::axpy_slots8(lanes, v, &probs[..hi - lo], lo..hi, hd);
                    continue;
                }
                for (k, j) in (lo..hi).enumerate() {
                    let slot = j % slots;
                    K::axpy(
                        &mut lanes[slot * hd..(slot + 1) * hd],
                        &v[k * hd..(k + 1) * hd],
                        probs[k],
                    );
                }
            }
            b += 1;
        }
    }

    /// Each query's output row: its lanes summed in llama.cpp's order.
    #[inline(always)]
    fn write_outputs(&self, scratch: &Scratch) {
        let p = &self.seq.params;
        let (hd, slots) = (p.head_dim, slots(p));
        for (i, &(_, _, row)) in scratch.ranges.iter().enumerate() {
            // SAFETY: the rows of this item's (token, head) pairs belong to this thread;
            // bounds were checked in `check`.
            let out_row =
                unsafe { std::slice::from_raw_parts_mut(self.seq.out.get().add(row), hd) };
            let lanes = &scratch.lanes[i * slots * hd..(i + 1) * slots * hd];
            for (d, o) in out_row.iter_mut().enumerate() {
                *o = if p.single_token_step {
                    // Slot k holds element k of each 32-chunk: accumulator k / 8, lane k % 8.
                    let mut acc = VecDotF16Acc::new();
                    for k in 0..32 {
                        acc.add(k, lanes[k * hd + d], 1.0);
                    }
                    acc.sum()
                } else {
                    hsum8(&std::array::from_fn(|l| lanes[l * hd + d]))
                };
            }
        }
    }
}

/// Output accumulators per element: 8 lanes (llama.cpp's matrix kernel), or 4 × 8 (its vector
/// kernel, single-token steps).
#[inline(always)]
fn slots(p: &AttentionParams) -> usize {
    if p.single_token_step {
        32
    } else {
        8
    }
}

#[cfg(test)]
mod tests;
