//! IQ4_NL (not written yet).

use super::{pending, TypeTraits};
use crate::GgmlType;

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::IQ4_NL,
    dequantize: pending::dequantize,
    quantize: None,
    vec_dot_type: GgmlType::Q8_0,
    vec_dot: pending::vec_dot,
};
