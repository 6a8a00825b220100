//! Split GGUFs, as llama.cpp's `gguf-split` writes them: `name-00001-of-00003.gguf` holds the
//! metadata and the first tensors, each next part (`split.no` = 1, 2, …) more tensors; every part
//! carries `split.count` and the first `split.tensors.count`. Opening the first part opens the
//! others from the same folder and lists their tensors as its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FileBytes, GgufFile};
use crate::{QuantError, Result};

pub(super) struct SplitPart {
    pub(super) bytes: Arc<FileBytes>,
    pub(super) data_offset: u64,
}

const SPLIT_COUNT: &str = "split.count";
const SPLIT_NO: &str = "split.no";
const SPLIT_TENSORS: &str = "split.tensors.count";

/// The path of part `no` (0-based) of `count`, beside the first part named `prefix-00001-of-…`.
fn part_path(dir: &Path, prefix: &str, no: u32, count: u32) -> PathBuf {
    dir.join(format!("{prefix}-{:05}-of-{count:05}.gguf", no + 1))
}

impl GgufFile {
    pub(super) fn open_split_parts(&mut self) -> Result<()> {
        let count = self.get_u32_opt(SPLIT_COUNT)?.unwrap_or(1);
        if count <= 1 {
            return Ok(());
        }
        let no = self.get_u32_opt(SPLIT_NO)?.unwrap_or(0);
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let suffix = format!("-{:05}-of-{count:05}.gguf", no + 1);
        let Some(prefix) = name.strip_suffix(&suffix) else {
            return Err(QuantError::format(
                &self.path,
                format!(
                    "part {} of a {count}-part split GGUF must be named PREFIX{suffix}",
                    no + 1
                ),
            ));
        };
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if no != 0 {
            let first = part_path(&dir, prefix, 0, count);
            return Err(QuantError::format(
                &self.path,
                format!(
                    "part {} of a {count}-part split GGUF; open the first part, {}",
                    no + 1,
                    first.display()
                ),
            ));
        }
        for k in 1..count {
            let path = part_path(&dir, prefix, k, count);
            if !path.exists() {
                return Err(QuantError::format(
                    &self.path,
                    format!(
                        "split GGUF part {} of {count} is missing: {}",
                        k + 1,
                        path.display()
                    ),
                ));
            }
            let part = GgufFile::from_file_bytes(&path, Arc::new(FileBytes::map(&path)?))?;
            let (part_no, part_count) =
                (part.get_u32_opt(SPLIT_NO)?, part.get_u32_opt(SPLIT_COUNT)?);
            if part_no != Some(k) || part_count != Some(count) {
                return Err(QuantError::format(
                    &path,
                    format!(
                        "expected part {} of {count} of {} (split.no {k}, split.count {count}), found split.no {part_no:?}, split.count {part_count:?}",
                        k + 1,
                        self.path.display()
                    ),
                ));
            }
            let index = self.parts.len() + 1;
            for mut info in part.tensors {
                if self.tensor_index.contains_key(&info.name) {
                    return Err(QuantError::format(
                        &path,
                        format!("tensor `{}` is also in an earlier part", info.name),
                    ));
                }
                info.part = index;
                self.tensor_index
                    .insert(info.name.clone(), self.tensors.len());
                self.tensors.push(info);
            }
            self.parts.push(SplitPart {
                bytes: part.bytes,
                data_offset: part.data_offset,
            });
        }
        if let Some(expected) = self.get_u64_opt(SPLIT_TENSORS)? {
            if expected != self.tensors.len() as u64 {
                return Err(QuantError::format(
                    &self.path,
                    format!(
                        "{SPLIT_TENSORS} is {expected}, but the {count} parts hold {} tensors",
                        self.tensors.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// How many files hold this model's tensors: 1, or a split GGUF's part count.
    pub fn part_count(&self) -> usize {
        self.parts.len() + 1
    }
}
