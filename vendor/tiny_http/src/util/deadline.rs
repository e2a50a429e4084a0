//! Codara patch: one read deadline per connection (see ARCHITECTURE.md, Decisions).

use std::sync::Mutex;
use std::time::Instant;

/// The instant by which a connection's reads must be done, kept in two slots: `head`, set by the
/// connection thread while it reads a request head (and a small body it reads itself), and
/// `body`, set by the holder of a `Request` while it reads that request's body. A connection is
/// read by one of them at a time, so at most one slot is normally in use; the earlier applies.
#[derive(Default)]
pub struct ReadDeadline {
    slots: Mutex<Slots>,
}

#[derive(Default, Clone, Copy)]
struct Slots {
    head: Option<Instant>,
    body: Option<Instant>,
}

impl ReadDeadline {
    /// Sets or clears the connection thread's deadline.
    pub fn set_head(&self, at: Option<Instant>) {
        self.lock().head = at;
    }

    /// Sets or clears the deadline of the request whose body is being read.
    pub fn set_body(&self, at: Option<Instant>) {
        self.lock().body = at;
    }

    /// The deadline in force, if any.
    pub fn current(&self) -> Option<Instant> {
        let slots = *self.lock();
        match (slots.head, slots.body) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}
