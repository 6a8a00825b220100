//! GGUF metadata values.
//!
//! Arrays are stored typed (`Vec<u32>`, `Vec<String>`, ...) rather than as a vector of values:
//! a value enum is 32 bytes, so a byte array stored as values would take 32 times its size in
//! the file, and typed vectors let callers borrow `&[f32]` scores or `&[String]` tokens. The
//! element type is kept even for empty arrays so that they round-trip.

use std::fmt;

/// Metadata value type ids as stored in the file (`gguf_type` in ggml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgufValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

const TYPES: [GgufValueType; 13] = [
    GgufValueType::U8,
    GgufValueType::I8,
    GgufValueType::U16,
    GgufValueType::I16,
    GgufValueType::U32,
    GgufValueType::I32,
    GgufValueType::F32,
    GgufValueType::Bool,
    GgufValueType::String,
    GgufValueType::Array,
    GgufValueType::U64,
    GgufValueType::I64,
    GgufValueType::F64,
];

impl GgufValueType {
    pub fn from_id(id: u32) -> Option<GgufValueType> {
        TYPES.get(id as usize).copied()
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            GgufValueType::U8 => "u8",
            GgufValueType::I8 => "i8",
            GgufValueType::U16 => "u16",
            GgufValueType::I16 => "i16",
            GgufValueType::U32 => "u32",
            GgufValueType::I32 => "i32",
            GgufValueType::F32 => "f32",
            GgufValueType::Bool => "bool",
            GgufValueType::String => "string",
            GgufValueType::Array => "array",
            GgufValueType::U64 => "u64",
            GgufValueType::I64 => "i64",
            GgufValueType::F64 => "f64",
        }
    }

    /// The fewest bytes one value of this type takes in a file: a string is at least its u64
    /// length, an array at least its element type and u64 length. Counts read from a file are
    /// bounded with it before anything is allocated.
    pub fn min_encoded_size(self) -> u64 {
        match self {
            GgufValueType::U8 | GgufValueType::I8 | GgufValueType::Bool => 1,
            GgufValueType::U16 | GgufValueType::I16 => 2,
            GgufValueType::U32 | GgufValueType::I32 | GgufValueType::F32 => 4,
            GgufValueType::U64 | GgufValueType::I64 | GgufValueType::F64 => 8,
            GgufValueType::String => 8,
            GgufValueType::Array => 12,
        }
    }
}

impl fmt::Display for GgufValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: one element type for all elements. Nested arrays may each have their
/// own element type, as the format allows.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// Applies `$body` to the vector inside any `GgufArray` variant.
macro_rules! each_array {
    ($array:expr, $v:ident => $body:expr) => {
        match $array {
            GgufArray::U8($v) => $body,
            GgufArray::I8($v) => $body,
            GgufArray::U16($v) => $body,
            GgufArray::I16($v) => $body,
            GgufArray::U32($v) => $body,
            GgufArray::I32($v) => $body,
            GgufArray::F32($v) => $body,
            GgufArray::Bool($v) => $body,
            GgufArray::String($v) => $body,
            GgufArray::Array($v) => $body,
            GgufArray::U64($v) => $body,
            GgufArray::I64($v) => $body,
            GgufArray::F64($v) => $body,
        }
    };
}

