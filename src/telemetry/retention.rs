//! Retention: deletes log files older than `[logging].retention_days` and trace shards older
//! than `[telemetry].trace_retention_days`, at start-up and then once a day, on the `pruner`
//! thread.
//!
//! Only files named the way `files` names them are touched, and only whole expired files: a log
//! file of day D goes when D is before the first kept day; a shard goes when its whole hour is
//! older than the retention. Directories of the shard tree left empty go too. 0 days keeps
//! everything. Must not read or rewrite file contents.

use super::files;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

/// Deletes the log files under `root` that are older than `days` days; returns how many.
pub fn prune_logs(root: &Path, now_ms: i64, days: u32) -> usize {
    if days == 0 {
        return 0;
    }
    let first_kept = now_ms.div_euclid(DAY_MS) * DAY_MS - i64::from(days) * DAY_MS;
    files::log_files(root)
        .into_iter()
        .filter(|file| file.day_ms < first_kept)
        .filter(|file| remove(&file.path))
        .count()
}

/// Deletes the trace shards under `root` whose hour ended more than `days` days ago, and the
/// day, month and year directories that leaves empty; returns how many shards.
pub fn prune_traces(root: &Path, now_ms: i64, days: u32) -> usize {
    if days == 0 {
        return 0;
    }
    let horizon = now_ms - i64::from(days) * DAY_MS;
    let mut removed = 0;
    for shard in files::shards(root) {
        if shard.hour_ms + 3_600_000 <= horizon && remove(&shard.path) {
            removed += 1;
            // Up to three levels (DD, MM, YYYY); remove_dir refuses a directory that is not empty.
            let mut dir = shard.path.parent();
            for _ in 0..3 {
                let Some(current) = dir else { break };
                if std::fs::remove_dir(current).is_err() {
                    break;
                }
                dir = current.parent();
            }
        }
    }
    removed
}

fn remove(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(error) => {
            log::warn!("pruning {}: {error}", path.display());
            false
        }
    }
}

/// What the pruner keeps.
#[derive(Debug, Clone)]
pub struct Retention {
    /// The log directory.
    pub log_root: PathBuf,
    /// Days of log files kept (0: all).
    pub log_days: u32,
    /// The trace root.
    pub trace_root: PathBuf,
    /// Days of trace shards kept (0: all).
    pub trace_days: u32,
}

impl Retention {
    /// Prunes both now; returns (log files, shards) removed.
    pub fn prune(&self, now_ms: i64) -> (usize, usize) {
        let logs = prune_logs(&self.log_root, now_ms, self.log_days);
        let shards = prune_traces(&self.trace_root, now_ms, self.trace_days);
        if logs + shards > 0 {
            log::info!(
                removed_log_files = logs,
                removed_trace_shards = shards;
                "pruned telemetry past retention ({} days of logs, {} of traces)",
                self.log_days,
                self.trace_days
            );
        }
        (logs, shards)
    }
}

/// Starts the pruner: prunes at once, then every 24 hours until shutdown.
pub(crate) fn spawn(retention: Retention) {
    let spawned = std::thread::Builder::new()
        .name("pruner".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let tick = Duration::from_millis(500);
            let mut waited = Duration::ZERO;
            retention.prune(crate::clock::now_ms());
            while !crate::shutdown::requested() {
                std::thread::sleep(tick);
                waited += tick;
                if waited >= Duration::from_secs(86_400) {
                    waited = Duration::ZERO;
                    retention.prune(crate::clock::now_ms());
                }
            }
        });
    if let Err(error) = spawned {
        log::error!("cannot start the telemetry pruner: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x\n").unwrap();
    }

    #[test]
    fn exactly_the_expired_files_go() {
        let root = std::env::temp_dir().join(crate::crypto::random_id("codara-retention-"));
        let logs = root.join("logs");
        let traces = root.join("traces");
        // 2026-11-24T13:05:00Z, three days kept: 2026-11-21 is the first kept day.
        let now = 1_795_525_200_000 + 300_000;
        let kept = [
            logs.join("codara-2026-11-21.jsonl"),
            logs.join("codara-2026-11-24.2.jsonl"),
            logs.join("notes.txt"),
            logs.join("codara-2026-11-19.jsonl.gz"),
            // The hour 2026-11-21T13 ends after the horizon (2026-11-21T13:05).
            files::shard_path(&traces, now - 3 * DAY_MS),
            traces.join("events/2026/11/20/notes.txt"),
        ];
        let gone = [
            logs.join("codara-2026-11-20.jsonl"),
            logs.join("codara-2026-11-20.1.jsonl"),
            logs.join("codara-2019-01-01.jsonl"),
            files::shard_path(&traces, now - 3 * DAY_MS - 3_600_000),
            files::shard_path(&traces, now - 4 * DAY_MS),
            traces.join("events/2019/01/01/00.jsonl"),
        ];
        for path in kept.iter().chain(&gone) {
            touch(path);
        }
        let retention = Retention {
            log_root: logs.clone(),
            log_days: 3,
            trace_root: traces.clone(),
            trace_days: 3,
        };
        assert_eq!(retention.prune(now), (3, 3));
        for path in &kept {
            assert!(path.exists(), "{} was removed", path.display());
        }
        for path in &gone {
            assert!(!path.exists(), "{} was kept", path.display());
        }
        // The emptied directories of 2019 went; 2026/11/20 keeps its foreign file.
        assert!(!traces.join("events/2019").exists());
        assert!(traces.join("events/2026/11/20").exists());
        // Zero days keeps everything.
        let keep_all = Retention {
            log_days: 0,
            trace_days: 0,
            ..retention
        };
        assert_eq!(keep_all.prune(now + 1000 * DAY_MS), (0, 0));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
