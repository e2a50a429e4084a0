//! The command line's own manners: output into a closed pipe, per-subcommand help, unknown
//! subcommands named, and `project create` on an existing project.

// The harness spawns the binary under test with a controlled environment (as support does).
#![allow(clippy::disallowed_methods)]

use crate::support::{self, TempDir, SECRET};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// A pipe whose read end is already closed: every write to the other end fails with `EPIPE`.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned here, once each.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

fn doctor(dir: &std::path::Path, stdout: Stdio) -> (Option<i32>, String) {
    let output = Command::new(support::binary())
        .arg("doctor")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("API_TOKEN", SECRET)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `codara doctor | head -1`: the reader is gone; the command ends quietly with the exit code
/// it has with a reader (it used to panic, exit 101).
#[test]
fn doctor_into_a_closed_pipe_ends_quietly_with_its_own_exit_code() {
    let dir = TempDir::new("cli-pipe");
    let (expected, _) = doctor(dir.path(), Stdio::null());
    assert!(matches!(expected, Some(0 | 1)), "{expected:?}");
    let (code, stderr) = doctor(dir.path(), Stdio::from(closed_pipe()));
    assert_eq!(code, expected, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

/// `<group> <sub> --help` describes the subcommand, not the group.
#[test]
fn subcommand_help_describes_the_subcommand() {
    let dir = TempDir::new("cli-help");
    for (args, usage, detail) in [
        (
            &["user", "create", "--help"][..],
            "Usage: codara user create",
            "--max-concurrency N",
        ),
        (
            &["user", "list", "--help"],
            "Usage: codara user list",
            "Lists every user",
        ),
        (
            &["user", "rotate-key", "--help"],
            "Usage: codara user rotate-key",
            "replacement",
        ),
        (
            &["account", "add", "--help"],
            "Usage: codara account add",
            "--credential-file FILE",
        ),
        (
            &["account", "list", "--help"],
            "Usage: codara account list",
            "Lists the pool",
        ),
        (
            &["account", "remove", "--help"],
            "Usage: codara account remove",
            "CLI homes",
        ),
        (
            &["account", "primary", "--help"],
            "Usage: codara account primary",
            "CLI-primary",
        ),
        (
            &["account", "refresh", "--help"],
            "Usage: codara account refresh",
            "quota",
        ),
    ] {
        let (code, stdout, stderr) = support::run_cli(dir.path(), args, &[]);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stdout.starts_with(usage), "{args:?}: {stdout}");
        assert!(stdout.contains(detail), "{args:?}: {stdout}");
        assert_eq!(stdout.matches("Usage").count(), 1, "{args:?}: {stdout}");
    }
    // The groups still show their own usage.
    let (code, stdout, _) = support::run_cli(dir.path(), &["user", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("codara user rotate-key"), "{stdout}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "help touches nothing on disk"
    );
}

/// `codara vault frob` says what is wrong (exit 2) instead of only printing the usage.
#[test]
fn an_unknown_vault_command_is_named() {
    let dir = TempDir::new("cli-vault");
    let (code, stdout, stderr) = support::run_cli(dir.path(), &["vault", "frob"], &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("unknown vault command `frob`"), "{stderr}");
    let (code, stdout, _) = support::run_cli(dir.path(), &["vault"], &[]);
    assert_eq!(code, 2);
    assert!(
        stdout.contains("Usage: codara vault rotate-key"),
        "{stdout}"
    );
}

/// Creating a project that exists is refused by both fronts (409 / exit 1) unless forced, and
/// leaves its template alone.
#[test]
fn creating_an_existing_project_again_needs_force() {
    let server = support::server().start();
    let token = server.login();
    let (code, out, err) = support::run_cli(
        &server.dir,
        &["project", "create", "site", "--template", "docs"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = support::run_cli(
        &server.dir,
        &["project", "create", "site", "--template", "python"],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("project site already exists (template docs)"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    let api = server.post_json(
        "/management/v1/projects",
        Some(&token),
        r#"{"name":"site","template":"empty"}"#,
    );
    assert_eq!(api.status, 409, "{}", api.text());
    let toml =
        std::fs::read_to_string(server.dir.join("workspaces/site/.codara/project.toml")).unwrap();
    assert!(toml.contains("template = \"docs\""), "{toml}");
    let (code, out, err) = support::run_cli(
        &server.dir,
        &[
            "project",
            "create",
            "site",
            "--template",
            "python",
            "--force",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Initialized project: site\n"), "{out}");
}
