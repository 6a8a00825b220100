//! F32 (not written yet).

use super::{pending, TypeTraits};
use crate::GgmlType;

pub const TRAITS: TypeTraits = TypeTraits {
    ty: GgmlType::F32,
    dequantize: pending::dequantize,
    quantize: None,
    vec_dot_type: GgmlType::F32,
    vec_dot: pending::vec_dot,
};
