//! Shared by the thin `packages/*/binding` crates: how Rust failures become JavaScript errors.
//!
//! Errors cross the boundary as `Error` objects whose message starts with `[Code] `; each
//! package's `src/native.ts` turns that prefix into the `code` of its typed error class, so a
//! caller can branch on `err.code` whatever the status napi would have used.

use std::panic::{self, AssertUnwindSafe};

/// An error for JavaScript with a stable code, e.g. `js_error("FormatError", "x.gguf: ...")`.
pub fn js_error(code: &str, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::from_reason(format!("[{code}] {message}"))
}

/// Runs `f`, turning a panic into an `InternalError` so that no bug in a kernel can take the
/// Node process down. Used around every `AsyncTask::compute` (napi's `catch_unwind` attribute
/// covers only synchronous exports).
pub fn guard<T>(f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(js_error(
                "InternalError",
                format!("native code panicked: {what}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_panics_into_errors() {
        let err = guard::<()>(|| panic!("kaboom")).unwrap_err();
        assert!(err.reason.contains("[InternalError]"));
        assert!(err.reason.contains("kaboom"));
        assert_eq!(guard(|| Ok(3)).unwrap(), 3);
    }
}
