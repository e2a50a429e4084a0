//! Workspaces: per-turn git snapshots with a private index, diffs between them, revert, and a
//! manifest fallback without git.
//!
//! A turn is bracketed by two snapshots of the working tree ([`Snapshots::take`]);
//! [`Snapshots::diff`] compares exactly those two trees, so `modified_files` and `diff` cover this
//! turn only (new, deleted and binary files included) and [`Snapshots::restore`] can put the tree
//! back. Snapshots live in a repository the gateway owns and never read the workspace's own git
//! configuration; hosts without git get the content [`manifest`] instead.
//! [`inventory`] discovers the workspaces under the root (git metadata, ids for URLs),
//! [`projects`] creates named workspaces from templates, and [`ops`] holds the operations every
//! front shares (reset, delete, revert, wiping a session), each under the workspace's turn lock
//! and audited in the transaction of its change.
//! Must not decide who may do what (which caller may see or change a workspace): callers do.

pub mod git;
pub mod inventory;
pub mod manifest;
pub mod ops;
pub mod projects;
pub mod zone;

pub use git::{ensure_repo, git_available, Snapshot, Snapshots};
pub use manifest::{manifest, manifest_changes, Manifest};

use serde::{Deserialize, Serialize};

/// What happened to one path between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The path exists only in the later snapshot.
    Added,
    /// The path exists in both with different content, mode or type.
    Modified,
    /// The path exists only in the earlier snapshot.
    Deleted,
}

impl ChangeKind {}

/// One changed file between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Workspace-relative path with `/` separators (lossily decoded if not UTF-8).
    pub path: String,
    /// Added, modified or deleted.
    pub kind: ChangeKind,
    /// Git (or the manifest) considers the content binary: a NUL byte near the start, or a
    /// `binary`/`-diff` attribute for git.
    pub binary: bool,
}
