//! Workspace operations that change state, shared by every front (the management API, the
//! self-service API, the CLI): reset (wipe the sessions bound to a directory), delete (the
//! directory, its sessions and its snapshots), revert (a turn's changes), wiping one session.
//!
//! Each operation that touches a workspace's files takes the workspace's turn lock
//! (`Locks::workspace`, the one turns take), so it never runs under a turn, and writes its
//! audit entry in the transaction of its database change. Handlers and commands parse their
//! input, call one of these, and render the result. Must not parse requests or render JSON.

use super::inventory::Resolved;
use super::{Change, Snapshot, Snapshots};
use crate::app::App;
use crate::audit::{self, Actor};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;
use crate::store::{self, Store};
use crate::turns::locks::{Guard, Locks};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long reset, delete and project setup wait for a running turn in the workspace before a
/// 409: they are operator actions, better refused than left hanging behind a long turn.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// What the operations need: the configuration, the database, the sandbox (git on a user's
/// repository), and the lock set turns take in this process.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Workspaces root, data dir, host environment, lock timeout.
    pub config: &'a Config,
    /// The database.
    pub store: &'a Store,
    /// Confinement of git on users' repositories.
    pub sandbox: &'a Sandbox,
    /// The workspace locks of this process.
    pub locks: &'a Locks,
}

impl<'a> Context<'a> {
    /// The context of a running server.
    pub fn of(app: &'a App) -> Context<'a> {
        Context {
            config: &app.config,
            store: &app.store,
            sandbox: &app.sandbox,
            locks: &app.turn_locks,
        }
    }

    /// Takes the turn lock of `dir`, waiting up to `wait`, or a 409 naming `shown`.
    pub fn lock(&self, dir: &Path, wait: Duration, shown: &str) -> Result<Guard<'a>> {
        self.locks.workspace(dir, wait).ok_or_else(|| {
            Error::Conflict(format!(
                "a turn is running in {shown}; retry when it finishes"
            ))
        })
    }
}

/// What a reset or a delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiped {
    /// The workspace's directory.
    pub workspace_path: String,
    /// Its path relative to the root.
    pub relative_path: String,
    /// Sessions deleted (their turns went with them).
    pub sessions_wiped: usize,
}

/// Deletes the sessions (and their turns) bound to the workspace or below it; the files stay.
/// Audited as `workspace.reset`.
pub fn reset(
    ctx: &Context<'_>,
    workspace: &Resolved,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<Wiped> {
    let relative = workspace.relative.display().to_string();
    let path = workspace.path.display().to_string();
    let _guard = ctx.lock(
        &workspace.path,
        LOCK_WAIT,
        &format!("workspace {}", super::inventory::shown(&workspace.relative)),
    )?;
    let wiped = ctx.store.write(|tx| {
        let wiped = store::sessions::delete_under_path(tx, &path)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "workspace.reset",
                target_type: "workspace",
                target_id: &relative,
                before: None,
                after: Some(json!({
                    "workspace_path": path,
                    "relative_path": relative,
                    "sessions_wiped": wiped,
                    "files_preserved": true,
                })),
                request_id,
            },
        )?;
        Ok(wiped)
    })?;
    log::info!("workspace {path} reset: {wiped} session(s) wiped");
    Ok(Wiped {
        workspace_path: path,
        relative_path: relative,
        sessions_wiped: wiped,
    })
}

