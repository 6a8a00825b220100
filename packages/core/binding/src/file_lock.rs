//! Advisory file locks (`flock`), for the Hub cache: the lock files huggingface_hub takes around
//! a download (`<cache>/.locks/models--org--name/<blob>.lock`, through Python's filelock) are
//! taken here the same way, so one download of a blob runs at a time across our processes and
//! Python's.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::Path;

use napi::{Error, Result, Status};
use napi_derive::napi;

/// A held lock; `release` (or the process's exit) lets the next holder in.
#[napi]
pub struct FileLock {
    file: Option<File>,
}

#[napi]
impl FileLock {
    #[napi]
    pub fn release(&mut self) {
        if let Some(file) = self.file.take() {
            // Closing the file releases the lock too; unlocking first makes it explicit.
            let _ = file.unlock();
        }
    }
}

/// Takes the exclusive lock on `path` (created with its folder if missing) if nobody holds it;
/// null while another process (or another handle) does.
#[napi(catch_unwind)]
pub fn try_lock_file(path: String) -> Result<Option<FileLock>> {
    let path = Path::new(&path);
    let io = |what: &str, e: std::io::Error| {
        Error::new(
            Status::GenericFailure,
            format!("{}: {what}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io("cannot create the lock's folder", e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io("cannot open the lock file", e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FileLock { file: Some(file) })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io("cannot lock", e)),
    }
}
