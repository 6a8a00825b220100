//! `--dtype`: the type a safetensors checkpoint's float matrices are stored in once loaded.
//! `auto` keeps the checkpoint's (used in place in the mapped file); `f32`, `f16` and `bf16`
//! convert each matrix once at load, rounding to nearest even as PyTorch's `.to()` does (a
//! widening conversion is exact). GGUF weights keep their own types.

use std::sync::Arc;

use half::{bf16, f16};
use mistralrs_quant::GgmlType;

use crate::layers::WeightBytes;
use crate::model_error::{ModelError, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightDtype {
    /// The checkpoint's own type.
    #[default]
    Auto,
    F32,
    F16,
    BF16,
}

impl WeightDtype {
    /// `auto`, `f32`, `f16` or `bf16` (mistral.rs's `--dtype` names).
    pub fn parse(name: &str) -> Option<WeightDtype> {
        match name {
            "auto" => Some(WeightDtype::Auto),
            "f32" => Some(WeightDtype::F32),
            "f16" => Some(WeightDtype::F16),
            "bf16" => Some(WeightDtype::BF16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::Auto => "auto",
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::BF16 => "bf16",
        }
    }

    fn ggml(self) -> Option<GgmlType> {
        match self {
            WeightDtype::Auto => None,
            WeightDtype::F32 => Some(GgmlType::F32),
            WeightDtype::F16 => Some(GgmlType::F16),
            WeightDtype::BF16 => Some(GgmlType::BF16),
        }
    }
}

/// `bytes` (a float matrix of type `ty`) as `target` stores it: the same bytes when the types
/// agree, else a converted copy (and the mapped original's pages are given back).
pub fn store_as(
    ty: GgmlType,
    bytes: WeightBytes,
    target: WeightDtype,
) -> Result<(GgmlType, WeightBytes)> {
    let Some(to) = target.ggml().filter(|&to| to != ty) else {
        return Ok((ty, bytes));
    };
    let values = widen(ty, bytes.as_slice())?;
    let converted: Vec<u8> = match to {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        _ => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
    };
    if let WeightBytes::Mapped { file, offset, len } = &bytes {
        file.release_pages(*offset..*offset + *len);
    }
    Ok((to, WeightBytes::Owned(Arc::new(converted))))
}

/// The values of a little-endian F32, F16 or BF16 buffer, exactly.
fn widen(ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        GgmlType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(ModelError::Unsupported(format!(
                "cannot convert a {other:?} matrix to another float type"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(values: &[f32]) -> WeightBytes {
        WeightBytes::Owned(Arc::new(
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ))
    }

    #[test]
    fn narrowing_rounds_to_nearest_even_and_widening_is_exact() {
        // 1 + 2^-11 is halfway between the f16 neighbours 1 and 1 + 2^-10: even is 1.
        // 1 + 3·2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: even is 1 + 2^-9.
        let x = [1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), -2.5];
        let (ty, bytes) = store_as(GgmlType::F32, f32_bytes(&x), WeightDtype::F16).unwrap();
        assert_eq!(ty, GgmlType::F16);
        assert_eq!(
            widen(ty, bytes.as_slice()).unwrap(),
            vec![1.0, 1.0 + 2f32.powi(-9), -2.5]
        );
        // bf16 keeps 8 significant bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7: even is 1.
        let (ty, bytes) = store_as(
            GgmlType::F32,
            f32_bytes(&[1.0 + 2f32.powi(-8), 3.0]),
            WeightDtype::BF16,
        )
        .unwrap();
        assert_eq!(ty, GgmlType::BF16);
        let narrow = widen(ty, bytes.as_slice()).unwrap();
        assert_eq!(narrow, vec![1.0, 3.0]);
        // Back to f32: the same values, twice the bytes.
        let (ty, wide) = store_as(ty, bytes, WeightDtype::F32).unwrap();
        assert_eq!((ty, wide.as_slice().len()), (GgmlType::F32, 8));
        assert_eq!(widen(ty, wide.as_slice()).unwrap(), narrow);
    }

    #[test]
    fn auto_and_the_same_type_keep_the_bytes() {
        let bytes = f32_bytes(&[0.1, 0.2]);
        for target in [WeightDtype::Auto, WeightDtype::F32] {
            let (ty, kept) = store_as(GgmlType::F32, bytes.clone(), target).unwrap();
            assert_eq!(ty, GgmlType::F32);
            assert!(
                matches!((&bytes, &kept), (WeightBytes::Owned(a), WeightBytes::Owned(b)) if Arc::ptr_eq(a, b))
            );
        }
        assert!(store_as(GgmlType::Q8_0, bytes, WeightDtype::F16).is_err());
        assert_eq!(WeightDtype::parse("bf16"), Some(WeightDtype::BF16));
        assert_eq!(WeightDtype::parse("float16"), None);
    }
}