/// Deletes a workspace: its bound sessions (and below), the directory, and its snapshot store.
/// Refuses a directory that holds Codara's data dir. Audited as `workspace.deleted`.
///
/// Nothing is left half-done, and the writer transaction never waits on the filesystem: under
/// the workspace lock the directory is first renamed aside (one atomic `rename` to a hidden
/// `.codara-deleting-…` entry of the root, which discovery skips), then the sessions and the
/// audit entry are committed, and only then are the renamed directory and the snapshots
/// removed. If the transaction fails, the directory is renamed back; if the removal fails
/// after the commit, what is left is an invisible directory, logged for the operator.
pub fn delete(
    ctx: &Context<'_>,
    workspace: &Resolved,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<Wiped> {
    let relative = workspace.relative.display().to_string();
    let path = workspace.path.display().to_string();
    let data_dir = ctx.config.storage.data_dir.canonicalize().ok();
    if data_dir.is_some_and(|d| d.starts_with(&workspace.path)) {
        return Err(Error::Conflict(format!(
            "{} holds Codara's data directory; it cannot be deleted through the API",
            super::inventory::shown(&workspace.relative)
        )));
    }
    let _guard = ctx.lock(
        &workspace.path,
        LOCK_WAIT,
        &format!("workspace {}", super::inventory::shown(&workspace.relative)),
    )?;
    let aside = aside_path(&workspace.root);
    std::fs::rename(&workspace.path, &aside).map_err(|e| Error::io(&workspace.path, e))?;
    let committed = ctx.store.write(|tx| {
        let wiped = store::sessions::delete_under_path(tx, &path)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "workspace.deleted",
                target_type: "workspace",
                target_id: &relative,
                before: None,
                after: Some(json!({
                    "workspace_path": path,
                    "relative_path": relative,
                    "sessions_wiped": wiped,
                    "workspace_deleted": true,
                })),
                request_id,
            },
        )?;
        Ok(wiped)
    });
    let wiped = match committed {
        Ok(wiped) => wiped,
        Err(error) => {
            if let Err(e) = std::fs::rename(&aside, &workspace.path) {
                log::error!(
                    "workspace {path}: the deletion was not recorded ({error}) and moving the \
                     directory back from {} failed: {e}",
                    aside.display()
                );
            }
            return Err(error);
        }
    };
    if let Err(e) = std::fs::remove_dir_all(&aside) {
        log::warn!(
            "workspace {path} was deleted, but removing its files at {} failed: {e}; remove \
             that directory by hand",
            aside.display()
        );
    }
    // Its snapshots go too (stores of workspaces nested below it stay until pruned).
    if let Err(e) = Snapshots::of(&ctx.config.storage.data_dir, &workspace.path).remove() {
        log::warn!("workspace {path} was deleted, but its snapshot store was not: {e}");
    }
    log::info!("workspace {path} deleted: {wiped} session(s) wiped");
    Ok(Wiped {
        workspace_path: path,
        relative_path: relative,
        sessions_wiped: wiped,
    })
}

/// Where a workspace being deleted waits for its removal: a hidden, unique entry of the root
/// (the same filesystem as every workspace, so the rename is atomic).
fn aside_path(root: &Path) -> PathBuf {
    root.join(crate::crypto::random_id(".codara-deleting-"))
}

/// The snapshots before and after a stored turn; a 409 for a turn without them.
pub fn turn_snapshots(turn: &store::turns::Turn) -> Result<(Snapshot, Snapshot)> {
    match (&turn.before_tree, &turn.after_tree) {
        (Some(before), Some(after)) => {
            Ok((Snapshot::from_tree(before), Snapshot::from_tree(after)))
        }
        _ => Err(Error::Conflict(
            "this turn has no workspace snapshots".into(),
        )),
    }
}

/// The files a stored turn changed and their unified diff (a read: no lock, no audit).
pub fn turn_diff(ctx: &Context<'_>, turn: &store::turns::Turn) -> Result<(Vec<Change>, String)> {
    let (before, after) = turn_snapshots(turn)?;
    let snapshots = Snapshots::of(
        &ctx.config.storage.data_dir,
        Path::new(&turn.workspace_path),
    );
    snapshots.diff(&ctx.config.host, &before, &after)
}

/// Restores the turn's workspace to before that turn, under the workspace lock (waiting as
/// long as a turn would, `[workspace].lock_timeout_seconds`), and records `turn.reverted` with
/// the tree it replaced, so a revert can itself be undone.
pub fn revert(
    ctx: &Context<'_>,
    turn: &store::turns::Turn,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<()> {
    let (before, _) = turn_snapshots(turn)?;
    let workspace = Path::new(&turn.workspace_path);
    let wait = Duration::from_secs(ctx.config.workspace.lock_timeout_seconds);
    let _guard = ctx.lock(workspace, wait, "this workspace")?;
    let snapshots = Snapshots::of(&ctx.config.storage.data_dir, workspace);
    let replaced = snapshots.restore(&ctx.config.host, &before)?;
    ctx.store.write(|tx| {
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "turn.reverted",
                target_type: "turn",
                target_id: &turn.id,
                before: Some(json!({"tree": replaced.tree})),
                after: Some(json!({"tree": before.tree, "workspace_path": turn.workspace_path})),
                request_id,
            },
        )
    })?;
    log::info!(
        "reverted workspace {} to before turn {}",
        workspace.display(),
        turn.id
    );
    Ok(())
}

