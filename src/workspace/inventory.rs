//! The workspace inventory: discovery of the git workspaces under the root, their git metadata
//! and project metadata, and the ids that name them in URLs.
//!
//! A workspace id is the base64url encoding (no padding) of the path relative to the workspaces
//! root. [`resolve`] turns an id back into a canonical directory inside the root or fails with
//! a 400 (garbage, absolute, `..`, outside after symlinks, the root itself) or a 404 (missing).
//! Git is read through `git::Git` (hardened environment and config, confined to that workspace,
//! read-only, when the sandbox is enforced: the repository's config belongs to its agent).
//! Must not change anything on disk or decide who may see a workspace: callers do.

use super::git::Git;
use super::projects::{self, ProjectMeta};
use crate::config::HostEnv;
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;
use crate::store;
use rusqlite::Connection;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Deepest directory level (the root's children are level 1) searched for workspaces.
pub const MAX_DEPTH: usize = 4;

/// Most directories read in one discovery; a guard against huge trees.
const MAX_VISITED: usize = 20_000;

/// Longest accepted workspace id (characters of base64url).
const MAX_ID_CHARS: usize = 4096;

/// Build and dependency directories not searched inside a repository: they hold no workspaces
/// and can be huge.
const HEAVY_DIRS: &[&str] = &["node_modules", "target", "__pycache__", "venv", "vendor"];

/// Encodes `bytes` as base64url without padding.
pub fn base64url_encode(bytes: &[u8]) -> String {
    crate::crypto::base64_encode(bytes, crate::crypto::Base64::Url)
}

/// Decodes base64url without padding; `None` on any other character, an impossible length or
/// non-zero trailing bits (so every byte string has exactly one encoding).
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    crate::crypto::base64_decode(
        text,
        crate::crypto::Base64::Url,
        crate::crypto::Padding::Forbidden,
    )
}

/// The id of the workspace at `relative` (relative to the root).
pub fn encode_id(relative: &Path) -> String {
    base64url_encode(relative.as_os_str().as_bytes())
}

/// Decodes an id into a normalized relative path of plain segments; a 400 naming
/// `workspace_id` for garbage, an absolute path, `.`/`..` segments or the root itself.
pub fn decode_id(id: &str) -> Result<PathBuf> {
    let invalid = |why: &str| {
        Error::bad_param(
            "workspace_id",
            format!("invalid workspace id `{}`: {why}", short(id)),
        )
    };
    if id.len() > MAX_ID_CHARS {
        return Err(invalid("too long"));
    }
    let bytes = base64url_decode(id).ok_or_else(|| {
        invalid("not base64url (without padding) of a path relative to the workspaces root")
    })?;
    if bytes.is_empty() {
        return Err(invalid("it names the workspaces root itself"));
    }
    if bytes.contains(&0) {
        return Err(invalid("the path contains a NUL byte"));
    }
    let path = PathBuf::from(OsString::from_vec(bytes));
    if path.is_absolute() {
        return Err(invalid("the path must be relative to the workspaces root"));
    }
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            _ => return Err(invalid("the path must not contain `.` or `..` segments")),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(invalid("it names the workspaces root itself"));
    }
    Ok(relative)
}

/// Most characters of an id or a path quoted in a message.
const SHOWN_CHARS: usize = 64;

/// An id for messages: escaped and shortened like [`shown`] (the path segment it came from was
/// percent-decoded and may hold anything).
fn short(id: &str) -> String {
    escaped(id.as_bytes())
}

/// A workspace path for messages: control characters as `\u{…}`, bytes that are not UTF-8 as
/// `\xNN`, at most 64 characters then `…`. An id decodes to arbitrary bytes, and a message must
/// not carry them raw into a terminal or a log.
pub fn shown(relative: &Path) -> String {
    escaped(relative.as_os_str().as_bytes())
}

