//! Token embeddings: rows of a (usually quantized) `[vocab, dim]` table, dequantized on lookup.

use mistralrs_quant::formats::dequantize;
use mistralrs_quant::{GgmlType, QuantError, Result};

use super::linear::WeightBytes;

#[derive(Clone)]
pub struct Embedding {
    ty: GgmlType,
    vocab: usize,
    dim: usize,
    row_bytes: usize,
    bytes: WeightBytes,
}

impl Embedding {
    pub fn new(ty: GgmlType, vocab: usize, dim: usize, bytes: WeightBytes) -> Result<Embedding> {
        let row_bytes = ty.bytes_for(dim as u64).ok_or_else(|| {
            QuantError::invalid(format!("embedding rows of {dim} are not whole {ty} blocks"))
        })? as usize;
        if row_bytes.checked_mul(vocab) != Some(bytes.as_slice().len()) {
            return Err(QuantError::invalid(format!(
                "a {vocab}x{dim} {ty} embedding has the wrong size"
            )));
        }
        Ok(Embedding {
            ty,
            vocab,
            dim,
            row_bytes,
            bytes,
        })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    pub fn bytes(&self) -> &WeightBytes {
        &self.bytes
    }

    /// Writes the rows of `tokens` into `out` (`[tokens.len(), dim]`), each times `scale`.
    pub fn lookup(&self, tokens: &[u32], scale: f32, out: &mut [f32]) -> Result<()> {
        for (&t, row) in tokens.iter().zip(out.chunks_exact_mut(self.dim)) {
            let t = t as usize;
            if t >= self.vocab {
                return Err(QuantError::invalid(format!(
                    "token id {t} is past the vocabulary of {}",
                    self.vocab
                )));
            }
            let src = &self.bytes.as_slice()[t * self.row_bytes..(t + 1) * self.row_bytes];
            dequantize(self.ty, src, row)?;
            if scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= scale);
            }
        }
        Ok(())
    }
}
