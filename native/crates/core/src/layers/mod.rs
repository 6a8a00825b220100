//! The shared building blocks every architecture is made of. Models see `Linear` and one
//! attention entry point (in `mistralrs-paged-attn`), never a weight format or a KV layout.

pub mod activations;
pub mod attention;
pub mod embedding;
pub mod gated_delta_net;
pub mod gpt;
pub mod linear;
pub mod moe;
pub mod norm;
pub mod rope;
pub mod ssm;

pub use embedding::Embedding;
pub use linear::{add_rows, Linear, WeightBytes};
pub use moe::{Expert, Moe, MoeConfig};
pub use norm::{layer_norm, rms_norm, rms_norm_inplace};
pub use rope::{Rope, RopeScaling, RopeStyle};
