//! Named tensors of a GGUF file as layers: `Linear`, `Embedding`, f32 vectors.

use std::sync::Arc;

use mistralrs_quant::formats::dequantize;
use mistralrs_quant::gguf::{GgufFile, GgufTensorInfo};

use crate::layers::{Embedding, Linear, WeightBytes};
use crate::model_error::{ModelError, Result};

pub struct GgufWeights {
    file: Arc<GgufFile>,
}

impl GgufWeights {
    pub fn new(file: Arc<GgufFile>) -> GgufWeights {
        GgufWeights { file }
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    fn info(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.file.tensor(name).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "{}: missing tensor `{name}`",
                self.file.path().display()
            ))
        })
    }

    fn bytes(&self, info: &GgufTensorInfo) -> WeightBytes {
        WeightBytes::Mapped {
            file: Arc::clone(self.file.file_bytes()),
            offset: (self.file.data_offset() + info.offset) as usize,
            len: info.size_bytes as usize,
        }
    }

    /// Checks a tensor's shape (ggml order: `[in, out]` for a matrix).
    fn expect_dims(&self, info: &GgufTensorInfo, dims: &[usize]) -> Result<()> {
        let got: Vec<usize> = info.dims.iter().map(|&d| d as usize).collect();
        if got != dims {
            return Err(ModelError::Unsupported(format!(
                "{}: tensor `{}` has shape {got:?}, expected {dims:?}",
                self.file.path().display(),
                info.name
            )));
        }
        Ok(())
    }

    /// A `[out, in]` linear layer (stored `[in, out]` in ggml order).
    pub fn linear(&self, name: &str, in_features: usize, out_features: usize) -> Result<Linear> {
        let info = self.info(name)?;
        self.expect_dims(info, &[in_features, out_features])?;
        Ok(Linear::new(
            info.ty,
            out_features,
            in_features,
            self.bytes(info),
        )?)
    }

    pub fn embedding(&self, name: &str, dim: usize, vocab: usize) -> Result<Embedding> {
        let info = self.info(name)?;
        self.expect_dims(info, &[dim, vocab])?;
        Ok(Embedding::new(info.ty, vocab, dim, self.bytes(info))?)
    }

    /// A vector (norm weights, biases) dequantized to f32.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        self.expect_dims(info, &[len])?;
        let mut out = vec![0f32; len];
        dequantize(info.ty, self.file.tensor_data(info), &mut out)?;
        Ok(out)
    }

    pub fn vector_opt(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }
}
