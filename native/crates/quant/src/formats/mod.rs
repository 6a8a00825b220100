//! Block formats, one module per ggml type id (`q4_k.rs` is `Q4_K`).
//!
//! Each module defines its block layout (a `#[repr(C)]` struct of byte fields, so any byte
//! slice can be viewed as blocks whatever its alignment), and one [`TypeTraits`] value:
//! dequantization, quantization where the type is a target, the activation type its dot
//! product pairs with, and that dot product with a scalar reference and SIMD paths chosen by
//! [`Isa`].

use mistralrs_common::{cpu_features, Isa};

use crate::{GgmlType, QuantError, Result};

/// A run of consecutive weight rows against one activation row, with the tier's per-row
/// kernel `$row` (a `#[target_feature]` function of the same module): compiled with the same
/// features, the kernel inlines into the loop, so a row costs no call (decode steps of small
/// models multiply ~200,000 rows of a few hundred bytes each per token).
macro_rules! rows_kernel {
    ($name:ident, $row:ident, $w:ty, $a:ty) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) fn $name(w: &[$w], blocks_per_row: usize, a: &[$a], out: &mut [f32]) {
            for (o, row) in out.iter_mut().zip(w.chunks_exact(blocks_per_row)) {
                // SAFETY: this function has the kernel's features (some kernels are declared
                // `unsafe` for that reason alone).
                #[allow(unused_unsafe)]
                let value = unsafe { $row(row, a) };
                *o = value;
            }
        }
    };
}

pub mod bf16;
pub mod f16;
pub mod f32;
pub mod iq4_nl;
pub mod iq4_xs;
pub(crate) mod k_quant_search;
pub mod mxfp4;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;
pub(crate) mod table4;
pub(crate) mod ternary;
#[cfg(test)]
pub(crate) mod testing;
pub mod tq1_0;
pub mod tq2_0;

/// Dequantizes whole blocks: `src.len()` is a multiple of the type size and `dst.len()` the
/// matching number of elements.
pub type DequantizeFn = fn(src: &[u8], dst: &mut [f32]);
/// Quantizes `src` (a multiple of the block size) into whole blocks.
pub type QuantizeFn = fn(src: &[f32], dst: &mut [u8]);
/// Dot product of `n` elements: one weight row in this type and one activation row already
/// converted to `vec_dot_type`. Both slices hold exactly `n` elements' worth of blocks.
pub type VecDotFn = fn(isa: Isa, n: usize, weights: &[u8], activation: &[u8]) -> f32;

/// What a type can do, in the manner of ggml's `type_traits`.
pub struct TypeTraits {
    pub ty: GgmlType,
    pub dequantize: DequantizeFn,
    /// `None` for types that are only read, never produced.
    pub quantize: Option<QuantizeFn>,
    /// The format the activation row is converted to before `vec_dot`.
    pub vec_dot_type: GgmlType,
    pub vec_dot: VecDotFn,
}

const ALL: &[&TypeTraits] = &[
    &f32::TRAITS,
    &f16::TRAITS,
    &bf16::TRAITS,
    &q4_0::TRAITS,
    &q4_1::TRAITS,
    &q5_0::TRAITS,
    &q5_1::TRAITS,
    &q8_0::TRAITS,
    &q8_1::TRAITS,
    &q2_k::TRAITS,
    &q3_k::TRAITS,
    &q4_k::TRAITS,
    &q5_k::TRAITS,
    &q6_k::TRAITS,
    &q8_k::TRAITS,
    &iq4_nl::TRAITS,
    &iq4_xs::TRAITS,
    &mxfp4::TRAITS,
    &tq1_0::TRAITS,
    &tq2_0::TRAITS,
];

/// The traits of a supported type; `None` for types this crate cannot compute with.
pub fn type_traits(ty: GgmlType) -> Option<&'static TypeTraits> {
    ALL.iter().copied().find(|t| t.ty == ty)
}

fn traits_or_error(ty: GgmlType) -> Result<&'static TypeTraits> {
    type_traits(ty).ok_or_else(|| QuantError::UnsupportedType {
        name: ty.name().to_string(),
    })
}

