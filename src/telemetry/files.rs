//! The names of telemetry files and how to list them: daily log files
//! `<logging.root>/codara-YYYY-MM-DD.jsonl` with size-capped continuations
//! `codara-YYYY-MM-DD.N.jsonl`, and hourly trace shards
//! `<trace_root>/events/YYYY/MM/DD/HH.jsonl` (UTC).
//!
//! Shared by the writers, the pruner and the reader so that they agree on what is theirs: a file
//! named otherwise is never listed, read or deleted. Must not write anything.

use std::path::{Path, PathBuf};

const HOUR_MS: i64 = 3_600_000;

/// One hourly trace shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The start of its UTC hour, epoch ms.
    pub hour_ms: i64,
    /// Its path.
    pub path: PathBuf,
}

/// One log file: a day and a segment (0 for `codara-D.jsonl`, N for `codara-D.N.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The start of its UTC day, epoch ms.
    pub day_ms: i64,
    /// Its place among the day's files (each starts when the previous reached the size cap).
    pub segment: u32,
    /// Its path.
    pub path: PathBuf,
}

impl LogFile {
    /// A number that orders log files from oldest to newest.
    pub fn ordinal(&self) -> i64 {
        self.day_ms / 1000 * 10_000 + i64::from(self.segment.min(9_999))
    }
}

/// The shard of the UTC hour of `ms`.
pub fn shard_path(root: &Path, ms: i64) -> PathBuf {
    let c = crate::clock::civil(ms);
    root.join("events")
        .join(format!("{:04}", c.year))
        .join(format!("{:02}", c.month))
        .join(format!("{:02}", c.day))
        .join(format!("{:02}.jsonl", c.hour))
}

/// The start of the UTC hour of `ms`.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The log file of `day` (`YYYY-MM-DD`) and `segment`.
pub fn log_path(root: &Path, day: &str, segment: u32) -> PathBuf {
    match segment {
        0 => root.join(format!("codara-{day}.jsonl")),
        n => root.join(format!("codara-{day}.{n}.jsonl")),
    }
}

/// `YYYY-MM-DD` as the epoch ms of its start, only for a real date written that way.
fn day_ms(day: &str) -> Option<i64> {
    if day.len() != 10 {
        return None;
    }
    let ms = crate::clock::parse_rfc3339(day)?;
    (crate::clock::ymd(ms) == day).then_some(ms)
}

/// The day and segment of a log file's name (`codara-2026-11-24.jsonl`, `….3.jsonl`).
pub fn parse_log_name(name: &str) -> Option<(i64, u32)> {
    let stem = name.strip_prefix("codara-")?.strip_suffix(".jsonl")?;
    let (day, segment) = match stem.split_once('.') {
        Some((day, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            let segment: u32 = n.parse().ok()?;
            if segment == 0 || n.starts_with('0') {
                return None;
            }
            (day, segment)
        }
        Some(_) => return None,
        None => (stem, 0),
    };
    Some((day_ms(day)?, segment))
}

/// The log files under `root`, oldest first.
pub fn log_files(root: &Path) -> Vec<LogFile> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut files: Vec<LogFile> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let (day_ms, segment) = parse_log_name(name.to_str()?)?;
            Some(LogFile {
                day_ms,
                segment,
                path: entry.path(),
            })
        })
        .collect();
    files.sort_by_key(|f| (f.day_ms, f.segment));
    files
}

/// Entries of `dir` whose names are `digits` decimal digits, with their value, in order.
fn numbered(dir: &Path, digits: usize, suffix: &str) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_suffix(suffix)?;
            if number.len() != digits || !number.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((number.parse().ok()?, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// The trace shards under `root`, oldest first.
pub fn shards(root: &Path) -> Vec<Shard> {
    let mut found = Vec::new();
    for (year, year_dir) in numbered(&root.join("events"), 4, "") {
        for (month, month_dir) in numbered(&year_dir, 2, "") {
            for (day, day_dir) in numbered(&month_dir, 2, "") {
                let Some(day_ms) = day_ms(&format!("{year:04}-{month:02}-{day:02}")) else {
                    continue;
                };
                for (hour, path) in numbered(&day_dir, 2, ".jsonl") {
                    if hour < 24 {
                        found.push(Shard {
                            hour_ms: day_ms + i64::from(hour) * HOUR_MS,
                            path,
                        });
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names() {
        let check = |name: &str, expected: Option<(&str, u32)>| {
            let got = parse_log_name(name).map(|(ms, n)| (crate::clock::ymd(ms), n));
            assert_eq!(got, expected.map(|(d, n)| (d.to_string(), n)), "{name}");
        };
        check("codara-2026-11-24.jsonl", Some(("2026-11-24", 0)));
        check("codara-2026-11-24.3.jsonl", Some(("2026-11-24", 3)));
        check("codara-2026-11-24.0.jsonl", None);
        check("codara-2026-11-24.03.jsonl", None);
        check("codara-2026-13-24.jsonl", None);
        check("codara-2026-11-24.x.jsonl", None);
        check("codara-2026-11-24.jsonl.gz", None);
        check("other.txt", None);
        assert_eq!(
            log_path(Path::new("/l"), "2026-11-24", 2),
            Path::new("/l/codara-2026-11-24.2.jsonl")
        );
    }

    #[test]
    fn shard_names() {
        let root = std::env::temp_dir().join(crate::crypto::random_id("codara-shards-"));
        // 2026-11-24T13:05:00Z
        let at = 1_795_525_200_000 + 300_000;
        let path = shard_path(&root, at);
        assert!(path.ends_with("events/2026/11/24/13.jsonl"), "{path:?}");
        for path in [
            path.clone(),
            shard_path(&root, at - 3_600_000),
            root.join("events/2026/11/24/notes.txt"),
            root.join("events/2026/11/24/24.jsonl"),
            root.join("events/2026/02/30/01.jsonl"),
            root.join("events/x/11/24/01.jsonl"),
        ] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
        }
        let found: Vec<i64> = shards(&root).iter().map(|s| s.hour_ms).collect();
        assert_eq!(found, [hour_of(at) - 3_600_000, hour_of(at)]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
