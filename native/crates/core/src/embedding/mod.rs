//! Embedding models: a transformer run as an encoder ([`crate::models::Model::encode`]), then
//! the sentence-transformers modules of its folder ([`sentence_transformers`]): pooling,
//! dense layers, normalization. EmbeddingGemma is Gemma 3 with bidirectional attention (its
//! `config.json` says `use_bidirectional_attention`), mean pooling and two dense layers;
//! Qwen3-Embedding is Qwen 3, causal, pooled at its last token. No KV cache: each batch is
//! one pass.

pub mod sentence_transformers;

use std::path::Path;

use mistralrs_common::ThreadPool;

use crate::hf_config::HfConfig;
use crate::model_config::ModelConfig;
use crate::model_error::{ModelError, Result};
use crate::models::{load_hf, ForwardScratch, Model};
use crate::weights_dtype::WeightDtype;
pub use sentence_transformers::{Pooling, PoolingMode, SentenceTransformerHead};

pub struct Embedder {
    model: Box<dyn Model>,
    head: SentenceTransformerHead,
    bidirectional: bool,
    scratch: ForwardScratch,
    hidden: Vec<f32>,
    weight_bytes: usize,
}

impl Embedder {
    /// A sentence-transformers folder: `config.json` and safetensors for the transformer,
    /// `modules.json` for what follows it.
    pub fn load(dir: &Path, architecture: Option<&str>, dtype: WeightDtype) -> Result<Embedder> {
        if !dir.join("modules.json").is_file() {
            return Err(ModelError::Unsupported(format!(
                "{}: no modules.json: an embedding model is a sentence-transformers folder, whose modules.json says how token states are pooled",
                dir.display()
            )));
        }
        let config = HfConfig::read(dir)?;
        let bidirectional = config
            .bool_key("use_bidirectional_attention")?
            .unwrap_or(false);
        let (model, weight_bytes) = load_hf(dir, architecture, dtype)?;
        if !model.encodes() {
            return Err(ModelError::Unsupported(format!(
                "{}: architecture `{}` does not run as an embedding model",
                dir.display(),
                model.config().architecture
            )));
        }
        let head = SentenceTransformerHead::read(dir, model.config().hidden_size)?;
        Ok(Embedder {
            model,
            head,
            bidirectional,
            scratch: ForwardScratch::default(),
            hidden: Vec::new(),
            weight_bytes,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    pub fn head(&self) -> &SentenceTransformerHead {
        &self.head
    }

    pub fn bidirectional(&self) -> bool {
        self.bidirectional
    }

    /// The width of the embeddings.
    pub fn dimensions(&self) -> usize {
        self.head.dimensions(self.config().hidden_size)
    }

    /// Tokens an input may hold: the sentence-transformers `max_seq_length`, within the
    /// model's context.
    pub fn max_tokens(&self) -> usize {
        let context = self.config().context_length;
        self.head.max_seq_length.map_or(context, |m| m.min(context))
    }

    /// Bytes the model's matrices take as stored.
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// The final token states of each input (`[len, hidden]` each), before pooling.
    pub fn hidden_states(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        self.encode(batch)?;
        let d = self.config().hidden_size;
        let mut t0 = 0;
        Ok(batch
            .iter()
            .map(|s| {
                let rows = self.hidden[t0 * d..(t0 + s.len()) * d].to_vec();
                t0 += s.len();
                rows
            })
            .collect())
    }

    /// One embedding per input, all in one pass.
    pub fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        self.encode(batch)?;
        let d = self.config().hidden_size;
        let mut t0 = 0;
        let out = batch
            .iter()
            .map(|s| {
                let states = &self.hidden[t0 * d..(t0 + s.len()) * d];
                t0 += s.len();
                self.head.apply(states, d)
            })
            .collect::<Vec<_>>();
        if let Some(i) = out.iter().position(|v| v.iter().any(|x| !x.is_finite())) {
            return Err(ModelError::InvalidInput(format!(
                "the embedding of input {i} is not finite: the model's weights or activations overflow"
            )));
        }
        Ok(out)
    }

    fn encode(&mut self, batch: &[&[u32]]) -> Result<()> {
        let max = self.max_tokens();
        if let Some((i, s)) = batch.iter().enumerate().find(|(_, s)| s.len() > max) {
            return Err(ModelError::InvalidInput(format!(
                "input {i} has {} tokens, more than the {max} this embedding model takes",
                s.len()
            )));
        }
        self.model.encode(
            ThreadPool::global(),
            batch,
            self.bidirectional,
            &mut self.scratch,
            &mut self.hidden,
        )
    }
}
