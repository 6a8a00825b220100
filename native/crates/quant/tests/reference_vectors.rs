//! Our block formats against independent reference vectors made by gguf-py (the numpy
//! implementation of the ggml formats in llama.cpp's `gguf` package, pinned at 0.19.0).
//!
//! The vectors live in `tests/fixtures/quant-vectors/` and are made by
//! `scripts/quant-vectors/make_vectors.py`; the README.md there gives the file format.
//!
//! Tolerances:
//!
//! - Dequantization must be exact (`ours == theirs` for every value, so +0 and -0 count as equal
//!   and nothing else does). Every product in these formats is exact in f32: an f16 scale has 11
//!   significant bits and the integer factors it meets have at most 13 together (Q6_K: 7-bit
//!   sub-scale times 6-bit quant; IQ4_XS: 6-bit scale times 7-bit table value), so at most 24
//!   bits. The only rounding is the one final addition of the minimum (Q4_1, Q5_1, Q2_K, Q4_K,
//!   Q5_K), so any order of the multiplications, and FMA or not, gives the same f32. gguf-py
//!   was checked against a scalar port of ggml's `dequantize_row_*` (f64, then rounded): bit
//!   for bit equal. Only the sign of a zero may legitimately differ (an implementation that
//!   multiplies scale and quant as integers first loses it); such values are counted and shown,
//!   not failed.
//! - Quantization must give the same bytes. gguf-py follows ggml's reference quantizers
//!   exactly: `trunc(x*id + 8.5)` (Q4_0), `trunc(x*id + 0.5)` (Q4_1, Q5_1), `roundf` i.e. half
//!   away from zero (Q8_0, via its `np_roundf`), and round-to-nearest-even for F16 and BF16
//!   (BF16 also quiets NaNs the way `ggml_compute_fp32_to_bf16` does). One legitimate
//!   difference is allowed: ggml's own AVX `quantize_row_q8_0` rounds with `_mm256_round_ps`
//!   (half to even), so for Q8_0 a quant that differs by exactly one step towards even where
//!   `x*id` is exactly half-way is accepted (and reported). The `Q8_0/ties` case holds 64 such
//!   quants; the random inputs hold none (the generator checks).
//!
//! Each test collects per-type results, prints a table, and fails at the end with the list of
//! failures. Types this build does not support are printed loudly as not checked.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Once;

use mistralrs_quant::{formats, GgmlType};
use serde_json::Value;

const FORMAT: &str = "mistralrs-quant-vectors/1";

/// Known mistakes in gguf-py's type table: (name, gguf-py block size, gguf-py type size, why).
const GGUF_PY_ERRATA: &[(&str, usize, usize, &str)] = &[(
    "Q8_1",
    32,
    40,
    "gguf-py still has the old block_q8_1 {float d, s; int8 qs[32]} (40 bytes); ggml has used \
     {ggml_half d, s; int8 qs[32]} (36 bytes) since 2024",
)];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant-vectors")
}

struct Manifest {
    json: Value,
}

impl Manifest {
    fn load() -> Manifest {
        let path = fixture_dir().join("manifest.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; the reference vectors are missing (scripts/quant-vectors/make_vectors.py)",
                path.display()
            )
        });
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        assert_eq!(
            json["format"].as_str(),
            Some(FORMAT),
            "{}: unknown format",
            path.display()
        );
        Manifest { json }
    }

    fn list(&self, key: &str) -> &Vec<Value> {
        self.json[key]
            .as_array()
            .unwrap_or_else(|| panic!("manifest.json: no array {key:?}"))
    }

    fn gguf_version(&self) -> &str {
        self.json["gguf_version"].as_str().unwrap_or("?")
    }

    /// gguf-py's type table row for `name`.
    fn gguf_type(&self, name: &str) -> Option<&Value> {
        self.list("types")
            .iter()
            .find(|t| t["name"].as_str() == Some(name))
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("manifest.json: {key:?} missing in {v}"))
}

fn usize_field(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("manifest.json: {key:?} missing in {v}")) as usize
}

fn read_fixture(name: &str, expected_len: usize) -> Result<Vec<u8>, String> {
    let path = fixture_dir().join(name);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() != expected_len {
        return Err(format!(
            "{name}: {} bytes, manifest implies {expected_len}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes straight to the process's stderr, which the test harness does not capture: what
/// is not checked must show even when the tests pass.
fn loud(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

thread_local! {
    static IN_GUARD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic (e.g. "format not implemented yet") into an error message. The
/// panic is reported in the test's failure list, so the panic hook stays quiet for it (with
/// RUST_BACKTRACE set it would print a backtrace per unimplemented type).
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_GUARD.with(|g| g.get()) {
                previous(info);
            }
        }));
    });
    IN_GUARD.with(|g| g.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(false));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        format!("panicked: {msg}")
    })
}

