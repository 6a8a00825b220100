//! The one attention entry point models call: store the new keys and values through each
//! sequence's block table, then attend over the paged cache. Models never see the cache
//! layout.

use std::ops::Range;

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
/// is set here, per sequence (every row of a sequence in decode order takes it). All sequences share one parallel region (a sequence only reads
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
                single_token_step: len == 1 || seq.decode_order,
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

/// How a forward pass attends. Generation writes keys and values into the paged cache and
/// attends causally over it, in llama.cpp's precision; encoding (embedding models) attends
/// within each sequence of the batch, with no cache, in f32 throughout, as transformers does.
pub enum Attend<'s, 'a, 'b> {
    Paged {
        step: StepBatch<'a, 'b>,
        cache: &'s mut KvCache,
    },
    Encode(EncoderBatch<'a>),
}

impl Attend<'_, '_, '_> {
    /// Attention of layer `layer` for every token of the batch: `q` `[n, n_heads, hd]`, `k` and
    /// `v` `[n, n_kv_heads, hd]`, `out` like `q`.
    pub fn run(
        &mut self,
        layer: usize,
        qkv: (&[f32], &[f32], &[f32]),
        params: &AttentionParams,
        out: &mut [f32],
    ) -> Result<()> {
        match self {
            Attend::Paged { step, cache } => paged_attention(step, cache, layer, qkv, params, out),
            Attend::Encode(batch) => {
                encoder_attention(batch, qkv, params, out);
                Ok(())
            }
        }
    }

    /// Whether this pass follows transformers' f32 arithmetic (an encoder, whose references
    /// are transformers') rather than llama.cpp's (e.g. its f16 GELU table).
    pub fn f32_exact(&self) -> bool {
        matches!(self, Attend::Encode(_))
    }

    /// Before the last layer's products after attention: generation computes them alone for
    /// the rows whose logits are wanted (see `isolate_logit_rows`); an encoder needs every row.
    pub fn before_last_layer_products(&self, matmul: &mut mistralrs_quant::matmul::MatmulScratch) {
        if let Attend::Paged { step, .. } = self {
            crate::models::isolate_logit_rows(step.batch, matmul);
        }
    }
}

/// The sequences of an encoder batch, laid end to end, each at positions `0..len`.
pub struct EncoderBatch<'a> {
    pub pool: &'a ThreadPool,
    /// Tokens of each sequence.
    pub lens: &'a [usize],
    /// Every token sees the whole sequence (EmbeddingGemma); else each sees itself and the
    /// tokens before it (Qwen3-Embedding).
    pub bidirectional: bool,
}

/// Which keys query `i` of a sequence of `len` tokens sees: the causal or bidirectional mask,
/// narrowed by a window of `w`. Causal, a window of `w` sees the keys `i - j < w` (as
/// generation does); bidirectional, transformers centres it (EmbeddingGemma's config reads
/// `sliding_window` w as `w / 2 + 1`, then `|i - j|` must be below that: w / 2 each side).
fn visible_keys(i: usize, len: usize, bidirectional: bool, window: Option<usize>) -> Range<usize> {
    match (window, bidirectional) {
        (None, true) => 0..len,
        (None, false) => 0..i + 1,
        (Some(w), false) => (i + 1).saturating_sub(w)..i + 1,
        (Some(w), true) => {
            let reach = w / 2 + 1;
            (i + 1).saturating_sub(reach)..len.min(i + reach)
        }
    }
}

/// Attention for an encoder batch (see [`EncoderBatch`]): scaled dot products, the optional
/// soft-cap, a softmax and the weighted values, all in f32; a (sequence, head) pair per work
/// item.
pub fn encoder_attention(
    batch: &EncoderBatch<'_>,
    (q, k, v): (&[f32], &[f32], &[f32]),
    p: &AttentionParams,
    out: &mut [f32],
) {
    let (hd, heads, kv_heads) = (p.head_dim, p.n_heads, p.n_kv_heads);
    let group = heads / kv_heads;
    let starts: Vec<usize> = batch
        .lens
        .iter()
        .scan(0, |t0, &len| {
            let start = *t0;
            *t0 += len;
            Some(start)
        })
        .collect();
    let items = batch.lens.len() * heads;
    // SAFETY: item (sequence s, head h) writes only head h's rows of sequence s's tokens.
    let shared_out = unsafe { mistralrs_paged_attn::AttnOut::new(out) };
    batch.pool.run(|ctx| {
        let mut scores = Vec::new();
        let mut acc = vec![0f32; hd];
        for item in ctx.split(items, 1) {
            let (s, h) = (item / heads, item % heads);
            let (t0, len) = (starts[s], batch.lens[s]);
            let kvh = h / group;
            for i in 0..len {
                let qi = &q[((t0 + i) * heads + h) * hd..][..hd];
                let keys = visible_keys(i, len, batch.bidirectional, p.sliding_window);
                scores.clear();
                scores.extend(keys.clone().map(|j| {
                    let kj = &k[((t0 + j) * kv_heads + kvh) * hd..][..hd];
                    let mut score = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * p.scale;
                    if let Some(cap) = p.softcap {
                        score = (score / cap).tanh() * cap;
                    }
                    score
                }));
                let sink = p.sinks.map(|s| s[h]);
                let max = scores
                    .iter()
                    .copied()
                    .chain(sink)
                    .fold(f32::NEG_INFINITY, f32::max);
                let mut total = sink.map_or(0.0, |s| (s - max).exp());
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    total += *s;
                }
                acc.iter_mut().for_each(|a| *a = 0.0);
                for (j, &w) in keys.zip(scores.iter()) {
                    let vj = &v[((t0 + j) * kv_heads + kvh) * hd..][..hd];
                    acc.iter_mut().zip(vj).for_each(|(a, &x)| *a += w * x);
                }
                // SAFETY: this row belongs to this item alone (see above), inside `out`.
                let row = unsafe { shared_out.rows(((t0 + i) * heads + h) * hd, hd) };
                row.iter_mut().zip(&acc).for_each(|(o, a)| *o = a / total);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::visible_keys;

    #[test]
    fn encoder_masks_are_transformers() {
        // Causal: itself and the tokens before it; a window of 3 keeps i-2..=i.
        assert_eq!(visible_keys(4, 8, false, None), 0..5);
        assert_eq!(visible_keys(4, 8, false, Some(3)), 2..5);
        // Bidirectional: the whole input; a window of 4 (EmbeddingGemma's config value) is
        // read as 4/2 + 1 = 3, so |i - j| < 3: two tokens each side.
        assert_eq!(visible_keys(4, 8, true, None), 0..8);
        assert_eq!(visible_keys(4, 8, true, Some(4)), 2..7);
        assert_eq!(visible_keys(0, 8, true, Some(4)), 0..3);
        assert_eq!(visible_keys(7, 8, true, Some(4)), 5..8);
    }
}
