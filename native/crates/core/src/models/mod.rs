//! Model architectures, one file each, named by the Hugging Face `model_type` they run. The
//! registry ([`registry`]) is the only shared touch point.

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{KvCache, KvCacheConfig, KvDtype};
use mistralrs_quant::matmul::MatmulScratch;

use crate::layers::attention::{Attend, EncoderBatch, StepBatch};
use crate::layers::RopeScaling;
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::weights::Weights;

pub mod deepseek_v2;
pub mod deepseek_v3;
pub mod gemma;
pub mod gemma2;
pub mod gemma3;
pub mod glm4;
pub mod glm4_moe;
pub mod glm4_moe_lite;
pub mod gpt_oss;
pub mod granitemoehybrid;
pub mod hunyuan_v1_dense;
pub mod hunyuan_v1_moe;
pub mod lfm2;
pub mod lfm2_moe;
pub mod llama;
pub mod mistral;
pub mod mixtral;
pub(crate) mod parts;
pub mod phi;
pub mod phi3;
pub mod phimoe;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3_moe;
pub mod qwen3_next;
mod registry;
pub mod smollm3;
pub mod starcoder2;

pub use registry::{
    architecture_names, load_gguf, load_hf, resolve_architecture, supported_architectures,
    Architecture, ARCHITECTURES,
};

pub use crate::batch::SeqInput;

/// Buffers reused across steps, so a decode step does not allocate.
#[derive(Default)]
pub struct ForwardScratch {
    pub bufs: Vec<Vec<f32>>,
    pub matmul: MatmulScratch,
    pub positions: Vec<usize>,
}

impl ForwardScratch {
    /// `n` zeroed buffers with the given lengths.
    pub fn take(&mut self, lens: &[usize]) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(lens.len());
        for &len in lens {
            let mut b = self.bufs.pop().unwrap_or_default();
            b.clear();
            b.resize(len, 0.0);
            out.push(b);
        }
        out
    }

    pub fn give_back(&mut self, bufs: Vec<Vec<f32>>) {
        self.bufs.extend(bufs);
    }
}

/// A loaded model: the forward pass of one step over a batch of sequences.
pub trait Model: Send + Sync {
    fn config(&self) -> &ModelConfig;

