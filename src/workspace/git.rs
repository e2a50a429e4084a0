//! Git for workspaces: per-turn snapshots, diffs between them and restore, in a repository the
//! gateway owns; and the few commands that touch a user's own repository (init, metadata, the
//! initial commit of a project).
//!
//! Snapshots never read workspace-controlled configuration: they live in a bare repository under
//! `<data_dir>/snapshots/` (`GIT_DIR` there, `GIT_WORK_TREE` = the workspace), with an environment
//! built from scratch (no system or global config), `-c` overrides that disable hooks, fsmonitor
//! and pagers, and `info/attributes` that switches off filters and line-ending conversion — so a
//! filter, hook or `include.path` an agent planted in the workspace never runs, and snapshots are
//! byte-exact. Commands on a user's repository (`<dir>/.git`, whose config the agent controls) run
//! under that user's Landlock confinement when the sandbox is enforced. Must not touch the user's
//! index, HEAD or branches.

use super::{Change, ChangeKind};
use crate::config::HostEnv;
use crate::error::{Error, Result};
use crate::process::{self, CommandSpec};
use crate::sandbox::Policy;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest diff text returned by [`Snapshots::diff`]; longer diffs end with a truncation marker.
pub const MAX_DIFF_BYTES: usize = 1024 * 1024;

/// Ref namespace that keeps snapshot trees reachable: `refs/codara/snapshots/<tree>` → tree.
pub const SNAPSHOT_REFS: &str = "refs/codara/snapshots/";

/// Deadline for one git command (a first `add -A` of a large tree hashes every file).
const GIT_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of git's stderr an error message keeps.
const STDERR_TAIL_CHARS: usize = 1500;
/// Identity written to a repository Codara creates, so commits in the workspace work.
pub(super) const DEFAULT_IDENTITY: [(&str, &str); 2] =
    [("user.name", "Codara"), ("user.email", "codara@localhost")];

/// `-c` overrides for every command (they win over any repository config): nothing git could
/// run on its own (hooks, fsmonitor, pagers, signing, ssh), bytes exactly as on disk.
const CONFIG_OVERRIDES: &[&str] = &[
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.attributesFile=/dev/null",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.quotePath=false",
    "core.splitIndex=false",
    "core.sparseCheckout=false",
    "core.untrackedCache=false",
    "gpg.program=false",
    "log.showSignature=false",
    "commit.gpgSign=false",
    "protocol.allow=never",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.addEmbeddedRepo=false",
];

/// The empty tree in SHA-1 and SHA-256 repositories.
const EMPTY_TREES: [&str; 2] = [
    "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
];

/// `info/attributes` of a snapshot repository: it outranks every `.gitattributes` in the tree, so
/// no filter driver, `ident` or end-of-line conversion applies to what a snapshot records.
const SNAPSHOT_ATTRIBUTES: &str = "* -text -eol -ident -filter -working-tree-encoding\n";

/// A recorded state of a workspace's working tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The git tree id (40 or 64 hex digits), kept alive by `refs/codara/snapshots/<tree>`.
    /// Callers on hosts without git store a [`super::Manifest::id`] here instead.
    pub tree: String,
    /// Files git could not record (unreadable files, embedded repositories without a commit),
    /// one line each as git reported them; the snapshot holds everything else.
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// A snapshot known only by its tree id (e.g. loaded from a turn record).
    pub fn from_tree(tree: impl Into<String>) -> Snapshot {
        Snapshot {
            tree: tree.into(),
            warnings: Vec::new(),
        }
    }
}

/// True when a working `git` is on the host `PATH`.
pub fn git_available(host: &HostEnv) -> bool {
    let Ok(program) = find_git(host) else {
        return false;
    };
    let spec = hardened(&program, host, &std::env::temp_dir()).args(["--version"]);
    process::capture(&spec, Duration::from_secs(10)).is_ok_and(|c| c.code == Some(0))
}

/// Creates `dir` (0700) if missing and makes it a git repository if it is not one, with a local
/// identity so commits in the workspace work. An existing repository is left exactly as it is
/// (and not read: its configuration belongs to the workspace's agent). `init` runs under
/// `confine`, the writer confinement of that workspace when the sandbox is enforced.
/// Returns whether the repository was created now.
pub fn ensure_repo(dir: &Path, host: &HostEnv, confine: Option<Policy>) -> Result<bool> {
    crate::datadir::ensure_private_dir(dir)?;
    if std::fs::symlink_metadata(dir.join(".git")).is_ok() {
        return Ok(false);
    }
    let git = Git::user(dir, host, confine)?;
    git.run_unbound(["init", "-q"])?;
    // The repository is brand new, so its config is ours: append the identity directly.
    let config = dir.join(".git").join("config");
    let mut identity = String::from("[user]\n");
    for (key, value) in DEFAULT_IDENTITY {
        let name = key.trim_start_matches("user.");
        identity.push_str(&format!("\t{name} = {value}\n"));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .and_then(|mut file| std::io::Write::write_all(&mut file, identity.as_bytes()))
        .map_err(|e| Error::io(&config, e))?;
    Ok(true)
}

/// The snapshot store of one workspace: a bare repository the gateway owns at
/// `<data_dir>/snapshots/<hash of the workspace path>.git`, with the workspace as work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshots {
    git_dir: PathBuf,
    work_tree: PathBuf,
}