impl GgufArray {
    pub fn element_type(&self) -> GgufValueType {
        match self {
            GgufArray::U8(_) => GgufValueType::U8,
            GgufArray::I8(_) => GgufValueType::I8,
            GgufArray::U16(_) => GgufValueType::U16,
            GgufArray::I16(_) => GgufValueType::I16,
            GgufArray::U32(_) => GgufValueType::U32,
            GgufArray::I32(_) => GgufValueType::I32,
            GgufArray::F32(_) => GgufValueType::F32,
            GgufArray::Bool(_) => GgufValueType::Bool,
            GgufArray::String(_) => GgufValueType::String,
            GgufArray::Array(_) => GgufValueType::Array,
            GgufArray::U64(_) => GgufValueType::U64,
            GgufArray::I64(_) => GgufValueType::I64,
            GgufArray::F64(_) => GgufValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        each_array!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty array of the given element type.
    pub fn empty(element_type: GgufValueType) -> GgufArray {
        match element_type {
            GgufValueType::U8 => GgufArray::U8(Vec::new()),
            GgufValueType::I8 => GgufArray::I8(Vec::new()),
            GgufValueType::U16 => GgufArray::U16(Vec::new()),
            GgufValueType::I16 => GgufArray::I16(Vec::new()),
            GgufValueType::U32 => GgufArray::U32(Vec::new()),
            GgufValueType::I32 => GgufArray::I32(Vec::new()),
            GgufValueType::F32 => GgufArray::F32(Vec::new()),
            GgufValueType::Bool => GgufArray::Bool(Vec::new()),
            GgufValueType::String => GgufArray::String(Vec::new()),
            GgufValueType::Array => GgufArray::Array(Vec::new()),
            GgufValueType::U64 => GgufArray::U64(Vec::new()),
            GgufValueType::I64 => GgufArray::I64(Vec::new()),
            GgufValueType::F64 => GgufArray::F64(Vec::new()),
        }
    }

    /// How many array levels this array spans: 1 for a flat array.
    pub fn depth(&self) -> usize {
        match self {
            GgufArray::Array(inner) => 1 + inner.iter().map(GgufArray::depth).max().unwrap_or(0),
            _ => 1,
        }
    }
}

impl GgufValue {
    pub fn value_type(&self) -> GgufValueType {
        match self {
            GgufValue::U8(_) => GgufValueType::U8,
            GgufValue::I8(_) => GgufValueType::I8,
            GgufValue::U16(_) => GgufValueType::U16,
            GgufValue::I16(_) => GgufValueType::I16,
            GgufValue::U32(_) => GgufValueType::U32,
            GgufValue::I32(_) => GgufValueType::I32,
            GgufValue::F32(_) => GgufValueType::F32,
            GgufValue::Bool(_) => GgufValueType::Bool,
            GgufValue::String(_) => GgufValueType::String,
            GgufValue::Array(_) => GgufValueType::Array,
            GgufValue::U64(_) => GgufValueType::U64,
            GgufValue::I64(_) => GgufValueType::I64,
            GgufValue::F64(_) => GgufValueType::F64,
        }
    }

    /// Any integer value, as i128 so that every stored integer fits.
    fn integer(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v.into(),
            GgufValue::I8(v) => v.into(),
            GgufValue::U16(v) => v.into(),
            GgufValue::I16(v) => v.into(),
            GgufValue::U32(v) => v.into(),
            GgufValue::I32(v) => v.into(),
            GgufValue::U64(v) => v.into(),
            GgufValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as u32 if it is an integer of any width that fits. Writers disagree on the
    /// width of counts (u32, i32, u64 all occur), so getters accept any integer whose value is
    /// in range, and refuse floats, bools and out-of-range values.
    pub fn to_u32(&self) -> Option<u32> {
        self.integer().and_then(|v| u32::try_from(v).ok())
    }

    pub fn to_u64(&self) -> Option<u64> {
        self.integer().and_then(|v| u64::try_from(v).ok())
    }

    pub fn to_i32(&self) -> Option<i32> {
        self.integer().and_then(|v| i32::try_from(v).ok())
    }

    pub fn to_i64(&self) -> Option<i64> {
        self.integer().and_then(|v| i64::try_from(v).ok())
    }

    /// f32 or f64 values (an f64 is rounded). Integers are refused: a float key stored as an
    /// integer is more likely a different key than a lossless encoding.
    pub fn to_f32(&self) -> Option<f32> {
        match *self {
            GgufValue::F32(v) => Some(v),
            GgufValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn to_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Array levels in this value: 0 for a scalar.
    pub fn depth(&self) -> usize {
        self.as_array().map_or(0, GgufArray::depth)
    }
}

/// A short rendering for messages: strings quoted and cut at 64 characters, arrays as their
/// type and length.
impl fmt::Display for GgufValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufValue::U8(v) => write!(f, "{v}"),
            GgufValue::I8(v) => write!(f, "{v}"),
            GgufValue::U16(v) => write!(f, "{v}"),
            GgufValue::I16(v) => write!(f, "{v}"),
            GgufValue::U32(v) => write!(f, "{v}"),
            GgufValue::I32(v) => write!(f, "{v}"),
            GgufValue::F32(v) => write!(f, "{v}"),
            GgufValue::Bool(v) => write!(f, "{v}"),
            GgufValue::U64(v) => write!(f, "{v}"),
            GgufValue::I64(v) => write!(f, "{v}"),
            GgufValue::F64(v) => write!(f, "{v}"),
            GgufValue::String(s) if s.chars().count() > 64 => {
                let head: String = s.chars().take(64).collect();
                write!(f, "{head:?}...")
            }
            GgufValue::String(s) => write!(f, "{s:?}"),
            GgufValue::Array(a) => write!(f, "[{}; {}]", a.element_type(), a.len()),
        }
    }
}

macro_rules! from_impls {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl From<$ty> for GgufValue {
            fn from(v: $ty) -> GgufValue {
                GgufValue::$variant(v)
            }
        }
        impl From<Vec<$ty>> for GgufArray {
            fn from(v: Vec<$ty>) -> GgufArray {
                GgufArray::$variant(v)
            }
        }
        impl From<Vec<$ty>> for GgufValue {
            fn from(v: Vec<$ty>) -> GgufValue {
                GgufValue::Array(GgufArray::$variant(v))
            }
        }
    )*};
}

from_impls!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64,
);

impl From<&str> for GgufValue {
    fn from(v: &str) -> GgufValue {
        GgufValue::String(v.to_string())
    }
}

impl From<Vec<&str>> for GgufValue {
    fn from(v: Vec<&str>) -> GgufValue {
        GgufValue::Array(GgufArray::String(
            v.into_iter().map(str::to_string).collect(),
        ))
    }
}

impl From<GgufArray> for GgufValue {
    fn from(v: GgufArray) -> GgufValue {
        GgufValue::Array(v)
    }
}

impl From<Vec<GgufArray>> for GgufValue {
    fn from(v: Vec<GgufArray>) -> GgufValue {
        GgufValue::Array(GgufArray::Array(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_getters_check_range() {
        assert_eq!(GgufValue::I32(-1).to_u32(), None);
        assert_eq!(GgufValue::U64(7).to_u32(), Some(7));
        assert_eq!(GgufValue::U64(u64::MAX).to_i64(), None);
        assert_eq!(GgufValue::F32(1.0).to_u32(), None);
        assert_eq!(GgufValue::I8(-3).to_i64(), Some(-3));
    }

    #[test]
    fn type_ids_round_trip() {
        for id in 0..13 {
            assert_eq!(GgufValueType::from_id(id).map(GgufValueType::id), Some(id));
        }
        assert_eq!(GgufValueType::from_id(13), None);
    }

    #[test]
    fn depth_counts_nesting() {
        let nested = GgufValue::from(vec![
            GgufArray::from(vec![1u8]),
            GgufArray::empty(GgufValueType::Array),
        ]);
        assert_eq!(nested.depth(), 2);
        assert_eq!(GgufValue::U8(1).depth(), 0);
    }
}
