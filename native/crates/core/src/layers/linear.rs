//! `Linear`: a weight matrix in any supported block format, used in place from the mapped
//! model file (or owned, for converted or quantized-at-load weights).

use std::sync::Arc;

use mistralrs_common::{selected_isa, ThreadPool};
use mistralrs_quant::gguf::FileBytes;
use mistralrs_quant::matmul::{matmul, MatmulScratch, QMatrix};
use mistralrs_quant::{GgmlType, Result};

/// Where a tensor's bytes live.
#[derive(Clone)]
pub enum WeightBytes {
    /// A range of a mapped file, kept alive by the `Arc`.
    Mapped {
        file: Arc<FileBytes>,
        offset: usize,
        len: usize,
    },
    Owned(Arc<Vec<u8>>),
}

impl WeightBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            WeightBytes::Mapped { file, offset, len } => &file.as_slice()[*offset..*offset + *len],
            WeightBytes::Owned(v) => v,
        }
    }
}

/// Adds `bias` to every row of `x` (`[n, bias.len()]`).
pub fn add_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
    }
}

/// `y = W·x` with `W` `[out_features, in_features]` (row-major, rows in `ty`).
#[derive(Clone)]
pub struct Linear {
    ty: GgmlType,
    out_features: usize,
    in_features: usize,
    bytes: WeightBytes,
}

impl Linear {
    /// Checks the geometry once so that `forward` cannot fail on it.
    pub fn new(
        ty: GgmlType,
        out_features: usize,
        in_features: usize,
        bytes: WeightBytes,
    ) -> Result<Linear> {
        QMatrix::new(ty, out_features, in_features, bytes.as_slice())?;
        Ok(Linear {
            ty,
            out_features,
            in_features,
            bytes,
        })
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    pub fn out_features(&self) -> usize {
        self.out_features
    }
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    pub fn matrix(&self) -> QMatrix<'_> {
        // Validated in `new`; the bytes never change.
        QMatrix::new(
            self.ty,
            self.out_features,
            self.in_features,
            self.bytes.as_slice(),
        )
        .expect("Linear geometry was validated at construction")
    }

    /// `y = x·Wᵀ` for every row of `x` (`[n, in_features]` → `[n, out_features]`).
    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        y: &mut [f32],
        scratch: &mut MatmulScratch,
    ) -> Result<()> {
        matmul(pool, selected_isa(), &self.matrix(), x, y, scratch)
    }
}
