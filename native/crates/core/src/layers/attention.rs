//! The one attention entry point models call: store the new keys and values through each
//! sequence's block table, then attend over the paged cache. Models never see the cache
//! layout.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{
    attend_batch, AttentionParams, AttnOut, DecodeWork, KvCache, SeqAttention,
};

use crate::batch::SeqInput;
use crate::model_error::{ModelError, Result};

/// What every attention call of one step shares: the pool, the batch's sequences, and the
/// absolute position of each of the batch's tokens (in sequence order).
pub struct StepBatch<'a, 'b> {
    pub pool: &'a ThreadPool,
    pub batch: &'a [SeqInput<'b>],
    pub positions: &'a [usize],
}

impl<'a, 'b> StepBatch<'a, 'b> {
    pub fn new(pool: &'a ThreadPool, batch: &'a [SeqInput<'b>], positions: &'a [usize]) -> Self {
        StepBatch {
            pool,
            batch,
            positions,
        }
    }
}

/// For every sequence of the step's batch: writes its rows of `k` and `v`
/// (`[n, n_kv_heads, head_dim]`) at their positions, then computes attention for its rows of
/// `q` (`[n, n_heads, head_dim]`) into `out` (same shape as `q`). `params.single_token_step`
/// is set here, per sequence. All sequences share one parallel region (a sequence only reads
/// blocks of its own table, and shared prefix blocks are never written).
pub fn paged_attention(
    step: &StepBatch<'_, '_>,
    cache: &mut KvCache,
    layer: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    params: &AttentionParams,
    out: &mut [f32],
) -> Result<()> {
    let StepBatch {
        pool,
        batch,
        positions,
    } = *step;
    let kv_dim = params.n_kv_heads * params.head_dim;
    let q_dim = params.n_heads * params.head_dim;
    let mut t0 = 0;
    for seq in batch {
        for (t, &pos) in positions.iter().enumerate().skip(t0).take(seq.tokens.len()) {
            let rows = t * kv_dim..(t + 1) * kv_dim;
            cache.write(layer, seq.block_table, pos, &k[rows.clone()], &v[rows])?;
        }
        t0 += seq.tokens.len();
    }

    let mut seqs = Vec::with_capacity(batch.len());
    let mut rest = out;
    let mut t0 = 0;
    for seq in batch {
        let len = seq.tokens.len();
        let (mine, tail) = rest.split_at_mut(len * q_dim);
        rest = tail;
        seqs.push(SeqAttention {
            table: seq.block_table,
            q: &q[t0 * q_dim..(t0 + len) * q_dim],
            positions: &positions[t0..t0 + len],
            params: AttentionParams {
                single_token_step: len == 1,
                ..*params
            },
            // SAFETY: each sequence's rows are a disjoint part of `out`, which stays borrowed
            // (through `seqs`) until the region below has ended.
            out: unsafe { AttnOut::new(mine) },
        });
        t0 += len;
    }
    for s in &seqs {
        s.check(cache).map_err(ModelError::Cache)?;
    }
    let cache = &*cache;
    let work = DecodeWork::prepare(&seqs);
    pool.run(|ctx| attend_batch(ctx, cache, layer, &seqs, &work));
    Ok(())
}
