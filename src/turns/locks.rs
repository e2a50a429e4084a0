//! Named locks with a bounded wait: one turn at a time per session and per workspace.
//!
//! In memory: a single process owns the data dir (the instance lock), so process-local locks
//! are enough.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A set of held names with waiters.
#[derive(Default)]
pub struct Locks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

/// Releases its name when dropped.
pub struct Guard<'a> {
    locks: &'a Locks,
    name: String,
}

impl Locks {
    /// The lock of a workspace directory: one turn (or revert, reset, delete, project setup) at
    /// a time in it, so per-turn diffs stay exact.
    pub fn workspace(&self, dir: &std::path::Path, timeout: Duration) -> Option<Guard<'_>> {
        self.acquire(&format!("workspace:{}", dir.display()), timeout)
    }

    /// The lock of a session (its key): one turn at a time per conversation.
    pub fn session(&self, key: &str, timeout: Duration) -> Option<Guard<'_>> {
        self.acquire(&format!("session:{key}"), timeout)
    }

    /// Takes `name`, waiting up to `timeout`; `None` when it stayed busy.
    fn acquire(&self, name: &str, timeout: Duration) -> Option<Guard<'_>> {
        let deadline = Instant::now() + timeout;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains(name) {
            let left = deadline.checked_duration_since(Instant::now())?;
            held = self
                .released
                .wait_timeout(held, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        held.insert(name.to_string());
        Some(Guard {
            locks: self,
            name: name.to_string(),
        })
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.name);
        self.locks.released.notify_all();
    }
}

/// Per-user counters of running turns, for `max_concurrency`.
#[derive(Default, Clone)]
pub struct Slots {
    running: std::sync::Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

/// A taken slot; released when dropped (it may move to another thread).
pub struct Slot {
    running: std::sync::Arc<Mutex<std::collections::HashMap<String, usize>>>,
    user_id: String,
}

impl Slots {
    /// Takes a slot for `user_id` unless `max` are already running.
    pub fn try_acquire(&self, user_id: &str, max: usize) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let count = running.entry(user_id.to_string()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            running: std::sync::Arc::clone(&self.running),
            user_id: user_id.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = running.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_times_out() {
        let locks = Locks::default();
        let first = locks.session("a", Duration::ZERO).unwrap();
        assert!(locks.session("a", Duration::from_millis(50)).is_none());
        assert!(locks.session("b", Duration::ZERO).is_some());
        // A workspace and a session of the same text are different locks.
        assert!(locks
            .workspace(std::path::Path::new("a"), Duration::ZERO)
            .is_some());
        drop(first);
        assert!(locks.session("a", Duration::ZERO).is_some());
    }

    #[test]
    fn slots_limit_per_user() {
        let slots = Slots::default();
        let a = slots.try_acquire("u1", 2).unwrap();
        let _b = slots.try_acquire("u1", 2).unwrap();
        assert!(slots.try_acquire("u1", 2).is_none());
        assert!(slots.try_acquire("u2", 2).is_some());
        drop(a);
        assert!(slots.try_acquire("u1", 2).is_some());
    }

    #[test]
    fn waiter_gets_the_lock_when_released() {
        let locks = std::sync::Arc::new(Locks::default());
        let guard = locks.acquire("s", Duration::ZERO).unwrap();
        let other = std::sync::Arc::clone(&locks);
        let waiter =
            std::thread::spawn(move || other.acquire("s", Duration::from_secs(5)).is_some());
        std::thread::sleep(Duration::from_millis(50));
        drop(guard);
        assert!(waiter.join().unwrap());
    }
}
