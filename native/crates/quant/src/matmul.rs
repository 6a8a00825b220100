//! Quantized matrix products, following ggml's recipe: the activation rows are converted once
//! to the weight type's `vec_dot_type` (Q8_0, Q8_1, Q8_K or plain f32), then every output is
//! an integer dot product over one contiguous weight row. Output rows are split across the
//! thread pool, so for a single token the weights stream through memory exactly once.

use std::ops::Range;

use mistralrs_common::{Isa, ParallelCtx, ThreadPool};

use crate::formats::iq4_nl::BlockIq4Nl;
use crate::formats::mxfp4::BlockMxfp4;
use crate::formats::{clamp_isa, table4, type_traits, TypeTraits};
use crate::gemm::{gemm, GemmShape};
use crate::{GgmlType, QuantError, Result};

/// Rows handed to a thread at a time: a multiple of 8 so that the interleaved 8-row layouts
/// split on their groups' boundaries, and small enough to balance two threads.
const ROW_ALIGN: usize = 16;

/// Tokens from which the register-tiled kernels beat one row kernel per token over a chunk of
/// rows kept in cache: they unpack each weight block once into a buffer, which pays off only
/// over several tokens (8960×1536 Q6_K, 2 tokens: 2.8 ms tiled against 1.9 ms by rows). Both
/// give the same bits.
const TILED_MIN_TOKENS: usize = 4;

/// How a matrix's rows are laid out in its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// One row after another, as in a GGUF file.
    Rows,
    /// Q4_0 rows interleaved 8 at a time at load, as llama.cpp does on x86
    /// (see [`crate::formats::q4_0::repack_x8`]).
    Q4_0x8,
    /// Q4_K rows interleaved 8 at a time at load, scales unpacked
    /// (see [`crate::formats::q4_k::repack_x8`]).
    Q4Kx8,
}

/// A weight matrix in one ggml type: `rows` rows of `cols` elements each, in place (usually a
/// slice of an mmap'd GGUF file) or repacked at load.
#[derive(Clone, Copy)]
pub struct QMatrix<'a> {
    layout: Layout,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
    traits: &'static TypeTraits,
}