/// Checks that `bytes` holds exactly `n_elements` values of `ty`.
pub fn check_len(ty: GgmlType, n_elements: usize, bytes: usize) -> Result<()> {
    match ty.bytes_for(n_elements as u64) {
        Some(expected) if expected == bytes as u64 => Ok(()),
        Some(expected) => Err(QuantError::invalid(format!(
            "{n_elements} elements of {ty} take {expected} bytes, got {bytes}"
        ))),
        None => Err(QuantError::invalid(format!(
            "{n_elements} elements is not a whole number of {ty} blocks of {}",
            ty.block_size()
        ))),
    }
}

/// Dequantizes `src` (whole blocks of `ty`) into `dst`.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let traits = traits_or_error(ty)?;
    check_len(ty, dst.len(), src.len())?;
    (traits.dequantize)(src, dst);
    Ok(())
}

/// Quantizes `src` into `dst` (whole blocks of `ty`).
pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    let traits = traits_or_error(ty)?;
    let quantize = traits
        .quantize
        .ok_or_else(|| QuantError::invalid(format!("quantizing into {ty} is not supported")))?;
    check_len(ty, src.len(), dst.len())?;
    quantize(src, dst);
    Ok(())
}

/// Kernels over a run of rows against one activation row, for the types that have one;
/// bit-identical to one `vec_dot` per row.
pub type VecDotRowsFn = fn(Isa, usize, &[u8], &[u8], &mut [f32]);

pub(crate) type VecDotRowsSimd<W, A> = unsafe fn(&[W], usize, &[A], &mut [f32]);

/// The shared entry of the many-row dot products: checks the lengths once, then runs `simd`
/// on the AVX2 tier and above (the VNNI tier's per-row results equal AVX2's), else one
/// `traits.vec_dot` per row. `out` gets one value per row of `weights`.
pub(crate) fn vec_dot_rows_with<W: bytemuck::Pod, A: bytemuck::Pod>(
    isa: Isa,
    n: usize,
    weights: &[u8],
    activation: &[u8],
    out: &mut [f32],
    traits: &TypeTraits,
    simd: Option<VecDotRowsSimd<W, A>>,
) {
    let row_bytes = traits.ty.bytes_for(n as u64).unwrap_or(0) as usize;
    let act_bytes = traits.vec_dot_type.bytes_for(n as u64).unwrap_or(0) as usize;
    assert!(
        row_bytes > 0 && weights.len() == out.len() * row_bytes && activation.len() == act_bytes,
        "{} vec_dot_rows: n = {n}, {} rows in {} weight bytes, {} activation bytes",
        traits.ty,
        out.len(),
        weights.len(),
        activation.len()
    );
    if let Some(simd) = simd.filter(|_| clamp_isa(isa) >= Isa::Avx2) {
        let per_row = row_bytes / std::mem::size_of::<W>();
        // SAFETY: clamp_isa returned at least the AVX2 tier, so the CPU has AVX2, FMA and F16C.
        unsafe { simd(as_blocks(weights), per_row, as_blocks(activation), out) };
        return;
    }
    for (o, row) in out.iter_mut().zip(weights.chunks_exact(row_bytes)) {
        *o = (traits.vec_dot)(isa, n, row, activation);
    }
}

/// Lowers `isa` to what this CPU can run, so a caller can never reach an illegal instruction.
#[inline]
pub fn clamp_isa(isa: Isa) -> Isa {
    isa.min(cpu_features().best_isa())
}

/// Reads a little-endian IEEE half.
#[inline(always)]
pub fn f16_le(bytes: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bytes).to_f32()
}

/// Writes a little-endian IEEE half (round to nearest even, as ggml's `GGML_FP32_TO_FP16`).
#[inline(always)]
pub fn f16_to_le(value: f32) -> [u8; 2] {
    half::f16::from_f32(value).to_le_bytes()
}

/// Views a byte slice as blocks. Block structs hold only byte arrays (alignment 1), so this
/// cannot fail on alignment; a length that is not a whole number of blocks panics.
#[inline(always)]
pub fn as_blocks<B: bytemuck::Pod>(bytes: &[u8]) -> &[B] {
    bytemuck::cast_slice(bytes)
}

#[inline(always)]
pub fn as_blocks_mut<B: bytemuck::Pod>(bytes: &mut [u8]) -> &mut [B] {
    bytemuck::cast_slice_mut(bytes)
}
