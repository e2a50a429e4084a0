//! A `log::Log` that writes one JSON object per line — ts, level, target, message, request_id,
//! trace_id, span, fields — to `<logging.root>/codara-YYYY-MM-DD.jsonl` (a new
//! `codara-YYYY-MM-DD.N.jsonl` each time one reaches `[logging].max_bytes`) and to stderr: the
//! same JSON, or a short line for a person when stderr is a terminal (unless `[logging].json`).
//!
//! The request id, trace id and span come from the thread's telemetry context; `fields` are the
//! record's key-values (`log::info!(turn_id = id; "…")`). Lines are appended synchronously: a log
//! line is the record of last resort (a panic, a crash), so it is in the file when the call
//! returns; a failed write is dropped, never returned. Messages are written as given: callers
//! must never pass secrets, and no code here formats headers or bodies.

use super::files;
use crate::clock;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// The longest message kept, in bytes; longer ones are cut (a CLI's stderr in an error).
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// How the logger is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// error, warn, info, debug or trace.
    pub level: String,
    /// JSON on stderr even when it is a terminal.
    pub json: bool,
    /// The directory of the daily files (`None`: stderr only).
    pub root: Option<PathBuf>,
    /// The size at which a day's file is continued in the next one.
    pub max_bytes: u64,
}

/// The day's current log file.
struct DailyFile {
    root: PathBuf,
    day: String,
    segment: u32,
    size: u64,
    max_bytes: u64,
    file: Option<File>,
}

impl DailyFile {
    fn write_line(&mut self, now_ms: i64, line: &[u8]) {
        let day = clock::ymd(now_ms);
        if self.file.is_none() || day != self.day {
            self.day = day;
            // Continue the newest file of the day (a restart appends to it).
            self.segment = files::log_files(&self.root)
                .iter()
                .filter(|f| f.day_ms == clock::parse_rfc3339(&self.day).unwrap_or(-1))
                .map(|f| f.segment)
                .max()
                .unwrap_or(0);
            self.open();
        }
        let line_len = line.len() as u64;
        if self.size > 0 && self.size + line_len > self.max_bytes {
            self.segment += 1;
            self.open();
        }
        if let Some(file) = &mut self.file {
            if file.write_all(line).is_ok() {
                self.size += line_len;
                super::metrics::log_written(line.len());
            }
        }
    }

    fn open(&mut self) {
        let path = files::log_path(&self.root, &self.day, self.segment);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .ok();
        self.size = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
    }
}

struct Logger {
    level: log::LevelFilter,
    human: bool,
    file: Option<Mutex<DailyFile>>,
}

/// Collects a record's key-values as the members of a JSON object (and, for people, as
/// `key=value` words).
#[derive(Default)]
struct Fields {
    json: String,
    words: String,
}

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        if !self.json.is_empty() {
            self.json.push(',');
        }
        super::trace::push_json_str(&mut self.json, key.as_str());
        self.json.push(':');
        let text;
        if let Some(b) = value.to_bool() {
            text = b.to_string();
            self.json.push_str(&text);
        } else if let Some(n) = value.to_i64() {
            text = n.to_string();
            self.json.push_str(&text);
        } else if let Some(n) = value.to_u64() {
            text = n.to_string();
            self.json.push_str(&text);
        } else if let Some(x) = value.to_f64().filter(|x| x.is_finite()) {
            text = x.to_string();
            self.json.push_str(&text);
        } else {
            text = value.to_string();
            super::trace::push_json_str(&mut self.json, &text);
        }
        self.words.push_str(&format!(" {key}={text}"));
        Ok(())
    }
}

