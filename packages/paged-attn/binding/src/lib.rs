//! Binding of `@mistralrs/paged-attn`: the paged KV cache's storage and the attention that
//! reads through block tables, for TypeScript callers that run attention on their own
//! tensors. Thin by design: argument checks, conversion and errors; the work happens in
//! `mistralrs-paged-attn`, the crate the core addon links for its forward passes.

use std::sync::{Arc, RwLock};

use mistralrs_napi_support::{guard, js_error};
use mistralrs_paged_attn::{
    attend_serial, AttentionParams, KvCache, KvCacheConfig, KvCacheError, KvDtype,
};
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint32Array};
use napi::{Env, Task};
use napi_derive::napi;

/// Every cache error is the caller's: a block, position or layer out of range, or a pool too
/// large to allocate.
fn cache_error(err: KvCacheError) -> napi::Error {
    js_error("InvalidArgumentError", err)
}

fn invalid(message: impl std::fmt::Display) -> napi::Error {
    js_error("InvalidArgumentError", message)
}

fn poisoned() -> napi::Error {
    js_error(
        "InternalError",
        "the KV cache was left inconsistent by an earlier failure",
    )
}

#[napi(object)]
pub struct KvCacheOptions {
    pub n_layers: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Tokens per block.
    pub block_size: u32,
    pub n_blocks: u32,
    /// `f16` (default) or `q8_0`.
    pub dtype: Option<String>,
}

#[napi(object)]
pub struct AttentionOptions {
    pub n_heads: u32,
    /// Multiplies q·k (default 1/√head_dim).
    pub scale: Option<f64>,
    /// `cap · tanh(s / cap)` on the scores.
    pub softcap: Option<f64>,
    /// Keys more than `window - 1` positions behind a query are masked.
    pub sliding_window: Option<u32>,
    /// A logit per query head joining every softmax's denominator (gpt-oss's sinks).
    pub sinks: Option<Float32Array>,
}

/// Keys and values of every layer in blocks of `block_size` tokens, as the engine keeps them.
#[napi]
pub struct KvCacheHandle {
    cache: Arc<RwLock<KvCache>>,
    cfg: KvCacheConfig,
}

#[napi]
impl KvCacheHandle {
    #[napi(constructor)]
    pub fn new(options: KvCacheOptions) -> napi::Result<KvCacheHandle> {
        let dtype = match options.dtype.as_deref() {
            None | Some("f16") => KvDtype::F16,
            Some("q8_0") => KvDtype::Q8_0,
            Some(other) => {
                return Err(invalid(format!("dtype must be f16 or q8_0, got {other:?}")))
            }
        };
        let cfg = KvCacheConfig {
            n_layers: options.n_layers as usize,
            n_kv_heads: options.n_kv_heads as usize,
            head_dim: options.head_dim as usize,
            block_size: options.block_size as usize,
            n_blocks: options.n_blocks as usize,
            dtype,
        };
        if cfg.n_layers == 0 || cfg.n_blocks == 0 {
            return Err(invalid(format!(
                "a KV cache needs layers and blocks: {cfg:?}"
            )));
        }
        let cache = guard(|| KvCache::new(cfg).map_err(cache_error))?;
        Ok(KvCacheHandle {
            cache: Arc::new(RwLock::new(cache)),
            cfg,
        })
    }

    /// Bytes the pool holds.
    #[napi(getter)]
    pub fn size_bytes(&self) -> napi::Result<f64> {
        Ok(self.cache.read().map_err(|_| poisoned())?.size_bytes() as f64)
    }

    /// Stores the keys and values of `n` tokens (`[n, n_kv_heads, head_dim]` each) at positions
    /// `start_pos..start_pos + n` of the sequence whose block table is `block_table`.
    #[napi(catch_unwind)]
    pub fn write(
        &self,
        layer: u32,
        block_table: Uint32Array,
        start_pos: u32,
        keys: Float32Array,
        values: Float32Array,
    ) -> napi::Result<()> {
        let row = self.cfg.n_kv_heads * self.cfg.head_dim;
        if keys.len() != values.len() || !keys.len().is_multiple_of(row) {
            return Err(invalid(format!(
                "keys ({}) and values ({}) must both be [tokens, {} KV heads, {}]",
                keys.len(),
                values.len(),
                self.cfg.n_kv_heads,
                self.cfg.head_dim
            )));
        }
        let n = keys.len() / row;
        let mut cache = self.cache.write().map_err(|_| poisoned())?;
        cache.check_layer(layer as usize).map_err(cache_error)?;
        // Checked whole first, so a bad table writes nothing.
        cache
            .check_table(&block_table, start_pos as usize + n)
            .map_err(cache_error)?;
        for t in 0..n {
            let (k, v) = (
                &keys[t * row..(t + 1) * row],
                &values[t * row..(t + 1) * row],
            );
            cache
                .write(layer as usize, &block_table, start_pos as usize + t, k, v)
                .map_err(cache_error)?;
        }
        Ok(())
    }

