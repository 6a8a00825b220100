//! What the crates' tests share about fixtures and skips (the `test-support` feature, enabled
//! by their dev-dependencies only).
//!
//! A test that needs a file from outside the repository (`../shared/fixtures`, a dev
//! dependency's files) asks [`fixture`] for it. Missing, it fails, naming the path, unless
//! `MISTRALRS_ALLOW_MISSING_FIXTURES=1` is set: then the test returns early and reports itself
//! skipped. A test that cannot run on this machine at all (a CPU feature) reports itself
//! skipped through [`skip_test`]. libtest has no run-time skip, so the report is a line on
//! standard error, written past libtest's output capture:
//!
//! ```text
//! mistralrs-test: SKIPPED <binary>::<test>: <reason>
//! mistralrs-test: UNCHECKED <binary>::<test>: <case>: <reason>
//! ```
//!
//! `scripts/test-all.mjs` counts a SKIPPED test as skipped instead of passed, and each
//! UNCHECKED case (a part of a test that ran) as one skipped check.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The opt-out: set to `1`, missing fixtures skip their tests instead of failing them.
pub const ALLOW_MISSING_FIXTURES: &str = "MISTRALRS_ALLOW_MISSING_FIXTURES";

/// The start of every report line.
pub const MARKER: &str = "mistralrs-test:";

/// `shared/fixtures/<relative>` in the folder beside the repository.
pub fn shared_fixture(relative: &str) -> PathBuf {
    // This crate is native/crates/common: the repository root is three folders up.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../../shared/fixtures")
        .join(relative)
}

/// `path` if it exists. Otherwise the calling test fails naming it, or, with the opt-out set,
/// reports itself skipped and gets `None` (it should return at once).
pub fn fixture(path: impl AsRef<Path>) -> Option<PathBuf> {
    fixture_or(path.as_ref(), missing_fixtures_allowed(), None, &mut report)
}

/// As [`fixture`], for a part of a test: with the opt-out set, a missing fixture leaves `case`
/// unchecked and the rest of the test runs.
pub fn case_fixture(path: impl AsRef<Path>, case: &str) -> Option<PathBuf> {
    fixture_or(
        path.as_ref(),
        missing_fixtures_allowed(),
        Some(case),
        &mut report,
    )
}

/// The decision, with the report line going to `report` (tests collect it).
fn fixture_or(
    path: &Path,
    allow_missing: bool,
    case: Option<&str>,
    report: &mut dyn FnMut(&str),
) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    if allow_missing {
        let why = format!("fixture {} is missing", path.display());
        report(&match case {
            Some(case) => unchecked_line(case, &why),
            None => skipped_line(&why),
        });
        return None;
    }
    panic!(
        "fixture {} is missing (the shared fixtures live in ../shared beside the repository; \
         set {ALLOW_MISSING_FIXTURES}=1 to report the tests that need them as skipped)",
        path.display()
    );
}

/// Whether the opt-out is set.
pub fn missing_fixtures_allowed() -> bool {
    std::env::var(ALLOW_MISSING_FIXTURES).is_ok_and(|v| v == "1")
}

/// Reports the calling test as skipped; it should return at once.
pub fn skip_test(reason: &str) {
    report(&skipped_line(reason));
}

/// Reports one case of the calling test as not checked (the test's other cases ran).
pub fn unchecked(case: &str, reason: &str) {
    report(&unchecked_line(case, reason));
}

fn skipped_line(reason: &str) -> String {
    format!("{MARKER} SKIPPED {}: {reason}", test_name())
}

fn unchecked_line(case: &str, reason: &str) -> String {
    format!("{MARKER} UNCHECKED {}: {case}: {reason}", test_name())
}

/// One line on standard error, in a single write, bypassing libtest's capture (which only
/// takes `print!`/`eprint!`), so that it shows for passing tests too.
fn report(line: &str) {
    let line = format!("{}\n", line.replace('\n', " "));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `<binary>::<test>`: the test binary's name without cargo's hash, and libtest's name of the
/// thread it runs the test on.
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => stem,
        })
        .unwrap_or_else(|| "unknown".into());
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_fixture_is_returned() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert_eq!(fixture(&here), Some(here));
    }

    #[test]
    #[should_panic(expected = "no-such-fixture is missing")]
    fn a_missing_fixture_fails_naming_it() {
        fixture_or(Path::new("/no-such-fixture"), false, None, &mut |_| {});
    }

    #[test]
    fn a_missing_fixture_with_the_opt_out_skips() {
        let mut lines = Vec::new();
        let missing = Path::new("/no-such-fixture");
        assert_eq!(
            fixture_or(missing, true, None, &mut |l| lines.push(l.to_string())),
            None
        );
        assert_eq!(
            fixture_or(missing, true, Some("a case"), &mut |l| lines
                .push(l.to_string())),
            None
        );
        let test = "test_support::tests::a_missing_fixture_with_the_opt_out_skips";
        assert!(lines[0].starts_with("mistralrs-test: SKIPPED mistralrs_common"));
        assert!(lines[0].ends_with(&format!("{test}: fixture /no-such-fixture is missing")));
        assert!(lines[1].starts_with("mistralrs-test: UNCHECKED mistralrs_common"));
        assert!(lines[1].ends_with(&format!(
            "{test}: a case: fixture /no-such-fixture is missing"
        )));
    }

    #[test]
    fn the_shared_folder_is_beside_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
        let expected = root.join("../shared/fixtures/vocab");
        assert_eq!(
            shared_fixture("vocab").components().count(),
            expected.components().count()
        );
        assert!(shared_fixture("vocab").ends_with("shared/fixtures/vocab"));
    }

    #[test]
    fn test_names_carry_the_binary_and_the_test() {
        let name = test_name();
        assert!(
            name.starts_with("mistralrs_common::") || name.starts_with("mistralrs_common-"),
            "{name}"
        );
        assert!(
            name.ends_with("test_names_carry_the_binary_and_the_test"),
            "{name}"
        );
    }
}
