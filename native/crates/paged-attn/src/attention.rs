//! Causal attention that reads keys and values through a block table: one code path for
//! prefill (many query tokens) and decode (one), with grouped-query sharing, logit
//! soft-capping and sliding windows.

use std::cell::RefCell;
use std::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;
use mistralrs_common::ParallelCtx;

use crate::cache::{KvCache, KvCacheError};

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

    fn get(self) -> *mut f32 {
        self.ptr
    }
}

/// Per-thread buffers: scores of one query, one block of keys or values in f32, the query in
/// f16 precision.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    block: Vec<f32>,
    q: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `x` rounded through f16, as ggml converts the operand of an f16 matrix product.
#[inline]
fn round_f16(x: f32) -> f32 {
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
    let items = ctx.split(positions.len() * params.n_heads, 1);
    attend_items(cache, layer, table, q, positions, params, items, out);
    Ok(())
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
    let items = 0..positions.len() * params.n_heads;
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
    let hd = p.head_dim;
    let bs = cache.config().block_size;
    let group = p.n_heads / p.n_kv_heads;
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        scratch.block.resize(bs * hd, 0.0);
        for item in items {
            let (t, h) = (item / p.n_heads, item % p.n_heads);
            let kv_head = h / group;
            let pos = positions[t];
            let start = p.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
            // The query meets f16 keys in f16 precision, as in llama.cpp's K·Q.
            scratch.q.clear();
            scratch
                .q
                .extend(q[item * hd..(item + 1) * hd].iter().map(|&x| round_f16(x))); // [head_dim]

            // Scores of keys start..=pos, block by block.
            scratch.scores.clear();
            let mut j = start;
            while j <= pos {
                let block = table[j / bs] as usize;
                let slot = j % bs;
                let n = (bs - slot).min(pos + 1 - j);
                let keys = &mut scratch.block[..(slot + n) * hd]; // [slot + n, head_dim]
                cache.k_block(layer, block, kv_head)[..(slot + n) * hd].convert_to_f32_slice(keys);
                for s in slot..slot + n {
                    let mut score = dot(&scratch.q, &keys[s * hd..(s + 1) * hd]) * p.scale;
                    if let Some(cap) = p.softcap {
                        score = cap * (score / cap).tanh();
                    }
                    scratch.scores.push(score);
                }
                j += n;
            }

            let max = scratch
                .scores
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for s in scratch.scores.iter_mut() {
                *s = (*s - max).exp();
                sum += f64::from(*s);
            }
            let inv = (1.0 / sum) as f32;

            // SAFETY: row `item` of `out` belongs to this thread; bounds were checked in `check`.
            let acc = unsafe { std::slice::from_raw_parts_mut(out.get().add(item * hd), hd) };
            acc.fill(0.0);
            let mut j = start;
            let mut k = 0;
            while j <= pos {
                let block = table[j / bs] as usize;
                let slot = j % bs;
                let n = (bs - slot).min(pos + 1 - j);
                let values = &mut scratch.block[..(slot + n) * hd]; // [slot + n, head_dim]
                cache.v_block(layer, block, kv_head)[..(slot + n) * hd]
                    .convert_to_f32_slice(values);
                for s in slot..slot + n {
                    // Probabilities meet f16 values in f16 precision, as in llama.cpp's KQ·V.
                    axpy(
                        round_f16(scratch.scores[k] * inv),
                        &values[s * hd..(s + 1) * hd],
                        acc,
                    );
                    k += 1;
                }
                j += n;
            }
        }
    });
}

/// Eight independent partial sums, so the compiler vectorises without reassociating.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

#[inline]
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
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
            };
            let cfg = KvCacheConfig {
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
                    assert!(
                        (out[i] - expected[i]).abs() < 1e-5,
                        "{softcap:?} {window:?} {i}"
                    );
                    assert_eq!(out[i], par[i]);
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_and_tables_are_errors() {
        let cfg = KvCacheConfig {
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
