//! The paged KV cache and attention over it.
//!
//! Keys and values live in a pool of fixed-size blocks (`block_size` tokens each). A sequence
//! owns a list of block ids, its block table: token `p` of the sequence sits in block
//! `table[p / block_size]` at slot `p % block_size`. The scheduler (TypeScript) hands out block
//! ids; this crate only stores and reads through the tables, so prefill, decode, one sequence
//! or many all take the same path.

pub mod attention;
pub mod cache;
pub mod decode;
mod kernels;
pub mod params;
mod scratch;

pub use attention::{attend, attend_batch, attend_serial};
pub use cache::{KvCache, KvCacheConfig, KvCacheError, KvDtype};
pub use decode::DecodeWork;
pub use params::{AttentionParams, AttnOut, SeqAttention};
