//! The fallback for hosts without git: a manifest of every file in a workspace (size, mtime,
//! SHA-256 of the content) and the changes between two manifests.
//!
//! It reports `modified_files` but keeps no content, so it gives no diff text and cannot restore.
//! Must not follow symlinks (a link is recorded by its target text) or descend into `.git`.

use super::{Change, ChangeKind};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// How far into a file the binary check looks for a NUL byte (git's heuristic).
const BINARY_PROBE_BYTES: usize = 8000;

/// What the manifest knows about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Size in bytes (for a symlink: the length of its target).
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Lowercase hex SHA-256 of the content (for a symlink: of `symlink:` + target).
    pub hash: String,
    /// Any execute bit set.
    pub executable: bool,
    /// A NUL byte in the first 8000 bytes, as git decides.
    pub binary: bool,
}

/// Every file of a workspace by workspace-relative path (`/` separators), `.git` excluded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The files, sorted by path.
    pub entries: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// A content id for the whole manifest (`manifest:` + SHA-256 over paths, modes and hashes),
    /// equal for equal trees whatever the mtimes; usable where a snapshot id is stored.
    pub fn id(&self) -> String {
        let mut hasher = Sha256::new();
        for (path, entry) in &self.entries {
            hasher.update(path.as_bytes());
            hasher.update([0, u8::from(entry.executable)]);
            hasher.update(entry.hash.as_bytes());
            hasher.update([0]);
        }
        format!("manifest:{}", crate::crypto::hex(&hasher.finalize()))
    }
}

/// Records every regular file and symlink under `dir` (hashing all content).
pub fn manifest(dir: &Path) -> Result<Manifest> {
    manifest_reusing(dir, &Manifest::default())
}

/// Like [`manifest`], but reuses the hash from `previous` for files whose size, mtime and mode
/// are unchanged, so only touched files are read again.
pub fn manifest_reusing(dir: &Path, previous: &Manifest) -> Result<Manifest> {
    let mut manifest = Manifest::default();
    walk(dir, "", previous, &mut manifest)?;
    Ok(manifest)
}

/// The files that differ between two manifests, sorted by path.
pub fn manifest_changes(before: &Manifest, after: &Manifest) -> Vec<Change> {
    let mut changes = Vec::new();
    for (path, old) in &before.entries {
        match after.entries.get(path) {
            None => changes.push(Change {
                path: path.clone(),
                kind: ChangeKind::Deleted,
                binary: old.binary,
            }),
            Some(new) if new.hash != old.hash || new.executable != old.executable => {
                changes.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::Modified,
                    binary: new.binary || old.binary,
                })
            }
            Some(_) => {}
        }
    }
    for (path, new) in &after.entries {
        if !before.entries.contains_key(path) {
            changes.push(Change {
                path: path.clone(),
                kind: ChangeKind::Added,
                binary: new.binary,
            });
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

fn walk(dir: &Path, prefix: &str, previous: &Manifest, out: &mut Manifest) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Removed while we walked (a process still cleaning up): nothing to record.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !prefix.is_empty() => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let path = entry.path();
        let relative = format!("{prefix}{}", name.to_string_lossy());
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(&path, &format!("{relative}/"), previous, out)?;
            continue;
        }
        if !kind.is_file() && !kind.is_symlink() {
            continue; // sockets, fifos, devices: not content
        }
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let executable = kind.is_file() && meta.permissions().mode() & 0o111 != 0;
        let size = meta.len();
        if let Some(old) = previous.entries.get(&relative) {
            if old.size == size && old.mtime_ns == mtime_ns && old.executable == executable {
                out.entries.insert(relative, old.clone());
                continue;
            }
        }
        let (hash, binary) = if kind.is_symlink() {
            let target = match std::fs::read_link(&path) {
                Ok(target) => target,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            let mut hasher = Sha256::new();
            hasher.update(b"symlink:");
            hasher.update(target.as_os_str().as_encoded_bytes());
            (crate::crypto::hex(&hasher.finalize()), false)
        } else {
            match hash_file(&path) {
                Ok(result) => result,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            }
        };
        out.entries.insert(
            relative,
            ManifestEntry {
                size,
                mtime_ns,
                hash,
                executable,
                binary,
            },
        );
    }
    Ok(())
}

