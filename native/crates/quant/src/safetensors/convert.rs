//! Little-endian floating-point data to f32. Reads bytes (never casts), so any alignment works.
//!
//! The 8-bit floats follow the OCP "8-bit Floating Point Specification (OFP8)" as PyTorch's
//! `float8_e4m3fn` / `float8_e5m2` do:
//! - E4M3: bias 7, no infinities, only S.1111.111 (0x7F, 0xFF) is NaN, max 448;
//! - E5M2: bias 15, IEEE-like with infinities and NaNs; it is the top byte of an IEEE half;
//! - E8M0 (MX block scales): 2^(e - 127), 0xFF is NaN, no sign and no zero.

use half::{bf16, f16};

use super::Dtype;

/// The tensor as f32, or `None` for a dtype that is not floating point.
pub(crate) fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => map_chunks(bytes, f32::from_le_bytes),
        Dtype::F64 => map_chunks(bytes, |b: [u8; 8]| f64::from_le_bytes(b) as f32),
        Dtype::F16 => map_chunks(bytes, |b: [u8; 2]| f16::from_le_bytes(b).to_f32()),
        Dtype::BF16 => map_chunks(bytes, |b: [u8; 2]| bf16::from_le_bytes(b).to_f32()),
        Dtype::F8_E4M3 => with_table(bytes, e4m3_to_f32),
        Dtype::F8_E5M2 => with_table(bytes, e5m2_to_f32),
        Dtype::F8_E8M0 => with_table(bytes, e8m0_to_f32),
        _ => return None,
    })
}

fn map_chunks<const N: usize>(bytes: &[u8], conv: impl Fn([u8; N]) -> f32) -> Vec<f32> {
    let (chunks, _) = bytes.as_chunks::<N>();
    chunks.iter().map(|c| conv(*c)).collect()
}

/// 8-bit formats go through a 256-entry table: building it costs less than one row.
fn with_table(bytes: &[u8], conv: fn(u8) -> f32) -> Vec<f32> {
    let table: [f32; 256] = std::array::from_fn(|i| conv(i as u8));
    bytes.iter().map(|&b| table[b as usize]).collect()
}

pub fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((b >> 3) & 0x0F);
    let mant = f32::from(b & 0x07);
    if exp == 0x0F && b & 0x07 == 0x07 {
        return f32::NAN;
    }
    let magnitude = if exp == 0 {
        // Subnormal: 0.mmm × 2^(1 - bias).
        mant / 8.0 * (-6f32).exp2()
    } else {
        (1.0 + mant / 8.0) * ((exp - 7) as f32).exp2()
    };
    sign * magnitude
}

pub fn e5m2_to_f32(b: u8) -> f32 {
    // Same sign, exponent width and bias as IEEE half, with the mantissa cut to 2 bits.
    f16::from_bits(u16::from(b) << 8).to_f32()
}

pub fn e8m0_to_f32(b: u8) -> f32 {
    match b {
        0xFF => f32::NAN,
        // 2^-127 is an f32 subnormal: only its top mantissa bit is set.
        0 => f32::from_bits(0x0040_0000),
        e => f32::from_bits(u32::from(e) << 23),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_matches_the_ocp_table() {
        assert_eq!(e4m3_to_f32(0x00), 0.0);
        assert!(e4m3_to_f32(0x80).is_sign_negative());
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(e4m3_to_f32(0x08), 2f32.powi(-6)); // smallest normal
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert_eq!(e4m3_to_f32(0x7E), 448.0); // largest finite
        assert_eq!(e4m3_to_f32(0xFE), -448.0);
        assert_eq!(e4m3_to_f32(0x78), 256.0); // exponent 15 is finite apart from 0x7F
        assert!(e4m3_to_f32(0x7F).is_nan() && e4m3_to_f32(0xFF).is_nan());
        assert_eq!((0..=255u8).filter(|&b| e4m3_to_f32(b).is_nan()).count(), 2);
    }

    #[test]
    fn e5m2_matches_the_ocp_table() {
        assert_eq!(e5m2_to_f32(0x3C), 1.0);
        assert_eq!(e5m2_to_f32(0x01), 2f32.powi(-16)); // smallest subnormal
        assert_eq!(e5m2_to_f32(0x7B), 57344.0); // largest finite
        assert_eq!(e5m2_to_f32(0x7C), f32::INFINITY);
        assert_eq!(e5m2_to_f32(0xFC), f32::NEG_INFINITY);
        assert!(e5m2_to_f32(0x7D).is_nan() && e5m2_to_f32(0xFF).is_nan());
    }

    #[test]
    fn e8m0_is_a_power_of_two() {
        assert_eq!(e8m0_to_f32(127), 1.0);
        assert_eq!(e8m0_to_f32(130), 8.0);
        assert_eq!(e8m0_to_f32(0), 2f32.powi(-127));
        assert_eq!(e8m0_to_f32(254), 2f32.powi(127));
        assert!(e8m0_to_f32(255).is_nan());
    }

    #[test]
    fn converts_unaligned_bytes() {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        assert_eq!(to_f32(Dtype::F32, &bytes[1..]), Some(vec![1.5]));
        assert_eq!(to_f32(Dtype::BF16, &[0x80, 0x3F]), Some(vec![1.0]));
        assert_eq!(to_f32(Dtype::I32, &[0; 4]), None);
    }
}