fn escaped(bytes: &[u8]) -> String {
    let mut pieces: Vec<String> = Vec::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            pieces.push(match c {
                '\\' => "\\\\".to_string(),
                c if c.is_control() => c.escape_unicode().to_string(),
                c => c.to_string(),
            });
        }
        pieces.extend(chunk.invalid().iter().map(|b| format!("\\x{b:02x}")));
    }
    let mut text: String = pieces
        .iter()
        .take(SHOWN_CHARS)
        .map(String::as_str)
        .collect();
    if pieces.len() > SHOWN_CHARS {
        text.push('…');
    }
    text
}

/// A workspace directory named by an id, checked to lie inside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The canonical workspaces root.
    pub root: PathBuf,
    /// The canonical directory (no symbolic link on the way).
    pub path: PathBuf,
    /// The directory relative to the root.
    pub relative: PathBuf,
}

/// Resolves a workspace id under `root`: 400 as [`decode_id`], or when the path resolves
/// outside the root, to the root, or through a symbolic link; 404 when it does not exist or is
/// not a directory.
pub fn resolve(root: &Path, id: &str) -> Result<Resolved> {
    let relative = decode_id(id)?;
    let missing = || Error::NotFound(format!("workspace not found: {}", shown(&relative)));
    let root = root.canonicalize().map_err(|_| missing())?;
    let candidate = root.join(&relative);
    let path = match candidate.canonicalize() {
        Ok(path) => path,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(missing())
        }
        Err(e) => return Err(Error::io(&candidate, e)),
    };
    let outside = || {
        Error::bad_param(
            "workspace_id",
            format!(
                "workspace id `{}` resolves outside the workspaces root",
                short(id)
            ),
        )
    };
    if !path.starts_with(&root) {
        return Err(outside());
    }
    if path == root {
        return Err(Error::bad_param(
            "workspace_id",
            "the workspaces root itself is not a workspace",
        ));
    }
    if path != candidate {
        return Err(Error::bad_param(
            "workspace_id",
            format!(
                "workspace `{}` goes through a symbolic link; use the id of the directory it points to",
                shown(&relative)
            ),
        ));
    }
    if !path.is_dir() {
        return Err(missing());
    }
    Ok(Resolved {
        root,
        path,
        relative,
    })
}

/// Git facts about a workspace; all `None`/false when it is not a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// The directory is a git repository.
    pub is_git_repo: bool,
    /// The current branch (also when it has no commit yet); `HEAD` when detached.
    pub branch: Option<String>,
    /// The full id of the HEAD commit.
    pub head_commit: Option<String>,
    /// The abbreviated id of the HEAD commit.
    pub short_commit: Option<String>,
    /// The subject line of the HEAD commit.
    pub head_summary: Option<String>,
    /// The committer time of the HEAD commit, RFC 3339 UTC.
    pub head_committed_at: Option<String>,
    /// `remote.origin.url`.
    pub remote_url: Option<String>,
    /// The working tree differs from HEAD or has untracked, not ignored files; `None` when it
    /// cannot be read safely (`git status` may run the repository's filters, so it runs only
    /// under confinement).
    pub dirty: Option<bool>,
}

/// Reads `dir`'s git metadata with plumbing commands (`symbolic-ref`, `rev-list --format`,
/// `config --get`, `status --porcelain`); never writes to the repository (optional locks off).
/// Every command runs read-only inside the workspace's confinement when the sandbox is enforced;
/// without it `status` (the one command that may run filters) is skipped.
pub fn git_info(dir: &Path, host: &HostEnv, sandbox: &Sandbox) -> Result<GitInfo> {
    let mut info = GitInfo::default();
    if std::fs::symlink_metadata(dir.join(".git")).is_err() {
        return Ok(info);
    }
    let confine = sandbox.repository_reader(dir);
    let confined = confine.is_some();
    let git = Git::user(dir, host, confine)?;
    let head = git.output(["symbolic-ref", "-q", "HEAD"])?;
    info.branch = match head.code {
        Some(0) => {
            let name = head.stdout.trim();
            Some(name.strip_prefix("refs/heads/").unwrap_or(name).to_string())
        }
        Some(1) => Some("HEAD".to_string()),
        // Not a repository (a stray `.git`): nothing more to read.
        _ => return Ok(info),
    };
    info.is_git_repo = true;
    let log = git.output([
        "rev-list",
        "-1",
        "--format=%x01%H%x00%h%x00%ct%x00%s",
        "HEAD",
        "--",
    ])?;
    if log.code == Some(0) {
        if let Some((full, short, committed_at, summary)) = parse_head(&log.stdout) {
            info.head_commit = Some(full);
            info.short_commit = Some(short);
            info.head_committed_at = committed_at;
            info.head_summary = Some(summary);
        }
    }
    let remote = git.output(["config", "--get", "remote.origin.url"])?;
    if remote.code == Some(0) {
        let url = remote.stdout.trim();
        info.remote_url = (!url.is_empty()).then(|| url.to_string());
    }
    if confined {
        let status = git.output([
            "status",
            "--porcelain",
            "-z",
            "--ignore-submodules=all",
            "--untracked-files=normal",
        ])?;
        info.dirty = (status.code == Some(0)).then_some(!status.stdout.is_empty());
    }
    Ok(info)
}

