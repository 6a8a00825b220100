//! The bytes of a model file: a read-only memory map, or a buffer for files built in memory.
//!
//! Readers keep it in an `Arc` so that anything holding tensor slices can keep the mapping
//! alive. Mapping a file that another process truncates or rewrites while it is mapped raises
//! SIGBUS on the next touch of a vanished page; a mapping cannot defend against that, so model
//! files must not be modified while they are open.

use std::fs::File;
use std::io::{self, BufWriter};
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

use crate::{QuantError, Result};

/// Read-only file contents, mapped or owned.
pub struct FileBytes {
    inner: Inner,
}

enum Inner {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `path` read-only. Nothing is read yet: pages come in as they are touched.
    pub fn map(path: &Path) -> Result<FileBytes> {
        let file = File::open(path).map_err(|e| QuantError::io(path, e))?;
        let meta = file.metadata().map_err(|e| QuantError::io(path, e))?;
        if !meta.is_file() {
            return Err(QuantError::format(path, "not a regular file"));
        }
        // SAFETY: the mapping is read-only and private to this process; memmap2 keeps it valid
        // for the life of `Mmap`. The one hazard, another process truncating the file while it
        // is mapped (SIGBUS), is outside what safe code can prevent and is documented above.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| QuantError::io(path, e))?;
        Ok(FileBytes {
            inner: Inner::Mapped(map),
        })
    }

    /// Wraps bytes already in memory (tests, files built by a writer).
    pub fn from_vec(bytes: Vec<u8>) -> FileBytes {
        FileBytes {
            inner: Inner::Owned(bytes),
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.inner {
            Inner::Mapped(map) => map,
            Inner::Owned(vec) => vec,
        }
    }

    /// Gives back the resident pages wholly inside `range` of a mapped file, once their
    /// bytes have been copied elsewhere (weights repacked at load): they stop counting in the
    /// process's resident memory, and are read again from the file if touched later. Bytes in
    /// memory are left alone.
    pub fn release_pages(&self, range: std::ops::Range<usize>) {
        const PAGE: usize = 4096;
        if let Inner::Mapped(map) = &self.inner {
            let start = range.start.div_ceil(PAGE) * PAGE;
            let end = range.end.min(map.len()) / PAGE * PAGE;
            if start < end {
                // SAFETY: a read-only private file mapping has no changes to lose: the pages
                // are simply re-read from the file on the next access. The range is inside
                // the map (clamped above). A refusal only means the pages stay resident.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
    }

    /// Whether the bytes are a memory map of a file (rather than a buffer).
    pub fn is_mapped(&self) -> bool {
        matches!(self.inner, Inner::Mapped(_))
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "owned" };
        write!(f, "FileBytes({kind}, {} bytes)", self.len())
    }
}

/// Writes a file through `write` into a temporary file beside `path`, then renames it over
/// `path`: a reader never sees a half-written file, and a failure leaves any old file intact.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| QuantError::invalid(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        QuantError::io(path, e)
    })
}
