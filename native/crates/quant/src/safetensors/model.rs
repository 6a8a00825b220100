//! A model directory: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor: shard file}}`).
//!
//! Shard names from the index must be plain relative paths inside the directory (no `..`, no
//! absolute path, no leading `./`): an index is as untrusted as the weights, and a name such as
//! `../../etc/passwd` must not reach `open`. Symbolic links are followed only where they stay
//! inside the directory, or, for a snapshot of the Hugging Face cache
//! (`<repo>/snapshots/<revision>/`), inside that repository's blob store (`<repo>/blobs/`),
//! where the cache's links point: a shard (or index) that links anywhere else is refused, as a
//! name that climbs out is.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use super::header::MAX_HEADER_LEN;
use super::{SafetensorsFile, SafetensorsTensorInfo};
use crate::{QuantError, Result};

pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const SINGLE_FILE: &str = "model.safetensors";

/// Every tensor of a model, whichever shard holds it.
pub struct SafetensorsModel {
    dir: PathBuf,
    index_path: Option<PathBuf>,
    shards: Vec<SafetensorsFile>,
    /// name -> (shard, position in that shard's `tensors()`)
    lookup: HashMap<String, (usize, usize)>,
    index_metadata: Map<String, Value>,
}

impl SafetensorsModel {
    /// Opens `dir/model.safetensors.index.json` and its shards if the index exists, otherwise
    /// `dir/model.safetensors`.
    pub fn open_dir(dir: &Path) -> Result<SafetensorsModel> {
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            return SafetensorsModel::open_index(&index);
        }
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            Containment::of(dir)?.check(&single, SINGLE_FILE)?;
            let file = SafetensorsFile::open(&single)?;
            return SafetensorsModel::from_shards(dir, None, vec![file], Map::new());
        }
        Err(QuantError::format(
            dir,
            format!("no {INDEX_FILE} or {SINGLE_FILE} in this directory"),
        ))
    }

    /// Opens an index file and every shard it lists (paths relative to the index's folder).
    pub fn open_index(index_path: &Path) -> Result<SafetensorsModel> {
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let fail = |what: String| QuantError::format(index_path, what);
        let containment = Containment::of(dir)?;
        containment.check(index_path, INDEX_FILE)?;
        let size = std::fs::metadata(index_path)
            .map_err(|e| QuantError::io(index_path, e))?
            .len();
        if size > MAX_HEADER_LEN {
            return Err(fail(format!(
                "index of {size} bytes exceeds {MAX_HEADER_LEN}"
            )));
        }
        let text = std::fs::read(index_path).map_err(|e| QuantError::io(index_path, e))?;
        let root: Value =
            serde_json::from_slice(&text).map_err(|e| fail(format!("invalid JSON: {e}")))?;
        let weight_map = root
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| fail("no `weight_map` object".to_string()))?;
        let index_metadata = root
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();

        let mut listed = Vec::with_capacity(weight_map.len());
        for (tensor, file) in weight_map {
            let file = file
                .as_str()
                .ok_or_else(|| fail(format!("weight_map entry of `{tensor}` is not a string")))?;
            if !is_inside(file) {
                return Err(fail(format!(
                    "weight_map maps `{tensor}` to `{file}`, which is not a relative path inside \
                     the model directory"
                )));
            }
            listed.push((tensor.as_str(), file));
        }
        // Sorted shard names give a stable shard order (model-00001-of-00003 first).
        let names: BTreeSet<&str> = listed.iter().map(|&(_, f)| f).collect();
        let mut shards = Vec::with_capacity(names.len());
        for &name in &names {
            containment.check(&dir.join(name), name)?;
            let shard = SafetensorsFile::open(&dir.join(name)).map_err(|e| match e {
                QuantError::Io { source, .. } => fail(format!(
                    "shard `{name}` listed in the index cannot be opened: {source}"
                )),
                other => other,
            })?;
            shards.push(shard);
        }
        let model = SafetensorsModel::from_shards(dir, Some(index_path), shards, index_metadata)?;
        for (tensor, file) in listed {
            let in_listed_shard = model
                .tensor(tensor)
                .is_some_and(|(shard, _)| shard.path() == dir.join(file));
            if !in_listed_shard {
                return Err(fail(format!(
                    "tensor `{tensor}` is listed in shard `{file}` but absent from it"
                )));
            }
        }
        Ok(model)
    }

    fn from_shards(
        dir: &Path,
        index_path: Option<&Path>,
        shards: Vec<SafetensorsFile>,
        index_metadata: Map<String, Value>,
    ) -> Result<SafetensorsModel> {
        let mut lookup = HashMap::new();
        for (s, shard) in shards.iter().enumerate() {
            for (t, info) in shard.tensors().iter().enumerate() {
                if let Some((other, _)) = lookup.insert(info.name.clone(), (s, t)) {
                    return Err(QuantError::format(
                        shard.path(),
                        format!(
                            "tensor `{}` is also in {}; a tensor must be in one shard only",
                            info.name,
                            shards[other].path().display()
                        ),
                    ));
                }
            }
        }
        Ok(SafetensorsModel {
            dir: dir.to_path_buf(),
            index_path: index_path.map(Path::to_path_buf),
            shards,
            lookup,
            index_metadata,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index file, for a sharded model.
    pub fn index_path(&self) -> Option<&Path> {
        self.index_path.as_deref()
    }

    /// The index's `metadata` object (such as `total_size`); empty for a single file.
    pub fn index_metadata(&self) -> &Map<String, Value> {
        &self.index_metadata
    }

    pub fn shards(&self) -> &[SafetensorsFile] {
        &self.shards
    }

    pub fn len(&self) -> usize {
        self.lookup.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lookup.is_empty()
    }

    /// Every tensor name, shard by shard in data order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.shards
            .iter()
            .flat_map(|s| s.tensors().iter().map(|t| t.name.as_str()))
    }

    /// The shard holding `name` and the tensor's info.
    pub fn tensor(&self, name: &str) -> Option<(&SafetensorsFile, &SafetensorsTensorInfo)> {
        let &(s, t) = self.lookup.get(name)?;
        let shard = &self.shards[s];
        Some((shard, &shard.tensors()[t]))
    }

    /// The tensor's bytes in place; an error naming the model directory if there is none.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let (shard, info) = self.require(name)?;
        Ok(shard.tensor_data(info))
    }

    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (shard, _) = self.require(name)?;
        shard.to_f32(name)
    }

    fn require(&self, name: &str) -> Result<(&SafetensorsFile, &SafetensorsTensorInfo)> {
        self.tensor(name)
            .ok_or_else(|| QuantError::format(&self.dir, format!("no tensor named `{name}`")))
    }
}

