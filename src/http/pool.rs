//! A fixed-size worker pool with a short bounded queue that refuses work when both are full.
//!
//! Owns its threads and the count of items in flight. Each item is handled inside
//! `catch_unwind` so a panicking handler costs one response, not a worker. Must not know what
//! an item is: the handler is given at construction.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A bounded pool of named worker threads running one handler over submitted items.
pub struct Pool<T: Send + 'static> {
    name: &'static str,
    workers_count: usize,
    capacity: usize,
    in_flight: Arc<AtomicUsize>,
    // Shared with the stages that submit into this pool, so shutdown takes `&self`.
    sender: RwLock<Option<SyncSender<T>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl<T: Send + 'static> Pool<T> {
    /// Starts `size` workers named `<name>-<i>`, each calling `handler` on the items it receives;
    /// up to `queue` more items wait for a worker before submissions are refused.
    pub fn new(
        name: &'static str,
        size: usize,
        queue: usize,
        handler: Arc<dyn Fn(T) + Send + Sync>,
    ) -> Pool<T> {
        let capacity = size + queue;
        let (sender, receiver) = sync_channel::<T>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let workers = (0..size)
            .filter_map(|i| {
                let receiver = Arc::clone(&receiver);
                let in_flight = Arc::clone(&in_flight);
                let handler = Arc::clone(&handler);
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || work(&receiver, &in_flight, &*handler))
                    .map_err(|e| log::error!("cannot start worker {name}-{i}: {e}"))
                    .ok()
            })
            .collect();
        Pool {
            name,
            workers_count: size,
            capacity,
            in_flight,
            sender: RwLock::new(Some(sender)),
            workers: Mutex::new(workers),
        }
    }

    /// The pool's name, for messages.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Hands `item` to a worker (or the queue), or gives it back when both are full.
    pub fn try_submit(&self, item: T) -> Result<(), T> {
        let sender = self.sender.read().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(item);
        };
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(item);
        }
        // The channel holds `capacity` items and at most that many are in flight: never blocks.
        sender.send(item).map_err(|returned| {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            returned.0
        })
    }

    /// The pool's load, read by the metrics at scrape time.
    pub fn gauge(&self) -> crate::telemetry::metrics::PoolGauge {
        crate::telemetry::metrics::PoolGauge {
            in_flight: Arc::clone(&self.in_flight),
            workers: self.workers_count,
            capacity: self.capacity,
        }
    }

    /// Items accepted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether a submission now would be refused (a hint: others may submit or finish).
    pub fn is_full(&self) -> bool {
        self.in_flight() >= self.capacity
    }

    /// Whether there is room now or within `grace`: a worker that has just answered is still
    /// finishing (its trace, its log line) when the same client's next request can arrive, and
    /// that overlap must not look like a full pool. Call only from a thread that may wait.
    pub fn has_room_within(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while self.is_full() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Stops taking items and waits up to `grace` for running ones; returns how many still run.
    pub fn shutdown(&self, grace: Duration) -> usize {
        *self.sender.write().unwrap_or_else(|p| p.into_inner()) = None;
        let deadline = Instant::now() + grace;
        while self.in_flight() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.in_flight();
        if left == 0 {
            let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            for worker in workers.drain(..) {
                let _ = worker.join();
            }
        }
        left
    }
}

fn work<T>(
    receiver: &Mutex<Receiver<T>>,
    in_flight: &AtomicUsize,
    handler: &(dyn Fn(T) + Send + Sync),
) {
    loop {
        let item = {
            let Ok(receiver) = receiver.lock() else {
                return;
            };
            match receiver.recv() {
                Ok(item) => item,
                Err(_) => return,
            }
        };
        if catch_unwind(AssertUnwindSafe(|| handler(item))).is_err() {
            log::error!("a handler panicked; the worker continues");
        }
        in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Sender};

    #[test]
    fn refuses_when_full_and_survives_panics() {
        let (done_tx, done_rx) = channel::<u32>();
        let done_tx = Mutex::new(done_tx);
        let (release_tx, release_rx) = channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let handler = move |item: u32| {
            match item {
                0 => {
                    let _ = release_rx.lock().unwrap().recv();
                }
                1 => panic!("boom"),
                _ => {}
            }
            let sender: Sender<u32> = done_tx.lock().unwrap().clone();
            sender.send(item).unwrap();
        };
        let pool = Pool::new("test", 1, 0, Arc::new(handler));
        assert!(!pool.is_full());
        assert!(pool.try_submit(0).is_ok());
        assert!(pool.is_full());
        assert_eq!(
            pool.try_submit(7),
            Err(7),
            "a full pool hands the item back"
        );
        release_tx.send(()).unwrap();
        assert_eq!(done_rx.recv().unwrap(), 0);
        while pool.in_flight() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(pool.try_submit(1).is_ok());
        while pool.in_flight() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(pool.try_submit(2).is_ok());
        assert_eq!(done_rx.recv().unwrap(), 2, "the worker survived the panic");
        assert_eq!(pool.shutdown(Duration::from_secs(1)), 0);
        assert_eq!(pool.try_submit(3), Err(3), "a stopped pool takes nothing");
    }
}
