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
    /// How keys and values are stored.
    pub dtype: KvDtype,
}

/// The element type of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDtype {
    /// Half precision: what llama.cpp's default cache holds (its arithmetic is reproduced).
    #[default]
    F16,
    /// ggml's Q8_0 (32 values share an f16 scale): 34 bytes per 32 values instead of 64, for
    /// about twice the tokens in the same memory, at a small cost in accuracy.
    Q8_0,
}

/// Values per Q8_0 scale.
const Q8_0_BLOCK: usize = 32;

impl KvCacheConfig {
    /// Bytes one block takes: keys and values of every layer.
    pub fn bytes_per_block(&self) -> usize {
        2 * self.n_layers
            * self.n_kv_heads
            * self.block_size
            * bytes_per_row(self.dtype, self.head_dim)
    }
}

fn bytes_per_row(dtype: KvDtype, head_dim: usize) -> usize {
    match dtype {
        KvDtype::F16 => head_dim * std::mem::size_of::<f16>(),
        KvDtype::Q8_0 => head_dim + head_dim / Q8_0_BLOCK * std::mem::size_of::<f16>(),
    }
}

/// Keys or values, in the cache's element type; indexed by element as if they were f16.
enum Store {
    F16(Vec<f16>),
    Q8_0 { quants: Vec<i8>, scales: Vec<f16> },
}

impl Store {
    fn new(dtype: KvDtype, len: usize) -> Store {
        match dtype {
            KvDtype::F16 => Store::F16(vec![f16::ZERO; len]),
            KvDtype::Q8_0 => Store::Q8_0 {
                quants: vec![0; len],
                scales: vec![f16::ZERO; len / Q8_0_BLOCK],
            },
        }
    }

    fn size_bytes(&self) -> usize {
        match self {
            Store::F16(v) => v.len() * std::mem::size_of::<f16>(),
            Store::Q8_0 { quants, scales } => {
                quants.len() + scales.len() * std::mem::size_of::<f16>()
            }
        }
    }