impl Snapshots {
    /// The store of `workspace` (nothing is created until the first [`Snapshots::take`]).
    pub fn of(data_dir: &Path, workspace: &Path) -> Snapshots {
        let name = crate::crypto::sha256_hex(workspace.to_string_lossy().as_bytes());
        Snapshots {
            git_dir: data_dir
                .join("snapshots")
                .join(format!("{}.git", &name[..16])),
            work_tree: workspace.to_path_buf(),
        }
    }

    /// Records the full working tree (tracked and untracked files that are not ignored by the
    /// tree's own `.gitignore` files; never `.git/`) as a tree in the gateway's repository and
    /// keeps it reachable under `refs/codara/snapshots/<tree>`. The repository's index persists
    /// between calls, which keeps later snapshots cheap (git re-hashes only files whose stat data
    /// changed). Files tracked by the user's own repository despite `.gitignore` are not
    /// recorded: the user's repository is not read.
    pub fn take(&self, host: &HostEnv) -> Result<Snapshot> {
        self.ensure(host)?;
        let git = Git::snapshots(self, host)?;
        clear_stale_lock(&self.git_dir.join("index.lock"))?;
        let args = ["add", "-A", "--ignore-errors", "--no-warn-embedded-repo"];
        let added = git.output(args)?;
        // With --ignore-errors, exit 1 means "some files could not be added"; the rest are in.
        let partial = added.code == Some(1) && !added.stderr.contains("fatal:");
        if added.code != Some(0) && !partial {
            return Err(git.failure(args, &added));
        }
        let warnings = added
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let tree = git.run(["write-tree"])?.trim().to_string();
        check_object_id(&tree)?;
        git.run(["update-ref", &format!("{SNAPSHOT_REFS}{tree}"), &tree])?;
        Ok(Snapshot { tree, warnings })
    }

    /// The files that differ between two snapshots, and the unified diff between them (binary
    /// files as git marks them, `Binary files a/x and b/x differ`; capped at [`MAX_DIFF_BYTES`]
    /// with a truncation marker). Paths are workspace-relative; renames show as a delete and an
    /// add. 404 when a snapshot is not in this store (recorded before snapshots moved here).
    pub fn diff(
        &self,
        host: &HostEnv,
        before: &Snapshot,
        after: &Snapshot,
    ) -> Result<(Vec<Change>, String)> {
        self.diff_limited(host, before, after, MAX_DIFF_BYTES)
    }

    fn diff_limited(
        &self,
        host: &HostEnv,
        before: &Snapshot,
        after: &Snapshot,
        limit: usize,
    ) -> Result<(Vec<Change>, String)> {
        check_object_id(&before.tree)?;
        check_object_id(&after.tree)?;
        if before.tree == after.tree {
            return Ok((Vec::new(), String::new()));
        }
        let git = Git::snapshots(self, host)?;
        self.check_present(&git, &[before, after])?;
        // Output goes to files: a pipe capped by the runner would cut a long listing short.
        let listing = TempOutput::create()?;
        git.run([
            "diff-tree",
            "-r",
            "-z",
            "--raw",
            "--numstat",
            "--no-renames",
            &listing.flag(),
            &before.tree,
            &after.tree,
        ])?;
        let changes = parse_listing(&listing.read_all()?);
        let patch = TempOutput::create()?;
        git.run([
            "diff-tree",
            "-r",
            "-p",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            &patch.flag(),
            &before.tree,
            &after.tree,
        ])?;
        let text = patch.read_capped(limit)?;
        Ok((changes, text))
    }

