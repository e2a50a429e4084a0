//! Tenant confinement: the Landlock allow-list applied to every child that touches user content
//! (agent CLIs, git reading a user's repository), so a user's agent reaches only that user's
//! workspace, CLI home and a private temp dir — never the data dir, the config, another tenant
//! or the gateway's `/proc` entries.
//!
//! The ruleset is built in the parent ([`Policy::prepare`]); the child applies it between fork and
//! exec with plain syscalls ([`apply_in_child`]), so nothing allocates after fork. Must not decide
//! which paths a run gets (callers do, with [`Sandbox::agent`] and friends) or spawn anything.

use crate::config::{Config, SandboxMode};
use crate::error::{Error, Result};
use crate::providers::Provider;
use landlock::{
    path_beneath_rules, Access, AccessFs, BitFlags, Ruleset, RulesetAttr, RulesetCreatedAttr,
    Scope, ABI,
};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The newest ABI whose rights this build asks for; the crate drops what the kernel lacks.
const TARGET_ABI: ABI = ABI::V10;

/// Directories every confined process may read and execute: the system's programs and libraries.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// The few `/etc` entries programs need: the loader, name resolution, certificates, users,
/// time zone, shell start-up files. Not all of `/etc` (it holds host secrets and configs).
const ETC_ENTRIES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/crypto-policies",
    "/etc/os-release",
    "/etc/mime.types",
    "/etc/profile",
    "/etc/profile.d",
    "/etc/bash.bashrc",
    "/etc/inputrc",
    "/etc/gitconfig",
    "/etc/alternatives",
];

/// Kernel facts runtimes read (CPU count, memory, limits); no per-process entry: a process's
/// own `/proc/<pid>` is granted in the child ([`apply_in_child`]), others' never.
const KERNEL_INFO: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/filesystems",
    "/proc/sys",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/sys/kernel/mm/transparent_hugepage",
];

/// Devices a shell and the CLIs use (terminals for node-pty).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// What a rule grants beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Everything: the workspace, the CLI home, the private temp dir.
    ReadWrite,
    /// Read and execute: programs, libraries, configuration files.
    ReadExec,
    /// Read, write and ioctl on device files.
    Device,
}

impl Grant {
    fn access(self) -> BitFlags<AccessFs> {
        match self {
            Grant::ReadWrite => AccessFs::from_all(TARGET_ABI),
            Grant::ReadExec => AccessFs::from_read(TARGET_ABI),
            Grant::Device => {
                AccessFs::ReadFile
                    | AccessFs::WriteFile
                    | AccessFs::Truncate
                    | AccessFs::IoctlDev
                    | AccessFs::ReadDir
            }
        }
    }
}

/// One allowed path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    path: PathBuf,
    grant: Grant,
}

/// The confinement of one child process: its allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// A ruleset created in the parent, ready for [`apply_in_child`].
#[derive(Debug)]
pub struct Prepared {
    fd: OwnedFd,
}

impl Prepared {
    /// The ruleset descriptor the child restricts itself with.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Policy {
    /// Creates the Landlock ruleset for this policy (paths that do not exist are skipped).
    pub fn prepare(&self) -> Result<Prepared> {
        let fail = |e: landlock::RulesetError| Error::Internal(format!("landlock ruleset: {e}"));
        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(TARGET_ABI))
            .map_err(fail)?
            .scope(Scope::Signal | Scope::AbstractUnixSocket)
            .map_err(fail)?
            .create()
            .map_err(fail)?;
        for rule in &self.rules {
            ruleset = ruleset
                .add_rules(path_beneath_rules([&rule.path], rule.grant.access()))
                .map_err(fail)?;
        }
        let fd: Option<OwnedFd> = ruleset.into();
        let fd = fd.ok_or_else(|| Error::Unavailable {
            code: "sandbox_unavailable",
            message: "this kernel does not support Landlock; agent runs cannot be confined"
                .to_string(),
        })?;
        Ok(Prepared { fd })
    }

    /// The paths this policy lets a process write (for messages and tests).
    pub fn writable(&self) -> impl Iterator<Item = &Path> {
        self.rules
            .iter()
            .filter(|r| r.grant == Grant::ReadWrite)
            .map(|r| r.path.as_path())
    }
}