/// Parses `rev-list -1 --format=%x01%H%x00%h%x00%ct%x00%s` output (after git's own
/// `commit <id>` line): full id, short id, committer time as RFC 3339, subject.
fn parse_head(output: &str) -> Option<(String, String, Option<String>, String)> {
    let record = output.split_once('\u{1}')?.1;
    let mut fields = record.splitn(4, '\0');
    let full = fields.next()?.trim().to_string();
    let short = fields.next()?.trim().to_string();
    let committed_at = fields
        .next()?
        .trim()
        .parse::<i64>()
        .ok()
        .map(|secs| crate::clock::rfc3339(secs.saturating_mul(1000)));
    let summary = fields.next()?.trim_end_matches('\n').to_string();
    (!full.is_empty()).then_some((full, short, committed_at, summary))
}

/// One workspace of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The id used in URLs ([`encode_id`] of `relative_path`).
    pub id: String,
    /// The directory name.
    pub name: String,
    /// The canonical directory.
    pub path: PathBuf,
    /// The directory relative to the root.
    pub relative_path: PathBuf,
    /// Git metadata.
    pub git: GitInfo,
    /// Project metadata, when the directory is a project.
    pub project: Option<ProjectMeta>,
    /// Sessions bound to this directory or below it (filled by [`count_sessions`]).
    pub bound_sessions_count: usize,
}

impl Workspace {
    /// The prefix sessions store for this directory (their `workspace_path`).
    pub fn session_path(&self) -> String {
        self.path.display().to_string()
    }
}

/// The record of the directory `relative` under the canonical `root` (git failures are logged
/// and leave the git fields empty, so one broken repository does not hide the others).
pub fn record(root: &Path, relative: &Path, host: &HostEnv, sandbox: &Sandbox) -> Workspace {
    let path = root.join(relative);
    let git = git_info(&path, host, sandbox).unwrap_or_else(|error| {
        log::warn!("reading git metadata of {}: {error}", path.display());
        GitInfo {
            is_git_repo: path.join(".git").exists(),
            ..GitInfo::default()
        }
    });
    Workspace {
        id: encode_id(relative),
        name: relative
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        project: projects::read_metadata(&path),
        path,
        relative_path: relative.to_path_buf(),
        git,
        bound_sessions_count: 0,
    }
}

/// The directories under the canonical `root` that contain `.git`, relative to the root and
/// sorted. Does not follow symbolic links, enter hidden directories (`.git`, `.codara`, …),
/// go deeper than [`MAX_DEPTH`], or search build directories inside a repository.
pub fn discover(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, usize, bool)> = vec![(root.to_path_buf(), 0, false)];
    let mut visited = 0usize;
    while let Some((dir, depth, in_repo)) = stack.pop() {
        visited += 1;
        if visited > MAX_VISITED {
            log::warn!(
                "workspace discovery stopped after {MAX_VISITED} directories under {}",
                root.display()
            );
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let name_bytes = name.as_bytes();
            if name_bytes.starts_with(b".") {
                continue;
            }
            if in_repo && HEAVY_DIRS.iter().any(|h| h.as_bytes() == name_bytes) {
                continue;
            }
            let child = entry.path();
            let is_repo = std::fs::symlink_metadata(child.join(".git")).is_ok();
            if is_repo {
                if let Ok(relative) = child.strip_prefix(root) {
                    found.push(relative.to_path_buf());
                }
            }
            if depth + 1 < MAX_DEPTH {
                stack.push((child, depth + 1, in_repo || is_repo));
            }
        }
    }
    found.sort();
    found
}