impl<'a> QMatrix<'a> {
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Result<QMatrix<'a>> {
        let traits = type_traits(ty).ok_or_else(|| QuantError::UnsupportedType {
            name: ty.name().to_string(),
        })?;
        let row_bytes = ty.bytes_for(cols as u64).ok_or_else(|| {
            QuantError::invalid(format!(
                "a row of {cols} elements is not a whole number of {ty} blocks of {}",
                ty.block_size()
            ))
        })? as usize;
        if type_traits(traits.vec_dot_type).is_none() {
            return Err(QuantError::UnsupportedType {
                name: traits.vec_dot_type.to_string(),
            });
        }
        let expected = row_bytes.checked_mul(rows);
        if expected != Some(data.len()) {
            return Err(QuantError::invalid(format!(
                "a {rows}x{cols} {ty} matrix takes {} bytes, got {}",
                expected.map_or("too many".to_string(), |n| n.to_string()),
                data.len()
            )));
        }
        Ok(QMatrix {
            layout: Layout::Rows,
            ty,
            rows,
            cols,
            row_bytes,
            data,
            traits,
        })
    }

    /// A matrix whose bytes are laid out as `layout` says (the interleaved layouts: a multiple
    /// of 8 rows of Q4_0 or Q4_K, as their `repack_x8` writes them).
    pub fn with_layout(
        layout: Layout,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<QMatrix<'a>> {
        let kind = match layout {
            Layout::Rows => return QMatrix::new(ty, rows, cols, data),
            Layout::Q4_0x8 => GgmlType::Q4_0,
            Layout::Q4Kx8 => GgmlType::Q4_K,
        };
        if ty != kind || !rows.is_multiple_of(8) {
            return Err(QuantError::invalid(format!(
                "the {layout:?} layout holds a multiple of 8 rows of {kind}, not {rows} of {ty}"
            )));
        }
        let bytes = match layout {
            Layout::Q4Kx8 => Some(crate::formats::q4_k::x8_bytes(rows, cols)),
            // Interleaving keeps Q4_0's size.
            _ => ty.bytes_for((rows * cols) as u64).map(|b| b as usize),
        };
        if bytes != Some(data.len()) {
            return Err(QuantError::invalid(format!(
                "{rows}x{cols} interleaved {ty} takes {} bytes, got {}",
                bytes.map_or("a whole number of blocks".to_string(), |b| b.to_string()),
                data.len()
            )));
        }
        let row_bytes = ty.bytes_for(cols as u64).ok_or_else(|| {
            QuantError::invalid(format!(
                "{cols} columns is not a whole number of {ty} blocks"
            ))
        })? as usize;
        Ok(QMatrix {
            layout,
            ty,
            rows,
            cols,
            row_bytes,
            data,
            traits: type_traits(ty).ok_or_else(|| QuantError::UnsupportedType {
                name: ty.name().to_string(),
            })?,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// The bytes of `rows` (in the interleaved layouts, whole groups of 8).
    fn row_range(&self, rows: std::ops::Range<usize>) -> &'a [u8] {
        if self.layout == Layout::Rows {
            return &self.data[rows.start * self.row_bytes..rows.end * self.row_bytes];
        }
        let group = self.data.len() / (self.rows / 8).max(1);
        &self.data[rows.start / 8 * group..rows.end.div_ceil(8) * group]
    }
}

/// Scratch memory for the converted activations, kept between calls so a decode step does not
/// allocate.
#[derive(Default)]
pub struct MatmulScratch {
    activation: Vec<u8>,
    /// How many rows of `x` each sequence of the batch owns, in order (empty: one sequence).
    /// Kernels whose order depends on how rows are grouped group them within a sequence, so a
    /// sequence's results never depend on the rest of the batch.
    pub sequence_rows: Vec<usize>,
}

/// A raw output pointer shared by the threads of a region; each writes disjoint rows.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: threads write disjoint indices (their own row ranges) and the region ends before the
// borrow of the output slice does.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    // A method, not a field access, so closures capture the whole (Sync) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y[t, r] = Σ_c w[r, c] · x[t, c]`: `x` is `[n_tokens, cols]`, `y` is `[n_tokens, rows]`,
/// both row-major.
pub fn matmul(
    pool: &ThreadPool,
    isa: Isa,
    w: &QMatrix<'_>,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let n_tokens = check_shapes(w, x, y)?;
    let isa = clamp_isa(isa);
    let act_type = w.traits.vec_dot_type;
    let act_row_bytes = act_type.bytes_for(w.cols as u64).unwrap_or(0) as usize;

    // f32 activations are used as they are; others are converted once per token.
    let activation: &[u8] = if act_type == GgmlType::F32 {
        bytemuck::cast_slice(x)
    } else {
        let quantize = activation_quantizer(act_type)?;
        scratch.activation.resize(n_tokens * act_row_bytes, 0);
        let act = &mut scratch.activation;
        if n_tokens == 1 {
            quantize(x, act);
        } else {
            // Converting a batch of rows is worth a region of its own.
            let act_ptr = SharedBytes(act.as_mut_ptr());
            pool.run(|ctx| {
                for t in ctx.split(n_tokens, 1) {
                    // SAFETY: token rows are disjoint between threads and inside `act`.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            act_ptr.get().add(t * act_row_bytes),
                            act_row_bytes,
                        )
                    };
                    quantize(&x[t * w.cols..(t + 1) * w.cols], dst);
                }
            });
        }
        &scratch.activation
    };

    let groups = if scratch.sequence_rows.iter().sum::<usize>() == n_tokens {
        &scratch.sequence_rows[..]
    } else {
        &[][..]
    };
    let job = RowsJob {
        isa,
        w,
        activation,
        act_row_bytes,
        n_tokens,
        sequence_rows: groups,
        out: OutPtr(y.as_mut_ptr()),
    };
    pool.run(|ctx| job.run(ctx));
    Ok(())
}