    /// Keys (or values, when `values`) of positions `start_pos..start_pos + len` as the cache
    /// holds them (f16 or Q8_0, read back as f32): `[len, n_kv_heads, head_dim]`.
    #[napi(catch_unwind)]
    pub fn read(
        &self,
        layer: u32,
        block_table: Uint32Array,
        start_pos: u32,
        len: u32,
        values: bool,
    ) -> napi::Result<Float32Array> {
        let cache = self.cache.read().map_err(|_| poisoned())?;
        cache.check_layer(layer as usize).map_err(cache_error)?;
        let (start, end) = (start_pos as usize, start_pos as usize + len as usize);
        cache.check_table(&block_table, end).map_err(cache_error)?;
        let (heads, hd) = (self.cfg.n_kv_heads, self.cfg.head_dim);
        let mut out = vec![0f32; len as usize * heads * hd];
        let mut row = vec![0f32; hd];
        for pos in start..end {
            let (block, slot) = cache.locate(&block_table, pos).map_err(cache_error)?;
            for h in 0..heads {
                cache.read_rows(values, layer as usize, block, h, slot..slot + 1, &mut row);
                let at = ((pos - start) * heads + h) * hd;
                out[at..at + hd].copy_from_slice(&row);
            }
        }
        Ok(out.into())
    }

    /// Copies a block's keys and values (every layer) to another block.
    #[napi(catch_unwind)]
    pub fn copy_block(&self, from: u32, to: u32) -> napi::Result<()> {
        let mut cache = self.cache.write().map_err(|_| poisoned())?;
        cache
            .copy_block(from as usize, to as usize)
            .map_err(cache_error)
    }

    /// Causal attention of `queries` (`[n, n_heads, head_dim]`, at positions `start_pos..`,
    /// whose own keys and values are already written) over the sequence of `block_table`,
    /// off the JavaScript thread: `[n, n_heads, head_dim]`.
    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn attend(
        &self,
        layer: u32,
        block_table: Uint32Array,
        queries: Float32Array,
        start_pos: u32,
        options: AttentionOptions,
    ) -> napi::Result<AsyncTask<AttendTask>> {
        let hd = self.cfg.head_dim;
        let row = options.n_heads as usize * hd;
        if row == 0 || !queries.len().is_multiple_of(row) {
            return Err(invalid(format!(
                "queries ({}) must be [tokens, {} heads, {hd}]",
                queries.len(),
                options.n_heads
            )));
        }
        let finite = |x: Option<f64>, what: &str| match x {
            Some(v) if !(v.is_finite() && v > 0.0) => Err(invalid(format!(
                "{what} must be a positive number, got {v}"
            ))),
            v => Ok(v.map(|v| v as f32)),
        };
        let params = AttentionParams {
            n_heads: options.n_heads as usize,
            n_kv_heads: self.cfg.n_kv_heads,
            head_dim: hd,
            scale: finite(options.scale, "scale")?.unwrap_or(1.0 / (hd as f32).sqrt()),
            softcap: finite(options.softcap, "softcap")?,
            sliding_window: match options.sliding_window {
                Some(0) => return Err(invalid("slidingWindow must be at least 1")),
                w => w.map(|w| w as usize),
            },
            sinks: None,
            single_token_step: queries.len() == row,
        };
        let sinks = options.sinks.as_ref().map(|s| s.to_vec());
        if let Some(s) = &sinks {
            if s.len() != params.n_heads || s.iter().any(|v| !v.is_finite()) {
                return Err(invalid(format!(
                    "sinks must hold {} finite numbers (one per query head), got {}",
                    params.n_heads,
                    s.len()
                )));
            }
        }
        let n = queries.len() / row;
        Ok(AsyncTask::new(AttendTask {
            cache: Arc::clone(&self.cache),
            layer: layer as usize,
            table: block_table.to_vec(),
            queries: queries.to_vec(),
            positions: (start_pos as usize..start_pos as usize + n).collect(),
            params,
            sinks,
        }))
    }
}

pub struct AttendTask {
    cache: Arc<RwLock<KvCache>>,
    layer: usize,
    table: Vec<u32>,
    queries: Vec<f32>,
    positions: Vec<usize>,
    /// Without the sinks, which the task owns and lends at compute time.
    params: AttentionParams<'static>,
    sinks: Option<Vec<f32>>,
}

#[napi]
impl Task for AttendTask {
    type Output = Vec<f32>;
    type JsValue = Float32Array;

    fn compute(&mut self) -> napi::Result<Vec<f32>> {
        guard(|| {
            let cache = self.cache.read().map_err(|_| poisoned())?;
            cache.check_layer(self.layer).map_err(cache_error)?;
            let mut out = vec![0f32; self.queries.len()];
            attend_serial(
                &cache,
                self.layer,
                &self.table,
                &self.queries,
                &self.positions,
                &AttentionParams {
                    sinks: self.sinks.as_deref(),
                    ..self.params
                },
                &mut out,
            )
            .map_err(cache_error)?;
            Ok(out)
        })
    }

    fn resolve(&mut self, _env: Env, out: Vec<f32>) -> napi::Result<Float32Array> {
        Ok(out.into())
    }
}
