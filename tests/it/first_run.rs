//! First run as a new operator meets it: a start that cannot listen leaves nothing behind, the
//! generated operator secret is printed on every start until it has signed in once, and commands
//! refused for bad input create nothing (no data dir, no database).

use crate::support::{self, TempDir};
use std::net::TcpListener;
use std::path::Path;

/// The entries of `dir`, sorted (what a command left behind).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The generated secret a start printed, if it printed one.
fn printed_secret(server: &support::Server) -> Option<String> {
    server
        .stdout
        .iter()
        .find(|l| l.starts_with("Operator secret (generated"))
        .map(|l| l.rsplit(' ').next().unwrap().trim().to_string())
}

/// Starts a server in `dir` with no configured secret (so one is generated or read back).
fn start_unconfigured(dir: &Path) -> support::Server {
    support::server().dir(dir).env("API_TOKEN", None).start()
}

fn sign_in(server: &support::Server, secret: &str) -> u16 {
    server
        .post_json(
            "/management/v1/auth/token",
            None,
            &format!(r#"{{"operator_secret":"{secret}"}}"#),
        )
        .status
}

#[test]
fn a_start_on_a_busy_port_creates_nothing_and_the_next_start_prints_the_secret() {
    let dir = TempDir::new("first-busy");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, stdout, stderr) = support::run_cli(dir.path(), &["serve", "--port", &port], &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && stderr.contains("another process"),
        "{stderr}"
    );
    assert!(!stdout.contains("Operator secret"), "{stdout}");
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "a start that could not listen left state behind"
    );
    drop(busy);

    let mut server = start_unconfigured(dir.path());
    let secret = printed_secret(&server).unwrap_or_else(|| {
        panic!(
            "the first real start printed no secret: {:?}",
            server.stdout
        )
    });
    let stored = std::fs::read_to_string(server.data_dir().join("operator.secret")).unwrap();
    assert_eq!(stored.trim(), secret);
    assert_eq!(sign_in(&server, &secret), 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_second_server_on_the_same_port_and_data_dir_names_the_first() {
    let first = support::server().start();
    let port = first.addr.port().to_string();
    let (code, _, stderr) = support::run_cli(
        &first.dir,
        &["serve", "--port", &port],
        &[("API_TOKEN", support::SECRET)],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "this data dir's codara serve, pid {}, is already listening there",
            first.pid()
        )),
        "{stderr}"
    );
}

#[test]
fn the_generated_secret_is_printed_until_it_signs_in_then_only_its_path() {
    let temp = TempDir::new("first-secret");
    let (dir, _) = start_unconfigured(temp.path()).stop_keep_dir();
    let secret = std::fs::read_to_string(dir.join("data/operator.secret"))
        .unwrap()
        .trim()
        .to_string();

    // A restart before any sign-in prints it again; a wrong secret and the secret used as a
    // bearer (no sign-in) do not count.
    let server = start_unconfigured(&dir);
    assert_eq!(printed_secret(&server).as_deref(), Some(secret.as_str()));
    assert_eq!(sign_in(&server, "not-the-secret"), 401);
    assert_eq!(
        server.get("/management/v1/overview", Some(&secret)).status,
        200
    );
    let (dir, _) = server.stop_keep_dir();
    let server = start_unconfigured(&dir);
    assert_eq!(
        printed_secret(&server).as_deref(),
        Some(secret.as_str()),
        "still printed: it never signed in"
    );

    // The first sign-in; from the next start on only the path is shown.
    assert_eq!(sign_in(&server, &secret), 200);
    let (dir, _) = server.stop_keep_dir();
    let server = start_unconfigured(&dir);
    let banner = server.stdout.join("\n");
    assert_eq!(printed_secret(&server), None, "{banner}");
    assert!(!banner.contains(&secret), "{banner}");
    assert!(
        banner.contains("Operator secret: kept in") && banner.contains("operator.secret"),
        "{banner}"
    );
    assert_eq!(sign_in(&server, &secret), 200, "the secret still works");

    // A secret generated anew (the file deleted) has never signed in: printed again.
    let (dir, _) = server.stop_keep_dir();
    std::fs::remove_file(dir.join("data/operator.secret")).unwrap();
    let mut server = start_unconfigured(&dir);
    let fresh = printed_secret(&server).expect("a new secret is printed");
    assert_ne!(fresh, secret);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn commands_refused_for_bad_input_create_nothing() {
    let dir = TempDir::new("first-bad-input");
    let creds = TempDir::new("first-bad-creds");
    let key_file = creds.path().join("key.txt");
    std::fs::write(&key_file, "sk-test-upload-key-123\n").unwrap();
    let bad_file = creds.path().join("auth.json");
    std::fs::write(&bad_file, "{\"tokens\": {}}").unwrap();
    let key_file = key_file.to_str().unwrap();
    let bad_file = bad_file.to_str().unwrap();

    // (arguments, exit code, a fragment of stderr)
    let refused: &[(&[&str], i32, &str)] = &[
        (
            &["user", "create", "--email", "bad", "--name", "Ada"],
            2,
            "email",
        ),
        (
            &[
                "user",
                "create",
                "--email",
                "ada@example.com",
                "--name",
                " ",
            ],
            2,
            "display_name",
        ),
        (
            &[
                "user",
                "create",
                "--email",
                "ada@example.com",
                "--name",
                "Ada",
                "--max-concurrency",
                "0",
            ],
            2,
            "max_concurrency",
        ),
        (
            &[
                "account",
                "add",
                "--id",
                "bad id!",
                "--auth-type",
                "API_KEY",
                "--credential-file",
                key_file,
            ],
            2,
            "id",
        ),
        (
            &[
                "account",
                "add",
                "--id",
                "main",
                "--auth-type",
                "OAUTH_SESSION",
                "--credential-file",
                bad_file,
            ],
            2,
            "tokens.id_token",
        ),
        (&["project", "create", "../escape"], 2, "name"),
        (
            &["user", "suspend", "uag_usr_nobody"],
            1,
            "no user uag_usr_nobody",
        ),
        (
            &["user", "delete", "uag_usr_nobody"],
            1,
            "no user uag_usr_nobody",
        ),
        (&["user", "rotate-key", "uag_usr_nobody"], 1, "no user"),
        (&["account", "remove", "main"], 1, "no account main"),
        (&["account", "primary", "main"], 1, "no account main"),
    ];
    for (args, want, fragment) in refused {
        let (code, stdout, stderr) = support::run_cli(dir.path(), args, &[]);
        assert_eq!(code, *want, "codara {args:?}: {stdout}{stderr}");
        assert!(stderr.contains(fragment), "codara {args:?}: {stderr}");
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "codara {args:?} left state behind"
        );
    }
    // Reading commands on a fresh dir answer "nothing" and create nothing either.
    for (args, says) in [
        (&["user", "list"][..], "No users."),
        (&["account", "list"][..], "No accounts in the pool."),
        (&["doctor"][..], "does not exist yet"),
    ] {
        // Port 0: doctor's port check must not depend on what else runs on this machine.
        let (code, stdout, stderr) = support::run_cli(dir.path(), args, &[("CODARA_PORT", "0")]);
        assert_eq!(code, 0, "codara {args:?}: {stdout}{stderr}");
        assert!(stdout.contains(says), "codara {args:?}: {stdout}");
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{args:?}");
    }

    // The same create with good input does create the data dir and the database.
    let (code, stdout, stderr) = support::run_cli(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "Ada",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(dir.path().join("data/codara.db").exists());
}
