//! The data directory: its creation, the single-instance lock, the operator secret file, and the
//! two ways the gateway touches files inside directories an agent can write (CLI homes, temp
//! dirs): [`write_new_private`] and [`read_regular`], which never follow a symbolic link.
//!
//! Owns the layout of `[storage].data_dir` apart from the database (store) and the master key
//! (vault). Must not hold the lock for commands other than `serve`: the CLI works beside a server.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
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
    path: PathBuf,
}

impl InstanceLock {
    /// Takes `<data_dir>/codara.lock` with flock(2), failing clearly if another server holds it.
    pub fn acquire(data_dir: &Path) -> Result<InstanceLock> {
        let path = data_dir.join("codara.lock");
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
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
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
        writeln!(file, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
        Ok(InstanceLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
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
        let first = InstanceLock::acquire(&dir).unwrap();
        let error = InstanceLock::acquire(&dir).unwrap_err().to_string();
        assert!(error.contains("already running"), "{error}");
        assert!(error.contains(&std::process::id().to_string()), "{error}");
        drop(first);
        InstanceLock::acquire(&dir).unwrap();
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
