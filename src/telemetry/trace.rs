//! Traces: one per HTTP request and one per turn that no request carries, made of spans (a name,
//! a start, a duration, a status and a few bounded attributes). A trace lives in memory while it
//! runs and leaves as one JSON line when its root ends, through the writer thread.
//!
//! The current trace and span are a thread-local [`Context`]: the HTTP layer enters a request's
//! context on each thread that works on it, a turn thread enters the context it was handed, and
//! [`span`] opens a child of the current span. Incoming W3C `traceparent` headers are honoured
//! (the client's trace id is kept, its span becomes the root's parent).
//!
//! Must not record prompts, replies, credentials or keys: attributes are set by name in code
//! (never copied from requests wholesale) and text values are cut at 200 characters.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Spans kept per trace (the root included); more are counted in `dropped_spans`, not kept.
const MAX_SPANS: usize = 128;
/// The longest text attribute kept, in characters.
const MAX_ATTR_CHARS: usize = 200;

/// Turns tracing on or off for the whole process (`[telemetry].enabled`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether traces are recorded.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A span attribute: bounded text, a number or a flag.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// Text, at most 200 characters.
    Text(String),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// A flag.
    Bool(bool),
}

impl From<&str> for Attr {
    fn from(value: &str) -> Attr {
        Attr::Text(cut(value, MAX_ATTR_CHARS).to_string())
    }
}

impl From<String> for Attr {
    fn from(value: String) -> Attr {
        Attr::from(value.as_str())
    }
}

impl From<&String> for Attr {
    fn from(value: &String) -> Attr {
        Attr::from(value.as_str())
    }
}

impl From<i64> for Attr {
    fn from(value: i64) -> Attr {
        Attr::Int(value)
    }
}

impl From<i32> for Attr {
    fn from(value: i32) -> Attr {
        Attr::Int(i64::from(value))
    }
}

