//! The safe zone: every workspace path Codara uses resolves inside the workspaces root.
//!
//! Pure checks on names plus symlink resolution with `canonicalize`; must not create anything
//! outside the root.

use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Longest accepted workspace id.
pub const MAX_ID_LEN: usize = 128;

/// Validates a workspace id: relative, no `..`, plain characters, bounded length.
pub fn validate_id(param: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(Error::bad_param(
            param,
            format!("`{param}` must be 1-{MAX_ID_LEN} characters"),
        ));
    }
    let path = Path::new(id);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    let chars = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if !plain || !chars || id.starts_with('/') || id.ends_with('/') || id.contains("//") {
        return Err(Error::bad_param(
            param,
            format!("`{param}` must be a relative path of letters, digits, `-`, `_`, `.` and `/`, without `..`"),
        ));
    }
    Ok(())
}

/// The workspace directory for `owner`'s workspace `id`: `<root>/<owner>/<id>`, created if missing.
pub fn owned_workspace(root: &Path, owner: &str, id: &str) -> Result<PathBuf> {
    validate_id("workspace_id", id)?;
    let dir = root.join(owner).join(id);
    // Confine the deepest existing ancestor before creating anything: a symlink inside the
    // owner's tree must not make us create directories outside the root.
    let mut existing = dir.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    if existing.exists() && existing != root && existing.starts_with(root) {
        confine(root, existing, "workspace_id")?;
    }
    crate::datadir::ensure_private_dir(&dir)?;
    confine(root, &dir, "workspace_id")
}

/// Resolves an operator's `workspace_root`, which must exist and lie inside `root` after
/// symlinks are resolved; returns the canonical directory.
pub fn operator_workspace(root: &Path, requested: &str) -> Result<PathBuf> {
    let requested_path = Path::new(requested);
    let candidate = if requested_path.is_absolute() {
        requested_path.to_path_buf()
    } else {
        root.join(requested_path)
    };
    if !candidate.is_dir() {
        return Err(Error::bad_param(
            "workspace_root",
            format!("`workspace_root` {requested} is not an existing directory"),
        ));
    }
    confine(root, &candidate, "workspace_root")
}

fn confine(root: &Path, dir: &Path, param: &str) -> Result<PathBuf> {
    crate::datadir::ensure_private_dir(root)?;
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    if !dir.starts_with(&root) {
        return Err(Error::bad_param(
            param,
            format!("`{param}` resolves outside the workspaces root"),
        ));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["default", "team/app", "a.b-c_d"] {
            validate_id("workspace_id", ok).unwrap();
        }
        for bad in [
            "",
            "..",
            "a/../b",
            "/abs",
            "a//b",
            "sp ace",
            "a/",
            &"x".repeat(200),
        ] {
            assert!(validate_id("workspace_id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let base = std::env::temp_dir().join(crate::crypto::random_id("codara-zone-"));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        assert!(operator_workspace(&root, "escape").is_err());
        assert!(operator_workspace(&root, outside.to_str().unwrap()).is_err());
        std::fs::create_dir_all(root.join("inside")).unwrap();
        assert!(operator_workspace(&root, "inside").is_ok());
        let owned = owned_workspace(&root, "operator", "default").unwrap();
        assert!(owned.ends_with("operator/default"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
