//! GGUF writer -> reader round trips, and hand-built edge files (the negative list of
//! llama.cpp's `test-gguf.cpp` and shared/research/reliability.md §4.A).

use std::path::{Path, PathBuf};

use mistralrs_quant::gguf::{GgufArray, GgufFile, GgufValue, GgufValueType, GgufWriter};
use mistralrs_quant::{GgmlType, QuantError};

const NAME: &str = "edge.gguf";

/// Little-endian byte builder for hand-made files.
#[derive(Default)]
struct B(Vec<u8>);

impl B {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> B {
        B::default()
            .raw(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }
    fn raw(mut self, b: &[u8]) -> B {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(self, v: u32) -> B {
        self.raw(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> B {
        self.raw(&v.to_le_bytes())
    }
    fn str(self, s: &[u8]) -> B {
        self.u64(s.len() as u64).raw(s)
    }
    /// A metadata entry of type u32.
    fn kv_u32(self, key: &str, v: u32) -> B {
        self.str(key.as_bytes()).u32(4).u32(v)
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> B {
        let mut b = self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }
    fn pad(mut self, align: usize) -> B {
        self.0.resize(self.0.len().next_multiple_of(align), 0);
        self
    }
    fn zeros(mut self, n: usize) -> B {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

fn open(bytes: Vec<u8>) -> mistralrs_quant::Result<GgufFile> {
    GgufFile::from_bytes(Path::new(NAME), bytes)
}

/// The error message of a file that must be refused; checks that it names the file.
fn refused(bytes: Vec<u8>) -> String {
    match open(bytes) {
        Err(QuantError::Format { path, what }) => {
            assert_eq!(path, Path::new(NAME));
            what
        }
        Err(other) => panic!("wrong error kind: {other}"),
        Ok(f) => panic!("accepted a bad file: {f:?}"),
    }
}

fn assert_refused(bytes: Vec<u8>, needle: &str) {
    let what = refused(bytes);
    assert!(
        what.contains(needle),
        "`{what}` does not mention `{needle}`"
    );
}

fn every_value() -> Vec<(&'static str, GgufValue)> {
    let nested = vec![
        GgufArray::from(vec![1u32, 2]),
        GgufArray::from(vec!["x".to_string()]),
        GgufArray::empty(GgufValueType::F64),
        GgufArray::Array(vec![GgufArray::from(vec![true, false])]),
        GgufArray::empty(GgufValueType::Array),
    ];
    let mut deep = GgufArray::from(vec![7i64]);
    for _ in 1..mistralrs_quant::gguf::MAX_ARRAY_DEPTH {
        deep = GgufArray::Array(vec![deep]);
    }
    vec![
        ("general.architecture", "llama".into()),
        ("v.u8", 200u8.into()),
        ("v.i8", (-100i8).into()),
        ("v.u16", 60000u16.into()),
        ("v.i16", (-30000i16).into()),
        ("v.u32", 4_000_000_000u32.into()),
        ("v.i32", (-2_000_000_000i32).into()),
        ("v.f32", 1.5f32.into()),
        ("v.bool", true.into()),
        ("v.string.empty", "".into()),
        ("v.string.unicode", "héllo ▁世界 🦀".into()),
        ("v.u64", u64::MAX.into()),
        ("v.i64", i64::MIN.into()),
        ("v.f64", (-2.25f64).into()),
        ("a.u8", vec![0u8, 255].into()),
        ("a.i8", vec![-128i8, 127].into()),
        ("a.u16", vec![1u16, 65535].into()),
        ("a.i16", vec![-1i16].into()),
        ("a.u32", vec![3u32; 5].into()),
        ("a.i32", vec![-5i32, 5].into()),
        ("a.f32", vec![0.5f32, -0.0, f32::INFINITY].into()),
        ("a.bool", vec![true, false, true].into()),
        ("a.string", vec!["a", "", "ü"].into()),
        ("a.u64", vec![u64::MAX].into()),
        ("a.i64", vec![i64::MIN, 0].into()),
        ("a.f64", vec![1e300f64].into()),
        ("a.nested", nested.into()),
        ("a.deep", GgufValue::Array(deep)),
    ]
    .into_iter()
    .chain(empty_arrays())
    .collect()
}

/// An empty array of every element type: the element type must survive the round trip.
fn empty_arrays() -> impl Iterator<Item = (&'static str, GgufValue)> {
    const KEYS: [&str; 13] = [
        "e.u8", "e.i8", "e.u16", "e.i16", "e.u32", "e.i32", "e.f32", "e.bool", "e.string",
        "e.array", "e.u64", "e.i64", "e.f64",
    ];
    KEYS.into_iter().enumerate().map(|(id, key)| {
        let ty = GgufValueType::from_id(id as u32).unwrap();
        (key, GgufValue::Array(GgufArray::empty(ty)))
    })
}

/// Tensors of several types, data filled with a pattern so misplaced bytes show.
fn tensors() -> Vec<(&'static str, Vec<u64>, GgmlType)> {
    vec![
        ("token_embd.weight", vec![8, 3], GgmlType::F32),
        ("blk.0.attn_q.weight", vec![64, 2], GgmlType::Q4_0),
        ("blk.0.ffn_up.weight", vec![256, 2], GgmlType::Q4_K),
        ("blk.0.ffn_down.weight", vec![32], GgmlType::Q8_0),
        ("blk.0.iq.weight", vec![256], GgmlType::IQ2_XXS), // read, not supported for compute
        ("output_norm.weight", vec![5], GgmlType::F16),
        ("empty", vec![0, 4], GgmlType::Q6_K),
        ("scalar", vec![], GgmlType::I32),
        ("four_dims", vec![2, 3, 1, 2], GgmlType::I8),
    ]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn build(alignment: Option<u32>) -> (GgufWriter<'static>, Vec<Vec<u8>>) {
    let mut w = GgufWriter::new();
    if let Some(a) = alignment {
        w.add_metadata("general.alignment", a).unwrap();
    }
    for (k, v) in every_value() {
        w.add_metadata(k, v).unwrap();
    }
    let mut datas = Vec::new();
    for (i, (name, dims, ty)) in tensors().into_iter().enumerate() {
        let n: u64 = dims.iter().product();
        let data = pattern(ty.bytes_for(n).unwrap() as usize, i as u8);
        w.add_tensor(name, &dims, ty, data.clone()).unwrap();
        datas.push(data);
    }
    (w, datas)
}

fn check_round_trip(file: &GgufFile, alignment: u64, datas: &[Vec<u8>]) {
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), alignment);
    assert_eq!(file.data_offset() % alignment, 0);
    let expected: Vec<_> = every_value();
    let got: Vec<_> = file
        .metadata()
        .iter()
        .filter(|(k, _)| k != "general.alignment")
        .collect();
    assert_eq!(got.len(), expected.len());
    for ((k, v), (ek, ev)) in got.iter().zip(&expected) {
        assert_eq!(k, ek);
        assert_eq!(v, ev, "value of {k}");
        assert_eq!(v.value_type(), ev.value_type());
        if let (Some(a), Some(b)) = (v.as_array(), ev.as_array()) {
            assert_eq!(a.element_type(), b.element_type(), "element type of {k}");
        }
    }
    assert_eq!(file.tensors().len(), datas.len());
    for ((info, (name, dims, ty)), data) in file.tensors().iter().zip(tensors()).zip(datas) {
        assert_eq!((info.name.as_str(), &info.dims, info.ty), (name, &dims, ty));
        assert_eq!(info.offset % alignment, 0);
        assert_eq!(info.size_bytes, data.len() as u64);
        assert_eq!(info.n_elements, dims.iter().product::<u64>());
        assert_eq!(file.tensor_data(info), &data[..], "data of {name}");
        assert_eq!(file.tensor(name), Some(info));
    }
    assert!(!file.tensor("blk.0.iq.weight").unwrap().ty.is_supported());
}

#[test]
fn round_trip_in_memory_with_default_and_custom_alignment() {
    for alignment in [None, Some(1), Some(64), Some(4096)] {
        let (w, datas) = build(alignment);
        let bytes = w.to_bytes();
        let file = open(bytes.clone()).unwrap();
        check_round_trip(&file, alignment.map_or(32, u64::from), &datas);
        assert_eq!(file.file_size(), bytes.len() as u64);
        // Writing what was read gives the same bytes.
        let mut again = GgufWriter::new();
        for (k, v) in file.metadata() {
            again.add_metadata(k, v.clone()).unwrap();
        }
        for t in file.tensors() {
            again
                .add_tensor(&t.name, &t.dims, t.ty, file.tensor_data(t))
                .unwrap();
        }
        assert_eq!(again.to_bytes(), bytes);
    }
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mistralrs-gguf-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn round_trip_through_a_mapped_file() {
    let dir = temp_dir("mapped");
    let path = dir.join("model.gguf");
    let (w, datas) = build(None);
    w.write(&path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("model.gguf")],
        "temp file left"
    );
    let file = GgufFile::open(&path).unwrap();
    assert!(file.file_bytes().is_mapped());
    check_round_trip(&file, 32, &datas);
    // Data is used in place: the slice points into the mapping.
    let info = &file.tensors()[0];
    let base = file.file_bytes().as_ptr() as usize;
    assert_eq!(
        file.tensor_data(info).as_ptr() as usize - base,
        file.data_offset() as usize
    );
    drop(file);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn typed_getters_convert_in_range_and_name_the_key() {
    let (w, _) = build(None);
    let file = open(w.to_bytes()).unwrap();
    assert_eq!(file.get_string("general.architecture").unwrap(), "llama");
    assert_eq!(file.get_u32("v.u8").unwrap(), 200);
    assert_eq!(file.get_i64("v.i32").unwrap(), -2_000_000_000);
    assert_eq!(file.get_u64("v.u64").unwrap(), u64::MAX);
    assert_eq!(file.get_f32("v.f64").unwrap(), -2.25);
    assert!(file.get_bool("v.bool").unwrap());
    assert_eq!(file.get_str_array("a.string").unwrap(), ["a", "", "ü"]);
    assert_eq!(file.get_f32_array("a.f32").unwrap().len(), 3);
    assert_eq!(file.get_i32_array("a.i32").unwrap(), [-5, 5]);
    assert_eq!(file.get_u32_opt("absent").unwrap(), None);
    assert!(file.contains_key("a.deep") && !file.contains_key("absent"));

    let e = file.get_u32("v.i32").unwrap_err().to_string();
    assert!(
        e.starts_with(NAME) && e.contains("`v.i32`") && e.contains("i32"),
        "{e}"
    );
    let e = file.get_u32("missing.key").unwrap_err().to_string();
    assert!(e.contains("missing metadata key `missing.key`"), "{e}");
    let e = file.get_str_array("a.u32").unwrap_err().to_string();
    assert!(e.contains("array of 5 u32"), "{e}");
    let e = file.tensor_data_by_name("nope").unwrap_err().to_string();
    assert!(e.contains("no tensor named `nope`"), "{e}");
}

#[test]
fn version_2_reads_like_version_3() {
    let file = open(B::header(2, 0, 1).kv_u32("k", 5).0).unwrap();
    assert_eq!((file.version(), file.get_u32("k").unwrap()), (2, 5));
    // A vocab-only file: no tensors, the data section may start past the end of the file.
    assert!(file.tensors().is_empty() && file.data_offset() > file.file_size());
}

#[test]
fn refuses_bad_headers() {
    assert_refused(vec![], "too short");
    assert_refused(b"GGU".to_vec(), "too short");
    assert_refused(b"GGUF".to_vec(), "version");
    assert_refused(B::header(3, 0, 0).0[..10].to_vec(), "tensor count");
    assert_refused(B::default().raw(b"GGUG").u32(3).u64(0).u64(0).0, "magic");
    assert_refused(B::header(1, 0, 0).0, "version 1 is not supported");
    assert_refused(B::header(4, 0, 0).0, "unsupported GGUF version 4");
    assert_refused(B::header(0x0300_0000, 0, 0).0, "big-endian");
    assert_refused(B::header(3, 0, 0).0[..20].to_vec(), "metadata count");
}

#[test]
fn refuses_huge_counts_at_once() {
    let t = std::time::Instant::now();
    assert_refused(B::header(3, 1 << 63, 0).0, "need at least");
    assert_refused(B::header(3, 0, u64::MAX).0, "need at least");
    assert_refused(B::header(3, u64::MAX, u64::MAX).0, "need at least");
    // The 43-byte file of gguf-py PR #27188: one u8 array claiming 2^63 elements.
    let file = B::header(3, 0, 1).str(b"k").u32(9).u32(0).u64(1 << 63).0;
    assert_refused(file, "array of 9223372036854775808 u8");
    let file = B::header(3, 0, 1).str(b"k").u32(9).u32(8).u64(4).u64(0).0;
    assert_refused(file, "array of 4 string");
    let file = B::header(3, 0, 1).str(b"k").u32(8).u64(1 << 63).0;
    assert_refused(file, "string length");
    let file = B::header(3, 0, 1).str(b"k").u32(8).u64(4).raw(b"abc").0;
    assert_refused(file, "string length 4 exceeds the 3 bytes left");
    let file = B::header(3, 0, 1).u64(u64::MAX).raw(&[0; 16]).0;
    assert_refused(file, "metadata entry 0: key");
    assert!(
        t.elapsed().as_millis() < 100,
        "rejections must not scan or allocate"
    );
}

#[test]
fn refuses_bad_metadata() {
    let kv = |key: &[u8], ty: u32, body: &[u8]| B::header(3, 0, 1).str(key).u32(ty).raw(body).0;
    assert_refused(kv(b"", 4, &[0; 4]), "empty key");
    assert_refused(kv(b"k", 13, &[0; 4]), "unknown value type 13");
    assert_refused(kv(b"k", 7, &[2]), "bool byte is 2");
    assert_refused(
        kv(b"k", 8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xC3, 0x28]),
        "not valid UTF-8",
    );
    assert_refused(kv(&[b'k', 0xFF], 4, &[0; 4]), "not valid UTF-8");
    assert_refused(
        kv(b"k", 9, &[99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        "element type 99",
    );
    let dup = B::header(3, 0, 2).kv_u32("same", 1).kv_u32("same", 2).0;
    assert_refused(dup, "duplicate metadata key `same`");
    // Nine levels of arrays: one more than allowed.
    let mut nine = B::header(3, 0, 1).str(b"k").u32(9);
    for _ in 0..8 {
        nine = nine.u32(9).u64(1);
    }
    assert_refused(nine.u32(0).u64(0).0, "nested deeper than 8");
    for (value, needle) in [(0u32, "power of two"), (3, "power of two")] {
        assert_refused(
            B::header(3, 0, 1).kv_u32("general.alignment", value).0,
            needle,
        );
    }
    let as_i32 = B::header(3, 0, 1)
        .str(b"general.alignment")
        .u32(5)
        .u32(32)
        .0;
    assert_refused(
        as_i32,
        "general.alignment must be a u32 power of two, found i32 32",
    );
    let as_str = B::header(3, 0, 1)
        .str(b"general.alignment")
        .u32(8)
        .str(b"32")
        .0;
    assert_refused(as_str, "found string");
}

/// One tensor `t` with the given info and `data` bytes of data at the default alignment.
fn one_tensor(dims: &[u64], ty: u32, offset: u64, data: usize) -> Vec<u8> {
    B::header(3, 1, 0)
        .tensor("t", dims, ty, offset)
        .pad(32)
        .zeros(data)
        .0
}

#[test]
fn refuses_bad_tensor_infos() {
    assert!(open(one_tensor(&[4], 0, 0, 16)).is_ok());
    assert_refused(one_tensor(&[1, 1, 1, 1, 1], 0, 0, 4), "5 dimensions");
    assert_refused(one_tensor(&[1 << 63], 0, 0, 4), "beyond the int64 range");
    assert_refused(one_tensor(&[1 << 32, 1 << 32], 0, 0, 4), "overflows int64");
    for retired in [4u32, 5, 31, 36, 40, 1000, u32::MAX] {
        assert_refused(
            one_tensor(&[32], retired, 0, 64),
            &format!("unknown ggml type id {retired}"),
        );
    }
    assert_refused(
        one_tensor(&[33], GgmlType::Q4_0.id(), 0, 64),
        "not whole Q4_0 blocks",
    );
    assert_refused(
        one_tensor(&[128, 2], GgmlType::Q4_K.id(), 0, 512),
        "not whole Q4_K blocks",
    );
    assert_refused(
        one_tensor(&[], GgmlType::Q4_0.id(), 0, 64),
        "not whole Q4_0 blocks",
    );
    assert_refused(one_tensor(&[4], 0, 8, 64), "not a multiple of 32");
    assert_refused(one_tensor(&[4], 0, 32, 64), "offset 32 but 0 expected");
    assert_refused(one_tensor(&[4], 0, 0, 15), "truncated");
    assert_refused(one_tensor(&[4, 1 << 40], 0, 0, 64), "truncated");
    let empty_name = B::header(3, 1, 0)
        .tensor("", &[4], 0, 0)
        .pad(32)
        .zeros(16)
        .0;
    assert_refused(empty_name, "empty name");
    let dup = B::header(3, 2, 0)
        .tensor("t", &[4], 0, 0)
        .tensor("t", &[4], 0, 32)
        .pad(32);
    assert_refused(dup.zeros(48).0, "duplicate tensor name `t`");
    let gap = B::header(3, 2, 0)
        .tensor("a", &[4], 0, 0)
        .tensor("b", &[4], 0, 64)
        .pad(32);
    assert_refused(gap.zeros(96).0, "tensor `b`: offset 64 but 32 expected");
    let overlap = B::header(3, 2, 0)
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[4], 0, 32)
        .pad(32);
    assert_refused(overlap.zeros(96).0, "offset 32 but 64 expected");
}

#[test]
fn accepts_zero_dims_and_unsupported_types() {
    let file = open(one_tensor(&[0, 7], 0, 0, 0)).unwrap();
    let t = &file.tensors()[0];
    assert_eq!(
        (t.n_elements, t.size_bytes, file.tensor_data(t).len()),
        (0, 0, 0)
    );
    let file = open(one_tensor(&[256], GgmlType::IQ1_M.id(), 0, 56)).unwrap();
    assert_eq!(file.tensors()[0].ty, GgmlType::IQ1_M);
    assert_eq!(file.tensor_data(&file.tensors()[0]).len(), 56);
}

#[test]
fn writer_checks_what_it_is_given() {
    let mut w = GgufWriter::new();
    assert!(w
        .add_tensor("t", &[4], GgmlType::F32, vec![0u8; 15])
        .is_err());
    assert!(w
        .add_tensor("t", &[33], GgmlType::Q4_0, vec![0u8; 18])
        .is_err());
    assert!(w
        .add_tensor("t", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0u8; 4])
        .is_err());
    assert!(w.add_tensor("", &[1], GgmlType::F32, vec![0u8; 4]).is_err());
    w.add_tensor("t", &[1], GgmlType::F32, &[0u8; 4][..])
        .unwrap();
    assert!(w
        .add_tensor("t", &[1], GgmlType::F32, vec![0u8; 4])
        .is_err());
    assert!(w.add_metadata("general.alignment", 32i32).is_err());
    assert!(w.add_metadata("general.alignment", 48u32).is_err());
    assert!(w.add_metadata("", 1u8).is_err());
    w.add_metadata("k", 1u8).unwrap();
    assert!(w.add_metadata("k", 2u8).is_err());
    let mut deep = GgufArray::from(vec![1u8]);
    for _ in 0..mistralrs_quant::gguf::MAX_ARRAY_DEPTH {
        deep = GgufArray::Array(vec![deep]);
    }
    assert!(w.add_metadata("deep", deep).is_err());
    assert_eq!(open(w.to_bytes()).unwrap().tensors().len(), 1);
}

#[test]
fn open_reports_missing_files_and_folders() {
    let e = GgufFile::open(Path::new("/nonexistent/x.gguf")).unwrap_err();
    assert!(matches!(e, QuantError::Io { .. }), "{e}");
    let e = GgufFile::open(&std::env::temp_dir()).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

/// Writes the tensors of `build` as a split GGUF of `parts.len()` files, `parts[k]` tensors in
/// part `k`, named and keyed as llama.cpp's gguf-split does.
fn write_split(dir: &Path, prefix: &str, parts: &[usize]) -> Vec<Vec<u8>> {
    let all = tensors();
    let count = parts.len() as u16;
    let mut datas = Vec::new();
    let mut next = 0;
    for (no, &n) in parts.iter().enumerate() {
        let mut w = GgufWriter::new();
        if no == 0 {
            for (k, v) in every_value() {
                w.add_metadata(k, v).unwrap();
            }
            w.add_metadata("split.tensors.count", all.len() as i32)
                .unwrap();
        }
        w.add_metadata("split.no", no as u16).unwrap();
        w.add_metadata("split.count", count).unwrap();
        for (i, (name, dims, ty)) in all.iter().enumerate().skip(next).take(n) {
            let data = pattern(
                ty.bytes_for(dims.iter().product()).unwrap() as usize,
                i as u8,
            );
            w.add_tensor(name, dims, *ty, data.clone()).unwrap();
            datas.push(data);
        }
        next += n;
        let path = dir.join(format!("{prefix}-{:05}-of-{count:05}.gguf", no + 1));
        std::fs::write(path, w.to_bytes()).unwrap();
    }
    datas
}

#[test]
fn a_split_gguf_opens_from_its_first_part_with_every_tensor() {
    let dir = temp_dir("split");
    let n = tensors().len();
    let datas = write_split(&dir, "model", &[1, n - 3, 2]);
    let file = GgufFile::open(&dir.join("model-00001-of-00003.gguf")).unwrap();
    assert_eq!(file.part_count(), 3);
    assert_eq!(file.tensors().len(), n);
    for ((info, (name, dims, ty)), data) in file.tensors().iter().zip(tensors()).zip(&datas) {
        assert_eq!((info.name.as_str(), &info.dims, info.ty), (name, &dims, ty));
        assert_eq!(file.tensor_data(info), &data[..], "data of {name}");
        assert_eq!(file.tensor(name), Some(info));
    }
    assert_eq!(file.tensors().iter().map(|t| t.part).max(), Some(2));

    // A later part names the first; a missing part and a wrong name are refused.
    let later = GgufFile::open(&dir.join("model-00002-of-00003.gguf"))
        .err()
        .unwrap();
    assert!(later.to_string().contains("open the first part"), "{later}");
    std::fs::rename(
        dir.join("model-00003-of-00003.gguf"),
        dir.join("elsewhere.gguf"),
    )
    .unwrap();
    let missing = GgufFile::open(&dir.join("model-00001-of-00003.gguf"))
        .err()
        .unwrap();
    assert!(
        missing.to_string().contains("part 3 of 3 is missing"),
        "{missing}"
    );
    std::fs::rename(
        dir.join("model-00001-of-00003.gguf"),
        dir.join("renamed.gguf"),
    )
    .unwrap();
    let renamed = GgufFile::open(&dir.join("renamed.gguf")).err().unwrap();
    assert!(
        renamed
            .to_string()
            .contains("must be named PREFIX-00001-of-00003.gguf"),
        "{renamed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
