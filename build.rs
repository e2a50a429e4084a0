//! Build script: makes cargo rebuild when anything under `ui-dist/` changes (include_dir alone
//! does not notice a new file), and versions the dashboard's assets with a content hash
//! (`CODARA_UI_HASH`, 16 hex digits of FNV-1a 64 over every asset's path and bytes), so that
//! `http::assets` can serve them under `/dashboard/assets/<hash>/…` with a year-long cache.

// Cargo reads a build script's instructions from its stdout.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=ui-dist");
    let mut found = Vec::new();
    files(Path::new("ui-dist/assets"), &mut found);
    found.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in &found {
        let name = path.to_string_lossy().into_owned().into_bytes();
        let contents = std::fs::read(path).unwrap_or_default();
        for byte in name.iter().chain([0u8].iter()).chain(contents.iter()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=CODARA_UI_HASH={hash:016x}");
}
