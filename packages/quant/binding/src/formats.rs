//! Dequantize and quantize buffers, off the JavaScript thread.

use mistralrs_napi_support::{guard, js_error};
use mistralrs_quant::formats::{self, type_traits};
use mistralrs_quant::GgmlType;
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;

use crate::quant_error;

fn ggml_type(name: &str) -> napi::Result<GgmlType> {
    GgmlType::from_name(name).ok_or_else(|| {
        js_error(
            "InvalidArgumentError",
            format!("unknown tensor type {name:?}"),
        )
    })
}

#[napi(object)]
pub struct GgmlTypeInfo {
    pub name: String,
    pub id: u32,
    pub block_size: u32,
    pub type_size: u32,
    /// Whether this build can dequantize it and multiply with it.
    pub supported: bool,
    /// Whether this build can quantize into it.
    pub quantizable: bool,
}

/// Every ggml tensor type, with its block geometry and what this build can do with it.
#[napi(catch_unwind)]
pub fn ggml_types() -> Vec<GgmlTypeInfo> {
    GgmlType::all()
        .map(|ty| GgmlTypeInfo {
            name: ty.name().to_string(),
            id: ty.id(),
            block_size: ty.block_size() as u32,
            type_size: ty.type_size() as u32,
            supported: ty.is_supported(),
            quantizable: type_traits(ty).is_some_and(|t| t.quantize.is_some()),
        })
        .collect()
}

pub struct DequantizeTask {
    ty: GgmlType,
    data: Uint8Array,
}

#[napi]
impl Task for DequantizeTask {
    type Output = Vec<f32>;
    type JsValue = Float32Array;

    fn compute(&mut self) -> napi::Result<Vec<f32>> {
        guard(|| {
            let block = self.ty.block_size();
            let blocks = self.data.len() / self.ty.type_size().max(1);
            let mut out = vec![0f32; blocks * block];
            formats::dequantize(self.ty, &self.data, &mut out).map_err(quant_error)?;
            Ok(out)
        })
    }

    fn resolve(&mut self, _env: Env, output: Vec<f32>) -> napi::Result<Float32Array> {
        Ok(Float32Array::new(output))
    }
}

/// Dequantizes whole blocks of `type` (a ggml type name such as "Q4_K") to f32.
#[napi(ts_return_type = "Promise<Float32Array>")]
pub fn dequantize(type_name: String, data: Uint8Array) -> napi::Result<AsyncTask<DequantizeTask>> {
    Ok(AsyncTask::new(DequantizeTask {
        ty: ggml_type(&type_name)?,
        data,
    }))
}

pub struct QuantizeTask {
    ty: GgmlType,
    data: Float32Array,
}

#[napi]
impl Task for QuantizeTask {
    type Output = Vec<u8>;
    type JsValue = Uint8Array;

    fn compute(&mut self) -> napi::Result<Vec<u8>> {
        guard(|| {
            let bytes = self.ty.bytes_for(self.data.len() as u64).ok_or_else(|| {
                js_error(
                    "InvalidArgumentError",
                    format!(
                        "{} values are not a whole number of {} blocks of {}",
                        self.data.len(),
                        self.ty,
                        self.ty.block_size()
                    ),
                )
            })?;
            let mut out = vec![0u8; bytes as usize];
            formats::quantize(self.ty, &self.data, &mut out).map_err(quant_error)?;
            Ok(out)
        })
    }

    fn resolve(&mut self, _env: Env, output: Vec<u8>) -> napi::Result<Uint8Array> {
        Ok(Uint8Array::new(output))
    }
}

/// Quantizes f32 values (a whole number of blocks) into `type`.
#[napi(ts_return_type = "Promise<Uint8Array>")]
pub fn quantize(type_name: String, data: Float32Array) -> napi::Result<AsyncTask<QuantizeTask>> {
    Ok(AsyncTask::new(QuantizeTask {
        ty: ggml_type(&type_name)?,
        data,
    }))
}
