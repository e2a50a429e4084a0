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
}

impl DailyFile {
    fn write_line(&mut self, now_ms: i64, line: &[u8]) {
        let day = clock::ymd(now_ms);
        if self.file.is_none() || day != self.day {
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

struct Logger {
    level: log::LevelFilter,
    json_stderr: bool,
    file: Option<Mutex<DailyFile>>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
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

/// Installs the logger once per process. `root` is where daily files go (`None`: stderr only).
pub fn init(level: &str, json_stderr: bool, root: Option<PathBuf>) {
    let level = level.parse().unwrap_or(log::LevelFilter::Info);
    let file = root.and_then(|root| {
        crate::datadir::ensure_private_dir(&root).ok()?;
        Some(Mutex::new(DailyFile {
            root,
            day: String::new(),
            file: None,
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
