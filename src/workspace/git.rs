//! Git plumbing for per-turn snapshots: a private index file, tree objects kept alive by private
//! refs, `diff-tree` between two trees, and restore with `read-tree --reset -u`.
//!
//! Every command runs through `providers::runner` with `GIT_DIR`/`GIT_WORK_TREE` set explicitly
//! (no discovery into a parent repository, no `core.worktree` redirect) and with config overrides
//! that keep workspace-controlled config from running programs (fsmonitor, hooks) or changing
//! bytes (autocrlf). Must not touch the user's index (`.git/index`), HEAD or branches: snapshots
//! live in `GIT_INDEX_FILE=<private index>` and under [`SNAPSHOT_REFS`].

use super::{Change, ChangeKind};
use crate::config::HostEnv;
use crate::error::{Error, Result};
use crate::providers::runner;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Largest diff text returned by [`diff`]; longer diffs end with a truncation marker.
pub const MAX_DIFF_BYTES: usize = 1024 * 1024;

/// Ref namespace that keeps snapshot trees reachable: `refs/codara/snapshots/<tree>` → tree.
pub const SNAPSHOT_REFS: &str = "refs/codara/snapshots/";

/// Deadline for one git command (a first `add -A` of a large tree hashes every file).
const GIT_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of git's stderr an error message keeps.
const STDERR_TAIL_CHARS: usize = 1500;
/// Identity written to a new repository's local config when none is configured.
pub(super) const DEFAULT_IDENTITY: [(&str, &str); 2] =
    [("user.name", "Codara"), ("user.email", "codara@localhost")];

/// `-c` overrides for every command: workspace config (writable by the agent) must not make the
/// gateway run programs, and snapshots must be byte-exact.
const CONFIG_OVERRIDES: &[&str] = &[
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.quotePath=false",
    "core.splitIndex=false",
    "core.sparseCheckout=false",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.addEmbeddedRepo=false",
];

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
    let mut command = runner::command(&program, host);
    command.arg("--version");
    runner::capture(command, Duration::from_secs(10)).is_ok_and(|c| c.code == Some(0))
}

/// Creates `dir` (0700) if missing and makes it a git repository if it is not one, with a local
/// `user.name`/`user.email` only when none is configured, so commits in the workspace work.
/// An existing repository is left exactly as it is.
pub fn ensure_repo(dir: &Path, host: &HostEnv) -> Result<()> {
    crate::datadir::ensure_private_dir(dir)?;
    // An existing repository is the user's: nothing to create, and its config stays theirs.
    if dir.join(".git").exists() {
        return Ok(());
    }
    let git = Git::open(dir, host)?;
    git.run_unbound(["init", "-q"])?;
    git.run(["rev-parse", "--git-dir"])?;
    for (key, value) in DEFAULT_IDENTITY {
        let args = ["config", "--get", key];
        let found = git.output(args)?;
        match found.code {
            Some(0) => {}
            Some(1) => {
                git.run(["config", "--local", key, value])?;
            }
            _ => return Err(git.failure(args, &found)),
        }
    }
    Ok(())
}

