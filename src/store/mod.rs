//! The SQLite database: connections, pragmas, and the numbered embedded migrations.
//!
//! Owns opening `codara.db` (WAL, busy timeout, foreign keys) and the `schema_migrations` table.
//! Each other table is owned by exactly one submodule, which holds its queries. Must not contain
//! policy (who may do what): callers decide, this layer stores.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod meta;
pub mod operator_tokens;
pub mod responses;
pub mod sessions;
pub mod telegram;
pub mod turn_journal;
pub mod turns;
pub mod usage;
pub mod users;

use crate::error::{Error, Result};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The append-only list of migrations. Never edit or reorder an entry; add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("migrations/001_foundation.sql"),
    ),
    (2, "sessions", include_str!("migrations/002_sessions.sql")),
    (3, "users", include_str!("migrations/003_users.sql")),
    (4, "accounts", include_str!("migrations/004_accounts.sql")),
    (
        5,
        "turn_journal",
        include_str!("migrations/005_turn_journal.sql"),
    ),
    (6, "responses", include_str!("migrations/006_responses.sql")),
    (7, "telegram", include_str!("migrations/007_telegram.sql")),
];

const READERS: usize = 4;

/// Declares a closed set stored as a `TEXT` column: the enum with its stored names, `as_str`,
/// `parse`, `Display`, and `ToSql`/`FromSql`. Reading a name the set does not have is an error
/// (a database written by something else, or a newer Codara), never a silent default.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and shown) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The value stored as `text`, if it is one.
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|value| value.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so that `{:<10}` in a CLI table lines up.
                f.pad(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} `{text}`", $what).into(),
                    )
                })
            }
        }
    };
}
pub(crate) use text_enum;

/// Handles to one SQLite database: a single writer and a few readers (WAL lets them overlap).
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut writer = connect(path)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| connect(path).map(Mutex::new))
            .collect::<Result<_>>()?;
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read connection. Prefer a free reader; wait on one only when all are taken.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        for reader in &self.readers {
            if let Ok(conn) = reader.try_lock() {
                return f(&conn);
            }
        }
        let slot = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        f(&lock(&self.readers[slot]))
    }

    /// Runs `f` inside one immediate write transaction, committed when `f` succeeds.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::sql("beginning a write transaction"))?;
        let value = f(&tx)?;
        tx.commit()
            .map_err(Error::sql("committing a write transaction"))?;
        Ok(value)
    }

    /// The highest applied migration.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(|conn| {
            conn.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |row| row.get(0),
            )
            .map_err(Error::sql("reading the schema version"))
        })
    }
}

/// The newest schema this build knows.
pub fn latest_schema_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding a connection leaves no half-state: SQLite rolled back the transaction.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn connect(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| Error::Sql {
        op: "opening the database",
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(Error::sql("setting busy_timeout"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .map_err(Error::sql("setting pragmas"))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(Error::sql("starting the migration transaction"))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(Error::sql("creating schema_migrations"))?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(Error::sql("reading the schema version"))?;
    let latest = latest_schema_version();
    if current > latest {
        return Err(Error::Internal(format!(
            "the database schema is version {current}, newer than this codara knows ({latest}); \
             run a newer codara or restore a backup"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql)
            .map_err(Error::sql("applying a migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, crate::clock::now_ms()],
        )
        .map_err(Error::sql("recording a migration"))?;
        log::info!("applied database migration {version:03}_{name}");
    }
    tx.commit().map_err(Error::sql("committing migrations"))
}

/// An in-memory database with every migration applied and foreign keys on (for unit tests of
/// the table modules).
#[cfg(test)]
pub(crate) fn in_memory() -> Connection {
    let mut conn = Connection::open_in_memory().expect("an in-memory database opens");
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .expect("foreign keys can be switched on");
    migrate(&mut conn).expect("the migrations apply");
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        let error = migrate(&mut conn).unwrap_err().to_string();
        assert!(error.contains("newer than this codara"), "{error}");
    }

    /// Each closed set survives a round trip through SQLite; a name it does not have is an error
    /// naming the set and the value.
    #[test]
    fn closed_sets_round_trip_and_refuse_unknown_names() {
        use rusqlite::types::{FromSql, ToSql};
        fn check<T: ToSql + FromSql + PartialEq + std::fmt::Debug + Copy>(
            conn: &Connection,
            all: &[T],
            unknown_error: &str,
        ) {
            for value in all {
                let back: T = conn.query_row("SELECT ?1", [value], |r| r.get(0)).unwrap();
                assert_eq!(back, *value);
            }
            let error = conn
                .query_row("SELECT 'frozen'", [], |r| r.get::<_, T>(0))
                .unwrap_err()
                .to_string();
            assert!(error.contains(unknown_error), "{error}");
        }
        let conn = in_memory();
        check(
            &conn,
            users::UserStatus::ALL,
            "unknown user status `frozen`",
        );
        check(
            &conn,
            api_keys::KeyStatus::ALL,
            "unknown API key status `frozen`",
        );
        check(
            &conn,
            accounts::AccountStatus::ALL,
            "unknown account status `frozen`",
        );
        check(
            &conn,
            turns::TurnStatus::ALL,
            "unknown turn status `frozen`",
        );
        let names: Vec<&str> = turns::TurnStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["ok", "error", "stalled", "timeout", "interrupted"]);
        assert_eq!(format!("[{:<8}]", users::UserStatus::Active), "[active  ]");
    }

    /// A row with a status this build does not know is a read error, not a default.
    #[test]
    fn an_unknown_stored_status_fails_the_read() {
        let conn = in_memory();
        conn.execute(
            "INSERT INTO users (id, email, display_name, status, workspace_path, \
             max_concurrency, created_by, created_at, updated_at) \
             VALUES ('u1', 'a@b.c', 'A', 'frozen', '/w/u1', 1, 'cli', 0, 0)",
            [],
        )
        .unwrap();
        let error = users::get(&conn, "u1").unwrap_err();
        assert_eq!(error.status(), 500);
        assert!(
            error.to_string().contains("unknown user status `frozen`"),
            "{error}"
        );
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1);
        }
    }
}
