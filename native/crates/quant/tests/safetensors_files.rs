//! safetensors writer -> reader round trips, hand-built edge files (shared/research/
//! reliability.md §4.B) and sharded model directories.

use std::path::{Path, PathBuf};

use mistralrs_quant::safetensors::{Dtype, SafetensorsFile, SafetensorsModel, SafetensorsWriter};
use mistralrs_quant::QuantError;

const NAME: &str = "edge.safetensors";

fn open(bytes: Vec<u8>) -> mistralrs_quant::Result<SafetensorsFile> {
    SafetensorsFile::from_bytes(Path::new(NAME), bytes)
}

/// A file from a header written by hand and raw data.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn assert_refused(bytes: Vec<u8>, needle: &str) {
    match open(bytes) {
        Err(QuantError::Format { path, what }) => {
            assert_eq!(path, Path::new(NAME));
            assert!(
                what.contains(needle),
                "`{what}` does not mention `{needle}`"
            );
        }
        Err(other) => panic!("wrong error kind: {other}"),
        Ok(f) => panic!("accepted a bad file: {f:?}"),
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn sample_writer() -> SafetensorsWriter<'static> {
    let mut w = SafetensorsWriter::new();
    w.add_metadata("format", "pt");
    w.add_metadata("note", "ünïcode \"quoted\"");
    w.add_tensor(
        "f32",
        Dtype::F32,
        &[2, 2],
        f32_bytes(&[1.0, -2.5, 0.0, 3.25]),
    )
    .unwrap();
    let f16: Vec<u8> = [1.0f32, -0.5]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    w.add_tensor("f16", Dtype::F16, &[2], f16).unwrap();
    w.add_tensor("bf16", Dtype::BF16, &[1], vec![0x80, 0x3F])
        .unwrap();
    w.add_tensor("f64", Dtype::F64, &[1], 0.75f64.to_le_bytes().to_vec())
        .unwrap();
    w.add_tensor("e4m3", Dtype::F8_E4M3, &[3], vec![0x38, 0x7E, 0xB8])
        .unwrap();
    w.add_tensor("e5m2", Dtype::F8_E5M2, &[2], vec![0x3C, 0xC0])
        .unwrap();
    w.add_tensor("e8m0", Dtype::F8_E8M0, &[1], vec![128])
        .unwrap();
    w.add_tensor("scalar", Dtype::I64, &[], (-7i64).to_le_bytes().to_vec())
        .unwrap();
    w.add_tensor("empty", Dtype::U16, &[0, 5], Vec::new())
        .unwrap();
    for (i, dtype) in Dtype::all().enumerate() {
        let data: Vec<u8> = (0..3 * dtype.size_bytes())
            .map(|b| (b + i) as u8 & 1)
            .collect();
        w.add_tensor(&format!("all.{dtype}"), dtype, &[3], data)
            .unwrap();
    }
    w
}

#[test]
fn round_trip_every_dtype_and_convert_floats() {
    let bytes = sample_writer().to_bytes().unwrap();
    let f = open(bytes.clone()).unwrap();
    // Header padded with spaces to 8 bytes, as Hugging Face writes it.
    assert_eq!(f.data_start() % 8, 0);
    let header = std::str::from_utf8(&bytes[8..f.data_start() as usize]).unwrap();
    assert!(header.trim_end_matches(' ').ends_with('}'));
    assert_eq!(f.metadata().get("format").map(String::as_str), Some("pt"));
    assert_eq!(f.metadata()["note"], "ünïcode \"quoted\"");
    assert_eq!(f.tensors().len(), 9 + Dtype::all().count());
    assert_eq!(f.to_f32("f32").unwrap(), [1.0, -2.5, 0.0, 3.25]);
    assert_eq!(f.to_f32("f16").unwrap(), [1.0, -0.5]);
    assert_eq!(f.to_f32("bf16").unwrap(), [1.0]);
    assert_eq!(f.to_f32("f64").unwrap(), [0.75]);
    assert_eq!(f.to_f32("e4m3").unwrap(), [1.0, 448.0, -1.0]);
    assert_eq!(f.to_f32("e5m2").unwrap(), [1.0, -2.0]);
    assert_eq!(f.to_f32("e8m0").unwrap(), [2.0]);
    assert!(f.to_f32("scalar").unwrap_err().to_string().contains("I64"));
    let scalar = f.tensor("scalar").unwrap();
    assert_eq!((scalar.shape.len(), scalar.n_elements), (0, 1));
    assert_eq!(f.tensor_data(scalar), (-7i64).to_le_bytes());
    let empty = f.tensor("empty").unwrap();
    assert_eq!((empty.n_elements, f.tensor_data(empty).len()), (0, 0));
    for dtype in Dtype::all() {
        let info = f.tensor(&format!("all.{dtype}")).unwrap();
        assert_eq!(
            (info.dtype, info.size_bytes()),
            (dtype, 3 * dtype.size_bytes() as u64)
        );
    }
    // Data order follows the order tensors were added.
    let offsets: Vec<u64> = f.tensors().iter().map(|t| t.data_offsets.0).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    assert!(f
        .tensor_data_by_name("nope")
        .unwrap_err()
        .to_string()
        .contains("no tensor named"));
}