/// `struct landlock_path_beneath_attr` (packed in the kernel's uapi).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
const LANDLOCK_ACCESS_FS_READ_FILE: u64 = 1 << 2;
const LANDLOCK_ACCESS_FS_READ_DIR: u64 = 1 << 3;
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// Restricts the calling (forked, not yet exec'd) process with `ruleset`, after granting it read
/// access to its own `/proc/<pid>` (runtimes read `/proc/self/maps`; other processes' entries,
/// the gateway's `environ` among them, stay closed). The `/proc/self` descriptor is kept open
/// across exec on purpose: it pins the dentry, so the rule's inode stays the one lookups find.
///
/// # Safety
/// Only between fork and exec of a child: it calls nothing but async-signal-safe syscalls.
pub unsafe fn apply_in_child(ruleset: RawFd) -> std::io::Result<()> {
    // SAFETY: plain syscalls on a NUL-terminated literal and a stack struct.
    unsafe {
        let own = libc::open(c"/proc/self".as_ptr(), libc::O_PATH);
        if own < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let attr = PathBeneathAttr {
            allowed_access: LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR,
            parent_fd: own,
        };
        let added = libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            std::ptr::addr_of!(attr),
            0,
        );
        if added != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The Landlock ABI version of the running kernel; `None` when Landlock is missing or disabled.
pub fn kernel_abi() -> Option<i64> {
    // SAFETY: the version query takes no attribute pointer.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (version > 0).then_some(version as i64)
}

/// The gateway's confinement settings and the allow-list every confined run shares.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `[sandbox].mode`.
    pub mode: SandboxMode,
    /// The kernel's Landlock ABI, when it has one.
    pub abi: Option<i64>,
    /// Read/execute and device rules of every confined run.
    base: Vec<Rule>,
    /// Files a provider's runs may read because its `[providers.<p>].env` names them
    /// (`OPENCODE_CONFIG=/etc/codara/opencode.json`).
    provider_files: Vec<(Provider, PathBuf)>,
}

/// Where a provider's CLI is installed, for the read/execute allow-list.
#[derive(Debug, Clone)]
pub struct Install {
    /// The provider, for messages.
    pub provider: Provider,
    /// The resolved executable.
    pub binary: PathBuf,
}

impl Sandbox {
    /// [`Sandbox::detect`] for the enabled providers whose CLI is installed, plus the files their
    /// configured environment names: a value of `[providers.<p>].env` that is the absolute path
    /// of an existing regular file is readable by that provider's runs.
    pub fn for_config(config: &Config) -> Result<Sandbox> {
        let installs: Vec<Install> = config
            .providers
            .iter()
            .into_iter()
            .filter(|(_, p)| p.is_enabled())
            .filter_map(|(provider, p)| {
                crate::providers::find_binary(&p.binary, &config.host.path)
                    .map(|binary| Install { provider, binary })
            })
            .collect();
        let mut sandbox = Sandbox::detect(config, &installs)?;
        for (provider, settings) in config.providers.iter() {
            for (name, value) in &settings.env {
                let path = Path::new(value);
                if path.is_absolute() && path.is_file() {
                    check_exposure(config, path, &format!("[providers.{provider}.env] {name}"))?;
                    sandbox.provider_files.push((provider, path.to_path_buf()));
                }
            }
        }
        Ok(sandbox)
    }

    /// Detects Landlock and builds the shared allow-list: system directories, the `/etc` entries
    /// and devices above, each CLI's installation (and the node it runs on), `[sandbox].read_paths`.
    /// Fails when `mode = "landlock"` and the kernel lacks it, or when a read path would expose
    /// the data dir, the workspaces root, the config file, the logs or the gateway's home.
    pub fn detect(config: &Config, installs: &[Install]) -> Result<Sandbox> {
        let abi = kernel_abi();
        let mode = config.sandbox.mode;
        if mode == SandboxMode::Landlock && abi.is_none() {
            return Err(Error::Config {
                source: "[sandbox]".to_string(),
                key: "mode".to_string(),
                reason: "is \"landlock\" but this kernel has no Landlock (Linux >= 5.13 with \
                         landlock in the lsm= boot list); use \"auto\" or \"off\""
                    .to_string(),
            });
        }
        let mut base: Vec<Rule> = Vec::new();
        let mut read = |path: PathBuf, why: String| -> Result<()> {
            check_exposure(config, &path, &why)?;
            base.push(Rule {
                path,
                grant: Grant::ReadExec,
            });
            Ok(())
        };
        for dir in SYSTEM_DIRS.iter().chain(ETC_ENTRIES).chain(KERNEL_INFO) {
            let path = PathBuf::from(dir);
            if path.exists() {
                read(path, format!("the system path {dir}"))?;
            }
        }
        for install in installs {
            for root in install_roots(&install.binary, &config.host.path) {
                read(
                    root,
                    format!(
                        "the {} CLI's installation ({})",
                        install.provider,
                        install.binary.display()
                    ),
                )?;
            }
        }
        for path in &config.sandbox.read_paths {
            read(
                path.clone(),
                format!("[sandbox].read_paths entry {}", path.display()),
            )?;
        }
        for device in DEVICES {
            base.push(Rule {
                path: PathBuf::from(device),
                grant: Grant::Device,
            });
        }
        Ok(Sandbox {
            mode,
            abi,
            base,
            provider_files: Vec::new(),
        })
    }