    /// Stores `x` at element `at` (whole Q8_0 groups for Q8_0).
    fn write(&mut self, at: usize, x: &[f32]) {
        match self {
            Store::F16(v) => v[at..at + x.len()].convert_from_f32_slice(x),
            Store::Q8_0 { quants, scales } => {
                for (g, chunk) in x.chunks_exact(Q8_0_BLOCK).enumerate() {
                    // ggml's Q8_0: the largest magnitude maps to ±127.
                    let amax = chunk.iter().fold(0f32, |m, &v| m.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    let first = at + g * Q8_0_BLOCK;
                    for (q, &v) in quants[first..first + Q8_0_BLOCK].iter_mut().zip(chunk) {
                        *q = (v * id).round() as i8;
                    }
                    scales[first / Q8_0_BLOCK] = f16::from_f32(d);
                }
            }
        }
    }

    /// Elements `at..at + len` as stored, when they are f16.
    #[inline]
    fn f16_slice(&self, at: usize, len: usize) -> Option<&[f16]> {
        match self {
            Store::F16(v) => Some(&v[at..at + len]),
            Store::Q8_0 { .. } => None,
        }
    }

    /// Elements `at..at + out.len()` as f32.
    #[inline]
    fn read(&self, at: usize, out: &mut [f32]) {
        match self {
            Store::F16(v) => v[at..at + out.len()].convert_to_f32_slice(out),
            Store::Q8_0 { quants, scales } => {
                for (g, chunk) in out.chunks_exact_mut(Q8_0_BLOCK).enumerate() {
                    let first = at + g * Q8_0_BLOCK;
                    let d = scales[first / Q8_0_BLOCK].to_f32();
                    for (o, &q) in chunk.iter_mut().zip(&quants[first..first + Q8_0_BLOCK]) {
                        *o = q as f32 * d;
                    }
                }
            }
        }
    }

    fn copy_within(&mut self, src: usize, n: usize, dst: usize) {
        match self {
            Store::F16(v) => v.copy_within(src..src + n, dst),
            Store::Q8_0 { quants, scales } => {
                quants.copy_within(src..src + n, dst);
                let g = Q8_0_BLOCK;
                scales.copy_within(src / g..(src + n) / g, dst / g);
            }
        }
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
    k: Store,
    /// same layout as `k`
    v: Store,
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
        if cfg.dtype == KvDtype::Q8_0 && !cfg.head_dim.is_multiple_of(Q8_0_BLOCK) {
            return Err(KvCacheError::TooLarge(format!(
                "a Q8_0 KV cache needs a head size that is a multiple of {Q8_0_BLOCK}, not {}",
                cfg.head_dim
            )));
        }
        Ok(KvCache {
            k: Store::new(cfg.dtype, len),
            v: Store::new(cfg.dtype, len),
            cfg,
        })
    }

    pub fn config(&self) -> &KvCacheConfig {
        &self.cfg
    }

    /// Bytes held by the pool.
    pub fn size_bytes(&self) -> usize {
        self.k.size_bytes() + self.v.size_bytes()
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

    /// Checks that `layer` is one of the cache's.
    pub fn check_layer(&self, layer: usize) -> Result<(), KvCacheError> {
        if layer >= self.cfg.n_layers {
            return Err(KvCacheError::OutOfRange(format!(
                "layer {layer} is past the cache's {} layers",
                self.cfg.n_layers
            )));
        }
        Ok(())
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
        let hd = self.cfg.head_dim;
        let row = self.cfg.n_kv_heads * hd;
        if k.len() != row || v.len() != row {
            return Err(KvCacheError::OutOfRange(format!(
                "keys ({}) and values ({}) of a token must be [{} KV heads, {hd}]",
                k.len(),
                v.len(),
                self.cfg.n_kv_heads
            )));
        }
        self.check_layer(layer)?;
        let (block, slot) = self.locate(table, pos)?;
        let base = (layer * self.cfg.n_blocks + block) * self.block_len();
        for h in 0..self.cfg.n_kv_heads {
            let at = base + (h * self.cfg.block_size + slot) * hd;
            self.k.write(at, &k[h * hd..(h + 1) * hd]);
            self.v.write(at, &v[h * hd..(h + 1) * hd]);
        }
        Ok(())
    }

    /// Keys of one head in one block as f32: `out` is `[block_size, head_dim]`.
    #[inline]
    pub fn read_k(&self, layer: usize, block: usize, head: usize, out: &mut [f32]) {
        self.k.read(self.head_offset(layer, block, head), out);
    }

    /// Values of one head in one block as f32: `out` is `[block_size, head_dim]`.
    #[inline]
    pub fn read_v(&self, layer: usize, block: usize, head: usize, out: &mut [f32]) {
        self.v.read(self.head_offset(layer, block, head), out);
    }

    /// Where slots `rows` of one head of one block start, and the store (keys, or values
    /// when `values`) they are in.
    #[inline]
    fn rows_at(
        &self,
        values: bool,
        layer: usize,
        block: usize,
        head: usize,
        rows: &std::ops::Range<usize>,
    ) -> (&Store, usize) {
        let at = self.head_offset(layer, block, head) + rows.start * self.cfg.head_dim;
        (if values { &self.v } else { &self.k }, at)
    }

    /// Keys (`values` false) or values of one head in slots `rows` of one block as the cache
    /// stores them, when that is f16 (`[rows.len(), head_dim]`).
    #[inline]
    pub(crate) fn rows_f16(
        &self,
        values: bool,
        layer: usize,
        block: usize,
        head: usize,
        rows: std::ops::Range<usize>,
    ) -> Option<&[f16]> {
        let (store, at) = self.rows_at(values, layer, block, head, &rows);
        store.f16_slice(at, rows.len() * self.cfg.head_dim)
    }

    /// The same slots as f32 into `out` (`[rows.len(), head_dim]`), whatever the storage.
    #[inline]
    pub fn read_rows(
        &self,
        values: bool,
        layer: usize,
        block: usize,
        head: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let (store, at) = self.rows_at(values, layer, block, head, &rows);
        store.read(at, &mut out[..rows.len() * self.cfg.head_dim]);
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
            self.k.copy_within(src, n, dst);
            self.v.copy_within(src, n, dst);
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
            dtype: KvDtype::F16,
        }
    }

    fn block(cache: &KvCache, layer: usize, block: usize, head: usize, keys: bool) -> Vec<f32> {
        let mut out = vec![0f32; cache.config().block_size * cache.config().head_dim];
        if keys {
            cache.read_k(layer, block, head, &mut out);
        } else {
            cache.read_v(layer, block, head, &mut out);
        }
        out
    }

    #[test]
    fn writes_land_in_the_block_the_table_names() {
        let mut cache = KvCache::new(cfg()).unwrap();
        let table = [4u32, 1];
        let k: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let v: Vec<f32> = (0..8).map(|i| -(i as f32)).collect();
        cache.write(1, &table, 4, &k, &v).unwrap(); // block 1, slot 1
        assert_eq!(&block(&cache, 1, 1, 0, true)[4..8], &k[0..4]);
        assert_eq!(&block(&cache, 1, 1, 1, true)[4..8], &k[4..8]);
        assert_eq!(&block(&cache, 1, 1, 1, false)[4..8], &v[4..8]);
        assert!(block(&cache, 0, 1, 0, true).iter().all(|&x| x == 0.0));
        cache.copy_block(1, 2).unwrap();
        assert_eq!(&block(&cache, 1, 2, 1, true)[4..8], &k[4..8]);
    }

    #[test]
    fn q8_0_blocks_hold_values_within_half_a_step_in_about_half_the_memory() {
        let cfg = |dtype| KvCacheConfig {
            head_dim: 64,
            dtype,
            ..cfg()
        };
        let f16_cache = KvCache::new(cfg(KvDtype::F16)).unwrap();
        let mut cache = KvCache::new(cfg(KvDtype::Q8_0)).unwrap();
        assert_eq!(cache.size_bytes() * 64, f16_cache.size_bytes() * 34);
        assert_eq!(cache.size_bytes(), cfg(KvDtype::Q8_0).bytes_per_block() * 5);
        let k: Vec<f32> = (0..128)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let v: Vec<f32> = k.iter().map(|x| -x * 0.5).collect();
        cache.write(1, &[4, 1], 2, &k, &v).unwrap(); // block 4, slot 2
        let got = block(&cache, 1, 4, 1, true);
        for (i, (&a, &b)) in got[2 * 64..3 * 64].iter().zip(&k[64..]).enumerate() {
            let group = &k[64 + i / 32 * 32..64 + i / 32 * 32 + 32];
            let step = group.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
            assert!((a - b).abs() <= step * 0.51, "{a} vs {b}");
        }
        cache.copy_block(4, 0).unwrap();
        assert_eq!(block(&cache, 1, 0, 1, false), block(&cache, 1, 4, 1, false));
        let odd = KvCacheConfig {
            head_dim: 48,
            ..cfg(KvDtype::Q8_0)
        };
        assert!(KvCache::new(odd).is_err());
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