#[test]
fn header_is_padded_with_spaces_to_eight_bytes() {
    for n in 1..=9 {
        let mut w = SafetensorsWriter::new();
        w.add_tensor(&"x".repeat(n), Dtype::U8, &[1], vec![9u8])
            .unwrap();
        let bytes = w.to_bytes().unwrap();
        let f = open(bytes.clone()).unwrap();
        assert_eq!(f.data_start() % 8, 0);
        let header = std::str::from_utf8(&bytes[8..f.data_start() as usize]).unwrap();
        let padding = header.len() - header.trim_end_matches(' ').len();
        assert!(
            padding < 8 && header.trim_end_matches(' ').ends_with('}'),
            "{header:?}"
        );
        assert_eq!(f.tensor_data_by_name(&"x".repeat(n)).unwrap(), [9]);
    }
}

#[test]
fn writer_refuses_bad_input() {
    let mut w = SafetensorsWriter::new();
    assert!(w.add_tensor("x", Dtype::F32, &[3], vec![0u8; 11]).is_err());
    assert!(w
        .add_tensor("__metadata__", Dtype::U8, &[1], vec![0u8])
        .is_err());
    w.add_tensor("x", Dtype::F32, &[3], vec![0u8; 12]).unwrap();
    assert!(w.add_tensor("x", Dtype::U8, &[1], vec![0u8]).is_err());
    assert!(w
        .add_tensor("big", Dtype::U8, &[u64::MAX, 2], vec![0u8])
        .is_err());
    assert_eq!(open(w.to_bytes().unwrap()).unwrap().tensors().len(), 1);
}

#[test]
fn refuses_bad_lengths() {
    assert_refused(vec![], "too short");
    assert_refused(vec![1, 0, 0], "too short");
    assert_refused(u64::MAX.to_le_bytes().to_vec(), "exceeds the limit");
    assert_refused((1u64 << 63).to_le_bytes().to_vec(), "exceeds the limit");
    assert_refused(100_000_001u64.to_le_bytes().to_vec(), "exceeds the limit");
    let mut lie = file("{}", &[]);
    lie[0] = 3;
    assert_refused(lie, "exceeds the 2 bytes after the length field");
    assert_refused(file("", &[]), "does not start with `{`");
    assert!(open(file("{}      ", &[])).unwrap().tensors().is_empty());
}

