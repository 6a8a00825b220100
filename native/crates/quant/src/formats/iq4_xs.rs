//! IQ4_XS (not written yet).

use super::{pending, TypeTraits};
use crate::GgmlType;

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::IQ4_XS,
    dequantize: pending::dequantize,
    quantize: None,
    vec_dot_type: GgmlType::Q8_K,
    vec_dot: pending::vec_dot,
};
