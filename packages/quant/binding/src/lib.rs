//! Binding of `@mistralrs/quant`: block formats and model files. Thin by design: argument
//! conversion, errors and async plumbing only; the work happens in `mistralrs-quant`.

mod formats;
mod gguf;
mod gguf_write;
mod safetensors;

use mistralrs_napi_support::js_error;
use mistralrs_quant::QuantError;

pub(crate) fn quant_error(err: QuantError) -> napi::Error {
    js_error(err.code(), err)
}