#[test]
fn refuses_bad_headers() {
    let t = r#""t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
    assert!(open(file(&format!("{{{t}}}"), &[0; 8])).is_ok());
    assert_refused(file(" {}", &[]), "does not start");
    assert_refused(file("{\"a\":", &[]), "not a JSON object");
    assert_refused(file("[]", &[]), "does not start");
    assert_refused(file(&format!("{{{t},{t}}}"), &[0; 8]), "duplicate key `t`");
    assert_refused(file(r#"{"__metadata__":{"a":1}}"#, &[]), "is not a string");
    assert_refused(file(r#"{"__metadata__":[]}"#, &[]), "not an object");
    assert_refused(file(r#"{"t":1}"#, &[]), "not an object");
    assert_refused(
        file(r#"{"t":{"dtype":"F32","shape":[2]}}"#, &[]),
        "missing `data_offsets`",
    );
    let q = r#"{"t":{"dtype":"Q9","shape":[2],"data_offsets":[0,2]}}"#;
    assert_refused(file(q, &[0; 2]), "unknown or unsupported dtype `Q9`");
    let f4 = r#"{"t":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#;
    assert_refused(file(f4, &[0; 2]), "dtype `F4`");
    let neg = r#"{"t":{"dtype":"U8","shape":[-1],"data_offsets":[0,2]}}"#;
    assert_refused(file(neg, &[0; 2]), "`shape` is not a list");
    let float = r#"{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2.0]}}"#;
    assert_refused(file(float, &[0; 2]), "`data_offsets` is not a pair");
    let three = r#"{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,1,2]}}"#;
    assert_refused(file(three, &[0; 2]), "`data_offsets` is not a pair");
}

#[test]
fn refuses_bad_offsets() {
    let one = |dtype: &str, shape: &str, begin: u64, end: u64| {
        format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}}}"#)
    };
    assert_refused(file(&one("F32", "[2]", 0, 4), &[0; 4]), "takes 8 bytes");
    assert_refused(
        file(&one("U8", "[2]", 2, 0), &[0; 2]),
        "end before they begin",
    );
    let huge = one("F64", "[4294967296,4294967296]", 0, 8);
    assert_refused(file(&huge, &[0; 8]), "overflows");
    let huge = one("U8", "[18446744073709551615,2]", 0, 8);
    assert_refused(file(&huge, &[0; 8]), "overflows");
    assert_refused(file(&one("U8", "[2]", 0, 2), &[0; 1]), "truncated");
    assert_refused(
        file(&one("U8", "[2]", 1, 3), &[0; 3]),
        "belong to no tensor",
    );
    assert_refused(file(&one("U8", "[2]", 0, 2), &[0; 3]), "cover only 2");
    // Many tensors over the same bytes (attack proposal 4).
    let overlap = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},
                      "b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#;
    assert_refused(file(overlap, &[0; 4]), "overlaps");
    let past_end = one("U8", "[1]", u64::MAX - 1, u64::MAX);
    assert_refused(file(&past_end, &[0; 1]), "no tensor");
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mistralrs-st-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn shard(dir: &Path, name: &str, tensors: &[(&str, f32)]) {
    let mut w = SafetensorsWriter::new();
    for &(t, v) in tensors {
        w.add_tensor(t, Dtype::F32, &[1], f32_bytes(&[v])).unwrap();
    }
    w.write(&dir.join(name)).unwrap();
}

fn index(dir: &Path, entries: &[(&str, &str)]) {
    let map: Vec<String> = entries
        .iter()
        .map(|(t, f)| format!("\"{t}\":\"{f}\""))
        .collect();
    let json = format!(
        r#"{{"metadata":{{"total_size":8}},"weight_map":{{{}}}}}"#,
        map.join(",")
    );
    std::fs::write(dir.join("model.safetensors.index.json"), json).unwrap();
}

fn model_error(dir: &Path) -> String {
    match SafetensorsModel::open_dir(dir) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted a bad model directory"),
    }
}

#[test]
fn sharded_model_lookup_and_errors() {
    let dir = temp_dir("sharded");
    let (a, b) = (
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    );
    shard(&dir, a, &[("x", 1.0), ("y", 2.0)]);
    shard(&dir, b, &[("z", 3.0)]);
    index(&dir, &[("x", a), ("y", a), ("z", b)]);
    let model = SafetensorsModel::open_dir(&dir).unwrap();
    assert_eq!((model.len(), model.shards().len()), (3, 2));
    assert_eq!(model.to_f32("z").unwrap(), [3.0]);
    assert_eq!(model.tensor_data("y").unwrap(), 2f32.to_le_bytes());
    assert_eq!(model.tensor("x").unwrap().0.path(), dir.join(a));
    assert_eq!(model.tensor_names().collect::<Vec<_>>(), ["x", "y", "z"]);
    assert_eq!(model.index_metadata()["total_size"], 8);
    assert!(model
        .to_f32("w")
        .unwrap_err()
        .to_string()
        .contains("no tensor named `w`"));

    index(&dir, &[("x", a), ("z", "model-00003-of-00003.safetensors")]);
    let e = model_error(&dir);
    assert!(
        e.contains("index.json")
            && e.contains("model-00003-of-00003")
            && e.contains("cannot be opened"),
        "{e}"
    );
    index(&dir, &[("x", a), ("q", b)]);
    let e = model_error(&dir);
    assert!(
        e.contains("tensor `q` is listed in shard `model-00002"),
        "{e}"
    );
    index(&dir, &[("x", b)]);
    assert!(model_error(&dir).contains("tensor `x` is listed in shard"));
    for escape in ["../outside.safetensors", "/etc/passwd", "./x.safetensors"] {
        index(&dir, &[("x", escape)]);
        let e = model_error(&dir);
        assert!(e.contains("not a relative path inside"), "{e}");
    }
    shard(&dir, b, &[("x", 3.0), ("w", 4.0)]);
    index(&dir, &[("x", a), ("y", a), ("w", b)]);
    let e = model_error(&dir);
    assert!(e.contains("tensor `x` is also in"), "{e}");
    std::fs::write(dir.join("model.safetensors.index.json"), "{\"weight_map\":").unwrap();
    assert!(model_error(&dir).contains("invalid JSON"));
    std::fs::write(dir.join(a), b"garbage").unwrap();
    index(&dir, &[("x", a)]);
    let e = model_error(&dir);
    assert!(e.contains(a) && e.contains("invalid safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn single_file_model_and_empty_directory() {
    let dir = temp_dir("single");
    assert!(model_error(&dir).contains("no model.safetensors.index.json or model.safetensors"));
    shard(&dir, "model.safetensors", &[("w", 5.0)]);
    let model = SafetensorsModel::open_dir(&dir).unwrap();
    assert!(model.index_path().is_none());
    assert_eq!(model.to_f32("w").unwrap(), [5.0]);
    let file = &model.shards()[0];
    assert!(file.file_bytes().is_mapped());
    let base = file.file_bytes().as_ptr() as usize;
    assert_eq!(
        model.tensor_data("w").unwrap().as_ptr() as usize - base,
        file.data_start() as usize
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A shard (or the single file, or the index) that is a link out of the model directory is
/// refused, as a name that climbs out is; links inside it, and a Hugging Face cache snapshot's
/// links into its repository's blob store, are followed.
#[cfg(unix)]
#[test]
fn links_out_of_the_model_directory_are_refused() {
    use std::os::unix::fs::symlink;
    let root = temp_dir("links");
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    shard(&outside, "stolen.safetensors", &[("x", 9.0)]);
    let escaping = outside.join("stolen.safetensors");

    // Sharded: the index names a shard that links outside.
    let dir = root.join("sharded");
    std::fs::create_dir_all(&dir).unwrap();
    symlink(&escaping, dir.join("model-00001-of-00001.safetensors")).unwrap();
    index(&dir, &[("x", "model-00001-of-00001.safetensors")]);
    let e = model_error(&dir);
    assert!(
        e.contains("`model-00001-of-00001.safetensors` links to")
            && e.contains("outside the model directory"),
        "{e}"
    );
    // A relative link that climbs out is the same.
    std::fs::remove_file(dir.join("model-00001-of-00001.safetensors")).unwrap();
    symlink(
        "../outside/stolen.safetensors",
        dir.join("model-00001-of-00001.safetensors"),
    )
    .unwrap();
    assert!(model_error(&dir).contains("outside the model directory"));
    // The index itself may not link out either.
    let index_dir = root.join("linked-index");
    std::fs::create_dir_all(&index_dir).unwrap();
    index(&outside, &[("x", "stolen.safetensors")]);
    symlink(
        outside.join("model.safetensors.index.json"),
        index_dir.join("model.safetensors.index.json"),
    )
    .unwrap();
    assert!(model_error(&index_dir).contains("`model.safetensors.index.json` links to"));

    // Single file.
    let single = root.join("single");
    std::fs::create_dir_all(&single).unwrap();
    symlink(&escaping, single.join("model.safetensors")).unwrap();
    assert!(model_error(&single).contains("`model.safetensors` links to"));

    // A link within the directory is followed.
    let inside = root.join("inside");
    std::fs::create_dir_all(inside.join("weights")).unwrap();
    shard(&inside.join("weights"), "real.safetensors", &[("x", 1.0)]);
    symlink("weights/real.safetensors", inside.join("model.safetensors")).unwrap();
    assert_eq!(
        SafetensorsModel::open_dir(&inside)
            .unwrap()
            .to_f32("x")
            .unwrap(),
        [1.0]
    );

    // The Hugging Face cache: snapshots/<rev>/file -> ../../blobs/<hash>.
    let repo = root.join("models--org--tiny");
    let (blobs, snapshot) = (repo.join("blobs"), repo.join("snapshots").join("abc123"));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    shard(&blobs, "5f1e", &[("x", 2.0)]);
    symlink("../../blobs/5f1e", snapshot.join("model.safetensors")).unwrap();
    assert_eq!(
        SafetensorsModel::open_dir(&snapshot)
            .unwrap()
            .to_f32("x")
            .unwrap(),
        [2.0]
    );
    // ... but not out of the cache's own repository.
    std::fs::remove_file(snapshot.join("model.safetensors")).unwrap();
    symlink(&escaping, snapshot.join("model.safetensors")).unwrap();
    assert!(model_error(&snapshot).contains("outside the model directory"));
    std::fs::remove_dir_all(&root).unwrap();
}