/// How activation rows become `act_type`: Q8_0 and Q8_1 by the rule ggml's CPU backend uses
/// at run time (so products match llama.cpp's to the last bit), others by their quantizer.
fn activation_quantizer(act_type: GgmlType) -> Result<crate::formats::QuantizeFn> {
    match act_type {
        GgmlType::Q8_0 => Ok(crate::formats::q8_0::quantize_activation),
        GgmlType::Q8_1 => Ok(crate::formats::q8_1::quantize_activation),
        _ => type_traits(act_type)
            .and_then(|t| t.quantize)
            .ok_or_else(|| QuantError::UnsupportedType {
                name: act_type.to_string(),
            }),
    }
}

/// Converts one activation row to `act_type` as [`matmul`] does.
#[cfg(test)]
pub(crate) fn quantize_activation_row(act_type: GgmlType, x: &[f32], dst: &mut [u8]) -> Result<()> {
    activation_quantizer(act_type)?(x, dst);
    Ok(())
}

/// `y = W·x` for one activation row.
pub fn matvec(
    pool: &ThreadPool,
    isa: Isa,
    w: &QMatrix<'_>,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    if x.len() != w.cols {
        return Err(QuantError::invalid(format!(
            "matvec: the matrix has {} columns but x has {} values",
            w.cols,
            x.len()
        )));
    }
    matmul(pool, isa, w, x, y, scratch)
}

#[derive(Clone, Copy)]
struct SharedBytes(*mut u8);
// SAFETY: as for OutPtr, each thread writes its own disjoint token rows.
unsafe impl Send for SharedBytes {}
unsafe impl Sync for SharedBytes {}

impl SharedBytes {
    fn get(self) -> *mut u8 {
        self.0
    }
}

fn check_shapes(w: &QMatrix<'_>, x: &[f32], y: &[f32]) -> Result<usize> {
    if w.cols == 0 || !x.len().is_multiple_of(w.cols) {
        return Err(QuantError::invalid(format!(
            "matmul: x has {} values, not a whole number of rows of {}",
            x.len(),
            w.cols
        )));
    }
    let n_tokens = x.len() / w.cols;
    if y.len() != n_tokens * w.rows {
        return Err(QuantError::invalid(format!(
            "matmul: y must hold {n_tokens}x{} values, got {}",
            w.rows,
            y.len()
        )));
    }
    Ok(n_tokens)
}

fn vec_dot_rows(ty: GgmlType) -> Option<crate::formats::VecDotRowsFn> {
    match ty {
        GgmlType::Q4_0 => Some(crate::formats::q4_0::vec_dot_rows),
        GgmlType::Q4_1 => Some(crate::formats::q4_1::vec_dot_rows),
        GgmlType::Q5_0 => Some(crate::formats::q5_0::vec_dot_rows),
        GgmlType::Q8_0 => Some(crate::formats::q8_0::vec_dot_rows),
        GgmlType::Q6_K => Some(crate::formats::q6_k::vec_dot_rows),
        _ => None,
    }
}

/// `repacked_orders`' single-row order over a run of rows.
fn repacked_gemv_rows(w: &QMatrix<'_>) -> Option<crate::formats::VecDotRowsFn> {
    match w.ty {
        GgmlType::Q4_K => Some(crate::formats::q4_k::vec_dot_gemv_order_rows),
        GgmlType::MXFP4 => Some(table4::vec_dot_repacked_rows::<BlockMxfp4>),
        GgmlType::IQ4_NL => Some(table4::vec_dot_repacked_rows::<BlockIq4Nl>),
        _ => None,
    }
}

/// Tiles of rows × tokens in the orders of llama.cpp's kernels for its repacked types.
type RepackedTilesFn = unsafe fn(Isa, usize, &[u8], &[u8], bool, *mut f32, usize);