    /// Makes the working tree equal to `snapshot`: files added since are removed (and directories
    /// left empty by that), modified and deleted ones are restored. Ignored files stay, except
    /// where one sits on a path the snapshot needs. Embedded repositories are left in place.
    ///
    /// First records the current state (returned, and kept reachable like every snapshot, so a
    /// restore can itself be undone), then runs `read-tree --reset -u` on this workspace's own
    /// index in the gateway's repository; the user's repository is not touched.
    pub fn restore(&self, host: &HostEnv, snapshot: &Snapshot) -> Result<Snapshot> {
        check_object_id(&snapshot.tree)?;
        let git = Git::snapshots(self, host)?;
        self.check_present(&git, &[snapshot])?;
        // Brings the index in line with the working tree, so `--reset -u` sees every file.
        let current = self.take(host)?;
        if current.tree == snapshot.tree {
            return Ok(current);
        }
        git.run(["read-tree", "--reset", "-u", &snapshot.tree])?;
        Ok(current)
    }

    /// Deletes the store (when its workspace is deleted).
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.git_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&self.git_dir, e)),
            _ => Ok(()),
        }
    }

    /// Creates the bare repository with its attributes on first use.
    fn ensure(&self, host: &HostEnv) -> Result<()> {
        if self.git_dir.join("HEAD").is_file() {
            return Ok(());
        }
        if let Some(parent) = self.git_dir.parent() {
            crate::datadir::ensure_private_dir(parent)?;
        }
        let program = find_git(host)?;
        let spec = hardened(&program, host, &std::env::temp_dir()).args([
            "init".to_string(),
            "-q".to_string(),
            "--bare".to_string(),
            self.git_dir.to_string_lossy().into_owned(),
        ]);
        let captured = process::capture(&spec, GIT_TIMEOUT)?;
        if captured.code != Some(0) {
            return Err(Error::Internal(format!(
                "`git init --bare {}` failed: {}",
                self.git_dir.display(),
                tail(captured.stderr.trim(), STDERR_TAIL_CHARS)
            )));
        }
        let info = self.git_dir.join("info");
        crate::datadir::ensure_private_dir(&info)?;
        let attributes = info.join("attributes");
        std::fs::write(&attributes, SNAPSHOT_ATTRIBUTES).map_err(|e| Error::io(&attributes, e))
    }

    /// 404 when a tree is not in this store (a turn recorded before snapshots moved here). The
    /// empty tree is always there: git knows it without storing it.
    fn check_present(&self, git: &Git<'_>, snapshots: &[&Snapshot]) -> Result<()> {
        for snapshot in snapshots {
            if EMPTY_TREES.contains(&snapshot.tree.as_str()) {
                continue;
            }
            let found = self.git_dir.join("HEAD").is_file()
                && git.output(["cat-file", "-e", &snapshot.tree])?.code == Some(0);
            if !found {
                return Err(Error::NotFound(format!(
                    "snapshot {} of {} is not in the gateway's snapshot store (turns recorded \
                     before Codara kept snapshots outside the workspace cannot be diffed or \
                     reverted)",
                    snapshot.tree,
                    self.work_tree.display()
                )));
            }
        }
        Ok(())
    }
}

/// The environment and options every git command gets, whatever repository it touches: `PATH`
/// only from the host, no system, global or home configuration, no prompts, no optional locks.
fn hardened(program: &Path, host: &HostEnv, cwd: &Path) -> CommandSpec {
    let mut spec = CommandSpec::new(program, cwd)
        .env("PATH", host.path.clone())
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ATTR_NOSYSTEM", "1")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_NO_REPLACE_OBJECTS", "1");
    for value in CONFIG_OVERRIDES {
        spec = spec.args(["-c", value]);
    }
    spec
}

/// One repository's git invocations (shared with the sibling `inventory` and `projects` modules).
pub(super) struct Git<'a> {
    program: PathBuf,
    host: &'a HostEnv,
    work_tree: PathBuf,
    git_dir: PathBuf,
    confine: Option<Policy>,
}

impl<'a> Git<'a> {
    /// Commands on the gateway's snapshot repository of a workspace (unconfined: it reads only
    /// configuration the gateway wrote).
    fn snapshots(store: &Snapshots, host: &'a HostEnv) -> Result<Git<'a>> {
        Ok(Git {
            program: find_git(host)?,
            host,
            work_tree: std::path::absolute(&store.work_tree)
                .map_err(|e| Error::io(&store.work_tree, e))?,
            git_dir: store.git_dir.clone(),
            confine: None,
        })
    }

    /// Commands on the user's repository `<dir>/.git`, under `confine`.
    pub(super) fn user(dir: &Path, host: &'a HostEnv, confine: Option<Policy>) -> Result<Git<'a>> {
        let work_tree = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Git {
            program: find_git(host)?,
            host,
            git_dir: work_tree.join(".git"),
            work_tree,
            confine,
        })
    }

    /// A git command in the work tree, not bound to a git directory (for `init`).
    fn spec<I, S>(&self, args: I) -> CommandSpec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut spec = hardened(&self.program, self.host, &self.work_tree).args(
            args.into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        );
        spec.confine = self.confine.clone();
        spec
    }