/// Records the full working tree (tracked and untracked files that are not ignored; never
/// `.git/`) as a git tree, using `private_index` so the user's index, HEAD and branches stay
/// untouched, and keeps it reachable under `refs/codara/snapshots/<tree>`.
///
/// A missing private index is seeded from HEAD, so files the user tracks despite `.gitignore`
/// are included from the first snapshot on. The index persists between calls, which keeps later
/// snapshots cheap (git re-hashes only files whose stat data changed).
pub fn snapshot(dir: &Path, host: &HostEnv, private_index: &Path) -> Result<Snapshot> {
    let index = private_index_path(private_index)?;
    let git = Git::open(dir, host)?.with_index(&index);
    if !index.exists() {
        let head = git.output(["rev-parse", "-q", "--verify", "HEAD^{tree}"])?;
        if head.code == Some(0) {
            git.run(["read-tree", head.stdout.trim()])?;
        }
    }
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

/// The files that differ between two snapshots, and the unified diff between them (binary files
/// as git marks them, `Binary files a/x and b/x differ`; capped at [`MAX_DIFF_BYTES`] with a
/// truncation marker). Paths are workspace-relative; renames show as a delete and an add.
pub fn diff(
    dir: &Path,
    host: &HostEnv,
    before: &Snapshot,
    after: &Snapshot,
) -> Result<(Vec<Change>, String)> {
    diff_limited(dir, host, before, after, MAX_DIFF_BYTES)
}

fn diff_limited(
    dir: &Path,
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
    let git = Git::open(dir, host)?;
    // Output goes to files: a pipe capped by the runner would cut a long listing short.
    let listing = TempOutput::create()?;
    git.run([
        OsStr::new("diff-tree"),
        OsStr::new("-r"),
        OsStr::new("-z"),
        OsStr::new("--raw"),
        OsStr::new("--numstat"),
        OsStr::new("--no-renames"),
        &listing.flag(),
        OsStr::new(&before.tree),
        OsStr::new(&after.tree),
    ])?;
    let changes = parse_listing(&listing.read_all()?);
    let patch = TempOutput::create()?;
    git.run([
        OsStr::new("diff-tree"),
        OsStr::new("-r"),
        OsStr::new("-p"),
        OsStr::new("--no-renames"),
        OsStr::new("--no-color"),
        OsStr::new("--no-ext-diff"),
        OsStr::new("--no-textconv"),
        OsStr::new("--src-prefix=a/"),
        OsStr::new("--dst-prefix=b/"),
        &patch.flag(),
        OsStr::new(&before.tree),
        OsStr::new(&after.tree),
    ])?;
    let text = patch.read_capped(limit)?;
    Ok((changes, text))
}

/// Makes the working tree equal to `snapshot`: files added since are removed (and directories
/// left empty by that), modified and deleted ones are restored. Ignored files stay, except where
/// one sits on a path the snapshot needs. Embedded repositories are left in place.
///
/// First records the current state (returned, and kept reachable like every snapshot, so a
/// restore can itself be undone), then runs `read-tree --reset -u` on the private index only;
/// the user's index, HEAD and branches are not touched.
pub fn restore(
    dir: &Path,
    host: &HostEnv,
    snapshot: &Snapshot,
    private_index: &Path,
) -> Result<Snapshot> {
    check_object_id(&snapshot.tree)?;
    // Brings the private index in line with the working tree, so `--reset -u` sees every file.
    let current = self::snapshot(dir, host, private_index)?;
    if current.tree == snapshot.tree {
        return Ok(current);
    }
    let index = private_index_path(private_index)?;
    let git = Git::open(dir, host)?.with_index(&index);
    git.run(["read-tree", "--reset", "-u", &snapshot.tree])?;
    Ok(current)
}

/// One workspace's git invocations (shared with the sibling `inventory` and `projects` modules).
pub(super) struct Git<'a> {
    program: PathBuf,
    host: &'a HostEnv,
    work_tree: PathBuf,
    index: Option<PathBuf>,
}

impl<'a> Git<'a> {
    pub(super) fn open(dir: &Path, host: &'a HostEnv) -> Result<Git<'a>> {
        Ok(Git {
            program: find_git(host)?,
            host,
            work_tree: std::path::absolute(dir).map_err(|e| Error::io(dir, e))?,
            index: None,
        })
    }

    fn with_index(mut self, index: &Path) -> Git<'a> {
        self.index = Some(index.to_path_buf());
        self
    }

