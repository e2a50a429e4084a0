//! The data directory: its creation, the single-instance lock, the operator secret file, and the
//! ways the gateway touches files inside directories an agent can write (CLI homes, temp dirs,
//! workspaces): [`write_new_private`], [`write_private_beneath`] and [`read_regular`], which
//! never follow a symbolic link.
//!
//! Owns the layout of `[storage].data_dir` apart from the database (store) and the master key
//! (vault). Must not hold the lock for commands other than `serve`: the CLI works beside a server.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Creates `dir` (and parents) with mode 0700 if it is missing.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Replaces whatever `path` names (a file, or a symbolic link an agent planted, which is removed,
/// never followed) with a new 0600 file holding `bytes`, flushed to disk.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(Error::Internal(format!(
                "{} is a directory, not a file",
                path.display()
            )))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e))?,
        Err(_) => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to `base/<dirs…>/<name>` (a new 0600 file, flushed), creating missing
/// directories with mode 0700, where an agent may have planted symbolic links: every component
/// below `base` is opened relative to its parent with `O_NOFOLLOW` (`openat`), so neither a link
/// planted before the call nor one swapped in during it is followed; a link or other non-file at
/// `name` is replaced. `base` itself must be a real directory (the canonical workspace).
pub fn write_private_beneath(base: &Path, dirs: &[&str], name: &str, bytes: &[u8]) -> Result<()> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let path = dirs
        .iter()
        .fold(base.to_path_buf(), |p, d| p.join(d))
        .join(name);
    let fail = |error: std::io::Error| Error::io(&path, error);
    let c_name = |component: &str| {
        if component.is_empty() || component.contains('/') || component == "." || component == ".."
        {
            return Err(Error::Internal(format!("bad path component {component:?}")));
        }
        CString::new(component).map_err(|_| Error::Internal(format!("NUL in {component:?}")))
    };
    let mut dir: OwnedFd = File::open(base)
        .and_then(|f| {
            f.metadata()?.is_dir().then_some(f).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory")
            })
        })
        .map_err(|e| Error::io(base, e))?
        .into();
    for component in dirs {
        let c = c_name(component)?;
        // SAFETY: `dir` is an open directory descriptor and `c` a NUL-terminated name.
        let made = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) };
        if made != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(fail(error));
            }
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above; the returned descriptor is owned by the `OwnedFd` below.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        dir = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    let c = c_name(name)?;
    // Whatever is at `name` (an older copy, or a link an agent planted) goes; a directory stays
    // and fails the open below.
    // SAFETY: `dir` is an open directory descriptor and `c` a NUL-terminated name.
    let removed = unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
    if removed != 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::NotFound {
            return Err(fail(error));
        }
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as above; the mode is passed as the variadic third argument openat expects.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// The contents of `path` when it is a regular file of at most `limit` bytes, opened without
/// following a symbolic link; `None` otherwise (missing, a link, a directory, a fifo, too big).
pub fn read_regular(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > limit {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= limit).then_some(bytes)
}

/// The held lock on a data directory; released when dropped or when the process dies.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes `<data_dir>/codara.lock` with flock(2), failing clearly if another process holds
    /// it. The file then holds this process's id and, for a server, the address it listens on
    /// (what [`running_server`] reads: `doctor` tells its own server from a stranger by it).
    pub fn acquire(data_dir: &Path, listening: Option<SocketAddr>) -> Result<InstanceLock> {
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a descriptor we own; the kernel drops the lock with the descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let who = match parse_lock(&holder) {
                Some((pid, Some(addr))) => format!(" (pid {pid}, listening on {addr})"),
                Some((pid, None)) => format!(" (pid {pid})"),
                None => String::new(),
            };
            return Err(Error::Unavailable {
                code: "already_running",
                message: format!(
                    "another codara serve is already running on data dir {}{who}; stop it first or \
                     point [storage].data_dir elsewhere",
                    data_dir.display()
                ),
            });
        }
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        file.rewind().map_err(|e| Error::io(&path, e))?;
        let mut text = format!("{}\n", std::process::id());
        if let Some(addr) = listening {
            text.push_str(&format!("{addr}\n"));
        }
        file.write_all(text.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        Ok(InstanceLock { _file: file })
    }
}

/// The lock file's name inside the data dir.
const LOCK_FILE: &str = "codara.lock";

/// The server that holds a data dir's lock, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningServer {
    /// Its process id.
    pub pid: u32,
    /// Where it listens (absent for a lock taken by `vault rotate-key`).
    pub listening: Option<SocketAddr>,
}

/// Reads `<data_dir>/codara.lock` without creating or locking anything: the recorded process,
/// when that process is still alive. A lock file left by a crash names a dead process (`None`).
/// Pid reuse could make a stranger look alive; the caller also compares the recorded address.
pub fn running_server(data_dir: &Path) -> Option<RunningServer> {
    let text = std::fs::read_to_string(data_dir.join(LOCK_FILE)).ok()?;
    let (pid, listening) = parse_lock(&text)?;
    let pid_t = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let alive = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(RunningServer { pid, listening })
}