    /// Runs `args` against the git directory and the work tree; any exit code is returned to
    /// the caller.
    pub(super) fn output<I, S>(&self, args: I) -> Result<process::Captured>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let spec = self
            .spec(args.clone())
            .env("GIT_DIR", self.git_dir.to_string_lossy().into_owned())
            .env(
                "GIT_WORK_TREE",
                self.work_tree.to_string_lossy().into_owned(),
            );
        process::capture(&spec, GIT_TIMEOUT).map_err(|e| {
            Error::Internal(format!(
                "`{}` in {}: {e}",
                describe(args),
                self.work_tree.display()
            ))
        })
    }

    /// Runs `args` and returns stdout, failing on a non-zero exit.
    pub(super) fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let captured = self.output(args.clone())?;
        if captured.code != Some(0) {
            return Err(self.failure(args, &captured));
        }
        Ok(captured.stdout)
    }

    /// Like [`Git::run`] without `GIT_DIR`/`GIT_WORK_TREE` (which `init` would record as
    /// `core.worktree`).
    fn run_unbound<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let captured = process::capture(&self.spec(args.clone()), GIT_TIMEOUT).map_err(|e| {
            Error::Internal(format!(
                "`{}` in {}: {e}",
                describe(args.clone()),
                self.work_tree.display()
            ))
        })?;
        if captured.code != Some(0) {
            return Err(self.failure(args, &captured));
        }
        Ok(captured.stdout)
    }

    /// The error for a git command that exited badly: command, directory, exit code, stderr tail.
    pub(super) fn failure<I, S>(&self, args: I, captured: &process::Captured) -> Error
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let code = captured
            .code
            .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
        Error::Internal(format!(
            "`{}` failed in {} ({code}): {}",
            describe(args),
            self.work_tree.display(),
            tail(captured.stderr.trim(), STDERR_TAIL_CHARS)
        ))
    }
}

fn find_git(host: &HostEnv) -> Result<PathBuf> {
    crate::providers::find_binary("git", &host.path).ok_or_else(|| Error::Unavailable {
        code: "git_unavailable",
        message: "git was not found on the host PATH; workspace snapshots need it".to_string(),
    })
}

/// `git <args>` for messages.
fn describe<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut text = String::from("git");
    for arg in args {
        text.push(' ');
        text.push_str(&arg.as_ref().to_string_lossy());
    }
    text
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let skip = count - max;
    format!("…{}", text.chars().skip(skip).collect::<String>())
}

/// Guards against option injection and garbage: a git object id is 40 (SHA-1) or 64 (SHA-256)
/// lowercase hex digits.
fn check_object_id(id: &str) -> Result<()> {
    let hex = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex && (id.len() == 40 || id.len() == 64) {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "`{id}` is not a git tree id (a manifest id cannot be diffed or restored with git)"
        )))
    }
}

/// Removes an index lock left by a git killed at its deadline (turns in a workspace are
/// serialized, so an old lock is never a live one).
fn clear_stale_lock(lock: &Path) -> Result<()> {
    let stale = std::fs::metadata(lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > GIT_TIMEOUT);
    if stale {
        std::fs::remove_file(lock).map_err(|e| Error::io(lock, e))?;
    }
    Ok(())
}