    /// Runs `batch`, writing its keys and values into `cache` and, for each sequence, the
    /// logits of its last `logit_rows` tokens into `logits` (`[n_wanted, vocab]`). A model
    /// implements this or [`Model::forward_recurrent`]; one with recurrent layers the latter
    /// (this then serves a file with none, whose state is empty).
    fn forward(
        &self,
        pool: &ThreadPool,
        cache: &mut KvCache,
        batch: &[SeqInput<'_>],
        scratch: &mut ForwardScratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let mut states = vec![Vec::new(); batch.len()];
        self.forward_recurrent(pool, cache, batch, &mut states, scratch, logits)
    }

    /// Floats of recurrent state each sequence carries from one step to the next (LFM2's
    /// short convolutions keep their last inputs); 0 for models whose whole memory is the KV
    /// cache. Such a model runs through [`Model::forward_recurrent`].
    fn recurrent_state_len(&self) -> usize {
        0
    }

    /// [`Model::forward`] for a model with recurrent state: `states[i]` is `batch[i]`'s
    /// ([`Model::recurrent_state_len`] floats, zeros before its first token), which the pass
    /// reads at the sequence's `start_pos` and leaves at its end.
    fn forward_recurrent(
        &self,
        pool: &ThreadPool,
        cache: &mut KvCache,
        batch: &[SeqInput<'_>],
        _states: &mut [Vec<f32>],
        scratch: &mut ForwardScratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        self.forward(pool, cache, batch, scratch, logits)
    }

    /// Whether [`Model::encode`] runs (the architecture can be an embedding model).
    fn encodes(&self) -> bool {
        false
    }

    /// Runs `batch` as an encoder (an embedding model): each sequence alone at positions
    /// `0..len`, with no cache, every token seeing its whole sequence when `bidirectional`
    /// (else the tokens up to itself). `hidden` becomes the final norm's output for every
    /// token, `[n_tokens, hidden_size]`, sequences end to end.
    fn encode(
        &self,
        _pool: &ThreadPool,
        _batch: &[&[u32]],
        _bidirectional: bool,
        _scratch: &mut ForwardScratch,
        _hidden: &mut Vec<f32>,
    ) -> Result<()> {
        Err(ModelError::Unsupported(format!(
            "architecture `{}` does not run as an embedding model",
            self.config().architecture
        )))
    }

    /// Tells the model how many tokens a sequence may hold (the KV cache's capacity, at most
    /// the model's context): LongRoPE picks its frequency set from it.
    fn set_context(&mut self, _tokens: usize) {}

    /// The cache geometry this model needs for `n_blocks` blocks of `block_size` tokens.
    fn kv_cache_config(&self, block_size: usize, n_blocks: usize, dtype: KvDtype) -> KvCacheConfig {
        let c = self.config();
        attention_cache_config(c, c.n_layers, (block_size, n_blocks, dtype))
    }
}

/// The cache of `n_layers` attention layers of `cfg`'s heads (a hybrid model has KV for its
/// attention layers only; at least one layer, for the pool).
pub(crate) fn attention_cache_config(
    cfg: &ModelConfig,
    n_layers: usize,
    (block_size, n_blocks, dtype): (usize, usize, KvDtype),
) -> KvCacheConfig {
    KvCacheConfig {
        n_layers: n_layers.max(1),
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
        block_size,
        n_blocks,
        dtype,
    }
}

/// Checks that a model with recurrent state was given one of `len` floats per sequence.
fn check_states(
    cfg: &ModelConfig,
    len: usize,
    batch: &[SeqInput<'_>],
    states: &[Vec<f32>],
) -> Result<()> {
    if states.len() != batch.len() || states.iter().any(|s| s.len() != len) {
        return Err(ModelError::InvalidInput(format!(
            "`{}` needs a recurrent state of {len} floats for each of the batch's {} sequences",
            cfg.architecture,
            batch.len()
        )));
    }
    Ok(())
}

/// The start of every forward pass: the batch checked against the model and the cache (so a
/// bad request fails whole), its token ids in sequence order (`[n]`) and their absolute
/// positions (`[n]`, the scratch's buffer until [`end_forward`] gives it back).
pub(crate) fn begin_forward(
    cfg: &ModelConfig,
    cache: &KvCache,
    batch: &[SeqInput<'_>],
    scratch: &mut ForwardScratch,
) -> Result<(Vec<u32>, Vec<usize>)> {
    check_batch(cfg, cache, batch)?;
    let tokens = flatten_batch(batch, scratch);
    Ok((tokens, std::mem::take(&mut scratch.positions)))
}

/// The start of an encoder pass ([`Model::encode`]): the batch checked against the model,
/// its token ids end to end, each token's position in its own sequence (the scratch's buffer
/// until [`end_forward`]) and each sequence's length; the matrix products learn the rows.
fn begin_encode(
    cfg: &ModelConfig,
    batch: &[&[u32]],
    scratch: &mut ForwardScratch,
) -> Result<(Vec<u32>, Vec<usize>, Vec<usize>)> {
    for seq in batch {
        if seq.is_empty() {
            return Err(ModelError::InvalidInput(
                "an input to embed has no tokens".into(),
            ));
        }
        if let Some(&t) = seq.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::InvalidInput(format!(
                "token id {t} is past the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        if seq.len() > cfg.context_length {
            return Err(ModelError::InvalidInput(format!(
                "{} tokens exceed the model's context of {}",
                seq.len(),
                cfg.context_length
            )));
        }
    }
    let lens: Vec<usize> = batch.iter().map(|s| s.len()).collect();
    scratch.matmul.sequence_rows.clear();
    scratch.matmul.sequence_rows.extend_from_slice(&lens);
    let mut positions = std::mem::take(&mut scratch.positions);
    positions.clear();
    positions.extend(lens.iter().flat_map(|&len| 0..len));
    let tokens = batch.iter().flat_map(|s| s.iter().copied()).collect();
    Ok((tokens, positions, lens))
}

/// A model's layers over a pass's tokens: the token ids and their positions in, through the
/// given attention, the buffers out (the residual stream first).
pub(crate) trait RunLayers:
    FnOnce(&[u32], &[usize], &mut Attend<'_, '_, '_>, &mut ForwardScratch) -> Result<Vec<Vec<f32>>>
{
}

impl<F> RunLayers for F where
    F: FnOnce(
        &[u32],
        &[usize],
        &mut Attend<'_, '_, '_>,
        &mut ForwardScratch,
    ) -> Result<Vec<Vec<f32>>>
{
}

/// A generation pass ([`Model::forward`]) of a model whose `layers` run the embeddings of the
/// tokens (at their positions) through every layer with paged attention and return the
/// buffers, the residual stream first; then the final RMS norm (`(weights, eps)`) and `output`
/// for the last token of each sequence that wants logits.
pub(crate) fn forward_layers(
    cfg: &ModelConfig,
    (pool, cache, batch): (&ThreadPool, &mut KvCache, &[SeqInput<'_>]),
    (norm, eps): (&[f32], f32),
    output: &crate::layers::Linear,
    (scratch, logits): (&mut ForwardScratch, &mut Vec<f32>),
    layers: impl RunLayers,
) -> Result<()> {
    let (tokens, positions) = begin_forward(cfg, cache, batch, scratch)?;
    let step = StepBatch::new(pool, batch, &positions);
    let mut attend = Attend::Paged { step, cache };
    let bufs = layers(&tokens, &positions, &mut attend, scratch)?;
    last_token_logits(pool, batch, &bufs[0], (norm, eps), output, scratch, logits)?;
    end_forward(scratch, bufs, positions);
    Ok(())
}

/// A hybrid decoder: attention layers among recurrent ones (LFM2's short convolutions,
/// Granite 4 H's Mamba-2 layers, Qwen3-Next's gated delta nets). Its [`Model`] is these parts:
/// the states checked (`state_len` floats for each sequence), then [`forward_layers`] with the
/// states lent to `layers_forward`, keys and values for the attention layers only.
pub(crate) trait HybridDecoder: Send + Sync {
    fn cfg(&self) -> &ModelConfig;
    /// How many layers attend (the cache's layers).
    fn n_attention_layers(&self) -> usize;
    /// Floats of recurrent state per sequence.
    fn state_len(&self) -> usize;
    /// The final RMS norm's weights and the output head.
    fn head(&self) -> (&[f32], &crate::layers::Linear);
    /// The embeddings of `tokens` (at `positions`, sequences as in `batch`) through every
    /// layer; the buffers, the residual stream first.
    fn layers_forward(
        &self,
        pool: &ThreadPool,
        inputs: (&[u32], &[usize], &[SeqInput<'_>]),
        states: &mut [Vec<f32>],
        attend: &mut Attend<'_, '_, '_>,
        scratch: &mut ForwardScratch,
    ) -> Result<Vec<Vec<f32>>>;
    /// The logits' last step (Granite divides them by its `logits_scaling`).
    fn finish_logits(&self, _logits: &mut [f32]) {}
}

impl<T: HybridDecoder> Model for T {
    fn config(&self) -> &ModelConfig {
        self.cfg()
    }

    fn recurrent_state_len(&self) -> usize {
        self.state_len()
    }

    fn kv_cache_config(&self, block_size: usize, n_blocks: usize, dtype: KvDtype) -> KvCacheConfig {
        attention_cache_config(
            self.cfg(),
            self.n_attention_layers(),
            (block_size, n_blocks, dtype),
        )
    }

    fn forward_recurrent(
        &self,
        pool: &ThreadPool,
        cache: &mut KvCache,
        batch: &[SeqInput<'_>],
        states: &mut [Vec<f32>],
        scratch: &mut ForwardScratch,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let cfg = self.cfg();
        check_states(cfg, self.state_len(), batch, states)?;
        let (norm, output) = self.head();
        forward_layers(
            cfg,
            (pool, cache, batch),
            (norm, cfg.rms_norm_eps),
            output,
            (scratch, logits),
            |tokens, positions, attend, scratch| {
                self.layers_forward(pool, (tokens, positions, batch), states, attend, scratch)
            },
        )?;
        self.finish_logits(logits);
        Ok(())
    }
}

/// An encoder pass ([`Model::encode`]) of a model whose `layers` run the embeddings of the
/// tokens (at their positions) through every layer with the given attention and return the
/// buffers, the residual stream first; `hidden` becomes it through the final RMS norm
/// (`(weights, eps)`).
pub(crate) fn encode_layers(
    cfg: &ModelConfig,
    (pool, batch, bidirectional): (&ThreadPool, &[&[u32]], bool),
    (norm, eps): (&[f32], f32),
    scratch: &mut ForwardScratch,
    hidden: &mut Vec<f32>,
    layers: impl RunLayers,
) -> Result<()> {
    let (tokens, positions, lens) = begin_encode(cfg, batch, scratch)?;
    let mut attend = Attend::Encode(EncoderBatch {
        pool,
        lens: &lens,
        bidirectional,
    });
    let bufs = layers(&tokens, &positions, &mut attend, scratch)?;
    hidden.clear();
    hidden.resize(bufs[0].len(), 0.0);
    crate::layers::rms_norm(&bufs[0], norm, eps, hidden);
    end_forward(scratch, bufs, positions);
    Ok(())
}

/// The end of a forward pass: its buffers and positions back to the scratch for the next.
pub(crate) fn end_forward(
    scratch: &mut ForwardScratch,
    bufs: Vec<Vec<f32>>,
    positions: Vec<usize>,
) {
    scratch.give_back(bufs);
    scratch.positions = positions;
}

/// The batch's token ids in sequence order, and their absolute positions into `positions`;
/// the matrix products learn each sequence's rows.
pub(crate) fn flatten_batch(batch: &[SeqInput<'_>], scratch: &mut ForwardScratch) -> Vec<u32> {
    group_rows_by_sequence(batch, &mut scratch.matmul);
    let positions = &mut scratch.positions;
    positions.clear();
    for s in batch {
        positions.extend(s.start_pos..s.start_pos + s.tokens.len());
    }
    batch
        .iter()
        .flat_map(|s| s.tokens.iter().copied())
        .collect()
}

/// The matrix products group rows by sequence (each sequence's rows on their own; each row of
/// a sequence in decode order on its own, which gives it the single-row kernels' order).
pub(crate) fn group_rows_by_sequence(batch: &[SeqInput<'_>], matmul: &mut MatmulScratch) {
    let rows = &mut matmul.sequence_rows;
    rows.clear();
    for s in batch {
        match s.tokens.len() {
            n if s.decode_order => rows.extend(std::iter::repeat_n(1, n)),
            n => rows.push(n),
        }
    }
}

/// For the last layer's products after its attention output projection: llama.cpp computes
/// that part for the rows whose logits are wanted only (`inp_out_ids`), one row for a sequence
/// run alone, so in its single-row kernels' order. Each such row becomes a group of its own
/// here, which gives it that order; the other rows' results are not used.
pub(crate) fn isolate_logit_rows(batch: &[SeqInput<'_>], matmul: &mut MatmulScratch) {
    let rows = &mut matmul.sequence_rows;
    rows.clear();
    for s in batch {
        let (n, wanted) = (s.tokens.len(), s.wanted_rows());
        if s.decode_order {
            rows.extend(std::iter::repeat_n(1, n));
        } else if wanted > 0 && n > wanted {
            rows.push(n - wanted);
            rows.extend(std::iter::repeat_n(1, wanted));
        } else if wanted > 0 {
            rows.extend(std::iter::repeat_n(1, n));
        } else {
            rows.push(n);
        }
    }
}

/// The final RMS norm (`(weights, eps)`) and the output head, for the last tokens of each
/// sequence that wants logits (`logit_rows` of them): `x` is `[n, d]`, `logits` becomes
/// `[n_wanted, vocab]`.
pub(crate) fn last_token_logits(
    pool: &ThreadPool,
    batch: &[SeqInput<'_>],
    x: &[f32],
    (norm, eps): (&[f32], f32),
    output: &crate::layers::Linear,
    scratch: &mut ForwardScratch,
    logits: &mut Vec<f32>,
) -> Result<()> {
    let norm_rows = |rows: &[f32], out: &mut [f32]| crate::layers::rms_norm(rows, norm, eps, out);
    let head =
        |rows: &[f32], y: &mut [f32], m: &mut MatmulScratch| Ok(output.forward(pool, rows, y, m)?);
    let rows = (x, norm.len());
    head_logits(
        batch,
        rows,
        output.out_features(),
        (norm_rows, head),
        scratch,
        logits,
    )
}

/// The last `logit_rows` tokens of each sequence, through `norm` and then `head` (`d` →
/// `vocab`, each row alone for the kernels): `x` is `[n, d]` rows, `logits` becomes
/// `[n_wanted, vocab]`, in batch order. Architectures with other final norms or a biased head call it directly.
pub(crate) fn head_logits(
    batch: &[SeqInput<'_>],
    (x, d): (&[f32], usize),
    vocab: usize,
    (norm, head): (
        impl FnOnce(&[f32], &mut [f32]),
        impl FnOnce(&[f32], &mut [f32], &mut MatmulScratch) -> Result<()>,
    ),
    scratch: &mut ForwardScratch,
    logits: &mut Vec<f32>,
) -> Result<()> {
    let mut last = Vec::new();
    let mut t0 = 0;
    for s in batch {
        t0 += s.tokens.len();
        let wanted = s.wanted_rows();
        last.extend_from_slice(&x[(t0 - wanted) * d..t0 * d]);
    }
    let mut normed = vec![0f32; last.len()];
    norm(&last, &mut normed);
    let rows = &mut scratch.matmul.sequence_rows;
    rows.clear();
    rows.resize(last.len() / d, 1);
    logits.clear();
    logits.resize(last.len() / d * vocab, 0.0);
    head(&normed, logits, &mut scratch.matmul)
}

/// Checks a batch against the model and the cache before any work starts, so a bad request
/// fails whole and never half-writes the cache.
pub fn check_batch(cfg: &ModelConfig, cache: &KvCache, batch: &[SeqInput<'_>]) -> Result<()> {
    for seq in batch {
        if let Some(&t) = seq.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::InvalidInput(format!(
                "token id {t} is past the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        let end = seq.start_pos + seq.tokens.len();
        if end > cfg.context_length {
            return Err(ModelError::InvalidInput(format!(
                "{end} tokens exceed the model's context of {}",
                cfg.context_length
            )));
        }
        cache.check_table(seq.block_table, end)?;
    }
    Ok(())
}

/// The rotation's frequency scaling from the weights when they carry it (Llama 3.1's
/// `rope_freqs`, LongRoPE's short and long factor tensors), else the config's.
pub(crate) fn file_rope_scaling(w: &dyn Weights, cfg: &ModelConfig) -> Result<RopeScaling> {
    let half = cfg.rope_dims / 2;
    let scaling = match (
        w.vector_opt("rope_freqs.weight", half)?,
        w.vector_opt("rope_factors_short.weight", half)?,
        w.vector_opt("rope_factors_long.weight", half)?,
    ) {
        (Some(factors), _, _) => RopeScaling::FreqFactors(factors),
        (None, Some(short), Some(long)) => RopeScaling::LongRope {
            short,
            long,
            original_context: w
                .hparam_u32("rope.scaling.original_context_length")?
                .map_or(cfg.context_length, |v| v as usize),
            attn_factor: w.hparam_f32("rope.scaling.attn_factor")?.unwrap_or(1.0),
            context: None,
        },
        _ => return Ok(cfg.rope_scaling.clone()),
    };
    scaling.check(cfg.rope_base).map_err(|e| {
        ModelError::Unsupported(format!("{}: rope scaling tensors: {e}", w.source()))
    })?;
    Ok(scaling)
}

/// Tells a LongRoPE scaling the context a sequence may hold and rebuilds the rotation; other
/// scalings do not depend on it.
pub(crate) fn set_rope_context(
    cfg: &ModelConfig,
    scaling: &mut RopeScaling,
    rope: &mut crate::layers::Rope,
    tokens: usize,
) {
    if let RopeScaling::LongRope { context, .. } = scaling {
        *context = Some(tokens);
        *rope = cfg.rope(scaling.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logit_rows_are_grouped_alone_in_the_last_layer() {
        let t = [1u32, 2, 3, 4];
        let seq = |n: usize, logit_rows: usize, decode_order: bool| SeqInput {
            tokens: &t[..n],
            start_pos: 0,
            block_table: &[],
            logit_rows,
            decode_order,
        };
        let batch = [seq(4, 1, false), seq(1, 1, false), seq(3, 0, false)];
        let mut matmul = MatmulScratch::default();
        isolate_logit_rows(&batch, &mut matmul);
        assert_eq!(matmul.sequence_rows, [3, 1, 1, 3]);
        group_rows_by_sequence(&batch, &mut matmul);
        assert_eq!(matmul.sequence_rows, [4, 1, 3]);
        // A verify step: every row alone in both, as its own decode step would have it.
        let batch = [seq(3, 3, true), seq(2, 1, false)];
        isolate_logit_rows(&batch, &mut matmul);
        assert_eq!(matmul.sequence_rows, [1, 1, 1, 1, 1]);
        group_rows_by_sequence(&batch, &mut matmul);
        assert_eq!(matmul.sequence_rows, [1, 1, 1, 2]);
    }
}