/// For the types llama.cpp repacks at load on x86 (8 rows interleaved), the dot products in
/// the orders of its kernels, so that logits match it to the last bit: one for each group of
/// 4 activation rows of a batch (GEMM), one for single rows and the rest of a batch (GEMV).
/// It repacks every matrix a product uses, a tied output head's copy of the embeddings too.
fn repacked_orders(w: &QMatrix<'_>) -> Option<RepackedTilesFn> {
    if !w.rows.is_multiple_of(8) {
        return None;
    }
    match w.ty {
        GgmlType::Q4_K => Some(crate::formats::q4_k::repacked_order_tiles),
        GgmlType::MXFP4 => Some(table4::repacked_order_tiles::<BlockMxfp4>),
        GgmlType::IQ4_NL => Some(table4::repacked_order_tiles::<BlockIq4Nl>),
        _ => None,
    }
}

/// One product's inputs, shared by the threads: the weights, the converted activation rows
/// (`act_row_bytes` each), how the tokens group into sequences, and where outputs go.
struct RowsJob<'a, 'w> {
    isa: Isa,
    w: &'a QMatrix<'w>,
    activation: &'a [u8],
    act_row_bytes: usize,
    n_tokens: usize,
    /// The sequences' token counts (summing to `n_tokens`), or empty for one sequence.
    sequence_rows: &'a [usize],
    out: OutPtr,
}

impl RowsJob<'_, '_> {
    /// One thread's share: a block of output rows, all tokens, through the fastest path the
    /// weights' layout and type have.
    fn run(&self, ctx: &ParallelCtx) {
        let (w, rows) = (self.w, ctx.split(self.w.rows, ROW_ALIGN));
        if w.layout == Layout::Q4_0x8 {
            return self.q4_0_interleaved(rows);
        }
        let repacked = match w.layout {
            Layout::Q4Kx8 => Some(crate::formats::q4_k::x8_matmul as RepackedTilesFn),
            _ => repacked_orders(w),
        };
        // A decode step: the thread's whole share in one call (for repacked types, in the
        // order of llama.cpp's single-row kernel).
        let decode_rows = match (w.layout, repacked) {
            (Layout::Rows, None) => vec_dot_rows(w.ty),
            (Layout::Rows, Some(_)) => repacked_gemv_rows(w),
            // Interleaved layouts go through their own kernels below, single tokens too.
            _ => None,
        };
        if let (Some(decode_rows), 1) = (decode_rows, self.n_tokens) {
            let outputs = self.outputs(0, rows.clone());
            return decode_rows(self.isa, w.cols, w.row_range(rows), self.act(0), outputs);
        }
        if let Some(tiles) = repacked {
            return self.repacked_tiles(tiles, rows);
        }
        if self.n_tokens >= TILED_MIN_TOKENS && self.tiled(rows.clone()) {
            return;
        }
        self.chunked(rows);
    }

    fn act(&self, t: usize) -> &[u8] {
        &self.activation[t * self.act_row_bytes..(t + 1) * self.act_row_bytes]
    }

    /// F32 weights: llama.cpp's product of two or more tokens of a sequence is tinyBLAS's
    /// order, a single token's `ggml_vec_dot_f32` (the type's vec_dot). tinyBLAS tiles the
    /// matrix by four rows and declines others (Qwen 3 Next's one-row shared-expert gate),
    /// which then take `ggml_vec_dot_f32` too.
    fn multi_token_f32(&self, t: usize) -> bool {
        if self.w.ty != GgmlType::F32 || !self.w.rows.is_multiple_of(4) {
            return false;
        }
        let mut first = 0;
        self.sequences().iter().any(|&len| {
            let mine = (first..first + len).contains(&t);
            first += len;
            mine && len > 1
        })
    }

    /// The sequences' token counts: one sequence of every token when none were given.
    fn sequences(&self) -> &[usize] {
        match self.sequence_rows {
            [] => std::slice::from_ref(&self.n_tokens),
            given => given,
        }
    }

    /// Token t's outputs for `rows`, which belong to this thread.
    #[allow(clippy::mut_from_ref)] // disjoint per thread: see the SAFETY note
    fn outputs(&self, t: usize, rows: Range<usize>) -> &mut [f32] {
        // SAFETY: row r belongs to this thread alone and t*rows + r < y.len() for every row of
        // the range (checked by check_shapes).
        unsafe {
            std::slice::from_raw_parts_mut(
                self.out.get().add(t * self.w.rows + rows.start),
                rows.len(),
            )
        }
    }

