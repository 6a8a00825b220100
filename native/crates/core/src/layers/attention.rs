//! The one attention entry point models call: store the new keys and values through each
//! sequence's block table, then attend over the paged cache. Models never see the cache
//! layout.

use std::sync::Mutex;

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{attend, AttentionParams, AttnOut, KvCache};

use crate::model_error::{ModelError, Result};
use crate::models::SeqInput;

/// For every sequence of `batch`: writes its rows of `k` and `v` (`[n, n_kv_heads, head_dim]`)
/// at their positions, then computes attention for its rows of `q` (`[n, n_heads, head_dim]`)
/// into `out` (same shape as `q`). `params.single_token_step` is set here, per sequence.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    pool: &ThreadPool,
    cache: &mut KvCache,
    layer: usize,
    batch: &[SeqInput<'_>],
    positions: &[usize],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    params: &AttentionParams,
    out: &mut [f32],
) -> Result<()> {
    let kv_dim = params.n_kv_heads * params.head_dim;
    let q_dim = params.n_heads * params.head_dim;
    let mut t0 = 0;
    for seq in batch {
        let len = seq.tokens.len();
        for (t, &pos) in positions.iter().enumerate().skip(t0).take(len) {
            let rows = t * kv_dim..(t + 1) * kv_dim;
            cache.write(layer, seq.block_table, pos, &k[rows.clone()], &v[rows])?;
        }
        let rows = t0 * q_dim..(t0 + len) * q_dim;
        let params = AttentionParams {
            single_token_step: len == 1,
            ..*params
        };
        attend_all(
            pool,
            cache,
            layer,
            seq.block_table,
            &q[rows.clone()],
            &positions[t0..t0 + len],
            &params,
            &mut out[rows],
        )?;
        t0 += len;
    }
    Ok(())
}

/// Runs paged attention for one sequence's query rows over the whole pool.
#[allow(clippy::too_many_arguments)]
fn attend_all(
    pool: &ThreadPool,
    cache: &KvCache,
    layer: usize,
    table: &[u32],
    q: &[f32],
    positions: &[usize],
    params: &AttentionParams,
    out: &mut [f32],
) -> Result<()> {
    let failure = Mutex::new(None);
    // SAFETY: `out` is not touched by anything else until the region below has ended.
    let rows = unsafe { AttnOut::new(out) };
    pool.run(|ctx| {
        if let Err(e) = attend(ctx, cache, layer, table, q, positions, params, rows) {
            if let Ok(mut f) = failure.lock() {
                *f = Some(e);
            }
        }
    });
    match failure.into_inner().ok().flatten() {
        Some(e) => Err(ModelError::Cache(e)),
        None => Ok(()),
    }
}