/// SHA-256 of the file's content (streamed) and whether its start holds a NUL byte.
fn hash_file(path: &Path) -> std::io::Result<(String, bool)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0usize;
    let mut binary = false;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if seen < BINARY_PROBE_BYTES {
            let probe = (BINARY_PROBE_BYTES - seen).min(n);
            binary |= buf[..probe].contains(&0);
        }
        seen = seen.saturating_add(n);
        hasher.update(&buf[..n]);
    }
    Ok((crate::crypto::hex(&hasher.finalize()), binary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Temp(PathBuf);

    impl Temp {
        fn new() -> Temp {
            let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-manifest-"));
            std::fs::create_dir_all(&dir).unwrap();
            Temp(dir)
        }

        fn write(&self, path: &str, bytes: &[u8]) {
            let path = self.0.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn change(path: &str, kind: ChangeKind, binary: bool) -> Change {
        Change {
            path: path.to_string(),
            kind,
            binary,
        }
    }

    #[test]
    fn detects_add_modify_delete_and_binary() {
        let ws = Temp::new();
        ws.write("keep.txt", b"same\n");
        ws.write("edit.txt", b"one\n");
        ws.write("gone.txt", b"bye\n");
        ws.write(".git/HEAD", b"ref: refs/heads/main\n");
        let before = manifest(&ws.0).unwrap();
        assert!(before.entries.keys().all(|p| !p.starts_with(".git")));
        ws.write("edit.txt", b"two\n");
        std::fs::remove_file(ws.0.join("gone.txt")).unwrap();
        ws.write("sub/dir/new.bin", b"\x7fELF\0\0");
        ws.write("keep.txt", b"same\n"); // rewritten with equal content: not a change
        ws.write(".git/index", b"ignored");
        std::os::unix::fs::symlink("edit.txt", ws.0.join("link")).unwrap();
        let after = manifest_reusing(&ws.0, &before).unwrap();
        assert_eq!(
            manifest_changes(&before, &after),
            vec![
                change("edit.txt", ChangeKind::Modified, false),
                change("gone.txt", ChangeKind::Deleted, false),
                change("link", ChangeKind::Added, false),
                change("sub/dir/new.bin", ChangeKind::Added, true),
            ]
        );
        assert_ne!(before.id(), after.id());
    }

    #[test]
    fn id_and_changes_ignore_mtimes_and_reuse_keeps_hashes() {
        let ws = Temp::new();
        ws.write("a.txt", b"a\n");
        let first = manifest(&ws.0).unwrap();
        ws.write("a.txt", b"a\n");
        let second = manifest(&ws.0).unwrap();
        assert!(manifest_changes(&first, &second).is_empty());
        assert_eq!(first.id(), second.id());
        assert!(first.id().starts_with("manifest:"));
        let reused = manifest_reusing(&ws.0, &second).unwrap();
        assert_eq!(reused, second);
        assert!(manifest_changes(&Manifest::default(), &Manifest::default()).is_empty());
    }

    #[test]
    fn executable_bit_is_a_modification() {
        use std::os::unix::fs::PermissionsExt;
        let ws = Temp::new();
        ws.write("run.sh", b"#!/bin/sh\n");
        let before = manifest(&ws.0).unwrap();
        std::fs::set_permissions(ws.0.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let after = manifest_reusing(&ws.0, &before).unwrap();
        assert_eq!(
            manifest_changes(&before, &after),
            vec![change("run.sh", ChangeKind::Modified, false)]
        );
    }
}
