//! Seeded mutation fuzzing of both readers: valid files from the writers, then thousands of
//! random corruptions each. Every input must open or fail with a `Format` error naming the
//! file: a panic fails the test (caught per case so that the report lists the seed and case),
//! and peak memory must stay modest, which only the readers' pre-allocation checks ensure.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use mistralrs_common::test_support::{case_fixture, shared_fixture};
use mistralrs_quant::gguf::{GgufArray, GgufFile, GgufValue, GgufValueType, GgufWriter};
use mistralrs_quant::safetensors::{Dtype, SafetensorsFile, SafetensorsWriter};
use mistralrs_quant::{GgmlType, QuantError};

const GGUF_CASES_PER_SEED: usize = 1250;
const VOCAB_CASES: usize = 200;
const SAFETENSORS_CASES_PER_SEED: usize = 1000;

/// `FUZZ_SCALE=100 cargo test --release -p mistralrs-quant --test fuzz_files` for a long run.
fn scale() -> usize {
    std::env::var("FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

thread_local! {
    /// Refusal messages with numbers and names blanked, counted, to show which checks fire.
    static REASONS: RefCell<BTreeMap<String, usize>> = const { RefCell::new(BTreeMap::new()) };
}

fn record_reason(what: &str) {
    let mut shape = String::new();
    let mut in_name = false;
    for c in what.chars() {
        match c {
            '`' => in_name = !in_name,
            _ if in_name => {}
            '0'..='9' => {
                if !shape.ends_with('#') {
                    shape.push('#')
                }
            }
            _ => shape.push(c),
        }
    }
    let shape: String = shape.chars().take(70).collect();
    REASONS.with(|r| *r.borrow_mut().entry(shape).or_default() += 1);
}
/// Peak resident memory allowed for the whole test process.
const MAX_PEAK_RSS_KIB: u64 = 512 * 1024;

/// splitmix64: small, seeded, good enough to spread mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Values that break size arithmetic: zero, type ids, powers of two around 2^32 and 2^63.
fn extreme(rng: &mut Rng, len: usize) -> u64 {
    let len = len as u64;
    let random = rng.next();
    rng.pick(&[
        0,
        1,
        2,
        3,
        4,
        8,
        9,
        12,
        13,
        31,
        32,
        33,
        64,
        255,
        0x7FFF_FFFF,
        0x8000_0000,
        0xFFFF_FFFF,
        1 << 32,
        (1 << 32) + 1,
        (1 << 42) + 1,
        1 << 62,
        1 << 63,
        i64::MAX as u64,
        u64::MAX,
        u64::MAX - 1,
        len,
        len + 1,
        len.saturating_sub(1),
        random,
    ])
}

/// One random corruption. `hot` is the length of the header region, where most of the
/// structure lives; three mutations in four land there.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, hot: usize) -> &'static str {
    let len = data.len();
    let pos = if rng.below(4) != 0 && hot > 0 {
        rng.below(hot.min(len))
    } else {
        rng.below(len)
    };
    match rng.below(8) {
        0 if len > 0 => {
            data[pos] ^= 1 << rng.below(8);
            "bit flip"
        }
        1 if len > 0 => {
            data[pos] = rng.pick(&[0x00, 0xFF]);
            "byte set"
        }
        2 => {
            let v = (extreme(rng, len) as u32).to_le_bytes();
            overwrite(data, pos, &v);
            "u32 overwrite"
        }
        3 => {
            let v = extreme(rng, len).to_le_bytes();
            overwrite(data, pos, &v);
            "u64 overwrite"
        }
        4 => {
            data.truncate(rng.below(len + 1));
            "truncation"
        }
        5 => {
            let n = 1 + rng.below(16);
            let inserted = rng.bytes(n);
            data.splice(pos..pos, inserted);
            "insertion"
        }
        6 if len > 0 => {
            let end = (pos + 1 + rng.below(16)).min(len);
            data.drain(pos..end);
            "deletion"
        }
        _ => {
            // Fields sit on 4-byte boundaries in the many files that use short names.
            let at = pos & !3;
            let v = extreme(rng, len);
            if rng.below(2) == 0 {
                overwrite(data, at, &v.to_le_bytes());
            } else {
                overwrite(data, at, &(v as u32).to_le_bytes());
            }
            "aligned overwrite"
        }
    }
}

fn overwrite(data: &mut [u8], pos: usize, bytes: &[u8]) {
    let end = (pos + bytes.len()).min(data.len());
    if pos < end {
        data[pos..end].copy_from_slice(&bytes[..end - pos]);
    }
}

/// Tallies outcomes and collects panics with what caused them.
#[derive(Default)]
struct Tally {
    cases: usize,
    opened: usize,
    refused: usize,
    panics: Vec<String>,
}

impl Tally {
    fn run(&mut self, label: &str, check: impl FnOnce() -> bool) {
        self.cases += 1;
        match catch_unwind(AssertUnwindSafe(check)) {
            Ok(true) => self.opened += 1,
            Ok(false) => self.refused += 1,
            Err(_) => self.panics.push(label.to_string()),
        }
    }

    fn finish(&self, what: &str, started: Instant) {
        println!(
            "{what}: {} cases, {} opened, {} refused, {} panics, {:.2?}",
            self.cases,
            self.opened,
            self.refused,
            self.panics.len(),
            started.elapsed()
        );
        let mut reasons: Vec<(String, usize)> = REASONS.with(|r| r.take().into_iter().collect());
        reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        println!("{} distinct refusals; most frequent:", reasons.len());
        for (shape, n) in reasons.iter().take(25) {
            println!("  {n:5}  {shape}");
        }
        assert!(
            self.panics.is_empty(),
            "panics in {what}: {:#?}",
            &self.panics[..self.panics.len().min(20)]
        );
        assert_peak_memory_is_modest();
    }
}

/// Fails on any error but a `Format` naming `name`.
fn expect_format_error(err: QuantError, name: &str) {
    match &err {
        QuantError::Format { path, what } => {
            assert_eq!(path, Path::new(name));
            assert!(!what.is_empty());
            record_reason(what);
            assert!(err.to_string().starts_with(name));
        }
        other => panic!("unexpected error kind: {other}"),
    }
}

fn assert_peak_memory_is_modest() {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    if let Some(kib) = peak {
        println!("peak RSS so far: {} MiB", kib / 1024);
        assert!(
            kib < MAX_PEAK_RSS_KIB,
            "peak RSS {kib} KiB: an allocation was not bounded"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF

fn gguf_seed(
    rng: &mut Rng,
    alignment: Option<u32>,
    tensors: &[(&str, &[u64], GgmlType)],
) -> Vec<u8> {
    let mut w = GgufWriter::new();
    if let Some(a) = alignment {
        w.add_metadata("general.alignment", a).unwrap();
    }
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("general.name", "fuzz ▁seed").unwrap();
    w.add_metadata("llama.context_length", 4096u32).unwrap();
    w.add_metadata("llama.rope.freq_base", 10000.0f32).unwrap();
    w.add_metadata("v.u8", 7u8).unwrap();
    w.add_metadata("v.i16", -3i16).unwrap();
    w.add_metadata("v.u64", 1u64 << 40).unwrap();
    w.add_metadata("v.i64", -1i64).unwrap();
    w.add_metadata("v.f64", 0.5f64).unwrap();
    w.add_metadata("v.bool", false).unwrap();
    w.add_metadata("tokenizer.ggml.tokens", vec!["<s>", "</s>", "▁a", "b", ""])
        .unwrap();
    w.add_metadata(
        "tokenizer.ggml.scores",
        vec![0.0f32, -1.0, -2.0, -3.0, -4.0],
    )
    .unwrap();
    w.add_metadata("tokenizer.ggml.token_type", vec![3i32, 3, 1, 1, 1])
        .unwrap();
    w.add_metadata("a.bool", vec![true, false]).unwrap();
    w.add_metadata("a.u16", vec![1u16, 2, 3]).unwrap();
    w.add_metadata("a.empty", GgufArray::empty(GgufValueType::I8))
        .unwrap();
    let nested = vec![
        GgufArray::from(vec![1u32, 2]),
        GgufArray::Array(vec![
            GgufArray::from(vec!["x".to_string()]),
            GgufArray::empty(GgufValueType::F64),
        ]),
    ];
    w.add_metadata("a.nested", GgufValue::from(nested)).unwrap();
    for &(name, dims, ty) in tensors {
        let n: u64 = dims.iter().product();
        let data = rng.bytes(ty.bytes_for(n).unwrap() as usize);
        w.add_tensor(name, dims, ty, data).unwrap();
    }
    w.to_bytes()
}

/// A real vocabulary GGUF from `../shared/fixtures` (see `mistralrs_common::test_support`).
fn vocab_seed() -> Option<(PathBuf, Vec<u8>)> {
    let path = case_fixture(
        shared_fixture("vocab/ggml-vocab-bert-bge.gguf"),
        "mutations of a real vocabulary GGUF",
    )?;
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some((path, bytes))
}

/// Opens one GGUF input; if it opens, touches every tensor's bytes and every value.
fn check_gguf(bytes: Vec<u8>) -> bool {
    const NAME: &str = "fuzz.gguf";
    match GgufFile::from_bytes(Path::new(NAME), bytes) {
        Ok(file) => {
            let mut sum = 0u64;
            for info in file.tensors() {
                let data = file.tensor_data(info);
                assert_eq!(data.len() as u64, info.size_bytes);
                sum = data.iter().fold(sum, |s, &b| s.wrapping_add(b as u64));
            }
            for (key, value) in file.metadata() {
                sum = sum.wrapping_add(key.len() as u64 + value.to_string().len() as u64);
            }
            let _ = file.get_str_array("tokenizer.ggml.tokens");
            std::hint::black_box(sum);
            true
        }
        Err(e) => {
            expect_format_error(e, NAME);
            false
        }
    }
}

#[test]
fn gguf_mutations_never_panic_or_blow_up() {
    let started = Instant::now();
    let mut rng = Rng(0x5EED_6609);
    let mut seeds = vec![
        gguf_seed(
            &mut rng,
            None,
            &[
                ("token_embd.weight", &[8, 2], GgmlType::F32),
                ("blk.0.attn_q.weight", &[64], GgmlType::Q4_0),
                ("blk.0.ffn_up.weight", &[256], GgmlType::Q4_K),
                ("blk.0.ffn_down.weight", &[32, 2], GgmlType::Q8_0),
                ("blk.0.iq.weight", &[256], GgmlType::IQ4_XS),
                ("output_norm.weight", &[4], GgmlType::F16),
                ("scalar", &[], GgmlType::I32),
            ],
        ),
        gguf_seed(
            &mut rng,
            Some(64),
            &[
                ("q6", &[256], GgmlType::Q6_K),
                ("bf", &[3, 3], GgmlType::BF16),
            ],
        ),
        gguf_seed(&mut rng, Some(8), &[]),
    ];
    let mut v2 = seeds[0].clone();
    v2[4] = 2;
    seeds.push(v2);

    let mut tally = Tally::default();
    for (s, seed) in seeds.iter().enumerate() {
        assert!(check_gguf(seed.clone()), "seed {s} must open");
        let hot = GgufFile::from_bytes(Path::new("seed"), seed.clone())
            .unwrap()
            .data_offset() as usize;
        for case in 0..GGUF_CASES_PER_SEED * scale() {
            let mut data = seed.clone();
            let mut kinds = Vec::new();
            for _ in 0..1 + rng.below(3) {
                kinds.push(mutate(&mut rng, &mut data, hot));
            }
            tally.run(&format!("seed {s} case {case}: {kinds:?}"), || {
                check_gguf(data)
            });
        }
    }
    if let Some((path, seed)) = vocab_seed() {
        assert!(check_gguf(seed.clone()), "{} must open", path.display());
        let hot = seed.len() / 8;
        for case in 0..VOCAB_CASES * scale() {
            let mut data = seed.clone();
            let kind = mutate(&mut rng, &mut data, hot);
            tally.run(&format!("vocab case {case}: {kind}"), || check_gguf(data));
        }
    }
    tally.finish("GGUF", started);
}

// ---------------------------------------------------------------------------------------------
// safetensors

fn safetensors_seed(rng: &mut Rng, tensors: &[(&str, Dtype, &[u64])], metadata: bool) -> Vec<u8> {
    let mut w = SafetensorsWriter::new();
    if metadata {
        w.add_metadata("format", "pt");
        w.add_metadata("ü", "x\"y");
    }
    for &(name, dtype, shape) in tensors {
        let n: u64 = shape.iter().product();
        w.add_tensor(
            name,
            dtype,
            shape,
            rng.bytes(n as usize * dtype.size_bytes()),
        )
        .unwrap();
    }
    w.to_bytes().unwrap()
}

/// Rebuilds a file around a new header; sometimes keeps the old length (a lie).
fn with_header(rng: &mut Rng, file: &[u8], old_len: usize, header: &[u8]) -> Vec<u8> {
    let len = if rng.below(4) == 0 {
        old_len
    } else {
        header.len()
    };
    let mut out = (len as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(file.get(8 + old_len..).unwrap_or(&[]));
    out
}

/// Mutations that know the layout: numbers and dtypes in the JSON, header-length lies.
fn mutate_safetensors(rng: &mut Rng, file: &[u8]) -> (Vec<u8>, &'static str) {
    let header_len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(file[8..8 + header_len].to_vec()).unwrap();
    match rng.below(4) {
        0 => {
            let digits: Vec<usize> = header
                .match_indices(|c: char| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            let at = rng.pick(&digits);
            let end = header[at..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(header.len(), |e| at + e);
            let replacement = rng.pick(&[
                "0",
                "1",
                "7",
                "18446744073709551615",
                "18446744073709551616",
                "9223372036854775808",
                "4294967296",
                "-1",
                "1e3",
                "1.5",
                "99999999999999999999999",
                "null",
                "\"x\"",
                "[]",
            ]);
            let new = format!("{}{replacement}{}", &header[..at], &header[end..]);
            (
                with_header(rng, file, header_len, new.as_bytes()),
                "number replaced",
            )
        }
        1 => {
            let dtype = rng.pick(&["BOOL", "U8", "F16", "F64", "F8_E4M3", "F4", "Q9", "", "f32"]);
            let count = header.matches("\"dtype\":\"").count();
            let nth = rng.below(count);
            let mut new = header.clone();
            if let Some((at, _)) = header.match_indices("\"dtype\":\"").nth(nth) {
                let start = at + 9;
                let end = start + header[start..].find('"').unwrap_or(0);
                new = format!("{}{dtype}{}", &header[..start], &header[end..]);
            }
            (
                with_header(rng, file, header_len, new.as_bytes()),
                "dtype replaced",
            )
        }
        2 => {
            // Rename one tensor to another's name: a duplicate key.
            let new = header.replacen("\"b\":", "\"a\":", 1).replacen(
                "\"__metadata__\":",
                "\"a\":",
                rng.below(2),
            );
            (
                with_header(rng, file, header_len, new.as_bytes()),
                "duplicate key",
            )
        }
        _ => {
            let mut out = file.to_vec();
            let lie = match rng.below(3) {
                0 => header_len as u64 + 1 + rng.below(16) as u64,
                1 => (header_len as u64).saturating_sub(1 + rng.below(16) as u64),
                _ => extreme(rng, file.len()),
            };
            out[..8].copy_from_slice(&lie.to_le_bytes());
            (out, "header length lie")
        }
    }
}

fn check_safetensors(bytes: Vec<u8>) -> bool {
    const NAME: &str = "fuzz.safetensors";
    match SafetensorsFile::from_bytes(Path::new(NAME), bytes) {
        Ok(file) => {
            let mut sum = 0u64;
            for info in file.tensors() {
                let data = file.tensor_data(info);
                assert_eq!(data.len() as u64, info.size_bytes());
                sum = data.iter().fold(sum, |s, &b| s.wrapping_add(b as u64));
                if let Ok(values) = file.to_f32(&info.name) {
                    assert_eq!(values.len() as u64, info.n_elements);
                }
            }
            std::hint::black_box(sum);
            true
        }
        Err(e) => {
            expect_format_error(e, NAME);
            false
        }
    }
}

#[test]
fn safetensors_mutations_never_panic_or_blow_up() {
    let started = Instant::now();
    let mut rng = Rng(0x5AFE_7E45);
    let seeds = [
        safetensors_seed(
            &mut rng,
            &[
                ("a", Dtype::F32, &[4, 2]),
                ("b", Dtype::BF16, &[3]),
                ("c", Dtype::F8_E4M3, &[5]),
                ("d", Dtype::I64, &[]),
            ],
            true,
        ),
        safetensors_seed(
            &mut rng,
            &[
                ("a", Dtype::F16, &[2, 2, 2]),
                ("b", Dtype::U8, &[0]),
                ("e", Dtype::F8_E5M2, &[9]),
            ],
            false,
        ),
        safetensors_seed(
            &mut rng,
            &[
                ("a", Dtype::F64, &[2]),
                ("b", Dtype::BOOL, &[3]),
                ("z", Dtype::F8_E8M0, &[2]),
            ],
            true,
        ),
    ];
    let mut tally = Tally::default();
    for (s, seed) in seeds.iter().enumerate() {
        assert!(check_safetensors(seed.clone()), "seed {s} must open");
        let hot = SafetensorsFile::from_bytes(Path::new("seed"), seed.clone())
            .unwrap()
            .data_start() as usize;
        for case in 0..SAFETENSORS_CASES_PER_SEED * scale() {
            let (data, kind) = if rng.below(2) == 0 {
                mutate_safetensors(&mut rng, seed)
            } else {
                let mut data = seed.clone();
                let kind = mutate(&mut rng, &mut data, hot);
                (data, kind)
            };
            tally.run(&format!("seed {s} case {case}: {kind}"), || {
                check_safetensors(data)
            });
        }
    }
    tally.finish("safetensors", started);
}
