//! Model architectures, one file each, keyed by the Hugging Face `model_type` (= GGUF
//! `general.architecture`). The registry below is the only shared touch point.

use std::sync::Arc;

use mistralrs_common::ThreadPool;
use mistralrs_paged_attn::{KvCache, KvCacheConfig, KvDtype};
use mistralrs_quant::gguf::GgufFile;
use mistralrs_quant::matmul::MatmulScratch;

use crate::layers::RopeScaling;
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::weights::{GgufWeights, Weights};
use crate::weights_hf::HfWeights;

pub mod deepseek2;
pub mod gemma;
pub mod gemma2;
pub mod gemma3;
pub mod llama;
pub mod mixtral;
pub mod phi2;
pub mod phi3;
pub mod phimoe;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3moe;
pub mod starcoder2;

/// One sequence's part of a step: its new tokens, where they start, and its block table.
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`; the cache already holds positions `0..start_pos`.
    pub start_pos: usize,
    pub block_table: &'a [u32],
    /// Whether the logits of the last token are wanted (false for a prefill chunk that is
    /// not the last).
    pub want_logits: bool,
}

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

    /// Runs `batch`, writing its keys and values into `cache` and, for each sequence with
    /// `want_logits`, the logits of its last token into `logits` (`[n_wanted, vocab]`).
    fn forward(
        &self,
        pool: &ThreadPool,
        cache: &mut KvCache,
        batch: &[SeqInput<'_>],
        scratch: &mut ForwardScratch,
        logits: &mut Vec<f32>,
    ) -> Result<()>;

    /// Tells the model how many tokens a sequence may hold (the KV cache's capacity, at most
    /// the model's context): LongRoPE picks its frequency set from it.
    fn set_context(&mut self, _tokens: usize) {}

    /// The cache geometry this model needs for `n_blocks` blocks of `block_size` tokens.
    fn kv_cache_config(&self, block_size: usize, n_blocks: usize, dtype: KvDtype) -> KvCacheConfig {
        let c = self.config();
        KvCacheConfig {
            n_layers: c.n_layers,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            block_size,
            n_blocks,
            dtype,
        }
    }
}

type Loader = fn(&dyn Weights) -> Result<Box<dyn Model>>;

/// Architecture id → loader. Adding a model = one file + one line here.
const REGISTRY: &[(&str, Loader)] = &[
    ("deepseek2", deepseek2::load),
    ("gemma", gemma::load),
    ("gemma2", gemma2::load),
    ("gemma3", gemma3::Gemma3::load),
    ("llama", llama::Llama::load),
    ("mixtral", mixtral::load),
    ("phi2", phi2::load),
    ("phi3", phi3::load),
    ("phimoe", phimoe::load),
    ("qwen2", qwen2::load),
    ("qwen3", qwen3::load),
    ("qwen3moe", qwen3moe::load),
    ("starcoder2", starcoder2::load),
];

/// Architectures this build can run.
pub fn supported_architectures() -> Vec<&'static str> {
    REGISTRY.iter().map(|(id, _)| *id).collect()
}

fn loader(arch: &str, source: &str) -> Result<Loader> {
    REGISTRY
        .iter()
        .find(|(id, _)| *id == arch)
        .map(|(_, l)| *l)
        .ok_or_else(|| {
            ModelError::Unsupported(format!(
                "{source}: architecture `{arch}` is not supported (supported: {})",
                supported_architectures().join(", ")
            ))
        })
}

/// Builds the model a GGUF file describes.
pub fn load_gguf(file: Arc<GgufFile>) -> Result<Box<dyn Model>> {
    let arch = file.get_string("general.architecture")?.to_string();
    let weights = GgufWeights::new(file);
    loader(&arch, &weights.source())?(&weights)
}

/// Builds the model of a Hugging Face folder (`config.json` and safetensors).
pub fn load_hf(dir: &std::path::Path) -> Result<Box<dyn Model>> {
    let weights = HfWeights::open(dir)?;
    loader(&weights.architecture()?, &weights.source())?(&weights)
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

/// The matrix products group rows by sequence (each sequence's rows on their own).
pub(crate) fn group_rows_by_sequence(batch: &[SeqInput<'_>], matmul: &mut MatmulScratch) {
    let rows = &mut matmul.sequence_rows;
    rows.clear();
    rows.extend(batch.iter().map(|s| s.tokens.len()));
}

/// For the last layer's products after its attention output projection: llama.cpp computes
/// that part for the rows whose logits are wanted only (`inp_out_ids`), one row for a sequence
/// run alone, so in its single-row kernels' order. Each such row becomes a group of its own
/// here, which gives it that order; the other rows' results are not used.
pub(crate) fn isolate_logit_rows(batch: &[SeqInput<'_>], matmul: &mut MatmulScratch) {
    let rows = &mut matmul.sequence_rows;
    rows.clear();
    for s in batch {
        match s.tokens.len() {
            n if s.want_logits && n > 1 => rows.extend([n - 1, 1]),
            n => rows.push(n),
        }
    }
}

/// The final RMS norm and the output head, for the last token of each sequence that wants
/// logits: `x` is `[n, d]`, `logits` becomes `[n_wanted, vocab]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn last_token_logits(
    pool: &ThreadPool,
    batch: &[SeqInput<'_>],
    x: &[f32],
    norm: &[f32],
    eps: f32,
    output: &crate::layers::Linear,
    scratch: &mut ForwardScratch,
    logits: &mut Vec<f32>,
) -> Result<()> {
    let norm_rows = |rows: &[f32], out: &mut [f32]| crate::layers::rms_norm(rows, norm, eps, out);
    let head =
        |rows: &[f32], y: &mut [f32], m: &mut MatmulScratch| Ok(output.forward(pool, rows, y, m)?);
    head_logits(
        batch,
        x,
        norm.len(),
        output.out_features(),
        norm_rows,
        head,
        scratch,
        logits,
    )
}

/// The last token of each sequence that wants logits, through `norm` and then `head` (`d` →
/// `vocab`, one row per sequence for the kernels): `x` is `[n, d]`, `logits` becomes
/// `[n_wanted, vocab]`. Architectures with other final norms or a biased head call it directly.
#[allow(clippy::too_many_arguments)]
pub(crate) fn head_logits(
    batch: &[SeqInput<'_>],
    x: &[f32],
    d: usize,
    vocab: usize,
    norm: impl FnOnce(&[f32], &mut [f32]),
    head: impl FnOnce(&[f32], &mut [f32], &mut MatmulScratch) -> Result<()>,
    scratch: &mut ForwardScratch,
    logits: &mut Vec<f32>,
) -> Result<()> {
    let mut last = Vec::new();
    let mut t0 = 0;
    for s in batch {
        t0 += s.tokens.len();
        if s.want_logits && !s.tokens.is_empty() {
            last.extend_from_slice(&x[(t0 - 1) * d..t0 * d]);
        }
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
    Ok(
        match (
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
            _ => cfg.rope_scaling.clone(),
        },
    )
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
        let seq = |n: usize, want_logits: bool| SeqInput {
            tokens: &t[..n],
            start_pos: 0,
            block_table: &[],
            want_logits,
        };
        let batch = [seq(4, true), seq(1, true), seq(3, false)];
        let mut matmul = MatmulScratch::default();
        isolate_logit_rows(&batch, &mut matmul);
        assert_eq!(matmul.sequence_rows, [3, 1, 1, 3]);
        group_rows_by_sequence(&batch, &mut matmul);
        assert_eq!(matmul.sequence_rows, [4, 1, 3]);
    }
}