    /// Whole groups of 8 rows (the split is in multiples of 16, the matrix of 8).
    fn q4_0_interleaved(&self, rows: Range<usize>) {
        let w = self.w;
        // SAFETY: the thread's rows of every token are its own, within y (check_shapes).
        unsafe {
            crate::formats::q4_0::x8_matmul(
                self.isa,
                w.cols,
                w.row_range(rows.clone()),
                self.activation,
                self.out.get().add(rows.start),
                w.rows,
            )
        };
    }

    /// The register-tiled prompt kernels, where the type has them.
    fn tiled(&self, rows: Range<usize>) -> bool {
        let w = self.w;
        let shape = GemmShape {
            cols: w.cols,
            n_tokens: self.n_tokens,
            out_stride: w.rows,
        };
        // SAFETY: the thread's rows of every token are its own, and within y (check_shapes).
        unsafe {
            gemm(
                w.ty,
                self.isa,
                &shape,
                w.row_range(rows.clone()),
                self.activation,
                self.out.get().add(rows.start),
            )
        }
    }

    /// The thread's rows in one call per run of tokens: the kernels go 8 rows at a time, each
    /// unpacked once for all the tokens. Tokens in a full group of 4 of their own sequence take
    /// llama.cpp's GEMM order, the rest its GEMV order; neighbouring GEMV runs (single-row
    /// groups, as verify steps send them) go in one call, so the weights stream once.
    fn repacked_tiles(&self, tiles: RepackedTilesFn, rows: Range<usize>) {
        let (w, bytes) = (self.w, self.act_row_bytes);
        let mut runs: Vec<(Range<usize>, bool)> = Vec::new();
        let mut first = 0;
        for &len in self.sequences() {
            let grouped = len - len % 4;
            for (tokens, gemm_order) in [
                (first..first + grouped, true),
                (first + grouped..first + len, false),
            ] {
                if tokens.is_empty() {
                    continue;
                }
                match runs.last_mut() {
                    Some((last, false)) if !gemm_order && last.end == tokens.start => {
                        last.end = tokens.end
                    }
                    _ => runs.push((tokens, gemm_order)),
                }
            }
            first += len;
        }
        for (tokens, gemm_order) in runs {
            let acts = &self.activation[tokens.start * bytes..tokens.end * bytes];
            // SAFETY: the thread's rows of these tokens are its own, within y.
            unsafe {
                tiles(
                    self.isa,
                    w.cols,
                    w.row_range(rows.clone()),
                    acts,
                    gemm_order,
                    self.out.get().add(tokens.start * w.rows + rows.start),
                    w.rows,
                )
            };
        }
    }

