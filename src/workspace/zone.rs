//! The safe zone: every workspace path Codara uses resolves inside the workspaces root.
//!
//! Pure checks on names plus symlink resolution with `canonicalize`; must not create anything
//! outside the root.

use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Longest accepted workspace id.
pub const MAX_ID_LEN: usize = 128;

/// Validates a workspace id: relative, no `..`, no `.git` component (in any case: the inside of
/// a repository is never a workspace), plain characters, bounded length.
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
    if id.split('/').any(|part| part.eq_ignore_ascii_case(".git")) {
        return Err(Error::bad_param(
            param,
            format!("`{param}` must not name a `.git` directory"),
        ));
    }
    Ok(())
}

/// The workspace directory for `owner`'s workspace `id`: `<root>/<owner>/<id>`, created if missing.
/// After symbolic links are resolved it must lie inside `<root>/<owner>`: a link an agent made
/// (`ln -s ../<other user> peek`) never leads a turn into another tenant's tree or the root.
pub fn owned_workspace(root: &Path, owner: &str, id: &str) -> Result<PathBuf> {
    validate_id("workspace_id", id)?;
    let tree = root.join(owner);
    crate::datadir::ensure_private_dir(&tree)?;
    let dir = tree.join(id);
    // Confine the deepest existing ancestor before creating anything: a symlink inside the
    // owner's tree must not make us create directories outside it.
    let mut existing = dir.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    if existing != tree {
        confine(&tree, existing, "workspace_id")?;
    }
    crate::datadir::ensure_private_dir(&dir)?;
    confine(&tree, &dir, "workspace_id")
}

/// Resolves an operator's `workspace_root`, which must exist and lie strictly inside `root` after
/// symlinks are resolved (the root itself holds every tenant); returns the canonical directory.
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
    let dir = confine(root, &candidate, "workspace_root")?;
    if root.canonicalize().is_ok_and(|root| root == dir) {
        return Err(Error::bad_param(
            "workspace_root",
            "`workspace_root` must be a directory below the workspaces root, not the root itself",
        ));
    }
    Ok(dir)
}

/// `dir` canonicalized, or a 400 naming `param` when that leaves `within`.
fn confine(within: &Path, dir: &Path, param: &str) -> Result<PathBuf> {
    crate::datadir::ensure_private_dir(within)?;
    let within = within.canonicalize().map_err(|e| Error::io(within, e))?;
    let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    if !dir.starts_with(&within) {
        return Err(Error::bad_param(
            param,
            format!("`{param}` resolves outside your workspace tree"),
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
            ".git",
            "a/.GIT/b",
            "sub/.git",
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
        assert!(operator_workspace(&root, ".").is_err(), "the root itself");
        assert!(operator_workspace(&root, root.to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn user_ids_stay_in_the_users_own_tree() {
        let base = std::env::temp_dir().join(crate::crypto::random_id("codara-zone-"));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("alice/ws")).unwrap();
        std::fs::create_dir_all(root.join("bob/secret")).unwrap();
        std::os::unix::fs::symlink("../../bob", root.join("alice/ws/peek")).unwrap();
        std::os::unix::fs::symlink("..", root.join("alice/up")).unwrap();
        std::os::unix::fs::symlink("ws", root.join("alice/alias")).unwrap();
        for id in [
            "ws/peek",
            "ws/peek/secret",
            "up",
            "up/bob",
            "ws/peek/new/dir",
        ] {
            let error = owned_workspace(&root, "alice", id).unwrap_err();
            assert_eq!(error.status(), 400, "{id}");
        }
        assert!(
            !root.join("bob/new").exists(),
            "nothing created in another tree"
        );
        // A link that stays inside the user's own tree is fine.
        let inside = owned_workspace(&root, "alice", "alias").unwrap();
        assert_eq!(inside, root.join("alice/ws").canonicalize().unwrap());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
