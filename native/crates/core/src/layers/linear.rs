//! `Linear`: a weight matrix in any supported block format, used in place from the mapped
//! model file (or owned, for converted, quantized-at-load or repacked weights).

use std::sync::Arc;

use mistralrs_common::{selected_isa, ThreadPool};
use mistralrs_quant::formats::{q4_0, q4_k};
use mistralrs_quant::gguf::FileBytes;
use mistralrs_quant::matmul::{matmul, Layout, MatmulScratch, QMatrix};
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

/// `y = W·x` with `W` `[out_features, in_features]` (rows in `ty`).
#[derive(Clone)]
pub struct Linear {
    ty: GgmlType,
    out_features: usize,
    in_features: usize,
    bytes: WeightBytes,
    layout: Layout,
}

impl Linear {
    /// Checks the geometry once so that `forward` cannot fail on it. Q4_0 and Q4_K matrices of
    /// a multiple of 8 rows are interleaved here, as llama.cpp repacks them at load on x86:
    /// its kernels' orders of summation for them are only fast on that layout (one stream of
    /// memory per 8 rows). The file's pages of the original are given back.
    pub fn new(
        ty: GgmlType,
        out_features: usize,
        in_features: usize,
        bytes: WeightBytes,
    ) -> Result<Linear> {
        QMatrix::new(ty, out_features, in_features, bytes.as_slice())?;
        let interleave = match ty {
            GgmlType::Q4_0 => Some((
                Layout::Q4_0x8,
                q4_0::repack_x8 as fn(usize, usize, &[u8]) -> Vec<u8>,
            )),
            GgmlType::Q4_K => Some((
                Layout::Q4Kx8,
                q4_k::repack_x8 as fn(usize, usize, &[u8]) -> Vec<u8>,
            )),
            _ => None,
        };
        if let (Some((layout, repack)), true) = (interleave, out_features.is_multiple_of(8)) {
            let repacked = repack(out_features, in_features, bytes.as_slice());
            if let WeightBytes::Mapped { file, offset, len } = &bytes {
                file.release_pages(*offset..*offset + *len);
            }
            return Ok(Linear {
                ty,
                out_features,
                in_features,
                bytes: WeightBytes::Owned(Arc::new(repacked)),
                layout,
            });
        }
        Ok(Linear {
            ty,
            out_features,
            in_features,
            bytes,
            layout: Layout::Rows,
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
        let (rows, cols, bytes) = (self.out_features, self.in_features, self.bytes.as_slice());
        // Validated in `new`; the bytes never change.
        QMatrix::with_layout(self.layout, self.ty, rows, cols, bytes)
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