/// Deletes one session and its turns (files are kept); audited as `session.wiped` with the
/// session as it was. 404 when there is no such session.
pub fn wipe_session(
    store: &Store,
    id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<()> {
    store.write(|tx| {
        let session = store::sessions::get(tx, id)?
            .ok_or_else(|| Error::NotFound(format!("no session {id}")))?;
        store::sessions::delete(tx, id)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "session.wiped",
                target_type: "session",
                target_id: id,
                before: Some(audit::state(&audit::SessionState::from(&session))?),
                after: None,
                request_id,
            },
        )
    })
}

/// Ends every session of a user (their own reset); the files are kept. Audited as
/// `workspace.reset` on the user. Returns how many sessions were wiped.
pub fn reset_user_sessions(
    store: &Store,
    user: &store::users::User,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<usize> {
    store.write(|tx| {
        let wiped = store::sessions::delete_for_user(tx, &user.id)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "workspace.reset",
                target_type: "user",
                target_id: &user.id,
                before: None,
                after: Some(json!({
                    "sessions_wiped": wiped,
                    "files_preserved": true,
                    "workspace_path": user.workspace_path,
                })),
                request_id,
            },
        )?;
        Ok(wiped)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::inventory;
    use crate::workspace::projects::{self, NewProject};

    /// A data dir, a workspaces root, a database and a lock set in a temp dir.
    struct Env {
        dir: PathBuf,
        config: Config,
        store: Store,
        sandbox: Sandbox,
        locks: Locks,
    }

    impl Env {
        fn new() -> Env {
            let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-ops-"));
            let mut config = Config::default();
            config.storage.data_dir = dir.join("data");
            config.workspace.root = dir.join("workspaces");
            config.host.path = "/usr/local/bin:/usr/bin:/bin".to_string();
            std::fs::create_dir_all(&config.workspace.root).unwrap();
            let store = Store::open(&config.storage.database_path()).unwrap();
            Env {
                dir,
                config,
                store,
                sandbox: Sandbox::off(),
                locks: Locks::default(),
            }
        }

        fn ctx(&self) -> Context<'_> {
            Context {
                config: &self.config,
                store: &self.store,
                sandbox: &self.sandbox,
                locks: &self.locks,
            }
        }

        /// `<root>/<relative>` with a file in it and one bound session, resolved.
        fn workspace(&self, relative: &str) -> Resolved {
            let path = self.config.workspace.root.join(relative);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("notes.txt"), "kept?").unwrap();
            let resolved = inventory::resolve(
                &self.config.workspace.root,
                &inventory::encode_id(Path::new(relative)),
            )
            .unwrap();
            let session = store::sessions::Session {
                id: format!("ses_{}", relative.replace('/', "_")),
                session_key: format!("operator::{relative}::c"),
                user_id: "operator".into(),
                workspace_path: resolved.path.display().to_string(),
                ..Default::default()
            };
            self.store
                .write(|tx| store::sessions::upsert(tx, &session))
                .unwrap();
            resolved
        }

        fn count(&self, sql: &str) -> i64 {
            self.store
                .read(|conn| {
                    conn.query_row(sql, [], |row| row.get(0))
                        .map_err(Error::sql("counting"))
                })
                .unwrap()
        }

        /// Entries of the root whose name starts with `.`.
        fn hidden_in_root(&self) -> Vec<String> {
            std::fs::read_dir(&self.config.workspace.root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with('.'))
                .collect()
        }
    }

    impl Drop for Env {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn delete_renames_aside_commits_then_removes() {
        let env = Env::new();
        let workspace = env.workspace("team/app");
        let wiped = delete(&env.ctx(), &workspace, &Actor::Operator, Some("req_1")).unwrap();
        assert_eq!(wiped.sessions_wiped, 1);
        assert_eq!(wiped.relative_path, "team/app");
        assert!(!workspace.path.exists());
        assert!(
            env.config.workspace.root.join("team").is_dir(),
            "the parent stays"
        );
        assert!(
            env.hidden_in_root().is_empty(),
            "{:?}",
            env.hidden_in_root()
        );
        assert_eq!(env.count("SELECT COUNT(*) FROM sessions"), 0);
        assert_eq!(
            env.count("SELECT COUNT(*) FROM audit_log WHERE action = 'workspace.deleted'"),
            1
        );
    }

    /// A transaction that fails leaves everything as it was: the directory back in place with
    /// its files, the sessions, no audit entry, nothing aside.
    #[test]
    fn a_delete_that_cannot_commit_puts_the_directory_back() {
        let env = Env::new();
        let workspace = env.workspace("mine");
        env.store
            .write(|tx| {
                tx.execute_batch(
                    "CREATE TRIGGER broken BEFORE INSERT ON audit_log \
                     BEGIN SELECT RAISE(FAIL, 'the audit log is broken'); END;",
                )
                .map_err(Error::sql("installing the trigger"))
            })
            .unwrap();
        let error = delete(&env.ctx(), &workspace, &Actor::Operator, None).unwrap_err();
        assert!(error.to_string().contains("audit log is broken"), "{error}");
        assert_eq!(
            std::fs::read_to_string(workspace.path.join("notes.txt")).unwrap(),
            "kept?"
        );
        assert!(
            env.hidden_in_root().is_empty(),
            "{:?}",
            env.hidden_in_root()
        );
        assert_eq!(env.count("SELECT COUNT(*) FROM sessions"), 1);
    }

    #[test]
    fn reset_and_delete_wait_for_a_running_turn() {
        let env = Env::new();
        let workspace = env.workspace("busy");
        let turn = env
            .locks
            .workspace(&workspace.path, Duration::ZERO)
            .unwrap();
        let error = delete(&env.ctx(), &workspace, &Actor::Operator, None).unwrap_err();
        assert_eq!(error.status(), 409);
        assert!(error.to_string().contains("workspace busy"), "{error}");
        assert!(workspace.path.join("notes.txt").is_file());
        drop(turn);
        let wiped = reset(&env.ctx(), &workspace, &Actor::Cli, None).unwrap();
        assert_eq!(wiped.sessions_wiped, 1);
        assert!(workspace.path.join("notes.txt").is_file(), "files stay");
        assert_eq!(
            env.count(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'workspace.reset' AND actor = 'cli'"
            ),
            1
        );
    }

    #[test]
    fn a_directory_holding_the_data_dir_is_not_deleted() {
        let mut env = Env::new();
        let workspace = env.workspace("holder");
        env.config.storage.data_dir = workspace.path.join("data");
        std::fs::create_dir_all(&env.config.storage.data_dir).unwrap();
        let error = delete(&env.ctx(), &workspace, &Actor::Operator, None).unwrap_err();
        assert_eq!(error.status(), 409);
        assert!(workspace.path.is_dir());
    }

    /// `project create` on an existing project: a 409 (exit 1) naming its template, unless
    /// `force`; the same operation for the API (operator) and the CLI.
    #[test]
    fn creating_an_existing_project_needs_force() {
        let env = Env::new();
        let input = NewProject {
            name: "site",
            template: Some("docs"),
            provider: None,
            force: false,
        };
        let first = projects::create(&env.ctx(), input, &Actor::Cli, None).unwrap();
        assert!(first.created);
        assert_eq!(first.meta.created_by.as_deref(), Some("cli"));
        let again = NewProject {
            template: Some("python"),
            ..input
        };
        let error = projects::create(&env.ctx(), again, &Actor::Operator, None).unwrap_err();
        assert_eq!((error.status(), error.exit_code()), (409, 1));
        assert!(
            error.to_string().contains("already exists (template docs)"),
            "{error}"
        );
        assert_eq!(
            projects::read_metadata(&first.path).unwrap().template,
            "docs"
        );
        // A running turn in the directory holds the creation off.
        let turn = env.locks.workspace(&first.path, Duration::ZERO).unwrap();
        let forced = NewProject {
            force: true,
            ..again
        };
        let busy = projects::create(&env.ctx(), forced, &Actor::Operator, None).unwrap_err();
        assert_eq!(busy.status(), 409);
        assert!(
            busy.to_string().contains("a turn is running in site"),
            "{busy}"
        );
        drop(turn);
        let info = projects::create(&env.ctx(), forced, &Actor::Operator, Some("r")).unwrap();
        assert!(!info.created);
        assert_eq!(info.meta.template, "python");
        assert_eq!(info.meta.created_by.as_deref(), Some("cli"), "kept");
        assert_eq!(
            env.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'project.%'"),
            2
        );
    }
}
