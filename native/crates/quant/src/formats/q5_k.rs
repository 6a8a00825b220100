//! Q5_K (not written yet).

use super::{pending, TypeTraits};
use crate::GgmlType;

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q5_K,
    dequantize: pending::dequantize,
    quantize: None,
    vec_dot_type: GgmlType::Q8_K,
    vec_dot: pending::vec_dot,
};
