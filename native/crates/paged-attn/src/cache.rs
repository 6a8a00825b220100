//! Block storage for keys and values, in f16 as llama.cpp keeps them by default: half the
//! memory of f32, and the same rounding as the reference, so logits track it.

use half::f16;

use std::fmt;

use half::slice::HalfFloatSliceExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvCacheConfig {
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Tokens per block.
    pub block_size: usize,
    /// Blocks in the pool, shared by every sequence.
    pub n_blocks: usize,
}

impl KvCacheConfig {
    /// Bytes one block takes: keys and values of every layer, in f16.
    pub fn bytes_per_block(&self) -> usize {
        2 * self.n_layers
            * self.n_kv_heads
            * self.block_size
            * self.head_dim
            * std::mem::size_of::<f16>()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvCacheError {
    /// A block id past the pool, or a position past the table.
    OutOfRange(String),
    /// The pool would not fit in memory.
    TooLarge(String),
}

impl fmt::Display for KvCacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvCacheError::OutOfRange(s) | KvCacheError::TooLarge(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for KvCacheError {}

/// Keys and values of every layer. Within a layer, a block is laid out
/// `[n_kv_heads, block_size, head_dim]`, so the keys one head reads are contiguous.
pub struct KvCache {
    cfg: KvCacheConfig,
    /// `[n_layers, n_blocks, n_kv_heads, block_size, head_dim]`
    k: Vec<f16>,
    /// same layout as `k`
    v: Vec<f16>,
}

impl KvCache {
    pub fn new(cfg: KvCacheConfig) -> Result<KvCache, KvCacheError> {
        let len = [
            cfg.n_layers,
            cfg.n_blocks,
            cfg.n_kv_heads,
            cfg.block_size,
            cfg.head_dim,
        ]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n.checked_mul(8).is_some_and(|b| b <= isize::MAX as usize))
        .ok_or_else(|| KvCacheError::TooLarge(format!("a KV cache of {cfg:?} overflows")))?;
        if cfg.block_size == 0 || cfg.head_dim == 0 || cfg.n_kv_heads == 0 {
            return Err(KvCacheError::TooLarge(format!(
                "degenerate KV cache {cfg:?}"
            )));
        }
        Ok(KvCache {
            cfg,
            k: vec![f16::ZERO; len],
            v: vec![f16::ZERO; len],
        })
    }

    pub fn config(&self) -> &KvCacheConfig {
        &self.cfg
    }

    /// Bytes held by the pool.
    pub fn size_bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * std::mem::size_of::<f16>()
    }

    fn block_len(&self) -> usize {
        self.cfg.n_kv_heads * self.cfg.block_size * self.cfg.head_dim
    }

    /// Where token `pos` of a sequence lives: (block id, slot), checked against the pool.
    pub fn locate(&self, table: &[u32], pos: usize) -> Result<(usize, usize), KvCacheError> {
        let block = *table.get(pos / self.cfg.block_size).ok_or_else(|| {
            KvCacheError::OutOfRange(format!(
                "position {pos} is past the {} blocks of the block table",
                table.len()
            ))
        })? as usize;
        if block >= self.cfg.n_blocks {
            return Err(KvCacheError::OutOfRange(format!(
                "block id {block} is past the pool of {} blocks",
                self.cfg.n_blocks
            )));
        }
        Ok((block, pos % self.cfg.block_size))
    }

    /// Checks that every position `< len` maps to a valid block.
    pub fn check_table(&self, table: &[u32], len: usize) -> Result<(), KvCacheError> {
        if len == 0 {
            return Ok(());
        }
        let blocks = len.div_ceil(self.cfg.block_size);
        if blocks > table.len() {
            return Err(KvCacheError::OutOfRange(format!(
                "{len} tokens need {blocks} blocks, the block table has {}",
                table.len()
            )));
        }
        if let Some(bad) = table[..blocks]
            .iter()
            .find(|&&b| b as usize >= self.cfg.n_blocks)
        {
            return Err(KvCacheError::OutOfRange(format!(
                "block id {bad} is past the pool of {} blocks",
                self.cfg.n_blocks
            )));
        }
        Ok(())
    }

    /// Stores the keys and values of one token. `k` and `v` are `[n_kv_heads, head_dim]`.
    pub fn write(
        &mut self,
        layer: usize,
        table: &[u32],
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), KvCacheError> {
        let (block, slot) = self.locate(table, pos)?;
        let hd = self.cfg.head_dim;
        assert_eq!(
            k.len(),
            self.cfg.n_kv_heads * hd,
            "k must be [n_kv_heads, head_dim]"
        );
        assert_eq!(v.len(), k.len(), "v must be [n_kv_heads, head_dim]");
        let base = (layer * self.cfg.n_blocks + block) * self.block_len();
        for h in 0..self.cfg.n_kv_heads {
            let at = base + (h * self.cfg.block_size + slot) * hd;
            self.k[at..at + hd].convert_from_f32_slice(&k[h * hd..(h + 1) * hd]);
            self.v[at..at + hd].convert_from_f32_slice(&v[h * hd..(h + 1) * hd]);
        }
        Ok(())
    }

    /// Keys of one head in one block: `[block_size, head_dim]`.
    #[inline]
    pub fn k_block(&self, layer: usize, block: usize, head: usize) -> &[f16] {
        let at = self.head_offset(layer, block, head);
        &self.k[at..at + self.cfg.block_size * self.cfg.head_dim]
    }

    /// Values of one head in one block: `[block_size, head_dim]`.
    #[inline]
    pub fn v_block(&self, layer: usize, block: usize, head: usize) -> &[f16] {
        let at = self.head_offset(layer, block, head);
        &self.v[at..at + self.cfg.block_size * self.cfg.head_dim]
    }

    #[inline]
    fn head_offset(&self, layer: usize, block: usize, head: usize) -> usize {
        (layer * self.cfg.n_blocks + block) * self.block_len()
            + head * self.cfg.block_size * self.cfg.head_dim
    }

    /// Copies a block's contents (every layer) to another block: copy-on-write for forked
    /// sequences that share a prefix.
    pub fn copy_block(&mut self, from: usize, to: usize) -> Result<(), KvCacheError> {
        for b in [from, to] {
            if b >= self.cfg.n_blocks {
                return Err(KvCacheError::OutOfRange(format!(
                    "block id {b} is past the pool of {} blocks",
                    self.cfg.n_blocks
                )));
            }
        }
        let n = self.block_len();
        for layer in 0..self.cfg.n_layers {
            let src = (layer * self.cfg.n_blocks + from) * n;
            let dst = (layer * self.cfg.n_blocks + to) * n;
            self.k.copy_within(src..src + n, dst);
            self.v.copy_within(src..src + n, dst);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> KvCacheConfig {
        KvCacheConfig {
            n_layers: 2,
            n_kv_heads: 2,
            head_dim: 4,
            block_size: 3,
            n_blocks: 5,
        }
    }

    #[test]
    fn writes_land_in_the_block_the_table_names() {
        let mut cache = KvCache::new(cfg()).unwrap();
        let table = [4u32, 1];
        let k: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let v: Vec<f32> = (0..8).map(|i| -(i as f32)).collect();
        cache.write(1, &table, 4, &k, &v).unwrap(); // block 1, slot 1
        let f32s = |x: &[f16]| x.iter().map(|v| v.to_f32()).collect::<Vec<_>>();
        assert_eq!(f32s(&cache.k_block(1, 1, 0)[4..8]), &k[0..4]);
        assert_eq!(f32s(&cache.k_block(1, 1, 1)[4..8]), &k[4..8]);
        assert_eq!(f32s(&cache.v_block(1, 1, 1)[4..8]), &v[4..8]);
        assert!(cache.k_block(0, 1, 0).iter().all(|&x| x == f16::ZERO));
        cache.copy_block(1, 2).unwrap();
        assert_eq!(f32s(&cache.k_block(1, 2, 1)[4..8]), &k[4..8]);
    }

    #[test]
    fn bad_tables_are_errors() {
        let mut cache = KvCache::new(cfg()).unwrap();
        let z = [0f32; 8];
        assert!(cache.write(0, &[1], 3, &z, &z).is_err());
        assert!(cache.write(0, &[9], 0, &z, &z).is_err());
        assert!(cache.check_table(&[0, 1], 7).is_err());
        assert!(cache.check_table(&[0, 7], 4).is_err());
        assert!(cache.check_table(&[0, 1, 2], 7).is_ok());
        assert!(cache.copy_block(0, 5).is_err());
        let huge = KvCacheConfig {
            n_blocks: usize::MAX / 2,
            ..cfg()
        };
        assert!(KvCache::new(huge).is_err());
    }
}
