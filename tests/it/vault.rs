//! The vault master key across restarts: a wrong key and a tampered check value stop start-up,
//! a generated `master.key` is private and reused, a malformed key is refused.

use crate::support::{self, hex_key};
use rusqlite::Connection;
use std::os::unix::fs::PermissionsExt;

/// The "vault key <id>" a server logged at start-up.
fn logged_key_id(stderr: &str) -> String {
    let rest = stderr
        .split("vault key ")
        .nth(1)
        .unwrap_or_else(|| panic!("no vault key in the start-up log:\n{stderr}"));
    rest.chars().take_while(char::is_ascii_hexdigit).collect()
}

#[test]
fn a_different_master_key_is_refused_and_the_right_one_works() {
    let key_a = hex_key(0x11);
    let key_b = hex_key(0x22);
    let server = support::server()
        .env("UAG_MASTER_KEY", Some(&key_a))
        .start();
    assert!(
        !server.data_dir().join("master.key").exists(),
        "no key file when UAG_MASTER_KEY is set"
    );
    let (dir, _keep) = server.stop_keep_dir();

    let Err((code, _, stderr)) = support::server()
        .dir(&dir)
        .env("UAG_MASTER_KEY", Some(&key_b))
        .try_start()
    else {
        panic!("started with the wrong master key");
    };
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}");
    assert!(stderr.contains("master key"), "{stderr}");
    assert!(
        !stderr.contains(&key_b) && !stderr.contains(&key_a),
        "keys are never printed"
    );

    let mut server = support::server()
        .dir(&dir)
        .env("UAG_MASTER_KEY", Some(&key_a))
        .start();
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_tampered_vault_check_is_detected() {
    let key = hex_key(0x33);
    let server = support::server().env("UAG_MASTER_KEY", Some(&key)).start();
    let db = server.data_dir().join("codara.db");
    let (dir, _keep) = server.stop_keep_dir();

    let conn = Connection::open(&db).unwrap();
    let mut sealed: Vec<u8> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'vault_check'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    // Flip a bit of the authentication tag (the last byte): the key id still matches.
    *sealed.last_mut().unwrap() ^= 0x01;
    let changed = conn
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'vault_check'",
            [&sealed],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let Err((code, _, stderr)) = support::server()
        .dir(&dir)
        .env("UAG_MASTER_KEY", Some(&key))
        .try_start()
    else {
        panic!("started with a tampered vault check value");
    };
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}");
    assert!(stderr.contains("modified"), "{stderr}");
}

#[test]
fn a_generated_master_key_is_private_and_reused() {
    let server = support::server().env("UAG_MASTER_KEY", None).start();
    let path = server.data_dir().join("master.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "master.key mode");
    let text = std::fs::read_to_string(&path).unwrap();
    let key = text.trim();
    assert_eq!(key.len(), 64, "{key:?}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key:?}");
    let first_id = logged_key_id(&server.stderr());
    assert!(!server.stderr().contains(key), "the key is never logged");
    let (dir, _keep) = server.stop_keep_dir();

    let mut server = support::server().dir(&dir).start();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "key file unchanged"
    );
    assert_eq!(logged_key_id(&server.stderr()), first_id, "same key in use");
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_malformed_master_key_is_refused() {
    let Err((code, _, stderr)) = support::server()
        .env("UAG_MASTER_KEY", Some("short"))
        .try_start()
    else {
        panic!("started with UAG_MASTER_KEY=short");
    };
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}");
    assert!(stderr.contains("UAG_MASTER_KEY"), "{stderr}");
    assert!(stderr.contains("64 hex"), "{stderr}");
}