    #[cfg(test)]
    /// A sandbox that confines nothing (`mode = "off"`), for CLI commands and tests.
    pub fn off() -> Sandbox {
        Sandbox {
            mode: SandboxMode::Off,
            abi: kernel_abi(),
            base: Vec::new(),
            provider_files: Vec::new(),
        }
    }

    /// The sandbox of unit tests: defaults, enforced where the kernel has Landlock.
    #[cfg(test)]
    pub fn for_tests() -> Sandbox {
        Sandbox::detect(&Config::default(), &[]).expect("the default sandbox builds")
    }

    /// `mode = "auto"` on a kernel without Landlock, for tests of what that refuses.
    #[cfg(test)]
    pub fn without_landlock_for_tests() -> Sandbox {
        Sandbox {
            mode: SandboxMode::Auto,
            abi: None,
            base: Vec::new(),
            provider_files: Vec::new(),
        }
    }

    /// Whether runs are confined: Landlock is available and not switched off.
    pub fn enforced(&self) -> bool {
        self.mode != SandboxMode::Off && self.abi.is_some()
    }

    /// Whether user turns must be refused: `auto` on a kernel without Landlock.
    pub fn refuses_users(&self) -> bool {
        self.mode == SandboxMode::Auto && self.abi.is_none()
    }

    /// One line for doctor, the banner and the overview.
    pub fn describe(&self) -> String {
        match (self.mode, self.abi) {
            (SandboxMode::Off, _) => {
                "off: agents run unconfined and can read the whole host ([sandbox].mode = \"off\")"
                    .to_string()
            }
            (_, Some(abi)) => format!("landlock ABI {abi}: agent runs are confined"),
            (_, None) => "unavailable: this kernel has no Landlock (Linux >= 5.13 with landlock \
                          enabled); turns from user keys are refused until [sandbox].mode = \
                          \"off\" accepts the risk"
                .to_string(),
        }
    }

    /// The confinement of an agent run of `provider`: read-write on its workspace tree, its CLI
    /// home and its private temp dir; the shared read/execute list and the provider's configured
    /// files; nothing else. `None` when not enforced.
    pub fn agent(
        &self,
        provider: Provider,
        workspace: &Path,
        home: &Path,
        tmp: &Path,
    ) -> Option<Policy> {
        let files: Vec<&Path> = self
            .provider_files
            .iter()
            .filter(|(p, _)| *p == provider)
            .map(|(_, path)| path.as_path())
            .collect();
        self.policy([workspace, home, tmp], &files)
    }

    /// The confinement of git working on a user's repository: read-write on that tree only.
    pub fn repository_writer(&self, dir: &Path) -> Option<Policy> {
        self.policy([dir], &[])
    }

    /// The confinement of git reading a user's repository: read-only on that tree.
    pub fn repository_reader(&self, dir: &Path) -> Option<Policy> {
        self.policy([], &[dir])
    }

    fn policy<const N: usize>(&self, writable: [&Path; N], readable: &[&Path]) -> Option<Policy> {
        if !self.enforced() {
            return None;
        }
        let mut rules = self.base.clone();
        rules.extend(writable.iter().map(|p| Rule {
            path: p.to_path_buf(),
            grant: Grant::ReadWrite,
        }));
        rules.extend(readable.iter().map(|p| Rule {
            path: p.to_path_buf(),
            grant: Grant::ReadExec,
        }));
        Some(Policy { rules })
    }
}

/// The directories a CLI needs to run: for an npm install, the outermost `node_modules` above
/// the resolved script (platform binaries are sibling packages), else the binary's directory;
/// and for a node script, the node installation found on `path_env` when it lies outside the
/// system directories.
pub fn install_roots(binary: &Path, path_env: &str) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let resolved = binary
        .canonicalize()
        .unwrap_or_else(|_| binary.to_path_buf());
    for candidate in [binary, resolved.as_path()] {
        let outermost = candidate
            .ancestors()
            .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
            .last();
        let root = outermost.or_else(|| candidate.parent());
        if let Some(root) = root {
            if !roots.iter().any(|r: &PathBuf| root.starts_with(r)) {
                roots.push(root.to_path_buf());
            }
        }
    }
    let is_script = std::fs::read(&resolved)
        .map(|bytes| bytes.starts_with(b"#!"))
        .unwrap_or(false);
    if is_script {
        if let Some(node) = crate::providers::find_binary("node", path_env) {
            let node = node.canonicalize().unwrap_or(node);
            // `<prefix>/bin/node` → `<prefix>`: node finds its own libraries there.
            let prefix = node.parent().and_then(Path::parent);
            if let Some(prefix) = prefix {
                let system = SYSTEM_DIRS.iter().any(|d| prefix.starts_with(d));
                if !system && prefix != Path::new("/") {
                    roots.push(prefix.to_path_buf());
                }
            }
        }
    }
    roots
}

