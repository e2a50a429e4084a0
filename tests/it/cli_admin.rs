//! The administration commands beside a running server: `codara user suspend|unsuspend|delete`
//! (the same domain functions and audit entries as the management API), `codara account list`
//! as an aligned table, and `doctor`'s check of the configured port.

use crate::support::{self, TempDir, SECRET};
use rusqlite::Connection;
use std::net::TcpListener;
use std::path::Path;

/// `codara ARGS` in `dir`.
fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    support::run_cli(dir, args, &[])
}

#[test]
fn user_suspend_unsuspend_and_delete_act_on_a_running_server_and_are_audited() {
    let server = support::server().start();
    let dir = server.dir.clone();
    let (code, stdout, stderr) = cli(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "Ada",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let id = stdout
        .split_whitespace()
        .find(|w| w.starts_with("uag_usr_"))
        .unwrap()
        .to_string();
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("uagk_live_"))
        .unwrap()
        .to_string();
    let me = || server.get("/v1/user/me", Some(&key)).status;
    assert_eq!(me(), 200);

    let (code, stdout, stderr) = cli(&dir, &["user", "suspend", &id]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Suspended") && stdout.contains("suspended"),
        "{stdout}"
    );
    assert_eq!(me(), 403, "a suspended user's key is refused");

    let (code, stdout, stderr) = cli(&dir, &["user", "unsuspend", &id]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("status active"), "{stdout}");
    assert_eq!(me(), 200, "reactivated");

    let (code, stdout, stderr) = cli(&dir, &["user", "list"]);
    assert_eq!(code, 0, "{stderr}");
    let header = stdout.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("STATUS"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("active") && l.contains("ada@example.com")),
        "{stdout}"
    );

    let (code, stdout, stderr) = cli(&dir, &["user", "delete", &id]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("status deleted"), "{stdout}");
    assert_ne!(me(), 200, "a deleted user's key no longer works");
    // A deleted user stays deleted.
    let (code, _, stderr) = cli(&dir, &["user", "unsuspend", &id]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("deleted"), "{stderr}");
    let (code, _, stderr) = cli(&dir, &["user", "suspend"]);
    assert_eq!(code, 2, "USER_ID is required: {stderr}");

    // Each change is in the audit log, by the CLI, in order.
    let token = server.login();
    let response = server.get(
        &format!("/management/v1/audit?target_id={id}&limit=20"),
        Some(&token),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let entries = response.json()["data"].clone();
    let mut trail: Vec<(String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_type"] == "user")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    trail.reverse(); // newest first in the API
    let cli_actor = |a: &str| (a.to_string(), "cli".to_string());
    assert_eq!(
        trail,
        vec![
            cli_actor("user.created"),
            cli_actor("user.suspended"),
            cli_actor("user.unsuspended"),
            cli_actor("user.deleted"),
        ],
        "{entries}"
    );
}

/// The column of `header`'s `name`, as a character offset.
fn column(header: &str, name: &str) -> usize {
    header
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {header}"))
}

#[test]
fn account_list_is_an_aligned_table_with_quota_cooldown_and_primary() {
    let dir = TempDir::new("cli-accounts");
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, "sk-test-upload-key-123\n").unwrap();
    let key_file = key_file.to_str().unwrap();
    for id in ["main", "a-much-longer-account-id"] {
        let (code, stdout, stderr) = cli(
            dir.path(),
            &[
                "account",
                "add",
                "--id",
                id,
                "--auth-type",
                "API_KEY",
                "--credential-file",
                key_file,
                "--label",
                "Team A",
            ],
        );
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    // What the usage refresher and a rate limit would have stored for `main`.
    let until_ms = 4_102_444_800_000_i64; // 2100-01-01T00:00:00Z: still cooling when this runs
    let db = Connection::open(dir.path().join("data/codara.db")).unwrap();
    db.execute(
        "UPDATE accounts SET five_hour_used_percent = 37.4, weekly_used_percent = 81.0, \
         status = 'cooldown', cooldown_until = ?1 WHERE id = 'main'",
        [until_ms],
    )
    .unwrap();
    drop(db);

    let (code, stdout, stderr) = cli(dir.path(), &["account", "list"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{stdout}");
    let header = lines[0];
    let names = [
        "ID",
        "PROVIDER",
        "STATUS",
        "5H USED",
        "WEEKLY USED",
        "COOLDOWN UNTIL",
        "PRIMARY",
        "LABEL",
    ];
    let offsets: Vec<usize> = names.iter().map(|n| column(header, n)).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{header}");
    // Every row's cells start under their header (ASCII only, so bytes are characters).
    let cells = |row: &str| -> Vec<String> {
        offsets
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = offsets
                    .get(i + 1)
                    .copied()
                    .unwrap_or(row.len())
                    .min(row.len());
                assert!(
                    start == 0 || row.as_bytes()[start - 1] == b' ',
                    "a cell does not start under {}: {row:?}\n{stdout}",
                    names[i]
                );
                row[start..end].trim().to_string()
            })
            .collect()
    };
    let rows: Vec<Vec<String>> = lines[1..].iter().map(|row| cells(row)).collect();
    let main = rows.iter().find(|r| r[0] == "main").expect("main listed");
    let other = rows
        .iter()
        .find(|r| r[0] == "a-much-longer-account-id")
        .expect("the other listed");
    assert_eq!(
        main[1..],
        [
            "codex",
            "cooldown",
            "37%",
            "81%",
            "2100-01-01T00:00:00.000Z",
            "yes",
            "Team A"
        ],
        "{stdout}"
    );
    assert_eq!(
        other[1..],
        ["codex", "ready", "-", "-", "-", "no", "Team A"],
        "unknown quota is `-`, never invented:\n{stdout}"
    );
}

/// `codara doctor` in `dir` with the port from the environment; returns the exit code and the
/// line of the port check.
fn doctor_port(dir: &Path, port: u16) -> (i32, String, String) {
    let port = port.to_string();
    let (code, stdout, stderr) = support::run_cli(
        dir,
        &["doctor"],
        &[("API_TOKEN", SECRET), ("CODARA_PORT", &port)],
    );
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("port"))
        .unwrap_or_else(|| panic!("doctor has no port check:\n{stdout}{stderr}"))
        .to_string();
    (code, line, stdout)
}

#[test]
fn doctor_checks_the_port_is_free_or_this_servers() {
    let dir = TempDir::new("cli-doctor-port");
    // Free: a port just released.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let (code, line, stdout) = doctor_port(dir.path(), port);
    assert!(line.starts_with("ok") && line.contains("is free"), "{line}");
    assert_eq!(code, 0, "{stdout}");

    // Busy by someone else: serve would fail, so doctor fails.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    let (code, line, stdout) = doctor_port(dir.path(), port);
    assert!(
        line.starts_with("FAIL") && line.contains("in use by another process"),
        "{line}"
    );
    assert_eq!(code, 1, "{stdout}");
    drop(other);

    // Busy by this data dir's own server: fine, and named.
    let server = support::server().start();
    let (code, line, stdout) = doctor_port(&server.dir, server.addr.port());
    assert!(
        line.starts_with("ok")
            && line.contains(&format!(
                "in use by this data dir's running server (pid {})",
                server.pid()
            )),
        "{line}"
    );
    assert_eq!(code, 0, "{stdout}");
    // The same port seen from another data dir is someone else's.
    let (code, line, _) = doctor_port(dir.path(), server.addr.port());
    assert!(line.starts_with("FAIL"), "{line}");
    assert_eq!(code, 1);
}