impl Logger {
    /// The JSON line of a record, and the short line for a terminal when stderr is one.
    fn render(
        &self,
        record: &log::Record<'_>,
        now_ms: i64,
        message: &str,
        fields: &Fields,
    ) -> (String, Option<String>) {
        let ts = clock::rfc3339(now_ms);
        super::trace::with_current(|request_id, trace_id, span| {
            let mut json = String::with_capacity(160 + message.len() + fields.json.len());
            json.push_str("{\"ts\":\"");
            json.push_str(&ts);
            json.push_str("\",\"level\":\"");
            json.push_str(record.level().as_str());
            json.push_str("\",\"target\":");
            super::trace::push_json_str(&mut json, record.target());
            json.push_str(",\"message\":");
            super::trace::push_json_str(&mut json, message);
            for (key, value) in [
                ("request_id", request_id),
                ("trace_id", trace_id),
                ("span", span),
            ] {
                json.push_str(&format!(",\"{key}\":"));
                match value {
                    Some(value) => super::trace::push_json_str(&mut json, value),
                    None => json.push_str("null"),
                }
            }
            json.push_str(",\"fields\":{");
            json.push_str(&fields.json);
            json.push_str("}}\n");
            let human = self.human.then(|| {
                let target = record.target();
                let target = target.strip_prefix("codara::").unwrap_or(target);
                let id = request_id.map(|id| format!(" [{id}]")).unwrap_or_default();
                // The time of day is enough on a terminal: the file has the date.
                format!(
                    "{} {:5} {target}: {message}{}{id}\n",
                    &ts[11..23],
                    record.level(),
                    fields.words
                )
            });
            (json, human)
        })
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level && !hides_secrets(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut message = record.args().to_string();
        if message.len() > MAX_MESSAGE_BYTES {
            let mut at = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(at) {
                at -= 1;
            }
            message.truncate(at);
            message.push('…');
        }
        let mut fields = Fields::default();
        let _ = record.key_values().visit(&mut fields);
        let (json, human) = match self.file.as_ref().map(Mutex::lock) {
            Some(Ok(mut file)) => {
                // The time is read under the lock, so that a file's lines are in time order.
                let now_ms = clock::now_ms();
                let rendered = self.render(record, now_ms, &message, &fields);
                file.write_line(now_ms, rendered.0.as_bytes());
                rendered
            }
            _ => self.render(record, clock::now_ms(), &message, &fields),
        };
        let stderr_line = human.as_deref().unwrap_or(&json);
        let _ = std::io::stderr().write_all(stderr_line.as_bytes());
    }

    fn flush(&self) {}
}

/// ureq logs request paths in full at trace level (masked below it), and a Telegram Bot API
/// path holds the bot token: its trace records are never enabled, which also makes ureq mask
/// the paths it logs at debug.
fn hides_secrets(metadata: &log::Metadata<'_>) -> bool {
    metadata.level() == log::Level::Trace && metadata.target().starts_with("ureq")
}

/// Whether stderr is a terminal (then people read it: short lines instead of JSON).
fn stderr_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

/// Installs the logger once per process. Old files are deleted by the pruner (`retention`), not
/// here.
pub fn init(settings: &Settings) {
    let level = settings.level.parse().unwrap_or(log::LevelFilter::Info);
    let file = settings.root.clone().and_then(|root| {
        crate::datadir::ensure_private_dir(&root).ok()?;
        Some(Mutex::new(DailyFile {
            root,
            day: String::new(),
            segment: 0,
            size: 0,
            max_bytes: settings.max_bytes.max(1),
            file: None,
        }))
    });
    let logger = Logger {
        level,
        human: !settings.json && stderr_is_terminal(),
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
            human: false,
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
    fn a_full_file_continues_in_the_next_segment() {
        let root = std::env::temp_dir().join(crate::crypto::random_id("codara-log-test-"));
        std::fs::create_dir_all(&root).unwrap();
        let now = 1_795_525_200_000; // 2026-11-24
        std::fs::write(root.join("codara-2026-11-24.jsonl"), "x".repeat(90)).unwrap();
        let mut file = DailyFile {
            root: root.clone(),
            day: String::new(),
            segment: 0,
            size: 0,
            max_bytes: 100,
            file: None,
        };
        let line = format!("{}\n", "y".repeat(39));
        for _ in 0..5 {
            file.write_line(now, line.as_bytes());
        }
        let sizes: Vec<(u32, u64)> = files::log_files(&root)
            .iter()
            .map(|f| (f.segment, std::fs::metadata(&f.path).unwrap().len()))
            .collect();
        // The existing file was full for a 40-byte line; each next file takes two lines.
        assert_eq!(sizes, [(0, 90), (1, 80), (2, 80), (3, 40)]);
        // A restart continues the newest segment.
        let mut again = DailyFile {
            root: root.clone(),
            day: String::new(),
            segment: 0,
            size: 0,
            max_bytes: 100,
            file: None,
        };
        again.write_line(now, line.as_bytes());
        assert_eq!(
            std::fs::metadata(root.join("codara-2026-11-24.3.jsonl"))
                .unwrap()
                .len(),
            80
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
