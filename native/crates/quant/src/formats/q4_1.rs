//! Q4_1 (not written yet).

use super::{pending, TypeTraits};
use crate::GgmlType;

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::Q4_1,
    dequantize: pending::dequantize,
    quantize: None,
    vec_dot_type: GgmlType::Q8_1,
    vec_dot: pending::vec_dot,
};