impl From<u64> for Attr {
    fn from(value: u64) -> Attr {
        Attr::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Attr {
    fn from(value: usize) -> Attr {
        Attr::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Attr {
    fn from(value: bool) -> Attr {
        Attr::Bool(value)
    }
}

impl From<f64> for Attr {
    fn from(value: f64) -> Attr {
        Attr::Float(value)
    }
}

/// A root field of a trace, shown in trace lists and filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The provider of the turn the trace ran.
    Provider,
    /// Who the request or turn ran for (`operator` or a user id).
    User,
}

/// A client's `traceparent`: the trace to continue and the span to hang the root under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The client's span, the parent of this request's root span.
    pub span_id: u64,
    /// The trace flags (bit 0: sampled), returned as received.
    pub flags: u8,
}

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` for anything invalid
/// (all-zero ids, version `ff`, upper-case hex, a version-00 header with extra fields).
pub fn parse_traceparent(value: &str) -> Option<Parent> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2) || version == "ff" || !lower_hex(trace, 32) {
        return None;
    }
    if !lower_hex(span, 16) || flags.len() < 2 || !lower_hex(&flags[..2], 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && (parts.next().is_some() || flags.len() != 2) {
        return None;
    }
    let bytes = crate::crypto::unhex(trace)?;
    let trace_id: [u8; 16] = bytes.try_into().ok()?;
    let span_id = u64::from_str_radix(span, 16).ok()?;
    let flags = u8::from_str_radix(&flags[..2], 16).ok()?;
    (trace_id != [0; 16] && span_id != 0).then_some(Parent {
        trace_id,
        span_id,
        flags,
    })
}

/// One span while its trace runs. The root is span 0 of its trace.
struct SpanRecord {
    name: &'static str,
    parent: u16,
    start: Duration,
    duration: Option<Duration>,
    error: bool,
    attrs: Vec<(&'static str, Attr)>,
}

/// What a trace gathers while it runs.
struct State {
    spans: Vec<SpanRecord>,
    dropped: u32,
    method: Option<String>,
    route: Option<&'static str>,
    http_status: Option<u16>,
    provider: Option<String>,
    user_id: Option<String>,
    error: bool,
    done: bool,
}

/// A trace in flight.
pub struct Trace {
    id_hex: String,
    root_span: u64,
    parent: Option<u64>,
    flags: u8,
    /// The request id, kept in the trace only when it is not derived from the root span id.
    request_id: Option<String>,
    started_ms: i64,
    started: Instant,
    state: Mutex<State>,
}

impl Trace {
    fn new(root_name: &'static str, parent: Option<Parent>, request_id: Option<String>) -> Trace {
        let started_ms = crate::clock::now_ms();
        let root_span = nonzero_random();
        let id = parent
            .map(|p| p.trace_id)
            .unwrap_or_else(|| new_trace_id(started_ms));
        Trace {
            id_hex: crate::crypto::hex(&id),
            root_span,
            parent: parent.map(|p| p.span_id),
            flags: parent.map(|p| p.flags).unwrap_or(1),
            request_id,
            started_ms,
            started: Instant::now(),
            state: Mutex::new(State {
                spans: vec![SpanRecord {
                    name: root_name,
                    parent: 0,
                    start: Duration::ZERO,
                    duration: None,
                    error: false,
                    attrs: Vec::new(),
                }],
                dropped: 0,
                method: None,
                route: None,
                http_status: None,
                provider: None,
                user_id: None,
                error: false,
                done: false,
            }),
        }
    }

    /// The trace id, 32 lower-case hex digits.
    pub fn id(&self) -> &str {
        &self.id_hex
    }

    /// Opens a span under `parent`; `None` when the trace is full or finished.
    fn open(&self, name: &'static str, parent: u16, start: Instant) -> Option<u16> {
        let mut state = self.state.lock().ok()?;
        if state.done || state.spans.len() >= MAX_SPANS {
            state.dropped += 1;
            return None;
        }
        let index = u16::try_from(state.spans.len()).ok()?;
        state.spans.push(SpanRecord {
            name,
            parent,
            start: start.saturating_duration_since(self.started),
            duration: None,
            error: false,
            attrs: Vec::new(),
        });
        Some(index)
    }

    fn with_span(&self, index: u16, f: impl FnOnce(&mut SpanRecord)) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(span) = state.spans.get_mut(usize::from(index)) {
                f(span);
            }
        }
    }

    fn close(&self, index: u16, end: Instant) {
        let started = self.started;
        self.with_span(index, |span| {
            if span.duration.is_none() {
                span.duration = Some(end.saturating_duration_since(started + span.start));
            }
        });
    }

    /// Ends the root, fills the HTTP fields, and renders the trace's line: (end epoch ms, line).
    /// `None` when it was already finished.
    fn finish(&self, http: Option<(&str, Option<&'static str>, u16)>) -> Option<(i64, String)> {
        let mut state = self.state.lock().ok()?;
        if state.done {
            return None;
        }
        state.done = true;
        let elapsed = self.started.elapsed();
        state.spans[0].duration = Some(elapsed);
        for span in state.spans.iter_mut() {
            if span.duration.is_none() {
                // A span still open when its root ends (a thread that outlived the request).
                span.duration = Some(elapsed.saturating_sub(span.start));
                span.attrs.push(("unfinished", Attr::Bool(true)));
            }
        }
        if let Some((method, route, status)) = http {
            state.method = Some(method.to_string());
            state.route = route;
            state.http_status = Some(status);
            if status >= 500 {
                state.error = true;
            }
        }
        if state.spans.first().is_some_and(|root| root.error) {
            state.error = true;
        }
        let line = render(self, &state, elapsed);
        let end_ms = self.started_ms + elapsed.as_millis() as i64;
        Some((end_ms, line))
    }
}

/// Renders a finished trace as one JSON line (see `query::TraceLine` for the reading side).
/// `started_at` and `duration_ms` come first so that a reader can place a line without
/// parsing all of it.
fn render(trace: &Trace, state: &State, elapsed: Duration) -> String {
    let mut out = String::with_capacity(256 + 64 * state.spans.len());
    out.push_str("{\"started_at\":");
    out.push_str(&trace.started_ms.to_string());
    out.push_str(",\"duration_ms\":");
    push_ms(&mut out, elapsed);
    out.push_str(",\"trace_id\":\"");
    out.push_str(&trace.id_hex);
    out.push_str("\",\"span_id\":\"");
    out.push_str(&format!("{:016x}", trace.root_span));
    out.push('"');
    if let Some(parent) = trace.parent {
        out.push_str(&format!(",\"parent_id\":\"{parent:016x}\""));
    }
    if trace.flags != 1 {
        out.push_str(&format!(",\"flags\":{}", trace.flags));
    }
    let root = &state.spans[0];
    match (&state.method, state.route) {
        (Some(method), route) => {
            out.push_str(",\"method\":");
            push_json_str(&mut out, method);
            if let Some(route) = route {
                out.push_str(",\"route\":");
                push_json_str(&mut out, route);
            }
        }
        (None, _) => {
            out.push_str(",\"name\":");
            push_json_str(&mut out, root.name);
        }
    }
    if let Some(status) = state.http_status {
        out.push_str(&format!(",\"http_status\":{status}"));
    }
    if state.error {
        out.push_str(",\"status\":\"error\"");
    }
    for (key, value) in [("provider", &state.provider), ("user_id", &state.user_id)] {
        if let Some(value) = value {
            out.push_str(&format!(",\"{key}\":"));
            push_json_str(&mut out, value);
        }
    }
    if let Some(request_id) = &trace.request_id {
        out.push_str(",\"request_id\":");
        push_json_str(&mut out, request_id);
    }
    if state.dropped > 0 {
        out.push_str(&format!(",\"dropped_spans\":{}", state.dropped));
    }
    if !root.attrs.is_empty() {
        out.push_str(",\"attributes\":");
        push_attrs(&mut out, &root.attrs);
    }
    out.push_str(",\"spans\":[");
    for (i, span) in state.spans.iter().enumerate().skip(1) {
        if i > 1 {
            out.push(',');
        }
        out.push('[');
        push_json_str(&mut out, span.name);
        out.push_str(&format!(",{},", span.parent));
        push_ms(&mut out, span.start);
        out.push(',');
        push_ms(&mut out, span.duration.unwrap_or_default());
        out.push_str(if span.error {
            ",\"error\","
        } else {
            ",\"ok\","
        });
        push_attrs(&mut out, &span.attrs);
        out.push(']');
    }
    out.push_str("]}");
    out
}

fn push_attrs(out: &mut String, attrs: &[(&'static str, Attr)]) {
    out.push('{');
    for (i, (key, value)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, key);
        out.push(':');
        match value {
            Attr::Text(text) => push_json_str(out, text),
            Attr::Int(n) => out.push_str(&n.to_string()),
            Attr::Float(x) if x.is_finite() => out.push_str(&format!("{x}")),
            Attr::Float(_) => out.push_str("null"),
            Attr::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push('}');
}

/// Milliseconds with microsecond precision and no trailing zeros (`12`, `0.312`).
pub(crate) fn push_ms(out: &mut String, duration: Duration) {
    let micros = duration.as_micros();
    let (whole, frac) = (micros / 1000, micros % 1000);
    out.push_str(&whole.to_string());
    if frac > 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// Appends `text` as a JSON string.
pub(crate) fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `text` cut to at most `max` characters.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// The id of span `index` of a trace whose root span id is `root`: child ids are derived, not
/// stored, which keeps a line short; the root's own id is random.
pub(crate) fn span_id_of(root: u64, index: usize) -> u64 {
    if index == 0 {
        return root;
    }
    let mixed = splitmix(root ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    if mixed == 0 {
        1
    } else {
        mixed
    }
}

/// When a trace id minted here was made: its first six bytes are the epoch ms of its start
/// (ids from clients' `traceparent` carry no such time, so this is only a hint).
pub(crate) fn minted_at_ms(id: &[u8; 16]) -> i64 {
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&id[..6]);
    i64::from_be_bytes(bytes)
}

fn new_trace_id(now_ms: i64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    id[6..14].copy_from_slice(&random_u64().to_be_bytes());
    id[14..].copy_from_slice(&random_u64().to_be_bytes()[..2]);
    id
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

thread_local! {
    /// A per-thread generator seeded once from the kernel: span and trace ids are unique
    /// labels, not secrets, and a getrandom(2) per request would cost more than the trace.
    static RNG: Cell<u64> = const { Cell::new(0) };
}

fn random_u64() -> u64 {
    RNG.with(|rng| {
        let mut state = rng.get();
        if state == 0 {
            let mut seed = [0u8; 8];
            if crate::crypto::fill_random(&mut seed).is_err() {
                seed = (crate::clock::now_ms() as u64 ^ (rng as *const _ as u64)).to_le_bytes();
            }
            state = u64::from_le_bytes(seed) | 1;
        }
        state = splitmix(state);
        rng.set(state);
        state
    })
}

fn nonzero_random() -> u64 {
    loop {
        let n = random_u64();
        if n != 0 {
            return n;
        }
    }
}

/// The trace and span that work on this thread belongs to, and its request id.
#[derive(Clone, Default)]
pub struct Context {
    request_id: Option<Arc<str>>,
    trace: Option<Arc<Trace>>,
    span: u16,
    span_name: &'static str,
}

thread_local! {
    static CURRENT: RefCell<Context> = const {
        RefCell::new(Context { request_id: None, trace: None, span: 0, span_name: "" })
    };
}

impl Context {
    /// The context of a new HTTP request: a trace (when tracing is on) continuing the client's
    /// `traceparent` if it is valid, and the request id — the client's, else `req_` and the
    /// first 12 hex digits of the root span id (so a trace need not store it).
    pub fn for_request(client_request_id: Option<String>, traceparent: Option<&str>) -> Context {
        if !enabled() {
            let request_id = client_request_id.unwrap_or_else(|| crate::crypto::random_id("req_"));
            return Context {
                request_id: Some(Arc::from(request_id)),
                ..Context::default()
            };
        }
        let parent = traceparent.and_then(parse_traceparent);
        let mut trace = Trace::new("http", parent, None);
        let derived = format!("req_{}", &format!("{:016x}", trace.root_span)[..12]);
        let request_id = match client_request_id {
            Some(id) if id != derived => {
                trace.request_id = Some(id.clone());
                id
            }
            _ => derived,
        };
        Context {
            request_id: Some(Arc::from(request_id)),
            trace: Some(Arc::new(trace)),
            span: 0,
            span_name: "http",
        }
    }

    /// The request id (empty outside a request).
    pub fn request_id(&self) -> &str {
        self.request_id.as_deref().unwrap_or("")
    }

    /// The trace id, when a trace is recorded.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace.as_deref().map(Trace::id)
    }

    /// The `traceparent` to return: the trace and this request's root span.
    pub fn traceparent(&self) -> Option<String> {
        self.trace.as_ref().map(|trace| {
            format!(
                "00-{}-{:016x}-{:02x}",
                trace.id_hex, trace.root_span, trace.flags
            )
        })
    }

    /// Runs `f` with this context as the thread's current one, then restores the previous.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _restore = Restore(Some(CURRENT.with(|c| c.replace(self.clone()))));
        f()
    }

    /// Ends an HTTP request's trace with its method, route template and status, and hands its
    /// line to the writer unless `write` is false (quiet routes: probes, dashboard files).
    pub fn finish_http(&self, method: &str, route: Option<&'static str>, status: u16, write: bool) {
        let Some(trace) = &self.trace else { return };
        if let Some((end_ms, line)) = trace.finish(Some((method, route, status))) {
            if write {
                super::writer::send(end_ms, line);
            }
        }
    }
}

/// Puts the previous context back when dropped (also when `f` panics).
struct Restore(Option<Context>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
}

/// A copy of this thread's current context, to hand to another thread (a turn's stream).
pub fn current() -> Context {
    CURRENT.with(|c| c.borrow().clone())
}

/// Calls `f` with the current request id, trace id and span name (for log lines).
pub(crate) fn with_current<T>(f: impl FnOnce(Option<&str>, Option<&str>, Option<&str>) -> T) -> T {
    CURRENT.with(|c| {
        let c = c.borrow();
        let trace = c.trace.as_deref().map(Trace::id);
        let span = trace.map(|_| c.span_name);
        f(c.request_id.as_deref(), trace, span)
    })
}

/// An open span; it ends when dropped. While it is open it is the thread's current span, so
/// spans opened meanwhile are its children. Drop spans in the reverse order of opening.
#[must_use = "a span ends when dropped"]
pub struct Span {
    trace: Option<Arc<Trace>>,
    index: u16,
    restore: (u16, &'static str),
    _not_send: PhantomData<*const ()>,
}

/// Opens a span named `name` under the current span (a no-op outside a trace).
pub fn span(name: &'static str) -> Span {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let inert = Span {
            trace: None,
            index: 0,
            restore: (0, ""),
            _not_send: PhantomData,
        };
        let Some(trace) = c.trace.clone() else {
            return inert;
        };
        let Some(index) = trace.open(name, c.span, Instant::now()) else {
            return inert;
        };
        let restore = (c.span, c.span_name);
        c.span = index;
        c.span_name = name;
        Span {
            trace: Some(trace),
            index,
            restore,
            _not_send: PhantomData,
        }
    })
}

impl Span {
    /// Sets an attribute (bounded: never a prompt, a reply or a credential).
    pub fn attr(&self, key: &'static str, value: impl Into<Attr>) {
        if let Some(trace) = &self.trace {
            let value = value.into();
            trace.with_span(self.index, |span| span.attrs.push((key, value)));
        }
    }

    /// Marks the span as failed.
    pub fn fail(&self) {
        if let Some(trace) = &self.trace {
            trace.with_span(self.index, |span| span.error = true);
        }
    }

    /// A handle that can record children of this span from anywhere, after the fact.
    pub fn handle(&self) -> SpanRef {
        SpanRef {
            trace: self.trace.clone(),
            index: self.index,
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Some(trace) = self.trace.take() else {
            return;
        };
        trace.close(self.index, Instant::now());
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.trace.as_ref().is_some_and(|t| Arc::ptr_eq(t, &trace)) && c.span == self.index {
                c.span = self.restore.0;
                c.span_name = self.restore.1;
            }
        });
    }
}

/// A span that children can be recorded under with known start and end times (what is
/// measured before it can be named: a spawn, the first output of a CLI).
#[derive(Clone, Default)]
pub struct SpanRef {
    trace: Option<Arc<Trace>>,
    index: u16,
}

impl SpanRef {
    /// Records a finished child span from `start` to `end`; returns it, for grandchildren.
    pub fn record(
        &self,
        name: &'static str,
        start: Instant,
        end: Instant,
        error: bool,
        attrs: Vec<(&'static str, Attr)>,
    ) -> SpanRef {
        let Some(trace) = &self.trace else {
            return SpanRef::default();
        };
        let Some(index) = trace.open(name, self.index, start) else {
            return SpanRef::default();
        };
        trace.with_span(index, |span| {
            span.duration = Some(end.saturating_duration_since(start));
            span.error = error;
            span.attrs = attrs;
        });
        SpanRef {
            trace: Some(Arc::clone(trace)),
            index,
        }
    }
}

/// The current span, as a handle.
pub fn current_span() -> SpanRef {
    CURRENT.with(|c| {
        let c = c.borrow();
        SpanRef {
            trace: c.trace.clone(),
            index: c.span,
        }
    })
}

/// Sets a root field of the current trace (the last value wins).
pub fn annotate(field: Field, value: &str) {
    CURRENT.with(|c| {
        if let Some(trace) = &c.borrow().trace {
            if let Ok(mut state) = trace.state.lock() {
                let value = Some(cut(value, MAX_ATTR_CHARS).to_string());
                match field {
                    Field::Provider => state.provider = value,
                    Field::User => state.user_id = value,
                }
            }
        }
    });
}

/// Marks the current trace as failed (a turn that ended in an error after a 200).
pub fn mark_error() {
    CURRENT.with(|c| {
        if let Some(trace) = &c.borrow().trace {
            if let Ok(mut state) = trace.state.lock() {
                state.error = true;
            }
        }
    });
}

/// A trace of its own for work that no request carries (a turn from a channel): entered on
/// this thread until dropped, then written.
#[must_use = "the trace ends when dropped"]
pub struct Root {
    context: Context,
    _restore: Restore,
    _not_send: PhantomData<*const ()>,
}

/// Starts a trace named `name` unless the thread already works in one (or tracing is off).
pub fn root(name: &'static str) -> Option<Root> {
    if !enabled() || CURRENT.with(|c| c.borrow().trace.is_some()) {
        return None;
    }
    let trace = Arc::new(Trace::new(name, None, None));
    let request_id = CURRENT.with(|c| c.borrow().request_id.clone());
    let context = Context {
        request_id,
        trace: Some(trace),
        span: 0,
        span_name: name,
    };
    let previous = CURRENT.with(|c| c.replace(context.clone()));
    Some(Root {
        context,
        _restore: Restore(Some(previous)),
        _not_send: PhantomData,
    })
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Some(trace) = &self.context.trace {
            if let Some((end_ms, line)) = trace.finish(None) {
                super::writer::send(end_ms, line);
            }
        }
        // `_restore`, dropped after this, puts the previous context back.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers() {
        let check = |value: &str, expected: Option<(&str, u64, u8)>| {
            let got = parse_traceparent(value)
                .map(|p| (crate::crypto::hex(&p.trace_id), p.span_id, p.flags));
            let expected = expected.map(|(t, s, f)| (t.to_string(), s, f));
            assert_eq!(got, expected, "{value}");
        };
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        check(
            &format!("00-{id}-00f067aa0ba902b7-01"),
            Some((id, 0x00f0_67aa_0ba9_02b7, 1)),
        );
        check(
            &format!(" 00-{id}-00f067aa0ba902b7-00 "),
            Some((id, 0x00f0_67aa_0ba9_02b7, 0)),
        );
        // A later version may carry more fields.
        check(
            &format!("01-{id}-00f067aa0ba902b7-01-extra"),
            Some((id, 0x00f0_67aa_0ba9_02b7, 1)),
        );
        check(&format!("00-{id}-00f067aa0ba902b7-01-extra"), None);
        check(&format!("ff-{id}-00f067aa0ba902b7-01"), None);
        check(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            None,
        );
        check(&format!("00-{id}-0000000000000000-01"), None);
        check(
            &format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            None,
        );
        check(&format!("00-{id}-00f067aa0ba902b7"), None);
        check(&format!("00-{id}x-00f067aa0ba902b7-01"), None);
        check("", None);
    }

    #[test]
    fn milliseconds_are_short() {
        let check = |micros: u64, expected: &str| {
            let mut out = String::new();
            push_ms(&mut out, Duration::from_micros(micros));
            assert_eq!(out, expected);
        };
        check(0, "0");
        check(312, "0.312");
        check(12_000, "12");
        check(12_340, "12.34");
        check(1_000_001, "1000.001");
    }

    #[test]
    fn a_trace_renders_its_spans_in_order_with_parents() {
        set_enabled(true);
        let context = Context::for_request(
            None,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert!(context.request_id().starts_with("req_"));
        let trace = context.trace.clone().unwrap();
        context.enter(|| {
            let auth = span("auth");
            auth.attr("principal", "a \"quoted\" name");
            drop(auth);
            let turn = span("turn");
            let nested = span("lock_wait");
            nested.fail();
            drop(nested);
            let now = Instant::now();
            turn.handle()
                .record("first_delta", now, now, false, vec![("n", Attr::Int(1))]);
            drop(turn);
            annotate(Field::Provider, "codex");
        });
        let (_, line) = trace
            .finish(Some(("POST", Some("/v1/chat/completions"), 200)))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(value["parent_id"], "00f067aa0ba902b7");
        assert_eq!(value["method"], "POST");
        assert_eq!(value["http_status"], 200);
        assert_eq!(value["provider"], "codex");
        assert!(value.get("request_id").is_none(), "derived: {line}");
        assert!(value.get("status").is_none(), "ok is the default: {line}");
        let spans: Vec<String> = value["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}<{} {}",
                    s[0].as_str().unwrap(),
                    s[1],
                    s[4].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            spans,
            [
                "auth<0 ok",
                "turn<0 ok",
                "lock_wait<2 error",
                "first_delta<2 ok"
            ]
        );
        assert_eq!(value["spans"][0][5]["principal"], "a \"quoted\" name");
        // Finishing twice writes once.
        assert!(trace.finish(None).is_none());
        // Outside the request the thread has no trace again.
        assert!(current().trace_id().is_none());
    }

    #[test]
    fn minted_ids_carry_their_time() {
        let id = new_trace_id(1_795_525_200_123);
        assert_eq!(minted_at_ms(&id), 1_795_525_200_123);
        assert_ne!(new_trace_id(1), new_trace_id(1));
        assert_ne!(span_id_of(7, 1), span_id_of(7, 2));
        assert_eq!(span_id_of(7, 0), 7);
    }
}
