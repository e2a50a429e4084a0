//! Storage on disk: the fresh layout, WAL mode, migrations applied once, data surviving restarts,
//! refusal of a newer schema, and the single-instance lock.

use crate::support::{self, SECRET};
use rusqlite::Connection;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn migrations(db: &Path) -> Vec<(i64, String, i64)> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        .unwrap();
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn fresh_start_creates_a_wal_database_with_migrations() {
    let mut server = support::server().start();
    let data = server.data_dir();
    let db = data.join("codara.db");
    assert!(db.is_file(), "{} missing", db.display());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data dir mode");

    let applied = migrations(&db);
    assert!(!applied.is_empty(), "no schema_migrations rows");
    assert_eq!(applied[0].0, 1);
    assert_eq!(applied[0].1, "foundation");
    for (i, (version, _, _)) in applied.iter().enumerate() {
        assert_eq!(*version, i as i64 + 1, "versions are consecutive");
    }

    let conn = Connection::open(&db).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    drop(conn);

    let overview = server.get("/management/v1/overview", Some(SECRET));
    assert_eq!(
        overview.json()["data"]["storage"]["schema_version"],
        applied.last().unwrap().0
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn restart_keeps_data_and_does_not_reapply_migrations() {
    let server = support::server().start();
    let token = server.login();
    let db = server.data_dir().join("codara.db");
    assert!(
        server.stderr().contains("applied database migration"),
        "{}",
        server.stderr()
    );
    let (dir, _keep) = server.stop_keep_dir();
    let before = migrations(&db);

    let mut server = support::server().dir(&dir).start();
    let overview = server.get("/management/v1/overview", Some(&token));
    assert_eq!(
        overview.status,
        200,
        "token minted before the restart: {}",
        overview.text()
    );
    assert_eq!(
        overview.json()["data"]["counts"]["operator_tokens_active"],
        1
    );
    assert_eq!(migrations(&db), before, "migrations are not applied again");
    assert!(
        !server.stderr().contains("applied database migration"),
        "{}",
        server.stderr()
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_newer_schema_stops_start_up() {
    let server = support::server().start();
    let db = server.data_dir().join("codara.db");
    let (dir, _keep) = server.stop_keep_dir();
    let conn = Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
        [],
    )
    .unwrap();
    drop(conn);

    let Err((code, _, stderr)) = support::server().dir(&dir).try_start() else {
        panic!("started on a database from the future");
    };
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}");
    assert!(stderr.contains("newer"), "{stderr}");
    assert!(stderr.contains("999"), "{stderr}");
    // Nothing was changed: the future row is still there and nothing else was added.
    let versions: Vec<i64> = migrations(&db).iter().map(|m| m.0).collect();
    assert_eq!(versions.last(), Some(&999));
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let mut server = support::server().start();
    let (code, _stdout, stderr) = support::run_cli(
        &server.dir,
        &["serve", "--port", "0"],
        &[("API_TOKEN", SECRET)],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(
        stderr.contains(&server.pid().to_string()),
        "names the holder: {stderr}"
    );

    // The first one is unaffected.
    assert_eq!(server.get("/healthz", None).status, 200);
    let token = server.login();
    assert_eq!(
        server.get("/management/v1/overview", Some(&token)).status,
        200
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}