    /// A git command in the work tree, not bound to `.git` (for `init`).
    fn base_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = runner::command(&self.program, self.host);
        for value in CONFIG_OVERRIDES {
            command.arg("-c").arg(value);
        }
        command
            .args(args)
            .current_dir(&self.work_tree)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("LC_ALL", "C");
        if let Some(index) = &self.index {
            command.env("GIT_INDEX_FILE", index);
        }
        command
    }

    /// Runs `args` against `<dir>/.git` and `<dir>`; any exit code is returned to the caller.
    pub(super) fn output<I, S>(&self, args: I) -> Result<runner::Captured>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let mut command = self.base_command(args.clone());
        command
            .env("GIT_DIR", self.work_tree.join(".git"))
            .env("GIT_WORK_TREE", &self.work_tree);
        runner::capture(command, GIT_TIMEOUT).map_err(|e| {
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
        let command = self.base_command(args.clone());
        let captured = runner::capture(command, GIT_TIMEOUT).map_err(|e| {
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
    pub(super) fn failure<I, S>(&self, args: I, captured: &runner::Captured) -> Error
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

/// The absolute private index path, its directory created (0700), and a stale lock (left by a
/// git killed at its deadline; turns in a workspace are serialized) removed.
fn private_index_path(private_index: &Path) -> Result<PathBuf> {
    let index = std::path::absolute(private_index).map_err(|e| Error::io(private_index, e))?;
    if let Some(parent) = index.parent() {
        crate::datadir::ensure_private_dir(parent)?;
    }
    let mut lock = index.clone().into_os_string();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let stale = std::fs::metadata(&lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > GIT_TIMEOUT);
    if stale {
        std::fs::remove_file(&lock).map_err(|e| Error::io(&lock, e))?;
    }
    Ok(index)
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

    fn flag(&self) -> OsString {
        let mut flag = OsString::from("--output=");
        flag.push(&self.path);
        flag
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

    /// A temporary workspace (and a private index beside it), removed when dropped.
    struct Temp {
        base: PathBuf,
        dir: PathBuf,
        index: PathBuf,
    }

    impl Temp {
        fn new() -> Temp {
            let base = std::env::temp_dir().join(crate::crypto::random_id("codara-ws-test-"));
            let dir = base.join("ws");
            let index = base.join("state").join("index");
            ensure_repo(&dir, &host()).unwrap();
            Temp { base, dir, index }
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
            snapshot(&self.dir, &host(), &self.index).unwrap()
        }

        fn diff(&self, before: &Snapshot, after: &Snapshot) -> (Vec<Change>, String) {
            diff(&self.dir, &host(), before, after).unwrap()
        }

        /// Runs git as a user would (default index, identity given on the command line).
        fn git(&self, args: &[&str]) -> String {
            let program = find_git(&host()).unwrap();
            let mut command = runner::command(&program, &host());
            command
                .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
                .args(args)
                .current_dir(&self.dir);
            let out = runner::capture(command, Duration::from_secs(60)).unwrap();
            assert_eq!(out.code, Some(0), "git {args:?}: {}", out.stderr);
            out.stdout
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
        ensure_repo(&ws.dir, &host()).unwrap();
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
        let error = snapshot(&ws.dir, &nowhere, &ws.index).unwrap_err();
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

        let replaced = restore(&ws.dir, &host(), &before, &ws.index).unwrap();
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
        restore(&ws.dir, &host(), &replaced, &ws.index).unwrap();
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
        let branches = ws.git(&["for-each-ref", "refs/heads"]);
        let index = std::fs::read(ws.dir.join(".git/index")).unwrap();

        ensure_repo(&ws.dir, &host()).unwrap();
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
        restore(&ws.dir, &host(), &before, &ws.index).unwrap();

        assert_eq!(std::fs::read(ws.dir.join(".git/index")).unwrap(), index);
        assert_eq!(ws.git(&["rev-parse", "HEAD"]), head);
        assert_eq!(ws.git(&["symbolic-ref", "HEAD"]), symbolic);
        assert_eq!(ws.git(&["for-each-ref", "refs/heads"]), branches);
        assert_eq!(ws.git(&["status", "--porcelain"]), status);
        assert_eq!(ws.read("a.txt"), b"a2 staged\n");
        assert_eq!(ws.read("untracked.txt"), b"u\n");
        // Ignored files are outside snapshots: the agent's log write stays.
        assert_eq!(ws.read("debug.log"), b"agent log\n");
        // Snapshot refs are not branches and do not show in the user's history.
        assert!(ws
            .git(&["for-each-ref", SNAPSHOT_REFS])
            .contains(&format!("tree\t{SNAPSHOT_REFS}{}", before.tree)));
        assert_eq!(ws.git(&["log", "--all", "--format=%s"]), "first\n");
    }

    #[test]
    fn files_tracked_despite_gitignore_are_included() {
        let ws = Temp::new();
        ws.write(".gitignore", b"build/\n");
        ws.write("build/config.json", b"{}\n");
        ws.git(&["add", "-f", "-A"]);
        ws.git(&["commit", "-q", "-m", "tracked ignored"]);
        let before = ws.snapshot();
        ws.write("build/config.json", b"{\"x\":1}\n");
        ws.write("build/output.o", b"\0obj");
        let (changes, _) = ws.diff(&before, &ws.snapshot());
        assert_eq!(
            changes,
            vec![change("build/config.json", ChangeKind::Modified, false)]
        );
    }

    #[test]
    fn snapshots_survive_gc() {
        let ws = Temp::new();
        ws.write("a.txt", b"only in a snapshot\n");
        let snap = ws.snapshot();
        std::fs::remove_file(ws.dir.join("a.txt")).unwrap();
        ws.snapshot();
        ws.git(&["gc", "-q", "--prune=now"]);
        assert_eq!(ws.git(&["cat-file", "-t", &snap.tree]).trim(), "tree");
        restore(&ws.dir, &host(), &snap, &ws.index).unwrap();
        assert_eq!(ws.read("a.txt"), b"only in a snapshot\n");
    }

    #[test]
    fn embedded_repository_without_a_commit_is_a_warning() {
        let ws = Temp::new();
        let before = ws.snapshot();
        ensure_repo(&ws.dir.join("inner"), &host()).unwrap();
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
        let (changes, text) = diff_limited(&ws.dir, &host(), &before, &after, 1000).unwrap();
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
    fn bad_ids_and_missing_repos_are_clear_errors() {
        let ws = Temp::new();
        let good = ws.snapshot();
        let bad = Snapshot::from_tree("--output=/tmp/x");
        let error = diff(&ws.dir, &host(), &good, &bad).unwrap_err();
        assert!(error.to_string().contains("not a git tree id"), "{error}");
        let plain = ws.base.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let error = snapshot(&plain, &host(), &ws.index)
            .unwrap_err()
            .to_string();
        assert!(error.contains("git add -A"), "{error}");
        assert!(error.contains("not a git repository"), "{error}");
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
