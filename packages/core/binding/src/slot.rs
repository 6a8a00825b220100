//! A native object that JavaScript holds until it releases it: `None` once released, so that
//! the memory goes then, not when JavaScript's collector gets to the handle.

use std::sync::Mutex;

use mistralrs_napi_support::js_error;

/// Runs `f` on the object, or fails when it was released (`what` names it in messages).
pub(crate) fn with_loaded<T, R>(
    slot: &Mutex<Option<T>>,
    what: &str,
    f: impl FnOnce(&mut T) -> napi::Result<R>,
) -> napi::Result<R> {
    let mut guard = slot
        .lock()
        .map_err(|_| js_error("InternalError", format!("{what} state poisoned")))?;
    let loaded = guard
        .as_mut()
        .ok_or_else(|| js_error("InvalidArgumentError", format!("the {what} was released")))?;
    f(loaded)
}

/// Frees the object now (a call in flight holds the lock and finishes first), and hands the
/// freed memory back to the system.
pub(crate) fn release<T>(slot: &Mutex<Option<T>>, what: &str) -> napi::Result<()> {
    let mut guard = slot
        .lock()
        .map_err(|_| js_error("InternalError", format!("{what} state poisoned")))?;
    *guard = None;
    drop(guard);
    mistralrs_common::memory::return_freed_memory();
    Ok(())
}