/// Every workspace under `root` with its git and project metadata (session counts zero until
/// [`count_sessions`]); empty when the root does not exist yet.
pub fn list(root: &Path, host: &HostEnv, sandbox: &Sandbox) -> Result<Vec<Workspace>> {
    let root = match root.canonicalize() {
        Ok(root) => root,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(root, e)),
    };
    Ok(discover(&root)
        .iter()
        .map(|relative| record(&root, relative, host, sandbox))
        .collect())
}

/// Fills `bound_sessions_count` of each workspace from the `sessions` table.
pub fn count_sessions(conn: &Connection, workspaces: &mut [Workspace]) -> Result<()> {
    for workspace in workspaces {
        workspace.bound_sessions_count =
            store::sessions::count_under_path(conn, &workspace.session_path())?;
    }
    Ok(())
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

    struct Temp(PathBuf);

    impl Temp {
        fn new() -> Temp {
            let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-inventory-test-"));
            std::fs::create_dir_all(&dir).unwrap();
            Temp(dir.canonicalize().unwrap())
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn base64url_round_trip() {
        let samples: &[&[u8]] = &[
            b"",
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            b"news-pulse",
            b"uag_usr_0123/team/app",
            &[0xff, 0xfe, 0xfd, 0x00, 0x80],
        ];
        for sample in samples {
            let encoded = base64url_encode(sample);
            assert!(!encoded.contains('='), "{encoded}");
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{encoded}"
            );
            assert_eq!(
                base64url_decode(&encoded).as_deref(),
                Some(*sample),
                "{encoded}"
            );
        }
        assert_eq!(base64url_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url_encode(b"\xfb\xff"), "-_8");
        for garbage in ["a", "Zm9v=", "Zm9v+", "Zm/v", "Zh", "!!!!", "Zm9vY"] {
            assert_eq!(base64url_decode(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn ids() {
        let id = encode_id(Path::new("uag_usr_1/team/app"));
        assert_eq!(decode_id(&id).unwrap(), PathBuf::from("uag_usr_1/team/app"));
        // A trailing slash is normalized away.
        assert_eq!(
            decode_id(&base64url_encode(b"a/b/")).unwrap(),
            PathBuf::from("a/b")
        );
        for bad in ["../x", "/etc", "a/../b", ".", "./a", "", "a\0b"] {
            let error = decode_id(&base64url_encode(bad.as_bytes())).unwrap_err();
            assert_eq!(error.status(), 400, "{bad}");
            assert_eq!(error.param(), Some("workspace_id"), "{bad}");
        }
        assert_eq!(decode_id("%%%").unwrap_err().status(), 400);
        assert_eq!(decode_id(&"A".repeat(5000)).unwrap_err().status(), 400);
    }

    #[test]
    fn resolve_confines_to_the_root() {
        let temp = Temp::new();
        let root = temp.0.join("root");
        let outside = temp.0.join("outside");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("alias")).unwrap();
        let id = |p: &str| base64url_encode(p.as_bytes());
        let ok = resolve(&root, &id("a/b")).unwrap();
        assert_eq!(ok.path, root.join("a/b"));
        assert_eq!(ok.relative, PathBuf::from("a/b"));
        assert_eq!(resolve(&root, &id("missing")).unwrap_err().status(), 404);
        assert_eq!(resolve(&root, &id("file")).unwrap_err().status(), 404);
        assert_eq!(resolve(&root, &id("file/x")).unwrap_err().status(), 404);
        assert_eq!(resolve(&root, &id("escape")).unwrap_err().status(), 400);
        assert_eq!(resolve(&root, &id("alias")).unwrap_err().status(), 400);
        assert_eq!(resolve(&root, &id("../outside")).unwrap_err().status(), 400);
        let absolute = outside.display().to_string();
        assert_eq!(resolve(&root, &id(&absolute)).unwrap_err().status(), 400);
        assert_eq!(resolve(&root, "garbage!").unwrap_err().status(), 400);
    }

    /// An id that decodes to control characters, bytes that are not UTF-8, or a long path is
    /// shown escaped and short in its 404.
    #[test]
    fn messages_escape_and_shorten_what_an_id_decodes_to() {
        let temp = Temp::new();
        std::fs::create_dir_all(&temp.0).unwrap();
        let check = |bytes: &[u8], expected: &str| {
            let id = base64url_encode(bytes);
            let error = resolve(&temp.0, &id).unwrap_err();
            assert_eq!(error.status(), 404, "{error}");
            assert_eq!(
                error.to_string(),
                format!("workspace not found: {expected}")
            );
        };
        check(b"plain/dir", "plain/dir");
        check(b"red\x1b[31m\nx", "red\\u{1b}[31m\\u{a}x");
        check(b"bad\xff\xfe/\\", "bad\\xff\\xfe/\\\\");
        let long = "é".repeat(100);
        check(long.as_bytes(), &format!("{}…", "é".repeat(64)));
        let garbage = decode_id("%0a\u{1b}").unwrap_err().to_string();
        assert!(garbage.contains("`%0a\\u{1b}`"), "{garbage}");
    }

    #[test]
    fn head_parsing() {
        let out = "commit 0123\n\u{1}0123abcd\u{0}0123\u{0}1700000000\u{0}Add: things\n";
        let (full, short, at, subject) = parse_head(out).unwrap();
        assert_eq!(full, "0123abcd");
        assert_eq!(short, "0123");
        assert_eq!(at.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(subject, "Add: things");
        assert_eq!(parse_head(""), None);
    }

    #[test]
    fn inventory_of_a_tree() {
        let temp = Temp::new();
        let root = temp.0.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let sandbox = Sandbox::for_tests();
        assert!(
            sandbox.enforced(),
            "these tests need a kernel with Landlock"
        );
        let project = projects::set_up(
            &root,
            &host(),
            &sandbox,
            "proj",
            "default",
            None,
            "cli",
            false,
        )
        .unwrap();
        for repo in [
            "user1",
            "user1/team/app",
            "plain/deep/a/b/too-deep",
            ".hidden/repo",
            "user1/node_modules/pkg",
        ] {
            super::super::git::ensure_repo(&root.join(repo), &host(), None).unwrap();
        }
        std::fs::create_dir_all(root.join("not-a-repo/sub")).unwrap();
        std::os::unix::fs::symlink(root.join("proj"), root.join("link")).unwrap();

        let found: Vec<String> = discover(&root.canonicalize().unwrap())
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(found, ["proj", "user1", "user1/team/app"]);

        let workspaces = list(&root, &host(), &sandbox).unwrap();
        let proj = &workspaces[0];
        assert_eq!(proj.name, "proj");
        assert_eq!(proj.path, project.path);
        assert_eq!(proj.id, encode_id(Path::new("proj")));
        assert!(proj.git.is_git_repo);
        assert_eq!(proj.git.head_commit.as_ref().map(String::len), Some(40));
        assert!(proj.git.short_commit.is_some());
        assert_eq!(
            proj.git.head_summary.as_deref(),
            Some("Initialize Codara project")
        );
        assert!(proj.git.head_committed_at.is_some());
        assert!(proj.git.branch.is_some());
        assert_eq!(proj.git.dirty, Some(false));
        assert_eq!(proj.project.as_ref().unwrap().name, "proj");
        assert_eq!(proj.relative_path, PathBuf::from("proj"));
        assert_eq!(proj.project.as_ref().unwrap().template, "default");

        // A repository without commits: branch known, no HEAD; untracked files make it dirty.
        let app = &workspaces[2];
        assert_eq!(app.relative_path, PathBuf::from("user1/team/app"));
        assert!(app.git.is_git_repo && app.git.head_commit.is_none() && app.git.branch.is_some());
        assert_eq!(app.git.dirty, Some(false));
        std::fs::write(project.path.join("new.txt"), "x").unwrap();
        assert_eq!(
            git_info(&project.path, &host(), &sandbox).unwrap().dirty,
            Some(true)
        );
        // Without confinement `status` (which may run the repository's filters) is not run.
        let off = Sandbox::off();
        assert_eq!(git_info(&project.path, &host(), &off).unwrap().dirty, None);
        assert!(
            !git_info(&root.join("not-a-repo"), &host(), &sandbox)
                .unwrap()
                .is_git_repo
        );
        assert!(list(&temp.0.join("nope"), &host(), &sandbox)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn metadata_of_a_hostile_repository_runs_nothing_outside_it() {
        let temp = Temp::new();
        let repo = temp.0.join("root/user/ws");
        super::super::git::ensure_repo(&repo, &host(), None).unwrap();
        let marker = temp.0.join("PWNED");
        let run = format!("touch {}", marker.display());
        let config = repo.join(".git/config");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "[filter \"x\"]\n\tclean = {run}\n\tprocess = {run}\n[core]\n\tfsmonitor = {run}\n\
             [remote \"origin\"]\n\turl = https://example.com/r.git\n"
        ));
        std::fs::write(&config, text).unwrap();
        std::fs::write(repo.join(".gitattributes"), "* filter=x\n").unwrap();
        std::fs::write(repo.join("file.txt"), "content\n").unwrap();
        let info = git_info(&repo, &host(), &Sandbox::for_tests()).unwrap();
        assert!(info.is_git_repo);
        assert_eq!(
            info.remote_url.as_deref(),
            Some("https://example.com/r.git")
        );
        assert!(info.dirty.is_some());
        assert!(
            !marker.exists(),
            "a planted filter wrote outside the workspace"
        );
    }

    #[test]
    fn session_counts_cover_the_path_and_below() {
        let temp = Temp::new();
        let store = crate::store::Store::open(&temp.0.join("codara.db")).unwrap();
        let session = |id: &str, path: &str| store::sessions::Session {
            id: id.to_string(),
            session_key: format!("u::{id}::c"),
            user_id: "u".into(),
            workspace_id: id.into(),
            workspace_path: path.into(),
            client_session_id: "c".into(),
            provider: "codex".into(),
            model: "m".into(),
            cli_session_id: None,
            account_id: None,
            transcript_hash: String::new(),
            request_hash: String::new(),
            message_count: 0,
            turn_count: 0,
            dirty: false,
            created_at: 0,
            updated_at: 0,
        };
        store
            .write(|tx| {
                store::sessions::upsert(tx, &session("s1", "/r/a_b"))?;
                store::sessions::upsert(tx, &session("s2", "/r/a_b/sub"))?;
                store::sessions::upsert(tx, &session("s3", "/r/a_bc"))?;
                store::sessions::upsert(tx, &session("s4", "/r/axb"))?;
                Ok(())
            })
            .unwrap();
        let mut workspaces = vec![Workspace {
            id: encode_id(Path::new("a_b")),
            name: "a_b".into(),
            path: PathBuf::from("/r/a_b"),
            relative_path: PathBuf::from("a_b"),
            git: GitInfo::default(),
            project: None,
            bound_sessions_count: 0,
        }];
        store
            .read(|conn| count_sessions(conn, &mut workspaces))
            .unwrap();
        assert_eq!(workspaces[0].bound_sessions_count, 2);
        let listed = store
            .read(|conn| store::sessions::list_under_path(conn, "/r/a_b", 10))
            .unwrap();
        assert_eq!(listed.len(), 2);
        let wiped = store
            .write(|tx| store::sessions::delete_under_path(tx, "/r/a_b"))
            .unwrap();
        assert_eq!(wiped, 2);
        let left = store
            .read(|conn| store::sessions::list(conn, None, 10))
            .unwrap();
        assert_eq!(left.len(), 2);
    }
}