/// Parses `diff-tree -r -z --raw --numstat` output: raw records (`:<modes> <ids> <status>` NUL
/// path NUL) give the change kinds, numstat records (`added TAB deleted TAB path` NUL) with
/// `-` counts mark binary files.
fn parse_listing(bytes: &[u8]) -> Vec<Change> {
    let mut tokens = bytes.split(|b| *b == 0).filter(|t| !t.is_empty());
    let mut changes = Vec::new();
    let mut binary = HashSet::new();
    while let Some(token) = tokens.next() {
        if token.first() == Some(&b':') {
            let status = token
                .rsplit(|b| *b == b' ')
                .next()
                .and_then(|s| s.first())
                .copied();
            let Some(path) = tokens.next() else { break };
            let kind = match status {
                Some(b'A') => ChangeKind::Added,
                Some(b'D') => ChangeKind::Deleted,
                _ => ChangeKind::Modified,
            };
            changes.push(Change {
                path: String::from_utf8_lossy(path).into_owned(),
                kind,
                binary: false,
            });
        } else {
            let mut parts = token.splitn(3, |b| *b == b'\t');
            if let (Some(added), Some(deleted), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            {
                if added == b"-" && deleted == b"-" {
                    binary.insert(String::from_utf8_lossy(path).into_owned());
                }
            }
        }
    }
    for change in &mut changes {
        change.binary = binary.contains(&change.path);
    }
    changes
}

/// A private (0600) temporary file git writes with `--output`; removed when dropped.
struct TempOutput {
    path: PathBuf,
}

impl TempOutput {
    fn create() -> Result<TempOutput> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(crate::crypto::random_id("codara-git-out-"));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(TempOutput { path })
    }

    fn flag(&self) -> String {
        format!("--output={}", self.path.display())
    }

    fn read_all(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))
    }

    /// At most `limit` bytes (cut at a line end), lossily decoded, plus a marker when cut.
    fn read_capped(&self, limit: usize) -> Result<String> {
        let file = std::fs::File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let total = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        let mut bytes = Vec::new();
        file.take(limit as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        if total <= limit as u64 {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        if let Some(end) = bytes.iter().rposition(|b| *b == b'\n') {
            bytes.truncate(end + 1);
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[diff truncated by Codara: showing {} of {total} bytes]\n",
            bytes.len()
        ));
        Ok(text)
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostEnv {
        HostEnv {
            path: "/usr/local/bin:/usr/bin:/bin".to_string(),
            home: None,
        }
    }

    /// A temporary workspace (a user repository) and a data dir beside it, removed when dropped.
    struct Temp {
        base: PathBuf,
        dir: PathBuf,
        store: Snapshots,
    }

    impl Temp {
        fn new() -> Temp {
            let base = std::env::temp_dir().join(crate::crypto::random_id("codara-ws-test-"));
            let dir = base.join("ws");
            ensure_repo(&dir, &host(), None).unwrap();
            let store = Snapshots::of(&base.join("data"), &dir);
            Temp { base, dir, store }
        }

        fn write(&self, path: &str, bytes: &[u8]) {
            let path = self.dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }

        fn read(&self, path: &str) -> Vec<u8> {
            std::fs::read(self.dir.join(path)).unwrap()
        }

        fn snapshot(&self) -> Snapshot {
            self.store.take(&host()).unwrap()
        }

        fn diff(&self, before: &Snapshot, after: &Snapshot) -> (Vec<Change>, String) {
            self.store.diff(&host(), before, after).unwrap()
        }

        /// Runs git as a user would (their repository, identity given on the command line).
        fn git(&self, args: &[&str]) -> String {
            let program = find_git(&host()).unwrap();
            let spec = CommandSpec::new(program, &self.dir)
                .env("PATH", host().path)
                .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
                .args(args.iter().copied());
            let out = process::capture(&spec, Duration::from_secs(60)).unwrap();
            assert_eq!(out.code, Some(0), "git {args:?}: {}", out.stderr);
            out.stdout
        }

        /// Runs git on the gateway's snapshot repository.
        fn store_git(&self, args: &[&str]) -> String {
            let host = host();
            let git = Git::snapshots(&self.store, &host).unwrap();
            git.run(args.iter().copied()).unwrap()
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
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
    fn ensure_repo_creates_a_private_repo_with_an_identity_once() {
        use std::os::unix::fs::PermissionsExt;
        let ws = Temp::new();
        assert!(ws.dir.join(".git").is_dir());
        let mode = std::fs::metadata(&ws.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(ws.git(&["config", "--local", "user.name"]).trim(), "Codara");
        assert_eq!(
            ws.git(&["config", "--local", "user.email"]).trim(),
            "codara@localhost"
        );
        ws.git(&["config", "--local", "user.name", "Someone"]);
        assert!(!ensure_repo(&ws.dir, &host(), None).unwrap());
        assert_eq!(
            ws.git(&["config", "--local", "user.name"]).trim(),
            "Someone"
        );
        assert!(git_available(&host()));
        let nowhere = HostEnv {
            path: "/nonexistent".to_string(),
            home: None,
        };
        assert!(!git_available(&nowhere));
        let error = Snapshots::of(&ws.base.join("other"), &ws.dir)
            .take(&nowhere)
            .unwrap_err();
        assert_eq!(error.code(), "git_unavailable");
    }

    #[test]
    fn add_modify_delete_binary_and_subdirectory() {
        let ws = Temp::new();
        ws.write("keep.txt", b"same\n");
        ws.write("edit.txt", b"one\ntwo\n");
        ws.write("gone.txt", b"bye\n");
        ws.write("img.bin", b"\x89PNG\0\x01\x02");
        let before = ws.snapshot();
        ws.write("edit.txt", b"one\nthree\n");
        std::fs::remove_file(ws.dir.join("gone.txt")).unwrap();
        ws.write("img.bin", b"\x89PNG\0\x03\x04");
        ws.write("src/deep/new.rs", b"fn main() {}\n");
        ws.write("blob.dat", b"\0\0\0");
        let after = ws.snapshot();
        assert!(after.warnings.is_empty(), "{:?}", after.warnings);
        let (changes, text) = ws.diff(&before, &after);
        assert_eq!(
            changes,
            vec![
                change("blob.dat", ChangeKind::Added, true),
                change("edit.txt", ChangeKind::Modified, false),
                change("gone.txt", ChangeKind::Deleted, false),
                change("img.bin", ChangeKind::Modified, true),
                change("src/deep/new.rs", ChangeKind::Added, false),
            ]
        );
        for line in [
            "diff --git a/edit.txt b/edit.txt",
            "-two",
            "+three",
            "diff --git a/gone.txt b/gone.txt",
            "deleted file mode 100644",
            "-bye",
            "Binary files a/img.bin and b/img.bin differ",
            "Binary files /dev/null and b/blob.dat differ",
            "new file mode 100644",
            "+++ b/src/deep/new.rs",
            "+fn main() {}",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("keep.txt"));
    }

    #[test]
    fn restore_brings_the_tree_back() {
        let ws = Temp::new();
        ws.write("edit.txt", b"original\n");
        ws.write("gone.txt", b"keep me\n");
        ws.write("bin/data", b"\0\x01");
        std::os::unix::fs::symlink("edit.txt", ws.dir.join("link")).unwrap();
        let before = ws.snapshot();
        ws.write("edit.txt", b"changed\n");
        std::fs::remove_file(ws.dir.join("gone.txt")).unwrap();
        std::fs::remove_file(ws.dir.join("link")).unwrap();
        ws.write("bin/data", b"\0\x02");
        ws.write("new/nested/file.txt", b"new\n");
        ws.write("added.txt", b"new\n");
        let after = ws.snapshot();
        assert_ne!(before.tree, after.tree);

        let replaced = ws.store.restore(&host(), &before).unwrap();
        assert_eq!(replaced.tree, after.tree);
        assert_eq!(ws.read("edit.txt"), b"original\n");
        assert_eq!(ws.read("gone.txt"), b"keep me\n");
        assert_eq!(ws.read("bin/data"), b"\0\x01");
        assert_eq!(
            std::fs::read_link(ws.dir.join("link")).unwrap(),
            Path::new("edit.txt")
        );
        assert!(!ws.dir.join("added.txt").exists());
        assert!(!ws.dir.join("new").exists(), "emptied directories go too");
        assert_eq!(ws.snapshot().tree, before.tree);

        // The replaced state was kept, so the restore can be undone.
        ws.store.restore(&host(), &replaced).unwrap();
        assert_eq!(ws.read("new/nested/file.txt"), b"new\n");
        assert_eq!(ws.snapshot().tree, after.tree);
    }

    #[test]
    fn unchanged_tree_gives_an_empty_diff() {
        let ws = Temp::new();
        let empty = ws.snapshot();
        assert_eq!(ws.snapshot(), empty);
        ws.write("a.txt", b"a\n");
        let before = ws.snapshot();
        let after = ws.snapshot();
        assert_eq!(before.tree, after.tree);
        let (changes, text) = ws.diff(&before, &after);
        assert!(changes.is_empty());
        assert!(text.is_empty());
        // Touching a file without changing it is not a change either.
        ws.write("a.txt", b"a\n");
        let (changes, text) = ws.diff(&before, &ws.snapshot());
        assert!(changes.is_empty() && text.is_empty());
        // The very first turn of an empty workspace still diffs against the empty tree.
        let (changes, _) = ws.diff(&empty, &after);
        assert_eq!(changes, vec![change("a.txt", ChangeKind::Added, false)]);
    }

    #[test]
    fn user_repository_state_is_never_touched() {
        let ws = Temp::new();
        ws.write("a.txt", b"a1\n");
        ws.write("b.txt", b"b1\n");
        ws.write(".gitignore", b"*.log\n");
        ws.git(&["add", "-A"]);
        ws.git(&["commit", "-q", "-m", "first"]);
        ws.git(&["branch", "feature"]);
        ws.git(&["checkout", "-q", "-b", "work"]);
        ws.write("a.txt", b"a2 staged\n");
        ws.git(&["add", "a.txt"]);
        ws.write("b.txt", b"b2 unstaged\n");
        ws.write("untracked.txt", b"u\n");
        ws.write("debug.log", b"ignored\n");

        let status = ws.git(&["status", "--porcelain"]);
        let head = ws.git(&["rev-parse", "HEAD"]);
        let symbolic = ws.git(&["symbolic-ref", "HEAD"]);
        let branches = ws.git(&["for-each-ref"]);
        let index = std::fs::read(ws.dir.join(".git/index")).unwrap();

        ensure_repo(&ws.dir, &host(), None).unwrap();
        let before = ws.snapshot();
        ws.write("a.txt", b"agent\n");
        ws.write("agent.txt", b"new\n");
        std::fs::remove_file(ws.dir.join("untracked.txt")).unwrap();
        ws.write("debug.log", b"agent log\n");
        let after = ws.snapshot();
        let (changes, _) = ws.diff(&before, &after);
        assert_eq!(
            changes,
            vec![
                change("a.txt", ChangeKind::Modified, false),
                change("agent.txt", ChangeKind::Added, false),
                change("untracked.txt", ChangeKind::Deleted, false),
            ]
        );
        ws.store.restore(&host(), &before).unwrap();

        assert_eq!(std::fs::read(ws.dir.join(".git/index")).unwrap(), index);
        assert_eq!(ws.git(&["rev-parse", "HEAD"]), head);
        assert_eq!(ws.git(&["symbolic-ref", "HEAD"]), symbolic);
        // No snapshot ref, object or branch lands in the user's repository.
        assert_eq!(ws.git(&["for-each-ref"]), branches);
        assert_eq!(ws.git(&["status", "--porcelain"]), status);
        assert_eq!(ws.read("a.txt"), b"a2 staged\n");
        assert_eq!(ws.read("untracked.txt"), b"u\n");
        // Ignored files are outside snapshots: the agent's log write stays.
        assert_eq!(ws.read("debug.log"), b"agent log\n");
        assert!(ws
            .store_git(&["for-each-ref", SNAPSHOT_REFS])
            .contains(&format!("tree\t{SNAPSHOT_REFS}{}", before.tree)));
        assert_eq!(ws.git(&["log", "--all", "--format=%s"]), "first\n");
    }

    #[test]
    fn snapshots_survive_gc() {
        let ws = Temp::new();
        ws.write("a.txt", b"only in a snapshot\n");
        let snap = ws.snapshot();
        std::fs::remove_file(ws.dir.join("a.txt")).unwrap();
        ws.snapshot();
        ws.store_git(&["gc", "-q", "--prune=now"]);
        assert_eq!(ws.store_git(&["cat-file", "-t", &snap.tree]).trim(), "tree");
        ws.store.restore(&host(), &snap).unwrap();
        assert_eq!(ws.read("a.txt"), b"only in a snapshot\n");
    }

    #[test]
    fn embedded_repository_without_a_commit_is_a_warning() {
        let ws = Temp::new();
        let before = ws.snapshot();
        ensure_repo(&ws.dir.join("inner"), &host(), None).unwrap();
        ws.write("a.txt", b"a\n");
        let after = ws.snapshot();
        assert!(
            after.warnings.iter().any(|w| w.contains("inner")),
            "{:?}",
            after.warnings
        );
        let (changes, _) = ws.diff(&before, &after);
        assert_eq!(changes, vec![change("a.txt", ChangeKind::Added, false)]);
    }

    #[test]
    fn long_diffs_are_truncated_with_a_marker() {
        let ws = Temp::new();
        let before = ws.snapshot();
        let body: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        ws.write("big.txt", body.as_bytes());
        let after = ws.snapshot();
        let (changes, text) = ws
            .store
            .diff_limited(&host(), &before, &after, 1000)
            .unwrap();
        assert_eq!(changes.len(), 1);
        assert!(text.len() < 1100, "{}", text.len());
        let last = text.lines().last().unwrap();
        assert!(
            last.starts_with("[diff truncated by Codara: showing "),
            "{last}"
        );
        assert!(text.lines().any(|l| l == "+line 0"));
        let (_, full) = ws.diff(&before, &after);
        assert!(full.lines().any(|l| l == "+line 1999"));
        assert!(!full.contains("truncated"));
    }

    #[test]
    fn bad_ids_unknown_trees_and_plain_directories() {
        let ws = Temp::new();
        let good = ws.snapshot();
        let bad = Snapshot::from_tree("--output=/tmp/x");
        let error = ws.store.diff(&host(), &good, &bad).unwrap_err();
        assert!(error.to_string().contains("not a git tree id"), "{error}");
        // A tree recorded elsewhere (before snapshots moved to the gateway's store) is a 404.
        let foreign = Snapshot::from_tree("4b825dc642cb6eb9a060e54bf8d69288fbee4905");
        let error = ws.store.diff(&host(), &good, &foreign).unwrap_err();
        assert_eq!(error.status(), 404, "{error}");
        // A directory that is no repository at all can still be snapshotted.
        let plain = ws.base.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("f"), "x").unwrap();
        let store = Snapshots::of(&ws.base.join("data"), &plain);
        let snap = store.take(&host()).unwrap();
        assert_ne!(snap.tree, good.tree);
        assert!(!plain.join(".git").exists());
    }

    #[test]
    fn snapshots_are_byte_exact_whatever_the_workspace_attributes_say() {
        let ws = Temp::new();
        ws.write(".gitattributes", b"* text eol=crlf ident\n");
        ws.write("crlf.txt", b"one\r\ntwo\n$Id$\n");
        let before = ws.snapshot();
        let blob = ws.store_git(&["cat-file", "-p", &format!("{}:crlf.txt", before.tree)]);
        assert_eq!(blob, "one\r\ntwo\n$Id$\n");
        std::fs::remove_file(ws.dir.join("crlf.txt")).unwrap();
        ws.store.restore(&host(), &before).unwrap();
        assert_eq!(ws.read("crlf.txt"), b"one\r\ntwo\n$Id$\n");
    }

    /// Configuration an agent can plant in its workspace: every way of making git run a program,
    /// each touching its own marker in `markers` (so a failure names the trap that fired).
    fn plant_everything(dir: &Path, markers: &Path) {
        let run = |trap: &str| format!("touch {}", markers.join(trap).display());
        let config = format!(
            "[filter \"x\"]\n\tclean = {}\n\tsmudge = {}\n\tprocess = {}\n\trequired = true\n\
             [core]\n\tfsmonitor = {}\n\tsshCommand = {}\n\tpager = {}\n\thooksPath = hooks\n\
             [diff]\n\texternal = {}\n[diff \"x\"]\n\ttextconv = {}\n\
             [include]\n\tpath = {}\n",
            run("filter-clean"),
            run("filter-smudge"),
            run("filter-process"),
            run("fsmonitor"),
            run("ssh-command"),
            run("pager"),
            run("external-diff"),
            run("textconv"),
            dir.join("included").display()
        );
        let git = dir.join(".git");
        std::fs::create_dir_all(git.join("hooks")).unwrap();
        let existing = std::fs::read_to_string(git.join("config")).unwrap_or_default();
        std::fs::write(git.join("config"), existing + &config).unwrap();
        std::fs::write(
            dir.join("included"),
            format!("[core]\n\tfsmonitor = {}\n", run("included-fsmonitor")),
        )
        .unwrap();
        std::fs::write(dir.join(".gitattributes"), "* filter=x diff=x\n").unwrap();
        std::fs::create_dir_all(dir.join("hooks")).unwrap();
        for hook in [
            "pre-commit",
            "post-checkout",
            "post-index-change",
            "reference-transaction",
        ] {
            for path in [git.join("hooks").join(hook), dir.join("hooks").join(hook)] {
                std::fs::write(&path, format!("#!/bin/sh\n{}\n", run(hook))).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }

    #[test]
    fn planted_configuration_never_runs_in_snapshots_diffs_or_restores() {
        let ws = Temp::new();
        let markers = ws.base.join("fired");
        std::fs::create_dir_all(&markers).unwrap();
        ws.write("a.txt", b"a\n");
        plant_everything(&ws.dir, &markers);
        // The same in a nested repository the agent made (a later turn's `workspace_id`).
        ensure_repo(&ws.dir.join("sub"), &host(), None).unwrap();
        plant_everything(&ws.dir.join("sub"), &markers);
        std::fs::write(ws.dir.join("sub/file"), "x").unwrap();
        for store in [
            ws.store.clone(),
            Snapshots::of(&ws.base.join("data"), &ws.dir.join("sub")),
        ] {
            let before = store.take(&host()).unwrap();
            std::fs::write(store.work_tree.join("b.txt"), "b\n").unwrap();
            let after = store.take(&host()).unwrap();
            let (changes, diff) = store.diff(&host(), &before, &after).unwrap();
            assert!(changes.iter().any(|c| c.path == "b.txt"), "{changes:?}");
            assert!(diff.contains("+b"), "{diff}");
            store.restore(&host(), &before).unwrap();
            let fired: Vec<String> = std::fs::read_dir(&markers)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert!(fired.is_empty(), "planted commands ran: {fired:?}");
        }
    }

    #[test]
    fn listing_parser_handles_odd_paths() {
        let raw =
            b":000000 100644 0000 1111 A\0:dir/\xc3\xa9 tab\tx\0:100644 000000 1111 0000 D\0old\0\
            1\t0\t:dir/\xc3\xa9 tab\tx\0-\t-\told\0";
        assert_eq!(
            parse_listing(raw),
            vec![
                change(":dir/é tab\tx", ChangeKind::Added, false),
                change("old", ChangeKind::Deleted, true),
            ]
        );
        assert!(parse_listing(b"").is_empty());
    }
}