/// Where a model directory's files may be once links are followed.
struct Containment {
    dir: PathBuf,
    /// The directory, and a Hugging Face cache snapshot's blob store.
    roots: Vec<PathBuf>,
}

impl Containment {
    fn of(dir: &Path) -> Result<Containment> {
        let real = dir.canonicalize().map_err(|e| QuantError::io(dir, e))?;
        let mut roots = vec![real.clone()];
        // `<repo>/snapshots/<revision>`, or a folder inside one (a sentence-transformers
        // module's, `…/<revision>/2_Dense`): the cache links each file to `<repo>/blobs/<hash>`.
        let snapshots = real
            .ancestors()
            .filter_map(Path::parent)
            .find(|p| p.file_name() == Some("snapshots".as_ref()));
        if let Some(blobs) = snapshots
            .and_then(Path::parent)
            .map(|repo| repo.join("blobs"))
        {
            if let Ok(blobs) = blobs.canonicalize() {
                roots.push(blobs);
            }
        }
        Ok(Containment {
            dir: dir.to_path_buf(),
            roots,
        })
    }

    /// Refuses `path` (named `name` in messages) when it resolves outside every root. A path
    /// that does not resolve (missing, a dangling link) is left for opening to report.
    fn check(&self, path: &Path, name: &str) -> Result<()> {
        let Ok(real) = path.canonicalize() else {
            return Ok(());
        };
        if self.roots.iter().any(|root| real.starts_with(root)) {
            return Ok(());
        }
        Err(QuantError::format(
            &self.dir,
            format!(
                "`{name}` links to {}, outside the model directory; a model's files must stay inside it",
                real.display()
            ),
        ))
    }
}

/// Whether `file` is a relative path made only of plain names.
fn is_inside(file: &str) -> bool {
    !file.is_empty()
        && Path::new(file)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::is_inside;

    #[test]
    fn shard_paths_stay_inside() {
        assert!(is_inside("model-00001-of-00002.safetensors"));
        assert!(is_inside("sub/model.safetensors"));
        for bad in [
            "",
            "../x.safetensors",
            "/etc/passwd",
            "a/../../b",
            "./x",
            ".",
        ] {
            assert!(!is_inside(bad), "{bad}");
        }
    }
}
