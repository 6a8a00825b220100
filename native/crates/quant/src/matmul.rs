//! Quantized matrix products (being written).
