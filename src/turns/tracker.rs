//! Workspace states around a turn: trees in the gateway's snapshot repository (or file manifests
//! on a host without git), and the changes between two of them. Must not run the CLI.

use super::TurnRequest;
use crate::app::App;
use crate::error::{Error, Result};

/// Records workspace states: trees in the gateway's snapshot repository, or file manifests
/// without git.
pub(super) struct Tracker<'a> {
    dir: &'a std::path::Path,
    host: &'a crate::config::HostEnv,
    /// The workspace's snapshot store; `None` when git is not available (manifest fallback).
    snapshots: Option<crate::workspace::Snapshots>,
}

/// One recorded workspace state.
pub(super) struct State {
    /// A git tree id, or a `manifest:` id.
    pub id: String,
    snapshot: Option<crate::workspace::Snapshot>,
    manifest: Option<crate::workspace::Manifest>,
}

impl State {
    /// A state known only by id (the after-state when it could not be recorded).
    pub fn unknown(id: &str) -> State {
        State {
            id: id.to_string(),
            snapshot: None,
            manifest: None,
        }
    }
}

impl<'a> Tracker<'a> {
    /// The tracker of the request's workspace (made a git repository when it is not one).
    pub fn new(app: &'a App, request: &'a TurnRequest) -> Result<Tracker<'a>> {
        let host = &app.config.host;
        let dir = request.workspace.as_path();
        if !git_on_host(host) {
            return Ok(Tracker {
                dir,
                host,
                snapshots: None,
            });
        }
        // The workspace is the user's repository too (created here for a new workspace id).
        crate::workspace::ensure_repo(dir, host, app.sandbox.repository_writer(dir))?;
        Ok(Tracker {
            dir,
            host,
            snapshots: Some(crate::workspace::Snapshots::of(
                &app.config.storage.data_dir,
                dir,
            )),
        })
    }

    /// Records the workspace as it is now.
    pub fn snapshot(&self) -> Result<State> {
        match &self.snapshots {
            Some(snapshots) => {
                let snapshot = snapshots.take(self.host)?;
                Ok(State {
                    id: snapshot.tree.clone(),
                    snapshot: Some(snapshot),
                    manifest: None,
                })
            }
            None => {
                let manifest = crate::workspace::manifest(self.dir)?;
                Ok(State {
                    id: manifest.id(),
                    snapshot: None,
                    manifest: Some(manifest),
                })
            }
        }
    }

    /// Whether the workspace is still in state `before` (false when that cannot be told).
    pub fn unchanged_since(&self, before: &State) -> bool {
        self.snapshot().is_ok_and(|now| now.id == before.id)
    }

    /// The files changed between two states, and the unified diff (git only).
    pub fn diff(
        &self,
        before: &State,
        after: &State,
    ) -> Result<(Vec<crate::workspace::Change>, String)> {
        match (
            &self.snapshots,
            &before.snapshot,
            &after.snapshot,
            &before.manifest,
            &after.manifest,
        ) {
            (Some(store), Some(a), Some(b), _, _) => store.diff(self.host, a, b),
            (_, _, _, Some(a), Some(b)) => {
                Ok((crate::workspace::manifest_changes(a, b), String::new()))
            }
            _ => Err(Error::Internal(
                "workspace states of different kinds".to_string(),
            )),
        }
    }
}

/// Whether git is on the host (asked once per process).
pub(super) fn git_on_host(host: &crate::config::HostEnv) -> bool {
    static GIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GIT.get_or_init(|| crate::workspace::git_available(host))
}