/// Per-test bookkeeping: a line per case, the failures, and the loud list of unchecked types.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failures: Vec<String>,
    unchecked: Vec<String>,
}

impl Report {
    fn pass(&mut self, case: &str, what: String) {
        self.lines.push(format!("  PASS  {case:<16} {what}"));
    }
    fn fail(&mut self, case: &str, what: String) {
        self.lines.push(format!("  FAIL  {case:<16} {what}"));
        self.failures.push(format!("{case}: {what}"));
    }
    /// A case this test cannot check: reported as a skipped check (see
    /// `mistralrs_common::test_support`), not passed.
    fn skip(&mut self, case: &str, why: String) {
        self.lines.push(format!("  SKIP  {case:<16} {why}"));
        mistralrs_common::test_support::unchecked(case, &why);
        self.unchecked.push(format!("{case}: {why}"));
    }

    fn finish(self, title: &str) {
        eprintln!("\n== {title} ==");
        for line in &self.lines {
            eprintln!("{line}");
        }
        if !self.unchecked.is_empty() {
            let mut text = format!(
                "\n!!!!!!!! {title}: NOT CHECKED ({}) !!!!!!!!\n",
                self.unchecked.len()
            );
            for u in &self.unchecked {
                text += &format!("!!  {u}\n");
            }
            loud(&text);
        }
        assert!(
            self.failures.is_empty(),
            "{title}: {} failure(s):\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

fn type_of(name: &str) -> Result<GgmlType, String> {
    GgmlType::from_name(name).ok_or_else(|| format!("GgmlType has no type named {name}"))
}

#[test]
fn dequantize_matches_gguf_py() {
    let manifest = Manifest::load();
    let mut report = Report::default();
    for case in manifest.list("dequantize") {
        let name = str_field(case, "type");
        let label = name.to_string();
        let ty = match type_of(name) {
            Ok(ty) => ty,
            Err(e) => {
                report.fail(&label, e);
                continue;
            }
        };
        if !ty.is_supported() {
            report.skip(&label, "type not supported by this build".into());
            continue;
        }
        let n_blocks = usize_field(case, "n_blocks");
        let n = usize_field(case, "n_elements");
        if n != n_blocks * ty.block_size() {
            report.fail(
                &label,
                format!("manifest: {n_blocks} blocks but {n} elements"),
            );
            continue;
        }
        let blocks = read_fixture(str_field(case, "blocks_file"), n_blocks * ty.type_size());
        let values = read_fixture(str_field(case, "values_file"), n * 4);
        let (blocks, expected) = match (blocks, values) {
            (Ok(b), Ok(v)) => (b, le_f32s(&v)),
            (Err(e), _) | (_, Err(e)) => {
                report.fail(&label, e);
                continue;
            }
        };
        let mut ours = vec![f32::NAN; n];
        match guarded(|| formats::dequantize(ty, &blocks, &mut ours)) {
            Err(panic) => {
                report.fail(&label, panic);
                continue;
            }
            Ok(Err(e)) => {
                report.fail(&label, format!("error: {e}"));
                continue;
            }
            Ok(Ok(())) => {}
        }
        let mut mismatches = Vec::new();
        let mut zero_signs = 0usize;
        let mut worst = 0f64;
        for (i, (&a, &b)) in ours.iter().zip(&expected).enumerate() {
            if a == b {
                zero_signs += (a.to_bits() != b.to_bits()) as usize;
            } else {
                let rel = (a as f64 - b as f64).abs() / (b as f64).abs().max(1e-30);
                worst = if rel.is_nan() {
                    f64::INFINITY
                } else {
                    worst.max(rel)
                };
                mismatches.push(i);
            }
        }
        let zero_note = if zero_signs > 0 {
            format!(", {zero_signs} zero(s) of the other sign")
        } else {
            String::new()
        };
        if mismatches.is_empty() {
            report.pass(
                &label,
                format!("{n} values in {n_blocks} blocks, exact{zero_note}"),
            );
        } else {
            let bs = ty.block_size();
            let shown: Vec<String> = mismatches
                .iter()
                .take(6)
                .map(|&i| {
                    format!(
                        "[{i}] block {} elem {}: ours {:e} ({:#010x}) gguf-py {:e} ({:#010x})",
                        i / bs,
                        i % bs,
                        ours[i],
                        ours[i].to_bits(),
                        expected[i],
                        expected[i].to_bits()
                    )
                })
                .collect();
            report.fail(
                &label,
                format!(
                    "{} of {n} values differ (worst relative error {worst:.3e}){zero_note}; {}",
                    mismatches.len(),
                    shown.join("; ")
                ),
            );
        }
    }
    report.finish("dequantize vs gguf-py");
}

/// Whether quant `q` (int8) of Q8_0 element `x` may be `expected_q` rounded half to even
/// instead of half away from zero: `x*id` is exactly half-way and `q` is one step nearer zero.
fn q8_0_tie_ok(block_input: &[f32], elem: usize, q: i8, expected_q: i8) -> bool {
    let amax = block_input.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let v = block_input[elem] * id;
    let half_way = (v.abs() - v.abs().floor()) == 0.5;
    let toward_zero =
        (expected_q as i32 - q as i32).abs() == 1 && (q as i32).abs() < (expected_q as i32).abs();
    half_way && toward_zero && (q as i32) % 2 == 0
}

#[test]
fn quantize_matches_gguf_py() {
    let manifest = Manifest::load();
    let mut report = Report::default();
    for case in manifest.list("quantize") {
        let name = str_field(case, "type");
        let label = format!("{name}/{}", str_field(case, "case"));
        let ty = match type_of(name) {
            Ok(ty) => ty,
            Err(e) => {
                report.fail(&label, e);
                continue;
            }
        };
        let Some(traits) = formats::type_traits(ty) else {
            report.skip(&label, "type not supported by this build".into());
            continue;
        };
        if traits.quantize.is_none() {
            report.skip(&label, "this build does not quantize into the type".into());
            continue;
        }
        let n_blocks = usize_field(case, "n_blocks");
        let n = usize_field(case, "n_elements");
        let (bs, ts) = (ty.block_size(), ty.type_size());
        if n != n_blocks * bs {
            report.fail(
                &label,
                format!("manifest: {n_blocks} blocks but {n} elements"),
            );
            continue;
        }
        let input = read_fixture(str_field(case, "input_file"), n * 4);
        let expected = read_fixture(str_field(case, "blocks_file"), n_blocks * ts);
        let (input, expected) = match (input, expected) {
            (Ok(i), Ok(e)) => (le_f32s(&i), e),
            (Err(e), _) | (_, Err(e)) => {
                report.fail(&label, e);
                continue;
            }
        };
        let mut ours = vec![0xA5u8; expected.len()];
        match guarded(|| formats::quantize(ty, &input, &mut ours)) {
            Err(panic) => {
                report.fail(&label, panic);
                continue;
            }
            Ok(Err(e)) => {
                report.fail(&label, format!("error: {e}"));
                continue;
            }
            Ok(Ok(())) => {}
        }
        let differing: Vec<usize> = (0..ours.len())
            .filter(|&i| ours[i] != expected[i])
            .collect();
        if differing.is_empty() {
            report.pass(
                &label,
                format!("{n_blocks} blocks, {} bytes identical", ours.len()),
            );
            continue;
        }
        // Q8_0: differences only at exact half-way quants, rounded to even, are accepted.
        if ty == GgmlType::Q8_0 {
            let allowed = usize_field(case, "half_way_ties");
            let all_ties = differing.iter().all(|&i| {
                let (block, off) = (i / ts, i % ts);
                off >= 2
                    && q8_0_tie_ok(
                        &input[block * bs..(block + 1) * bs],
                        off - 2,
                        ours[i] as i8,
                        expected[i] as i8,
                    )
            });
            if all_ties && differing.len() <= allowed {
                report.pass(
                    &label,
                    format!(
                        "{n_blocks} blocks; {} of {allowed} half-way quants rounded to even \
                         (ggml's AVX path) where gguf-py / ggml's reference round away from zero",
                        differing.len()
                    ),
                );
                continue;
            }
        }
        let shown: Vec<String> = differing
            .iter()
            .take(8)
            .map(|&i| {
                format!(
                    "block {} byte {}: ours {:#04x} gguf-py {:#04x}",
                    i / ts,
                    i % ts,
                    ours[i],
                    expected[i]
                )
            })
            .collect();
        let blocks_hit: BTreeSet<usize> = differing.iter().map(|&i| i / ts).collect();
        report.fail(
            &label,
            format!(
                "{} of {} bytes differ in {} of {n_blocks} blocks; {}",
                differing.len(),
                ours.len(),
                blocks_hit.len(),
                shown.join("; ")
            ),
        );
    }
    report.finish("quantize vs gguf-py");
}

#[test]
fn type_table_matches_gguf_py() {
    let manifest = Manifest::load();
    let mut report = Report::default();
    let mut gguf_only = Vec::new();
    let mut errata = Vec::new();
    let mut seen = BTreeSet::new();
    for row in manifest.list("types") {
        let name = str_field(row, "name");
        let id = usize_field(row, "id") as u32;
        let (bs, ts) = (
            usize_field(row, "block_size"),
            usize_field(row, "type_size"),
        );
        let Some(ty) = GgmlType::from_id(id) else {
            if GgmlType::from_name(name).is_some() {
                report.fail(
                    name,
                    format!("gguf-py gives id {id}, GgmlType has another id"),
                );
            } else {
                gguf_only.push(format!("{name} (id {id}, {bs} elements / {ts} bytes)"));
            }
            continue;
        };
        seen.insert(ty.id());
        let ours = (ty.name(), ty.block_size(), ty.type_size());
        if ours.0 != name {
            report.fail(name, format!("id {id} is {} in GgmlType", ours.0));
        } else if (ours.1, ours.2) == (bs, ts) {
            report.pass(name, format!("id {id}, {bs} elements / {ts} bytes"));
        } else if let Some(e) = GGUF_PY_ERRATA
            .iter()
            .find(|e| e.0 == name && (e.1, e.2) == (bs, ts))
        {
            let note = format!(
                "ours {} / {} bytes, gguf-py {bs} / {ts}: known gguf-py error: {}",
                ours.1, ours.2, e.3
            );
            errata.push(format!("{name}: {note}"));
            report.pass(name, note);
        } else {
            report.fail(
                name,
                format!(
                    "GgmlType {} elements / {} bytes, gguf-py {bs} / {ts}",
                    ours.1, ours.2
                ),
            );
        }
    }
    let ours_only: Vec<&str> = GgmlType::all()
        .filter(|t| !seen.contains(&t.id()))
        .map(|t| t.name())
        .collect();
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    loud(&format!(
        "\ntype table: gguf-py {} knows types GgmlType lacks: {}\n\
         type table: GgmlType knows types gguf-py lacks: {}\n\
         type table: gguf-py rows overridden as known errors: {}\n",
        manifest.gguf_version(),
        list(gguf_only),
        list(ours_only.iter().map(|s| s.to_string()).collect()),
        list(errata),
    ));
    report.finish("type table vs gguf-py");
}

/// Every type this build supports must have vectors, unless gguf-py cannot make them.
#[test]
fn every_supported_type_has_vectors() {
    let manifest = Manifest::load();
    let mut report = Report::default();
    let mut dequant: BTreeMap<&str, usize> = BTreeMap::new();
    let mut quant: BTreeMap<&str, usize> = BTreeMap::new();
    for case in manifest.list("dequantize") {
        *dequant.entry(str_field(case, "type")).or_default() += 1;
    }
    for case in manifest.list("quantize") {
        *quant.entry(str_field(case, "type")).or_default() += 1;
    }
    let gguf_can = |name: &str, key: &str| {
        manifest
            .gguf_type(name)
            .and_then(|t| t[key].as_bool())
            .unwrap_or(false)
    };
    for ty in GgmlType::all() {
        let name = ty.name();
        let Some(traits) = formats::type_traits(ty) else {
            if dequant.contains_key(name) || quant.contains_key(name) {
                report.skip(
                    name,
                    "has gguf-py vectors but this build does not support it".into(),
                );
            }
            continue;
        };
        let mut notes = Vec::new();
        if dequant.contains_key(name) {
            notes.push("dequantize vectors".to_string());
        } else if gguf_can(name, "gguf_py_dequantize") {
            report.fail(
                name,
                "supported, gguf-py can dequantize it, but there are no vectors: add it to TYPES \
                 in scripts/quant-vectors/make_vectors.py and rerun"
                    .into(),
            );
            continue;
        } else {
            report.skip(
                name,
                format!(
                    "supported, but gguf-py {} cannot dequantize it: no independent reference",
                    manifest.gguf_version()
                ),
            );
            continue;
        }
        if traits.quantize.is_some() {
            if quant.contains_key(name) {
                notes.push("quantize vectors".into());
            } else if gguf_can(name, "gguf_py_quantize") {
                report.fail(
                    name,
                    "quantizes, gguf-py can too, but there are no quantize vectors".into(),
                );
                continue;
            } else {
                notes.push(format!(
                    "no quantize reference (gguf-py {} cannot quantize it)",
                    manifest.gguf_version()
                ));
            }
        }
        report.pass(name, notes.join(", "));
    }
    // Every file the manifest names must be present, whatever this build supports.
    for (key, fields) in [
        ("dequantize", ["blocks_file", "values_file"]),
        ("quantize", ["input_file", "blocks_file"]),
    ] {
        for case in manifest.list(key) {
            for field in fields {
                let file = str_field(case, field);
                if !fixture_dir().join(file).is_file() {
                    report.fail(file, "named in manifest.json but missing".into());
                }
            }
        }
    }
    report.finish("coverage of the supported types");
}
