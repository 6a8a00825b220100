//! The attention paths against a plain reference, and against each other.

use super::*;
use crate::cache::KvCacheConfig;
use crate::kernels::round_f16;
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
            sinks: None,
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
                let seq = SeqAttention {
                    table: &table,
                    q: &q,
                    positions: &positions,
                    params: p,
                    out: par_out,
                };
                attend(ctx, &cache, 1, &seq).unwrap();
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
                    let t: Vec<u32> = (next_block..next_block + n.div_ceil(bs) as u32).collect();
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
            let positions: Vec<Vec<usize>> = vec![vec![0], vec![37], vec![70], (12..20).collect()];
            let p = AttentionParams {
                n_heads: 6,
                n_kv_heads: 3,
                head_dim: hd,
                scale: 0.3,
                softcap,
                sliding_window: window,
                sinks: None,
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
        sinks: None,
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