/// `pid\n[address\n]` → the pid and the address, when the first line is a pid.
fn parse_lock(text: &str) -> Option<(u32, Option<SocketAddr>)> {
    let mut lines = text.lines().map(str::trim);
    let pid = lines.next()?.parse::<u32>().ok().filter(|pid| *pid > 0)?;
    let listening = lines.next().and_then(|line| line.parse().ok());
    Some((pid, listening))
}

/// Where the operator secret in effect came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `API_TOKEN`/`UAG_MGMT_SECRET` in the environment or `.env`.
    Configured,
    /// `<data_dir>/operator.secret`, written by an earlier start.
    File(PathBuf),
    /// Generated now and written to that file; the caller prints it once.
    Generated(PathBuf),
}

/// Resolves the operator secret: configured, else the stored file, else a new random one.
pub fn operator_secret(
    configured: Option<&str>,
    data_dir: &Path,
) -> Result<(String, SecretSource)> {
    if let Some(secret) = configured {
        return Ok((secret.to_string(), SecretSource::Configured));
    }
    let path = data_dir.join("operator.secret");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            let mode = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                log::warn!(
                    "{} is readable by group or others; chmod 600 it",
                    path.display()
                );
            }
            Ok((text.trim().to_string(), SecretSource::File(path)))
        }
        Ok(_) => Err(Error::Internal(format!(
            "{} is empty; delete it to generate a new secret",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = format!(
                "cdr_{}",
                crate::crypto::random_base62(40).map_err(|e| Error::io("getrandom", e))?
            );
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            writeln!(file, "{secret}").map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            Ok((secret, SecretSource::Generated(path)))
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-lock-test-"));
        ensure_private_dir(&dir).unwrap();
        let addr: SocketAddr = "127.0.0.1:8123".parse().unwrap();
        let first = InstanceLock::acquire(&dir, Some(addr)).unwrap();
        let error = InstanceLock::acquire(&dir, None).unwrap_err().to_string();
        assert!(error.contains("already running"), "{error}");
        assert!(error.contains(&std::process::id().to_string()), "{error}");
        assert!(error.contains("listening on 127.0.0.1:8123"), "{error}");
        let running = running_server(&dir).unwrap();
        assert_eq!(
            (running.pid, running.listening),
            (std::process::id(), Some(addr))
        );
        drop(first);
        InstanceLock::acquire(&dir, None).unwrap();
        assert_eq!(running_server(&dir).unwrap().listening, None);
        // A lock file whose process is gone (a crash) names no running server.
        std::fs::write(dir.join(LOCK_FILE), "999999999\n127.0.0.1:8123\n").unwrap();
        assert_eq!(running_server(&dir), None);
        assert_eq!(parse_lock("garbage"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writing_beneath_a_base_never_follows_a_planted_link() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-beneath-test-"));
        let (base, outside) = (dir.join("ws"), dir.join("outside"));
        ensure_private_dir(&base).unwrap();
        ensure_private_dir(&outside).unwrap();
        let write =
            |bytes: &[u8]| write_private_beneath(&base, &[".codara", "att"], "a.png", bytes);

        // Missing directories are created (0700), the file is 0600.
        write(b"one").unwrap();
        let file = base.join(".codara/att/a.png");
        assert_eq!(std::fs::read(&file).unwrap(), b"one");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode(&file), mode(&base.join(".codara/att"))),
            (0o600, 0o700)
        );
        // An existing file is replaced; a link planted at the name is replaced, not followed.
        write(b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), &file).unwrap();
        write(b"three").unwrap();
        assert!(!outside.join("victim").exists());
        assert!(std::fs::symlink_metadata(&file).unwrap().is_file());

        // A link in place of either directory is refused, and nothing lands outside.
        std::fs::remove_dir_all(base.join(".codara/att")).unwrap();
        std::os::unix::fs::symlink(&outside, base.join(".codara/att")).unwrap();
        assert!(write(b"four").is_err());
        std::fs::remove_dir_all(base.join(".codara")).unwrap();
        std::os::unix::fs::symlink(&outside, base.join(".codara")).unwrap();
        assert!(write(b"five").is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // Names that would leave the directory are refused.
        for name in ["..", "a/b", ""] {
            assert!(
                write_private_beneath(&base, &[], name, b"x").is_err(),
                "{name}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_secret_is_stored_privately_and_reused() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-secret-test-"));
        ensure_private_dir(&dir).unwrap();
        let (secret, source) = operator_secret(None, &dir).unwrap();
        assert!(matches!(source, SecretSource::Generated(_)));
        let mode = std::fs::metadata(dir.join("operator.secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, source) = operator_secret(None, &dir).unwrap();
        assert_eq!(secret, again);
        assert!(matches!(source, SecretSource::File(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