    /// Rows in chunks, so that a chunk of weights stays in cache while every token's
    /// activation passes over it; one output at a time where the type has no row kernel.
    fn chunked(&self, rows: Range<usize>) {
        let w = self.w;
        let many_rows = vec_dot_rows(w.ty);
        let mut chunk_start = rows.start;
        while chunk_start < rows.end {
            let chunk = chunk_start..(chunk_start + ROW_ALIGN).min(rows.end);
            for t in 0..self.n_tokens {
                let out = self.outputs(t, chunk.clone());
                let act = self.act(t);
                if self.multi_token_f32(t) {
                    for (o, r) in out.iter_mut().zip(chunk.clone()) {
                        let row = w.row(r);
                        *o = crate::formats::f32::dot_tinyblas_order(self.isa, w.cols, row, act)
                            .unwrap_or_else(|| (w.traits.vec_dot)(self.isa, w.cols, row, act));
                    }
                    continue;
                }
                match many_rows {
                    Some(many_rows) => {
                        many_rows(self.isa, w.cols, w.row_range(chunk.clone()), act, out)
                    }
                    None => {
                        for (o, r) in out.iter_mut().zip(chunk.clone()) {
                            *o = (w.traits.vec_dot)(self.isa, w.cols, w.row(r), act);
                        }
                    }
                }
            }
            chunk_start = chunk.end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{dequantize, quantize, testing::Rng};

    fn reference(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
        let n_tokens = x.len() / cols;
        let mut y = vec![0f32; n_tokens * rows];
        for t in 0..n_tokens {
            for r in 0..rows {
                let mut acc = 0f64;
                for c in 0..cols {
                    acc += w[r * cols + c] as f64 * x[t * cols + c] as f64;
                }
                y[t * rows + r] = acc as f32;
            }
        }
        y
    }

    /// Every supported weight type, on every ISA tier, against dequantize-then-f64: the only
    /// error left is the activation's own quantization (8 bits), bounded relative to Σ|w·x|.
    #[test]
    fn matmul_matches_dequantized_reference_on_every_type_and_tier() {
        let pool = ThreadPool::new(2);
        let mut rng = Rng::new(7);
        let (rows, cols) = (37, 512);
        for ty in GgmlType::all().filter(|t| t.is_supported() && *t != GgmlType::Q8_K) {
            if type_traits(ty).and_then(|t| t.quantize).is_none() {
                continue;
            }
            let source = rng.f32_vec(rows * cols, 1.0);
            let mut bytes = vec![0u8; ty.bytes_for((rows * cols) as u64).unwrap() as usize];
            quantize(ty, &source, &mut bytes).unwrap();
            let mut w = vec![0f32; rows * cols];
            dequantize(ty, &bytes, &mut w).unwrap();
            let m = QMatrix::new(ty, rows, cols, &bytes).unwrap();
            for n_tokens in [1usize, 3] {
                let x = rng.f32_vec(n_tokens * cols, 1.0);
                let expected = reference(&w, rows, cols, &x);
                let magnitude: f32 =
                    w.iter().take(cols).map(|v| v.abs()).sum::<f32>() / cols as f32;
                for isa in Isa::available() {
                    let mut y = vec![0f32; n_tokens * rows];
                    matmul(&pool, isa, &m, &x, &mut y, &mut MatmulScratch::default()).unwrap();
                    for (i, (a, b)) in y.iter().zip(&expected).enumerate() {
                        // Activation error per element <= amax/254 (8-bit): summed over cols.
                        let tol = 1e-4 + magnitude * cols as f32 / 254.0;
                        assert!(
                            (a - b).abs() <= tol,
                            "{ty} {isa} tokens={n_tokens} output {i}: {a} vs {b} (tol {tol})"
                        );
                    }
                }
            }
        }
    }

    /// The one-call run of rows (decode steps) gives exactly one `vec_dot` per row, on every
    /// tier, for every type that has it.
    #[test]
    fn runs_of_rows_equal_single_row_products_bit_for_bit() {
        let mut rng = Rng::new(11);
        let (rows, cols) = (45, 768);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q6_K,
            GgmlType::Q4_K,
        ] {
            let traits = type_traits(ty).unwrap();
            // Q4_K's runs take the order of llama.cpp's kernel on its repacked rows.
            let (many_rows, one_row): (crate::formats::VecDotRowsFn, crate::formats::VecDotFn) =
                match ty {
                    GgmlType::Q4_K => (
                        crate::formats::q4_k::vec_dot_gemv_order_rows,
                        crate::formats::q4_k::vec_dot_gemv_order,
                    ),
                    _ => (vec_dot_rows(ty).unwrap(), traits.vec_dot),
                };
            let mut bytes = vec![0u8; ty.bytes_for((rows * cols) as u64).unwrap() as usize];
            quantize(ty, &rng.f32_vec(rows * cols, 1.0), &mut bytes).unwrap();
            let act_type = traits.vec_dot_type;
            let mut act = vec![0u8; act_type.bytes_for(cols as u64).unwrap() as usize];
            activation_quantizer(act_type).unwrap()(&rng.f32_vec(cols, 2.0), &mut act);
            let m = QMatrix::new(ty, rows, cols, &bytes).unwrap();
            for isa in Isa::available() {
                let mut got = vec![0f32; rows];
                many_rows(isa, cols, &bytes, &act, &mut got);
                for (r, g) in got.iter().enumerate() {
                    let want = one_row(isa, cols, m.row(r), &act);
                    assert_eq!(g.to_bits(), want.to_bits(), "{ty} {isa} row {r}");
                }
            }
        }
    }

    /// F32 products of several tokens of a sequence take tinyBLAS's order when the matrix's
    /// rows are a multiple of 4, as llama.cpp's tinyBLAS accepts them; `ggml_vec_dot_f32`'s
    /// otherwise (and for one token).
    #[test]
    fn f32_products_of_several_tokens_follow_tinyblas_only_on_whole_fours_of_rows() {
        let pool = ThreadPool::new(2);
        let mut rng = Rng::new(5);
        let cols = 264; // a whole 8-lane step, and a 32-element tail for vec_dot
        for (isa, rows) in Isa::available()
            .into_iter()
            .flat_map(|i| [(i, 1usize), (i, 6), (i, 8)])
        {
            let w = rng.f32_vec(rows * cols, 1.0);
            let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            let m = QMatrix::new(GgmlType::F32, rows, cols, &bytes).unwrap();
            for n_tokens in [1usize, 3] {
                let x = rng.f32_vec(n_tokens * cols, 1.0);
                let mut y = vec![0f32; n_tokens * rows];
                matmul(&pool, isa, &m, &x, &mut y, &mut MatmulScratch::default()).unwrap();
                for t in 0..n_tokens {
                    let act: Vec<u8> = x[t * cols..(t + 1) * cols]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    for r in 0..rows {
                        let tinyblas = n_tokens > 1 && rows.is_multiple_of(4);
                        let want = match crate::formats::f32::dot_tinyblas_order(
                            isa,
                            cols,
                            m.row(r),
                            &act,
                        ) {
                            Some(d) if tinyblas => d,
                            _ => (m.traits.vec_dot)(isa, cols, m.row(r), &act),
                        };
                        let got = y[t * rows + r];
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{isa}: {rows} rows, {n_tokens} tokens, row {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn interleaved_layouts_refuse_other_types_row_counts_and_lengths() {
        let bytes = vec![0u8; 8 * 18];
        assert!(QMatrix::with_layout(Layout::Q4_0x8, GgmlType::Q4_0, 8, 32, &bytes).is_ok());
        assert!(QMatrix::with_layout(Layout::Q4_0x8, GgmlType::Q4_0, 8, 32, &bytes[1..]).is_err());
        assert!(QMatrix::with_layout(Layout::Q4_0x8, GgmlType::Q8_0, 8, 32, &bytes).is_err());
        assert!(QMatrix::with_layout(Layout::Q4_0x8, GgmlType::Q4_0, 4, 64, &bytes).is_err());
        assert!(QMatrix::with_layout(Layout::Q4Kx8, GgmlType::Q4_K, 8, 256, &bytes).is_err());
        let x8 = vec![0u8; crate::formats::q4_k::x8_bytes(8, 256)];
        assert!(QMatrix::with_layout(Layout::Q4Kx8, GgmlType::Q4_K, 8, 256, &x8).is_ok());
    }

    #[test]
    fn shapes_that_disagree_are_errors() {
        let bytes = vec![0u8; 2 * 34];
        assert!(QMatrix::new(GgmlType::Q8_0, 2, 32, &bytes[..67]).is_err());
        assert!(QMatrix::new(GgmlType::Q8_0, 2, 33, &bytes).is_err());
        assert!(QMatrix::new(GgmlType::IQ2_XXS, 1, 256, &bytes).is_err());
        let m = QMatrix::new(GgmlType::Q8_0, 2, 32, &bytes).unwrap();
        let pool = ThreadPool::new(1);
        let mut s = MatmulScratch::default();
        let mut y = vec![0f32; 2];
        assert!(matvec(&pool, Isa::Scalar, &m, &[0.0; 31], &mut y, &mut s).is_err());
        assert!(matmul(&pool, Isa::Scalar, &m, &[0.0; 64], &mut y, &mut s).is_err());
        let mut y = vec![0f32; 4];
        assert!(matmul(&pool, Isa::Scalar, &m, &[0.0; 64], &mut y, &mut s).is_ok());
    }
}
