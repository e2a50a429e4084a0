//! The one table `make bench` prints last: each bench appends its headline figures here, and
//! `scripts/bench-table.sh` lays them out (plain text, or Markdown for the README).

use std::io::Write;
use std::path::PathBuf;

/// Where the rows go: `target/bench-summary.tsv` (the Makefile empties it before the benches).
fn summary_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-summary.tsv")
}

/// Appends one row: the figure, its value with unit, the original Python gateway's figure (or
/// `-`), the target (or `-`), and how it was measured, in a few words.
pub fn row(figure: &str, value: String, python: &str, target: &str, method: &str) {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let line = format!(
        "{}\t{}\t{}\t{}\t{}\n",
        clean(figure),
        clean(&value),
        clean(python),
        clean(target),
        clean(method)
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(summary_path())
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!("bench summary: {error}");
    }
}
