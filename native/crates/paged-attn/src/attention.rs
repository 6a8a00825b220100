//! Causal attention that reads keys and values through a block table: one code path for
//! prefill (many query tokens) and decode (one), with grouped-query sharing, logit
//! soft-capping and sliding windows.

use std::cell::RefCell;
use std::ops::Range;

use half::f16;
use mistralrs_common::ParallelCtx;

use crate::cache::{KvCache, KvCacheError};
use crate::decode::DecodeWork;
#[cfg(target_arch = "x86_64")]
use crate::kernels::Avx2;
use crate::kernels::{read_rows, Kernels, Portable};
use mistralrs_common::numerics::{expf_ggml, hsum8, VecDotF16Acc};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies q·k; usually `1/sqrt(head_dim)`.
    pub scale: f32,
    /// `cap · tanh(s / cap)` on the scores (Gemma 2).
    pub softcap: Option<f32>,
    /// Keys more than `window - 1` positions behind the query are masked (sliding layers).
    pub sliding_window: Option<usize>,
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
}

/// Per-thread buffers: scores of one query, one block of keys or values in f32, the query in
/// f16 precision.
#[derive(Default)]
pub(crate) struct Scratch {
    scores: Vec<f32>,
    pub(crate) block: Vec<f32>,
    pub(crate) q: Vec<f32>,
    /// Per query of an item: (first key, end key, output row offset).
    ranges: Vec<(usize, usize, usize)>,
    offsets: Vec<usize>,
    /// `[n_queries, 8, head_dim]` lane accumulators of the outputs.
    lanes: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `x` rounded through f16, as ggml converts the operand of an f16 matrix product.
#[inline]
pub(crate) fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Attention of `q` (`[n_tokens, n_heads, head_dim]`, query token `i` at absolute position
/// `positions[i]`, its own key and value already in the cache) over the sequence whose block
/// table is `table`. Writes `out` (`[n_tokens, n_heads, head_dim]`). Every thread of `ctx`
/// must call it with the same arguments; each computes its share of the (token, head) pairs.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    ctx: &ParallelCtx,
    cache: &KvCache,
    layer: usize,
    table: &[u32],
    q: &[f32],
    positions: &[usize],
    params: &AttentionParams,
    out: AttnOut,
) -> Result<(), KvCacheError> {
    check(cache, table, q, positions, params, out.len)?;
    let items = ctx.split(n_items(positions.len(), params), 1);
    attend_items(cache, layer, table, q, positions, params, items, out);
    Ok(())
}

/// One sequence's attention in a batch whose sequences share a parallel region: `check` it
/// once, then every thread runs its share of the batch's items through `run`.
pub struct SeqAttention<'a> {
    pub table: &'a [u32],
    pub q: &'a [f32],
    pub positions: &'a [usize],
    pub params: AttentionParams,
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
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::selected_isa() >= mistralrs_common::Isa::Avx2 {
        // SAFETY: the tier implies AVX2, FMA and F16C.
        unsafe { attend_batch_avx2(ctx, cache, layer, seqs, work, &mut scratch) };
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::cpu_features().fma {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe { attend_batch_fma(ctx, cache, layer, seqs, work, &mut scratch) };
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        return;
    }
    attend_batch_body::<Portable>(ctx, cache, layer, seqs, work, &mut scratch);
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
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
            attend_items_body::<K>(
                cache,
                layer,
                s.table,
                s.q,
                s.positions,
                &s.params,
                lo - first..hi - first,
                s.out,
                scratch,
            );
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
    check(cache, table, q, positions, params, out.len())?;
    let items = 0..n_items(positions.len(), params);
    // SAFETY: `out` is borrowed mutably for the whole call, on this thread alone.
    let out = unsafe { AttnOut::new(out) };
    attend_items(cache, layer, table, q, positions, params, items, out);
    Ok(())
}

fn check(
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
const Q_CHUNK: usize = 16;

/// Work items: (KV head, chunk of query tokens) pairs.
fn n_items(n_tokens: usize, p: &AttentionParams) -> usize {
    p.n_kv_heads * n_tokens.div_ceil(Q_CHUNK)
}

/// Dispatches to a copy of the kernel compiled with FMA where the CPU has it: the emulated
/// arithmetic is all `mul_add`, one instruction there and a library call otherwise.
#[allow(clippy::too_many_arguments)]
fn attend_items(
    cache: &KvCache,
    layer: usize,
    table: &[u32],
    q: &[f32],
    positions: &[usize],
    p: &AttentionParams,
    items: Range<usize>,
    out: AttnOut,
) {
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    #[cfg(target_arch = "x86_64")]
    if mistralrs_common::cpu_features().fma {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe {
            attend_items_fma(
                cache,
                layer,
                table,
                q,
                positions,
                p,
                items,
                out,
                &mut scratch,
            )
        };
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        return;
    }
    attend_items_body::<Portable>(
        cache,
        layer,
        table,
        q,
        positions,
        p,
        items,
        out,
        &mut scratch,
    );
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_items_fma(
    cache: &KvCache,
    layer: usize,
    table: &[u32],
    q: &[f32],
    positions: &[usize],
    p: &AttentionParams,
    items: Range<usize>,
    out: AttnOut,
    scratch: &mut Scratch,
) {
    attend_items_body::<Portable>(cache, layer, table, q, positions, p, items, out, scratch);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_items_body<K: Kernels>(
    cache: &KvCache,
    layer: usize,
    table: &[u32],
    q: &[f32],
    positions: &[usize],
    p: &AttentionParams,
    items: Range<usize>,
    out: AttnOut,
    // Taken out of the thread-local by the caller rather than used inside `with`'s closure:
    // a closure would not inherit the caller's FMA target feature.
    scratch: &mut Scratch,
) {
    let hd = p.head_dim;
    let bs = cache.config().block_size;
    let group = p.n_heads / p.n_kv_heads;
    let n_chunks = positions.len().div_ceil(Q_CHUNK);
    {
        scratch.block.resize(bs * hd, 0.0);
        for item in items {
            let (kv_head, chunk) = (item / n_chunks, item % n_chunks);
            let tokens = chunk * Q_CHUNK..((chunk + 1) * Q_CHUNK).min(positions.len());
            // Queries of this item: every token of the chunk times every head of the group,
            // in f16 precision (as llama.cpp's K·Q sees them). Query i covers keys
            // ranges[i] and keeps its scores at offsets[i].
            scratch.q.clear();
            scratch.ranges.clear();
            scratch.offsets.clear();
            let mut total = 0;
            for t in tokens.clone() {
                let pos = positions[t];
                let start = p.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
                for h in kv_head * group..(kv_head + 1) * group {
                    let row = (t * p.n_heads + h) * hd;
                    let at = scratch.q.len();
                    scratch.q.extend_from_slice(&q[row..row + hd]);
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

            // Scores, one key block at a time.
            let mut b = first / bs;
            while b * bs < last {
                let keys = &mut scratch.block[..]; // [block_size, head_dim]
                read_rows::<K>(cache, false, layer, table[b] as usize, kv_head, 0..bs, keys);
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

            // Softmax per query as ggml computes it: exponentials in groups of 8 keys counted
            // from position 0, each group summed across its lanes, the groups summed in f64;
            // the probabilities then rounded through f16, as llama.cpp's KQ·V sees them.
            for (i, &(start, end, _)) in scratch.ranges.iter().enumerate() {
                let row = &mut scratch.scores[scratch.offsets[i]..scratch.offsets[i] + end - start];
                softmax_row::<K>(row, start, end);
            }

            // Outputs, one value block at a time: lane j % 8 of query i accumulates key j's
            // value with one FMA per element, and the lanes are summed at the end, which is the
            // order of llama.cpp's KQ·V product.
            let n_q = scratch.ranges.len();
            // 8 lanes (matrix kernel) or 4 x 8 (vector kernel, single-token steps) per element.
            let slots = if p.single_token_step { 32 } else { 8 };
            scratch.lanes.clear();
            scratch.lanes.resize(n_q * slots * hd, 0.0); // [n_queries, slots, head_dim]
            let mut b = first / bs;
            while b * bs < last {
                let values = &mut scratch.block[..]; // [block_size, head_dim]
                read_rows::<K>(
                    cache,
                    true,
                    layer,
                    table[b] as usize,
                    kv_head,
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
            for (i, &(_, _, row)) in scratch.ranges.iter().enumerate() {
                // SAFETY: the rows of this item's (token, head) pairs belong to this thread;
                // bounds were checked in `check`.
                let out_row = unsafe { std::slice::from_raw_parts_mut(out.get().add(row), hd) };
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
}

/// The softmax of the scores of keys `start..end` (`row`), as ggml computes it: exponentials
/// in groups of 8 keys counted from position 0, each group summed across its lanes, the groups
/// summed in f64; the probabilities then rounded through f16, as llama.cpp's KQ·V sees them.
#[inline(always)]
pub(crate) fn softmax_row<K: Kernels>(row: &mut [f32], start: usize, end: usize) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    let mut g = start / 8 * 8;
    while g < end {
        let lanes = if g >= start && g + 8 <= end {
            let at = g - start;
            let mut x = [0f32; 8];
            for (l, v) in x.iter_mut().enumerate() {
                *v = row[at + l] - max;
            }
            let lanes = K::exp8(&x);
            row[at..at + 8].copy_from_slice(&lanes);
            lanes
        } else {
            // A group the range cuts: the lanes outside it count 0.
            let mut lanes = [0f32; 8];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let j = g + l;
                if (start..end).contains(&j) {
                    *lane = expf_ggml(row[j - start] - max);
                    row[j - start] = *lane;
                }
            }
            lanes
        };
        sum += f64::from(hsum8(&lanes));
        g += 8;
    }
    K::scale_round_f16(row, (1.0 / sum) as f32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::KvCacheConfig;
    use mistralrs_common::ThreadPool;

    struct Rng(u64);
    impl Rng {
        fn f(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }
        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.f()).collect()
        }
    }

    /// Plain causal attention over contiguous K/V: `k`, `v` are `[seq, n_kv_heads, head_dim]`.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        positions: &[usize],
        p: &AttentionParams,
    ) -> Vec<f32> {
        let hd = p.head_dim;
        let mut out = vec![0f32; q.len()];
        for (t, &pos) in positions.iter().enumerate() {
            for h in 0..p.n_heads {
                let kvh = h / (p.n_heads / p.n_kv_heads);
                let qh: Vec<f32> = q[(t * p.n_heads + h) * hd..][..hd]
                    .iter()
                    .map(|&x| round_f16(x))
                    .collect();
                let start = p.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let mut s: Vec<f64> = (start..=pos)
                    .map(|j| {
                        let kj: Vec<f32> = k[(j * p.n_kv_heads + kvh) * hd..][..hd]
                            .iter()
                            .map(|&x| round_f16(x))
                            .collect();
                        let mut x = qh
                            .iter()
                            .zip(kj)
                            .map(|(a, b)| (*a as f64) * (b as f64))
                            .sum::<f64>()
                            * p.scale as f64;
                        if let Some(cap) = p.softcap {
                            x = cap as f64 * (x / cap as f64).tanh();
                        }
                        x
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = s
                    .iter_mut()
                    .map(|x| {
                        *x = (*x - m).exp();
                        *x
                    })
                    .sum();
                for (i, j) in (start..=pos).enumerate() {
                    let vj: Vec<f32> = v[(j * p.n_kv_heads + kvh) * hd..][..hd]
                        .iter()
                        .map(|&x| round_f16(x))
                        .collect();
                    for d in 0..hd {
                        out[(t * p.n_heads + h) * hd + d] +=
                            (f64::from(round_f16((s[i] / sum) as f32)) * vj[d] as f64) as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn paged_attention_equals_contiguous_attention() {
        let mut rng = Rng(99);
        for (softcap, window) in [(None, None), (Some(5.0), None), (None, Some(4))] {
            let p = AttentionParams {
                n_heads: 6,
                n_kv_heads: 2,
                head_dim: 16,
                scale: 0.25,
                softcap,
                sliding_window: window,
                single_token_step: false,
            };
            let cfg = KvCacheConfig {
                dtype: crate::KvDtype::F16,
                n_layers: 2,
                n_kv_heads: 2,
                head_dim: 16,
                block_size: 4,
                n_blocks: 8,
            };
            let mut cache = KvCache::new(cfg).unwrap();
            let table = [6u32, 2, 7, 0]; // scattered blocks: 16 tokens
            let seq = 13;
            let k = rng.vec(seq * 2 * 16);
            let v = rng.vec(seq * 2 * 16);
            for pos in 0..seq {
                let row = pos * 32..(pos + 1) * 32;
                cache
                    .write(1, &table, pos, &k[row.clone()], &v[row])
                    .unwrap();
            }
            // A prefill chunk of the last 5 tokens, then a decode of the last one.
            for positions in [vec![8usize, 9, 10, 11, 12], vec![12]] {
                let p = AttentionParams {
                    single_token_step: positions.len() == 1,
                    ..p
                };
                let q = rng.vec(positions.len() * 6 * 16);
                let expected = reference(&q, &k, &v, &positions, &p);
                let mut out = vec![0f32; q.len()];
                attend_serial(&cache, 1, &table, &q, &positions, &p, &mut out).unwrap();
                let pool = ThreadPool::new(3);
                let mut par = vec![0f32; q.len()];
                // SAFETY: `par` is not touched until the region ends.
                let par_out = unsafe { AttnOut::new(&mut par) };
                pool.run(|ctx| {
                    attend(ctx, &cache, 1, &table, &q, &positions, &p, par_out).unwrap();
                });
                for i in 0..out.len() {
                    // Probabilities are rounded through f16 on both sides, from exponentials up
                    // to 2 ulp apart: one f16 step (2^-11 relative) of a probability may differ.
                    assert!(
                        (out[i] - expected[i]).abs() < 1e-3,
                        "{softcap:?} {window:?} {i}"
                    );
                    assert_eq!(out[i], par[i]);
                }
            }
        }
    }

    #[test]
    fn batches_split_decode_steps_by_keys_with_the_serial_results_bit_for_bit() {
        let mut rng = Rng(7);
        // 3 KV heads over 2 threads, head sizes with and without a 32-element tail, blocks of
        // 4 (runs of 8 keys cross them) and 16, f16 and q8_0 storage.
        for (hd, bs, dtype) in [
            (40, 4, crate::KvDtype::F16),
            (64, 16, crate::KvDtype::F16),
            (64, 4, crate::KvDtype::Q8_0),
        ] {
            for (softcap, window) in [(None, None), (Some(5.0), None), (None, Some(9))] {
                let cfg = KvCacheConfig {
                    dtype,
                    n_layers: 1,
                    n_kv_heads: 3,
                    head_dim: hd,
                    block_size: bs,
                    n_blocks: 64,
                };
                let mut cache = KvCache::new(cfg).unwrap();
                let row = 3 * hd;
                // Four sequences: decode steps at positions 0, 37 and 70, and a prefill chunk.
                let lens = [1usize, 38, 71, 20];
                let mut next_block = 0u32;
                let tables: Vec<Vec<u32>> = lens
                    .iter()
                    .map(|&n| {
                        let t: Vec<u32> =
                            (next_block..next_block + n.div_ceil(bs) as u32).collect();
                        next_block += t.len() as u32;
                        t
                    })
                    .collect();
                for (table, &n) in tables.iter().zip(&lens) {
                    for pos in 0..n {
                        let (k, v) = (rng.vec(row), rng.vec(row));
                        cache.write(0, table, pos, &k, &v).unwrap();
                    }
                }
                let positions: Vec<Vec<usize>> =
                    vec![vec![0], vec![37], vec![70], (12..20).collect()];
                let p = AttentionParams {
                    n_heads: 6,
                    n_kv_heads: 3,
                    head_dim: hd,
                    scale: 0.3,
                    softcap,
                    sliding_window: window,
                    single_token_step: false,
                };
                let qs: Vec<Vec<f32>> = positions
                    .iter()
                    .map(|ps| rng.vec(ps.len() * 6 * hd))
                    .collect();
                let serial: Vec<Vec<f32>> = qs
                    .iter()
                    .zip(&positions)
                    .zip(&tables)
                    .map(|((q, ps), table)| {
                        let p = AttentionParams {
                            single_token_step: ps.len() == 1,
                            ..p
                        };
                        let mut out = vec![0f32; q.len()];
                        attend_serial(&cache, 0, table, q, ps, &p, &mut out).unwrap();
                        out
                    })
                    .collect();
                for threads in [1, 2, 3] {
                    let mut outs: Vec<Vec<f32>> = qs.iter().map(|q| vec![0f32; q.len()]).collect();
                    let seqs: Vec<SeqAttention<'_>> = outs
                        .iter_mut()
                        .zip(&qs)
                        .zip(&positions)
                        .zip(&tables)
                        .map(|(((out, q), ps), table)| SeqAttention {
                            table,
                            q,
                            positions: ps,
                            params: AttentionParams {
                                single_token_step: ps.len() == 1,
                                ..p
                            },
                            // SAFETY: each output is only read after the region.
                            out: unsafe { AttnOut::new(out) },
                        })
                        .collect();
                    let work = DecodeWork::prepare(&seqs);
                    let pool = ThreadPool::new(threads);
                    pool.run(|ctx| attend_batch(ctx, &cache, 0, &seqs, &work));
                    drop(work);
                    drop(seqs);
                    for (i, (got, want)) in outs.iter().zip(&serial).enumerate() {
                        let same = got
                            .iter()
                            .zip(want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{hd} {bs} {dtype:?} {softcap:?} {window:?} {threads} threads, sequence {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_and_tables_are_errors() {
        let cfg = KvCacheConfig {
            dtype: crate::KvDtype::F16,
            n_layers: 1,
            n_kv_heads: 1,
            head_dim: 4,
            block_size: 2,
            n_blocks: 2,
        };
        let cache = KvCache::new(cfg).unwrap();
        let p = AttentionParams {
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 4,
            scale: 1.0,
            softcap: None,
            sliding_window: None,
            single_token_step: false,
        };
        let q = [0f32; 8];
        let mut out = [0f32; 8];
        assert!(attend_serial(&cache, 0, &[0], &q, &[2], &p, &mut out).is_err()); // table too short
        assert!(attend_serial(&cache, 0, &[0, 5], &q, &[2], &p, &mut out).is_err()); // bad block
        assert!(attend_serial(&cache, 0, &[0], &q[..4], &[0], &p, &mut out).is_err()); // q shape
        let wrong_dim = AttentionParams { head_dim: 2, ..p };
        assert!(attend_serial(&cache, 0, &[0], &q[..4], &[0], &wrong_dim, &mut out[..4]).is_err());
        assert!(attend_serial(&cache, 0, &[0], &q, &[1], &p, &mut out).is_ok());
    }
}
