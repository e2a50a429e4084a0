//! The trace writer: one thread that appends finished traces to
//! `<trace_root>/events/YYYY/MM/DD/HH.jsonl` (the UTC hour the trace ended in), fed by a bounded
//! channel.
//!
//! A request hands its trace over with `try_send` and never waits: when the queue is full, or
//! the shard cannot be written (a full disk, a directory that is not one), the trace is dropped
//! and counted. Must not be called from the writer thread's own failure paths in a way that
//! could block it (its warnings go to the log, which does not feed this channel).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Traces that may wait for the writer; a burst beyond this is dropped, not queued. The
/// channel itself grows in blocks as it is used (a preallocated ring of this size would cost
/// its whole size in memory from the start), and this count bounds it.
const QUEUE: usize = 8192;

/// Traces in the channel now.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
/// Traces written with one write(2) at most.
const BATCH: usize = 1024;
/// How long the writer lets traces gather after the first one arrives.
const GATHER: Duration = Duration::from_millis(50);

enum Event {
    /// A finished trace: its end (epoch ms, which places it in a shard) and its line.
    Trace(i64, String),
    /// Write what is queued, then stop.
    Stop,
}

static SENDER: OnceLock<Sender<Event>> = OnceLock::new();
static THREAD: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

/// Hands a finished trace to the writer without waiting; counts it as dropped when the queue
/// is full or no writer runs.
pub(crate) fn send(end_ms: i64, line: String) {
    let Some(sender) = SENDER.get() else {
        super::metrics::traces_dropped(1);
        return;
    };
    if QUEUED.fetch_add(1, Ordering::AcqRel) >= QUEUE {
        QUEUED.fetch_sub(1, Ordering::AcqRel);
        super::metrics::traces_dropped(1);
        return;
    }
    if sender.send(Event::Trace(end_ms, line)).is_ok() {
        super::metrics::traces_queued(1);
    } else {
        QUEUED.fetch_sub(1, Ordering::AcqRel);
        super::metrics::traces_dropped(1);
    }
}

/// Starts the writer thread for `root` (once per process; later calls do nothing).
pub(crate) fn start(root: PathBuf) {
    let (sender, receiver) = channel();
    if SENDER.set(sender).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("trace-writer".into())
        .stack_size(256 * 1024)
        .spawn(move || run(&root, &receiver));
    match spawned {
        Ok(handle) => {
            if let Ok(mut thread) = THREAD.lock() {
                *thread = Some(handle);
            }
        }
        Err(error) => log::error!("cannot start the trace writer: {error}; traces are dropped"),
    }
}

/// Writes what is queued and stops the writer (waiting at most `grace`).
pub(crate) fn stop(grace: Duration) {
    let Some(sender) = SENDER.get() else { return };
    let deadline = Instant::now() + grace;
    if sender.send(Event::Stop).is_err() {
        return;
    }
    let handle = THREAD.lock().ok().and_then(|mut t| t.take());
    if let Some(handle) = handle {
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}

/// The writer's open shard and its failures.
struct Shards {
    root: PathBuf,
    open: Option<(i64, File)>,
    /// Since when writes fail (retried after a second, so a broken disk costs one attempt per
    /// second, not one per trace).
    failing_since: Option<Instant>,
    last_warning: Option<Instant>,
}

impl Shards {
    /// Appends `bytes` to the shard of `hour` (epoch ms of the hour's start).
    fn append(&mut self, hour: i64, bytes: &[u8]) -> std::io::Result<()> {
        if self
            .failing_since
            .is_some_and(|since| since.elapsed() < Duration::from_secs(1))
        {
            return Err(std::io::Error::other(
                "the last write failed less than 1 s ago",
            ));
        }
        if self.open.as_ref().map(|(h, _)| *h) != Some(hour) {
            self.open = None;
            let path = super::files::shard_path(&self.root, hour);
            if let Some(dir) = path.parent() {
                // Private like the data dir: traces name users and routes.
                crate::datadir::ensure_private_dir(dir).map_err(std::io::Error::other)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            self.open = Some((hour, file));
        }
        match &mut self.open {
            Some((_, file)) => file.write_all(bytes),
            None => Err(std::io::Error::other("no shard open")),
        }
    }

    fn failed(&mut self, events: usize, error: &std::io::Error) {
        self.open = None;
        self.failing_since = Some(Instant::now());
        super::metrics::traces_dropped(events);
        let quiet = self
            .last_warning
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
        if !quiet {
            self.last_warning = Some(Instant::now());
            log::warn!(
                "cannot write traces under {}: {error}; traces are dropped and counted",
                self.root.display()
            );
        }
    }
}

fn run(root: &Path, receiver: &Receiver<Event>) {
    let mut shards = Shards {
        root: root.to_path_buf(),
        open: None,
        failing_since: None,
        last_warning: None,
    };
    let mut batch: Vec<(i64, String)> = Vec::with_capacity(BATCH);
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut caught_up = true;
    loop {
        let mut stop = false;
        match receiver.recv() {
            Ok(Event::Trace(end_ms, line)) => batch.push((end_ms, line)),
            Ok(Event::Stop) | Err(_) => stop = true,
        }
        if !stop && caught_up {
            // Gather for a moment: while this thread sleeps, senders wake nobody, so a busy
            // gateway pays one wake-up and one write per GATHER, not one per request. Behind
            // (the last batch was full), it writes on without waiting.
            std::thread::sleep(GATHER);
        }
        caught_up = false;
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(Event::Trace(end_ms, line)) => batch.push((end_ms, line)),
                Ok(Event::Stop) => stop = true,
                Err(_) => {
                    caught_up = true;
                    break;
                }
            }
        }
        if stop {
            // Whatever is still queued goes out before the thread ends.
            while let Ok(event) = receiver.try_recv() {
                if let Event::Trace(end_ms, line) = event {
                    batch.push((end_ms, line));
                }
            }
        }
        QUEUED.fetch_sub(batch.len(), Ordering::AcqRel);
        super::metrics::traces_queued(-(batch.len() as i64));
        // Consecutive traces of one hour leave in one write.
        let mut start = 0;
        while start < batch.len() {
            let hour = super::files::hour_of(batch[start].0);
            let mut end = start;
            buffer.clear();
            while end < batch.len() && super::files::hour_of(batch[end].0) == hour {
                buffer.extend_from_slice(batch[end].1.as_bytes());
                buffer.push(b'\n');
                end += 1;
            }
            match shards.append(hour, &buffer) {
                Ok(()) => {
                    shards.failing_since = None;
                    super::metrics::traces_written(end - start, buffer.len());
                }
                Err(error) => shards.failed(end - start, &error),
            }
            start = end;
        }
        batch.clear();
        if stop {
            return;
        }
    }
}