/// Refuses a read path that contains (or lies inside) what agents must never read.
fn check_exposure(config: &Config, path: &Path, why: &str) -> Result<()> {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let path = canonical(path);
    let mut inside_forbidden: Vec<(PathBuf, &str)> = vec![
        (canonical(&config.storage.data_dir), "the data dir"),
        (canonical(&config.workspace.root), "the workspaces root"),
        (canonical(&config.log_root()), "the log directory"),
        (canonical(&config.trace_root()), "the trace directory"),
    ];
    if let Some(database) = config.storage.database_path.as_deref() {
        inside_forbidden.push((canonical(database), "the database"));
    }
    let mut containing_forbidden: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(source) = &config.source {
        containing_forbidden.push((canonical(source), "the config file"));
    }
    if let Some(home) = &config.host.home {
        containing_forbidden.push((canonical(home), "the gateway's home directory"));
    }
    for (secret, what) in &inside_forbidden {
        if secret.starts_with(&path) || path.starts_with(secret) {
            return Err(exposure(why, &path, what, secret));
        }
    }
    for (secret, what) in &containing_forbidden {
        if secret.starts_with(&path) {
            return Err(exposure(why, &path, what, secret));
        }
    }
    Ok(())
}

fn exposure(why: &str, path: &Path, what: &str, secret: &Path) -> Error {
    Error::Config {
        source: "[sandbox]".to_string(),
        key: "read_paths".to_string(),
        reason: format!(
            "{why} would let every agent read {} (it overlaps {what} {}); move one of them",
            path.display(),
            secret.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let mut config = Config::default();
        config.storage.data_dir = dir.join("data");
        config.workspace.root = dir.join("workspaces");
        config.host.home = Some(dir.join("home"));
        config
    }

    #[test]
    fn read_paths_must_not_expose_gateway_state() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-sandbox-"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut config = config(&dir);
        for bad in [
            dir.clone(),
            dir.join("data"),
            dir.join("data/homes"),
            dir.join("workspaces/u"),
        ] {
            config.sandbox.read_paths = vec![bad.clone()];
            let error = Sandbox::detect(&config, &[]).unwrap_err().to_string();
            assert!(error.contains("read_paths"), "{bad:?}: {error}");
        }
        config.sandbox.read_paths = vec![dir.join("home/.nvm")];
        assert!(Sandbox::detect(&config, &[]).is_ok());
        config.sandbox.read_paths = vec![dir.join("elsewhere")];
        assert!(Sandbox::detect(&config, &[]).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn install_roots_of_an_npm_tree_and_a_plain_binary() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-install-"));
        let package = dir.join("clis/node_modules/@openai/codex/bin");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::create_dir_all(dir.join("clis/node_modules/.bin")).unwrap();
        std::fs::write(package.join("codex.js"), "#!/usr/bin/env node\n").unwrap();
        let link = dir.join("clis/node_modules/.bin/codex");
        std::os::unix::fs::symlink("../@openai/codex/bin/codex.js", &link).unwrap();
        let roots = install_roots(&link, "/usr/bin:/bin");
        let canonical = dir.canonicalize().unwrap();
        assert!(
            roots.iter().any(|r| r == &dir.join("clis/node_modules")
                || r == &canonical.join("clis/node_modules")),
            "{roots:?}"
        );
        assert!(
            roots.iter().all(|r| r.ends_with("node_modules")),
            "{roots:?}"
        );

        std::fs::create_dir_all(dir.join("opt/tool/bin")).unwrap();
        std::fs::write(dir.join("opt/tool/bin/tool"), [0x7f, b'E', b'L', b'F']).unwrap();
        let roots = install_roots(&dir.join("opt/tool/bin/tool"), "/usr/bin:/bin");
        assert_eq!(roots, [canonical.join("opt/tool/bin")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modes() {
        let dir = std::env::temp_dir();
        let mut config = config(&dir);
        config.sandbox.mode = SandboxMode::Off;
        let off = Sandbox::detect(&config, &[]).unwrap();
        assert!(!off.enforced() && !off.refuses_users());
        assert!(off.agent(Provider::Codex, &dir, &dir, &dir).is_none());
        config.sandbox.mode = SandboxMode::Auto;
        let auto = Sandbox::detect(&config, &[]).unwrap();
        assert_eq!(auto.enforced(), kernel_abi().is_some());
        assert_eq!(auto.refuses_users(), kernel_abi().is_none());
        if let Some(policy) = auto.agent(
            Provider::Codex,
            Path::new("/w"),
            Path::new("/h"),
            Path::new("/t"),
        ) {
            let writable: Vec<&Path> = policy.writable().collect();
            assert_eq!(
                writable,
                [Path::new("/w"), Path::new("/h"), Path::new("/t")]
            );
        }
    }
}
