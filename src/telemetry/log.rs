//! A `log::Log` that writes one JSON object per line to stderr and a daily file.
//!
//! Records carry ts, level, target, message and the request id of the worker's current request
//! (a thread-local set by the HTTP layer). Messages are written as given: callers must never pass
//! secrets, and no code here formats headers or bodies.

use crate::clock;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

thread_local! {
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with `request_id` attached to every record logged on this thread meanwhile.
pub fn with_request_id<T>(request_id: &str, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REQUEST_ID.with(|slot| slot.borrow_mut().take());
        }
    }
    REQUEST_ID.with(|slot| *slot.borrow_mut() = Some(request_id.to_string()));
    let _reset = Reset;
    f()
}

struct DailyFile {
    root: PathBuf,
    day: String,
    file: Option<File>,
    retention_days: u32,
}

impl DailyFile {
    fn write_line(&mut self, now_ms: i64, line: &[u8]) {
        let day = clock::ymd(now_ms);
        if self.file.is_none() || day != self.day {
            prune(&self.root, now_ms, self.retention_days);
            let path = self.root.join(format!("codara-{day}.jsonl"));
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .ok();
            self.day = day;
        }
        if let Some(file) = &mut self.file {
            let _ = file.write_all(line);
        }
    }
}

/// Deletes `codara-YYYY-MM-DD.jsonl` files older than `retention_days` (0 keeps everything).
fn prune(root: &std::path::Path, now_ms: i64, retention_days: u32) {
    if retention_days == 0 {
        return;
    }
    let oldest_kept = clock::ymd(now_ms - i64::from(retention_days) * 86_400_000);
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(day) = name
            .strip_prefix("codara-")
            .and_then(|n| n.strip_suffix(".jsonl"))
        else {
            continue;
        };
        // ISO dates compare correctly as strings.
        if day.len() == 10 && day < oldest_kept.as_str() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

struct Logger {
    level: log::LevelFilter,
    json_stderr: bool,
    file: Option<Mutex<DailyFile>>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level && !hides_secrets(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now_ms = clock::now_ms();
        let request_id = REQUEST_ID.with(|slot| slot.borrow().clone());
        let message = record.args().to_string();
        let mut object = serde_json::Map::new();
        object.insert("ts".into(), clock::rfc3339(now_ms).into());
        object.insert("level".into(), record.level().as_str().into());
        object.insert("target".into(), record.target().into());
        object.insert("message".into(), message.clone().into());
        object.insert("request_id".into(), request_id.clone().into());
        let mut json = serde_json::Value::Object(object).to_string();
        json.push('\n');
        let stderr_line = if self.json_stderr {
            json.clone()
        } else {
            let rid = request_id.map(|id| format!(" [{id}]")).unwrap_or_default();
            format!(
                "{} {:5} {}: {message}{rid}\n",
                clock::rfc3339(now_ms),
                record.level(),
                record.target()
            )
        };
        let _ = std::io::stderr().write_all(stderr_line.as_bytes());
        if let Some(file) = &self.file {
            if let Ok(mut file) = file.lock() {
                file.write_line(now_ms, json.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// ureq logs request paths in full at trace level (masked below it), and a Telegram Bot API
/// path holds the bot token: its trace records are never enabled, which also makes ureq mask
/// the paths it logs at debug.
fn hides_secrets(metadata: &log::Metadata<'_>) -> bool {
    metadata.level() == log::Level::Trace && metadata.target().starts_with("ureq")
}

/// Installs the logger once per process. `root` is where daily files go (`None`: stderr only);
/// files older than `retention_days` are deleted at start-up and at each day's rollover.
pub fn init(level: &str, json_stderr: bool, root: Option<PathBuf>, retention_days: u32) {
    let level = level.parse().unwrap_or(log::LevelFilter::Info);
    let file = root.and_then(|root| {
        crate::datadir::ensure_private_dir(&root).ok()?;
        Some(Mutex::new(DailyFile {
            root,
            day: String::new(),
            file: None,
            retention_days,
        }))
    });
    let logger = Logger {
        level,
        json_stderr,
        file,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ureq_trace_records_are_never_enabled() {
        let logger = Logger {
            level: log::LevelFilter::Trace,
            json_stderr: true,
            file: None,
        };
        let meta = |level, target| log::Metadata::builder().level(level).target(target).build();
        assert!(!log::Log::enabled(
            &logger,
            &meta(log::Level::Trace, "ureq::util")
        ));
        assert!(log::Log::enabled(
            &logger,
            &meta(log::Level::Debug, "ureq::run")
        ));
        assert!(log::Log::enabled(
            &logger,
            &meta(log::Level::Trace, "codara::telegram")
        ));
    }

    #[test]
    fn prune_keeps_recent_and_foreign_files() {
        let root = std::env::temp_dir().join(crate::crypto::random_id("codara-log-test-"));
        std::fs::create_dir_all(&root).unwrap();
        for name in [
            "codara-2026-01-01.jsonl",
            "codara-2026-11-20.jsonl",
            "other.txt",
        ] {
            std::fs::write(root.join(name), "x").unwrap();
        }
        let now = 1_795_525_200_000; // 2026-11-24
        prune(&root, now, 30);
        assert!(!root.join("codara-2026-01-01.jsonl").exists());
        assert!(root.join("codara-2026-11-20.jsonl").exists());
        assert!(root.join("other.txt").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
