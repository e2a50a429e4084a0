//! Reading telemetry back: trace roots, one trace's timeline with its log lines, log lines, and
//! both together — newest first, filtered by text, fields and time, a page at a time.
//!
//! Files are read backwards, a chunk at a time, and only the files of the time range are
//! opened: memory stays bounded (a chunk and one line) whatever the retention holds. A request
//! also reads at most [`SCAN_BUDGET`] bytes; a page cut short by it says so (`has_more` with a
//! cursor that continues where it stopped). A cursor is a position in the files (which file,
//! which byte), so paging is stable while the writers append. Traces are placed, ordered and
//! filtered by the time they ended (`end_ms`), which is when they were written.
//! Must not write or delete anything.

use super::files::{self, LogFile, Shard};
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The most bytes one request reads from telemetry files.
pub const SCAN_BUDGET: u64 = 64 * 1024 * 1024;
/// Lines longer than this are skipped (none is written that long: messages are capped).
const MAX_LINE: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// How far a line may be out of time order in its file (lines are written as threads finish
/// them): a scan stops only after a line this much older than the range.
const SLACK_MS: i64 = 5_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// A time range, epoch ms: `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// From (inclusive).
    pub since: Option<i64>,
    /// Until (exclusive).
    pub until: Option<i64>,
}

impl Window {
    fn contains(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// A line this old means every line after it in the scan is older than the range.
    fn is_past(&self, t: i64) -> bool {
        self.since.is_some_and(|s| t < s - SLACK_MS)
    }
}

/// One trace, as a list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    /// 32 hex digits.
    pub trace_id: String,
    /// `METHOD /route/template` for a request, else the root span's name (`turn`).
    pub name: String,
    /// The route template (`None` when no route matched, or not a request).
    pub route: Option<String>,
    /// The request method.
    pub method: Option<String>,
    /// `ok` or `error`.
    pub status: String,
    /// The response status.
    pub http_status: Option<u16>,
    /// The provider of the turn it ran.
    pub provider: Option<String>,
    /// `operator` or the user id it ran for.
    pub user_id: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// Start, epoch ms.
    pub started_ms: i64,
    /// End, epoch ms (what places it in time).
    pub end_ms: i64,
    /// Duration.
    pub duration_ms: f64,
    /// Spans, the root included.
    pub span_count: usize,
}

/// One span of a trace's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    /// 16 hex digits.
    pub span_id: String,
    /// The parent span (the client's span for a root that continued a `traceparent`).
    pub parent_id: Option<String>,
    /// What it measured (`http`, `auth`, `turn`, `cli_run`, …).
    pub name: String,
    /// Start, epoch ms.
    pub started_ms: i64,
    /// Start relative to the start of the trace.
    pub offset_ms: f64,
    /// Duration.
    pub duration_ms: f64,
    /// `ok` or `error`.
    pub status: String,
    /// Bounded attributes.
    pub attributes: Map<String, Value>,
}

/// A trace's timeline: its root, its spans in order, and its log lines.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceDetail {
    /// The root row (over every part of the trace).
    pub root: TraceRow,
    /// Spans by start.
    pub spans: Vec<SpanRow>,
    /// Log lines written under the trace, oldest first.
    pub logs: Vec<LogLine>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Epoch ms of `ts`.
    pub ts_ms: i64,
    /// RFC 3339, as written.
    pub ts: String,
    /// ERROR, WARN, INFO, DEBUG or TRACE.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message.
    pub message: String,
    /// The request it belongs to.
    pub request_id: Option<String>,
    /// The trace it belongs to.
    pub trace_id: Option<String>,
    /// The span that was current.
    pub span: Option<String>,
    /// Key-values.
    pub fields: Map<String, Value>,
}

/// A page of results, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The results.
    pub items: Vec<T>,
    /// Where the next page starts, when there may be one.
    pub next_cursor: Option<String>,
    /// Whether there may be more (also when the scan budget ran out first).
    pub has_more: bool,
}

/// A trace row or a log line, for the combined search.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// A trace root.
    Trace(TraceRow),
    /// A log line.
    Log(LogLine),
}

/// Filters of the trace list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    /// Case-insensitive (ASCII) text in any value: id, name, route, user, span names, attributes.
    pub text: Option<String>,
    /// `ok` or `error`.
    pub status: Option<String>,
    /// Exact provider.
    pub provider: Option<String>,
    /// Exact user id (`operator` for the operator).
    pub user: Option<String>,
    /// Text in the route template.
    pub route: Option<String>,
    /// At least this long.
    pub min_ms: Option<f64>,
    /// When it ended.
    pub window: Window,
}

/// Filters of the log search; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Case-insensitive (ASCII) text in the message, target, ids, span or field values.
    pub text: Option<String>,
    /// This level and the more severe ones.
    pub level: Option<log::Level>,
    /// Text in the target.
    pub target: Option<String>,
    /// When it was logged.
    pub window: Window,
}

/// A trace line as the writer renders it (`trace::render`).
#[derive(Deserialize)]
struct TraceLine {
    started_at: i64,
    duration_ms: f64,
    trace_id: String,
    span_id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    http_status: Option<u16>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    spans: Vec<ChildSpan>,
}

/// A child span as written: name, parent index, offset ms, duration ms, status, attributes.
type ChildSpan = (String, u16, f64, f64, String, Map<String, Value>);

impl TraceLine {
    fn end_ms(&self) -> i64 {
        self.started_at + self.duration_ms as i64
    }

    fn row(&self) -> TraceRow {
        let name = match (&self.name, &self.method) {
            (Some(name), _) => name.clone(),
            (None, Some(method)) => {
                format!("{method} {}", self.route.as_deref().unwrap_or("unmatched"))
            }
            (None, None) => "trace".to_string(),
        };
        TraceRow {
            trace_id: self.trace_id.clone(),
            name,
            route: self.route.clone(),
            method: self.method.clone(),
            status: self.status.clone().unwrap_or_else(|| "ok".to_string()),
            http_status: self.http_status,
            provider: self.provider.clone(),
            user_id: self.user_id.clone(),
            request_id: self.request_id.clone().or_else(|| {
                self.method
                    .as_ref()
                    .and_then(|_| self.span_id.get(..12))
                    .map(|hex| format!("req_{hex}"))
            }),
            started_ms: self.started_at,
            end_ms: self.end_ms(),
            duration_ms: self.duration_ms,
            span_count: self.spans.len() + 1,
        }
    }

    /// Every value a text search looks at.
    fn texts(&self) -> Vec<String> {
        let row = self.row();
        let mut texts: Vec<String> = [
            Some(row.trace_id),
            Some(row.name),
            row.route,
            row.method,
            Some(row.status),
            row.http_status.map(|s| s.to_string()),
            row.provider,
            row.user_id,
            row.request_id,
        ]
        .into_iter()
        .flatten()
        .collect();
        collect_values(&self.attributes, &mut texts);
        for span in &self.spans {
            texts.push(span.0.clone());
            collect_values(&span.5, &mut texts);
        }
        texts
    }

    /// The root span and its children, `base_ms` being the trace's earliest start.
    fn spans(&self, base_ms: i64) -> Vec<SpanRow> {
        let root = u64::from_str_radix(&self.span_id, 16).unwrap_or(0);
        let offset = (self.started_at - base_ms) as f64;
        let mut attributes = self.attributes.clone();
        for (key, value) in [
            ("method", self.method.clone().map(Value::from)),
            ("route", self.route.clone().map(Value::from)),
            ("http_status", self.http_status.map(Value::from)),
        ] {
            if let Some(value) = value {
                attributes.insert(key.to_string(), value);
            }
        }
        let mut spans = vec![SpanRow {
            span_id: self.span_id.clone(),
            parent_id: self.parent_id.clone(),
            name: match (&self.name, &self.method) {
                (Some(name), _) => name.clone(),
                _ => "http".to_string(),
            },
            started_ms: self.started_at,
            offset_ms: offset,
            duration_ms: self.duration_ms,
            status: self.status.clone().unwrap_or_else(|| "ok".to_string()),
            attributes,
        }];
        for (i, (name, parent, start, duration, status, attrs)) in self.spans.iter().enumerate() {
            spans.push(SpanRow {
                span_id: format!("{:016x}", super::trace::span_id_of(root, i + 1)),
                parent_id: Some(format!(
                    "{:016x}",
                    super::trace::span_id_of(root, usize::from(*parent))
                )),
                name: name.clone(),
                started_ms: self.started_at + *start as i64,
                offset_ms: round3(offset + start),
                duration_ms: *duration,
                status: status.clone(),
                attributes: attrs.clone(),
            });
        }
        spans
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn collect_values(map: &Map<String, Value>, out: &mut Vec<String>) {
    for value in map.values() {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            _ => {}
        }
    }
}

/// A log line as the logger writes it.
#[derive(Deserialize)]
struct RawLog {
    ts: String,
    level: String,
    target: String,
    message: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    span: Option<String>,
    #[serde(default)]
    fields: Map<String, Value>,
}

impl RawLog {
    fn into_line(self) -> Option<LogLine> {
        Some(LogLine {
            ts_ms: crate::clock::parse_rfc3339(&self.ts)?,
            ts: self.ts,
            level: self.level,
            target: self.target,
            message: self.message,
            request_id: self.request_id,
            trace_id: self.trace_id,
            span: self.span,
            fields: self.fields,
        })
    }
}

impl LogLine {
    fn texts(&self) -> Vec<String> {
        let mut texts: Vec<String> = [
            Some(self.message.clone()),
            Some(self.target.clone()),
            Some(self.level.clone()),
            self.request_id.clone(),
            self.trace_id.clone(),
            self.span.clone(),
        ]
        .into_iter()
        .flatten()
        .collect();
        collect_values(&self.fields, &mut texts);
        texts
    }
}

/// The time a trace line is placed at (its end), read from its first two members without
/// parsing the rest.
fn trace_line_time(line: &[u8]) -> Option<i64> {
    let rest = line.strip_prefix(b"{\"started_at\":")?;
    let comma = rest.iter().position(|b| *b == b',')?;
    let started: i64 = std::str::from_utf8(&rest[..comma]).ok()?.parse().ok()?;
    let rest = rest[comma..].strip_prefix(b",\"duration_ms\":")?;
    let end = rest.iter().position(|b| *b == b',' || *b == b'}')?;
    let duration: f64 = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some(started + duration as i64)
}

/// The time of a log line, read from its first member.
fn log_line_time(line: &[u8]) -> Option<i64> {
    let rest = line.strip_prefix(b"{\"ts\":\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    crate::clock::parse_rfc3339(std::str::from_utf8(&rest[..end]).ok()?)
}

/// A lower-cased search text, and whether raw lines may be pre-filtered with it (a text with
/// characters JSON escapes could not be found in the raw line as typed).
struct Needle {
    lower: String,
    raw_ok: bool,
}

impl Needle {
    fn new(text: &str) -> Needle {
        Needle {
            lower: text.to_ascii_lowercase(),
            raw_ok: !text
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control()),
        }
    }

    fn maybe_in(&self, line: &[u8]) -> bool {
        !self.raw_ok || contains_ignore_case(line, self.lower.as_bytes())
    }

    fn in_any(&self, texts: &[String]) -> bool {
        texts
            .iter()
            .any(|t| contains_ignore_case(t.as_bytes(), self.lower.as_bytes()))
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A position in a sequence of files: which file (its ordinal) and the byte offset the next
/// backward read ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    ordinal: i64,
    offset: u64,
}

impl Pos {
    fn encode(&self) -> String {
        format!("{}.{}", self.ordinal, self.offset)
    }

    fn decode(text: &str) -> Option<Pos> {
        let (ordinal, offset) = text.split_once('.')?;
        Some(Pos {
            ordinal: ordinal.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }
}

fn bad_cursor() -> Error {
    Error::bad_param("cursor", "invalid cursor; pass meta.page.next_cursor back")
}

/// Bytes a request may still read.
struct Budget(u64);

/// A file read backwards, line by line, from `end`.
struct ReverseLines {
    file: File,
    /// `buf` holds the bytes `[buf_start, buf_start + buf.len())`; everything after is consumed.
    buf: Vec<u8>,
    buf_start: u64,
    primed: bool,
}

impl ReverseLines {
    fn open(path: &Path, end: Option<u64>) -> Option<ReverseLines> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        Some(ReverseLines {
            file,
            buf: Vec::new(),
            buf_start: end.map_or(len, |e| e.min(len)),
            primed: false,
        })
    }

    /// Where the unconsumed part ends: reading again from here yields the same next line.
    fn end(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    /// Prepends up to one chunk read before `buf_start`; false at the start of the file or when
    /// the budget is spent.
    fn read_more(&mut self, budget: &mut Budget) -> Option<bool> {
        if self.buf_start == 0 {
            return Some(false);
        }
        if budget.0 == 0 {
            return None;
        }
        let take = (CHUNK as u64).min(self.buf_start).min(budget.0.max(1));
        let from = self.buf_start - take;
        let mut chunk = vec![0u8; take as usize];
        self.file.seek(SeekFrom::Start(from)).ok()?;
        self.file.read_exact(&mut chunk).ok()?;
        budget.0 = budget.0.saturating_sub(take);
        chunk.extend_from_slice(&self.buf);
        self.buf = chunk;
        self.buf_start = from;
        Some(true)
    }

    /// The previous line and the position that reads it again; `Ok(None)` at the start of the
    /// file, `Err(())` when the budget ran out.
    #[allow(clippy::result_unit_err)]
    fn prev(&mut self, budget: &mut Budget) -> std::result::Result<Option<(u64, Vec<u8>)>, ()> {
        if !self.primed {
            // A last line without its newline is still being written: leave it for later.
            loop {
                if let Some(at) = self.buf.iter().rposition(|b| *b == b'\n') {
                    self.buf.truncate(at + 1);
                    break;
                }
                match self.read_more(budget) {
                    Some(true) => {}
                    Some(false) => {
                        self.buf.clear();
                        break;
                    }
                    None => return Err(()),
                }
            }
            self.primed = true;
        }
        loop {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let end = self.end();
            // The line ends at the last byte (a newline); find the newline before it.
            let body = &self.buf[..self.buf.len() - 1];
            if let Some(at) = body.iter().rposition(|b| *b == b'\n') {
                let line = body[at + 1..].to_vec();
                self.buf.truncate(at + 1);
                return Ok(Some((end, line)));
            }
            if self.buf_start == 0 {
                let line = body.to_vec();
                self.buf.clear();
                return Ok(Some((end, line)));
            }
            if self.buf.len() > MAX_LINE {
                // Too long to hold: skip back to the newline before it.
                self.skip_long_line(budget)?;
                continue;
            }
            match self.read_more(budget) {
                Some(_) => {}
                None => return Err(()),
            }
        }
    }

    fn skip_long_line(&mut self, budget: &mut Budget) -> std::result::Result<(), ()> {
        self.buf.clear();
        loop {
            if self.buf_start == 0 {
                return Ok(());
            }
            if self.read_more(budget).is_none() {
                return Err(());
            }
            if let Some(at) = self.buf.iter().rposition(|b| *b == b'\n') {
                self.buf.truncate(at + 1);
                return Ok(());
            }
            self.buf.clear();
        }
    }
}

/// What a backward scan over several files gives next.
enum Next {
    Line(Pos, Vec<u8>),
    End,
    OutOfBudget,
}

/// Lines of several files, newest file first, each read backwards.
struct Backwards {
    /// (ordinal, path), newest first.
    files: Vec<(i64, PathBuf)>,
    next_file: usize,
    current: Option<(i64, ReverseLines)>,
    /// Where to start in the first file, from a cursor.
    start: Option<Pos>,
    done: bool,
}

impl Backwards {
    /// `files` oldest first (as listed); a cursor's position skips the newer files.
    fn new(mut files: Vec<(i64, PathBuf)>, start: Option<Pos>) -> Backwards {
        files.reverse();
        if let Some(start) = start {
            files.retain(|(ordinal, _)| *ordinal <= start.ordinal);
        }
        Backwards {
            files,
            next_file: 0,
            current: None,
            start,
            done: false,
        }
    }

    fn next(&mut self, budget: &mut Budget) -> Next {
        loop {
            if self.done {
                return Next::End;
            }
            if self.current.is_none() {
                let Some((ordinal, path)) = self.files.get(self.next_file).cloned() else {
                    self.done = true;
                    return Next::End;
                };
                self.next_file += 1;
                let end = self
                    .start
                    .filter(|s| s.ordinal == ordinal)
                    .map(|s| s.offset);
                match ReverseLines::open(&path, end) {
                    Some(reader) => self.current = Some((ordinal, reader)),
                    // Pruned or unreadable since it was listed: the next one.
                    None => continue,
                }
            }
            let Some((ordinal, reader)) = self.current.as_mut() else {
                continue;
            };
            match reader.prev(budget) {
                Ok(Some((end, line))) => {
                    return Next::Line(
                        Pos {
                            ordinal: *ordinal,
                            offset: end,
                        },
                        line,
                    )
                }
                Ok(None) => self.current = None,
                Err(()) => return Next::OutOfBudget,
            }
        }
    }

    /// Where the next line comes from; `None` when everything was read.
    fn position(&self) -> Option<Pos> {
        if self.done {
            return None;
        }
        match &self.current {
            Some((ordinal, reader)) => Some(Pos {
                ordinal: *ordinal,
                offset: reader.end(),
            }),
            None => self.files.get(self.next_file).map(|(ordinal, _)| Pos {
                ordinal: *ordinal,
                offset: u64::MAX,
            }),
        }
    }

    fn stop(&mut self) {
        self.done = true;
    }
}

/// The shards that can hold traces that ended in `window`, oldest first.
fn shard_files(root: &Path, window: Window) -> Vec<(i64, PathBuf)> {
    files::shards(root)
        .into_iter()
        .filter(|Shard { hour_ms, .. }| {
            window.until.is_none_or(|u| *hour_ms < u)
                && window
                    .since
                    .is_none_or(|s| *hour_ms + HOUR_MS > s - SLACK_MS)
        })
        .map(|shard| (shard.hour_ms, shard.path))
        .collect()
}

/// The log files that can hold lines of `window`, oldest first.
fn log_files(root: &Path, window: Window) -> Vec<(i64, PathBuf)> {
    files::log_files(root)
        .into_iter()
        .filter(|file: &LogFile| {
            window.until.is_none_or(|u| file.day_ms < u)
                && window
                    .since
                    .is_none_or(|s| file.day_ms + DAY_MS > s - SLACK_MS)
        })
        .map(|file| (file.ordinal(), file.path))
        .collect()
}

/// A backward scan that yields only what a filter accepts, with one item of look-ahead.
struct Matches<T> {
    lines: Backwards,
    accept: Filter<T>,
    peeked: Option<(Pos, i64, T)>,
    out_of_budget: bool,
}

/// Reads a raw line and says whether it matches.
type Filter<T> = Box<dyn Fn(&[u8]) -> Accept<T>>;

/// What a filter says about a line.
enum Accept<T> {
    /// It matches: its time and item.
    Yes(i64, T),
    /// It does not.
    No,
    /// It is older than the range: nothing after it can match.
    Past,
}

impl<T> Matches<T> {
    fn new(lines: Backwards, accept: Filter<T>) -> Matches<T> {
        Matches {
            lines,
            accept,
            peeked: None,
            out_of_budget: false,
        }
    }

    fn peek(&mut self, budget: &mut Budget) -> Option<&(Pos, i64, T)> {
        while self.peeked.is_none() && !self.out_of_budget {
            match self.lines.next(budget) {
                Next::Line(pos, line) => match (self.accept)(&line) {
                    Accept::Yes(t, item) => self.peeked = Some((pos, t, item)),
                    Accept::No => {}
                    Accept::Past => self.lines.stop(),
                },
                Next::End => break,
                Next::OutOfBudget => self.out_of_budget = true,
            }
        }
        self.peeked.as_ref()
    }

    fn take(&mut self) -> Option<T> {
        self.peeked.take().map(|(_, _, item)| item)
    }

    /// Where reading resumes: the peeked item, else the scan's position; `None` when done.
    fn position(&self) -> Option<Pos> {
        match &self.peeked {
            Some((pos, _, _)) => Some(*pos),
            None => self.lines.position(),
        }
    }
}

fn trace_matcher(root: &Path, filter: &TraceFilter, start: Option<Pos>) -> Matches<TraceRow> {
    let lines = Backwards::new(shard_files(root, filter.window), start);
    let filter = filter.clone();
    let needle = filter.text.as_deref().map(Needle::new);
    Matches::new(
        lines,
        Box::new(move |line| {
            let Some(t) = trace_line_time(line) else {
                return Accept::No;
            };
            if filter.window.is_past(t) {
                return Accept::Past;
            }
            if !filter.window.contains(t) || !needle.as_ref().is_none_or(|n| n.maybe_in(line)) {
                return Accept::No;
            }
            let Ok(parsed) = serde_json::from_slice::<TraceLine>(line) else {
                return Accept::No;
            };
            if let Some(needle) = &needle {
                if !needle.in_any(&parsed.texts()) {
                    return Accept::No;
                }
            }
            let row = parsed.row();
            let keep = filter.status.as_ref().is_none_or(|s| *s == row.status)
                && filter
                    .provider
                    .as_ref()
                    .is_none_or(|p| row.provider.as_ref() == Some(p))
                && filter
                    .user
                    .as_ref()
                    .is_none_or(|u| row.user_id.as_ref() == Some(u))
                && filter.route.as_ref().is_none_or(|r| {
                    row.route
                        .as_deref()
                        .is_some_and(|route| contains_ignore_case(route.as_bytes(), r.as_bytes()))
                })
                && filter.min_ms.is_none_or(|m| row.duration_ms >= m);
            if keep {
                Accept::Yes(t, row)
            } else {
                Accept::No
            }
        }),
    )
}

fn level_rank(level: &str) -> u8 {
    match level.to_ascii_uppercase().as_str() {
        "ERROR" => 1,
        "WARN" => 2,
        "INFO" => 3,
        "DEBUG" => 4,
        _ => 5,
    }
}

fn log_matcher(root: &Path, filter: &LogFilter, start: Option<Pos>) -> Matches<LogLine> {
    let lines = Backwards::new(log_files(root, filter.window), start);
    let filter = filter.clone();
    let needle = filter.text.as_deref().map(Needle::new);
    Matches::new(
        lines,
        Box::new(move |line| {
            let Some(t) = log_line_time(line) else {
                return Accept::No;
            };
            if filter.window.is_past(t) {
                return Accept::Past;
            }
            if !filter.window.contains(t) || !needle.as_ref().is_none_or(|n| n.maybe_in(line)) {
                return Accept::No;
            }
            let Some(parsed) = serde_json::from_slice::<RawLog>(line)
                .ok()
                .and_then(RawLog::into_line)
            else {
                return Accept::No;
            };
            let keep = needle.as_ref().is_none_or(|n| n.in_any(&parsed.texts()))
                && filter
                    .level
                    .is_none_or(|l| level_rank(&parsed.level) <= level_rank(l.as_str()))
                && filter.target.as_ref().is_none_or(|target| {
                    contains_ignore_case(parsed.target.as_bytes(), target.as_bytes())
                });
            if keep {
                Accept::Yes(t, parsed)
            } else {
                Accept::No
            }
        }),
    )
}

/// Takes up to `limit` items from `matches`, and says where the next page starts.
fn page<T>(mut matches: Matches<T>, limit: usize) -> Page<T> {
    let mut budget = Budget(SCAN_BUDGET);
    let mut items = Vec::new();
    while items.len() < limit && matches.peek(&mut budget).is_some() {
        items.extend(matches.take());
    }
    // One more look tells whether a next page exists (within the budget).
    let more = matches.peek(&mut budget).is_some() || matches.out_of_budget;
    let next_cursor = more
        .then(|| matches.position().map(|p| p.encode()))
        .flatten();
    Page {
        items,
        has_more: next_cursor.is_some(),
        next_cursor,
    }
}

/// Trace roots under `trace_root` matching `filter`, newest first.
pub fn traces(
    trace_root: &Path,
    filter: &TraceFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<TraceRow>> {
    let start = cursor
        .map(|c| Pos::decode(c).ok_or_else(bad_cursor))
        .transpose()?;
    Ok(page(trace_matcher(trace_root, filter, start), limit))
}

/// Log lines under `log_root` matching `filter`, newest first.
pub fn logs(
    log_root: &Path,
    filter: &LogFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<LogLine>> {
    let start = cursor
        .map(|c| Pos::decode(c).ok_or_else(bad_cursor))
        .transpose()?;
    Ok(page(log_matcher(log_root, filter, start), limit))
}

/// Trace roots and log lines together, newest first (a trace at its end time).
pub fn search(
    trace_root: &Path,
    log_root: &Path,
    text: Option<&str>,
    window: Window,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<Found>> {
    // `<trace position>~<log position>`, `end` for a side that is done.
    let (trace_start, log_start, trace_done, log_done) = match cursor {
        None => (None, None, false, false),
        Some(cursor) => {
            let (t, l) = cursor.split_once('~').ok_or_else(bad_cursor)?;
            let side = |s: &str| -> Result<Option<Pos>> {
                match s {
                    "end" => Ok(None),
                    s => Pos::decode(s).map(Some).ok_or_else(bad_cursor),
                }
            };
            let (t, l) = (side(t)?, side(l)?);
            (t, l, t.is_none(), l.is_none())
        }
    };
    let trace_filter = TraceFilter {
        text: text.map(str::to_string),
        window,
        ..TraceFilter::default()
    };
    let log_filter = LogFilter {
        text: text.map(str::to_string),
        window,
        ..LogFilter::default()
    };
    let mut traces = trace_matcher(trace_root, &trace_filter, trace_start);
    let mut logs = log_matcher(log_root, &log_filter, log_start);
    if trace_done {
        traces.lines.stop();
    }
    if log_done {
        logs.lines.stop();
    }
    let mut budget = Budget(SCAN_BUDGET);
    let mut items = Vec::new();
    loop {
        let trace_t = traces.peek(&mut budget).map(|(_, t, _)| *t);
        let log_t = logs.peek(&mut budget).map(|(_, t, _)| *t);
        let take_trace = match (trace_t, log_t) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a >= b,
        };
        if items.len() == limit {
            break;
        }
        if take_trace {
            items.extend(traces.take().map(Found::Trace));
        } else {
            items.extend(logs.take().map(Found::Log));
        }
    }
    let trace_pos = traces.position();
    let log_pos = logs.position();
    let more = traces.peeked.is_some()
        || logs.peeked.is_some()
        || traces.out_of_budget
        || logs.out_of_budget;
    let next_cursor = (more && (trace_pos.is_some() || log_pos.is_some())).then(|| {
        let side = |p: Option<Pos>| p.map(|p| p.encode()).unwrap_or_else(|| "end".into());
        format!("{}~{}", side(trace_pos), side(log_pos))
    });
    Ok(Page {
        items,
        has_more: next_cursor.is_some(),
        next_cursor,
    })
}

/// Where to look for the parts of a trace: the day after its id's time for ids minted here,
/// else everything (newest first, within the scan budget).
fn lines_of_trace(trace_root: &Path, id: &str, now_ms: i64) -> Vec<TraceLine> {
    let mut budget = Budget(4 * SCAN_BUDGET);
    let needle = format!("\"trace_id\":\"{id}\"");
    let collect = |files: Vec<(i64, PathBuf)>, budget: &mut Budget| -> Vec<TraceLine> {
        let mut found: Vec<TraceLine> = Vec::new();
        let mut lines = Backwards::new(files, None);
        let mut first_hour: Option<i64> = None;
        while let Next::Line(pos, line) = lines.next(budget) {
            // A trace continued by its client sits in shards close to its first part.
            if first_hour.is_some_and(|h| pos.ordinal < h - DAY_MS) {
                break;
            }
            if contains(&line, needle.as_bytes()) {
                if let Ok(parsed) = serde_json::from_slice::<TraceLine>(&line) {
                    first_hour.get_or_insert(pos.ordinal);
                    found.push(parsed);
                    if found.len() >= 64 {
                        break;
                    }
                }
            }
        }
        found
    };
    let all = files::shards(trace_root);
    let bytes = crate::crypto::unhex(id).and_then(|b| <[u8; 16]>::try_from(b).ok());
    if let Some(minted) = bytes.map(|b| super::trace::minted_at_ms(&b)) {
        if minted > now_ms - 400 * DAY_MS && minted < now_ms + DAY_MS {
            let from = files::hour_of(minted);
            let near: Vec<(i64, PathBuf)> = all
                .iter()
                .filter(|s| s.hour_ms >= from && s.hour_ms <= from + DAY_MS)
                .map(|s| (s.hour_ms, s.path.clone()))
                .collect();
            let found = collect(near, &mut budget);
            if !found.is_empty() {
                return found;
            }
        }
    }
    collect(
        all.into_iter().map(|s| (s.hour_ms, s.path)).collect(),
        &mut budget,
    )
}

/// The log lines of trace `id` logged between `from_ms` and `to_ms`, oldest first.
fn logs_of_trace(log_root: &Path, id: &str, from_ms: i64, to_ms: i64) -> Vec<LogLine> {
    let window = Window {
        since: Some(from_ms - 1000),
        until: Some(to_ms + 1000),
    };
    let mut lines = Backwards::new(log_files(log_root, window), None);
    let mut budget = Budget(SCAN_BUDGET);
    let needle = format!("\"trace_id\":\"{id}\"");
    let mut found = Vec::new();
    while let Next::Line(_, line) = lines.next(&mut budget) {
        let Some(t) = log_line_time(&line) else {
            continue;
        };
        if window.is_past(t) {
            break;
        }
        if !contains(&line, needle.as_bytes()) {
            continue;
        }
        if let Some(parsed) = serde_json::from_slice::<RawLog>(&line)
            .ok()
            .and_then(RawLog::into_line)
        {
            found.push(parsed);
            if found.len() >= 500 {
                break;
            }
        }
    }
    found.reverse();
    found.sort_by_key(|l| l.ts_ms);
    found
}

/// One trace's timeline, or `None` for an id no shard holds (or not an id at all).
pub fn trace(
    trace_root: &Path,
    log_root: &Path,
    id: &str,
    now_ms: i64,
) -> Result<Option<TraceDetail>> {
    let well_formed = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Ok(None);
    }
    let mut parts = lines_of_trace(trace_root, id, now_ms);
    if parts.is_empty() {
        return Ok(None);
    }
    parts.sort_by_key(|p| p.started_at);
    let base = parts[0].started_at;
    let end = parts.iter().map(TraceLine::end_ms).max().unwrap_or(base);
    let mut spans: Vec<SpanRow> = parts.iter().flat_map(|p| p.spans(base)).collect();
    spans.sort_by(|a, b| a.offset_ms.total_cmp(&b.offset_ms));
    let mut root = parts[0].row();
    root.span_count = spans.len();
    if parts.len() > 1 {
        root.end_ms = end;
        root.duration_ms = parts
            .iter()
            .map(|p| (p.started_at - base) as f64 + p.duration_ms)
            .fold(0.0, f64::max);
        if parts.iter().any(|p| p.status.as_deref() == Some("error")) {
            root.status = "error".to_string();
        }
    }
    let logs = logs_of_trace(log_root, id, base, end);
    Ok(Some(TraceDetail { root, spans, logs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-query-"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reverse_lines_cross_chunks_and_skip_a_partial_last_line() {
        let dir = temp();
        let path = dir.join("f");
        let mut file = File::create(&path).unwrap();
        let long = "x".repeat(CHUNK + 10);
        for line in ["a", "", &long, "bb", "ccc"] {
            writeln!(file, "{line}").unwrap();
        }
        write!(file, "partial").unwrap();
        drop(file);
        let mut reader = ReverseLines::open(&path, None).unwrap();
        let mut budget = Budget(u64::MAX);
        let mut got = Vec::new();
        while let Some((end, line)) = reader.prev(&mut budget).unwrap() {
            got.push((end, String::from_utf8(line).unwrap()));
        }
        let texts: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(texts, ["ccc", "bb", long.as_str(), "", "a"]);
        // A position reads the same line again.
        let (end, _) = &got[1];
        let mut again = ReverseLines::open(&path, Some(*end)).unwrap();
        assert_eq!(again.prev(&mut budget).unwrap().unwrap().1, b"bb");
        // A small budget stops the scan instead of reading on.
        let mut small = Budget(20);
        let mut reader = ReverseLines::open(&path, None).unwrap();
        assert_eq!(reader.prev(&mut small).unwrap().unwrap().1, b"ccc");
        let mut outcome = reader.prev(&mut small);
        while let Ok(Some(_)) = outcome {
            outcome = reader.prev(&mut small);
        }
        assert!(
            outcome.is_err(),
            "the budget ran out before the file's start"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn trace_line(started: i64, id: &str, route: &str, status: u16, user: &str) -> String {
        format!(
            r#"{{"started_at":{started},"duration_ms":2.5,"trace_id":"{id}","span_id":"00f067aa0ba902b7","method":"GET","route":"{route}","http_status":{status},"user_id":"{user}","spans":[["auth",0,0.1,0.2,"ok",{{}}]]}}"#
        )
    }

    #[test]
    fn trace_pages_are_newest_first_filtered_and_stable() {
        let root = temp();
        // 2026-11-24T13:05:00Z and the hour before.
        let at = 1_795_525_200_000 + 300_000;
        let mut expected = Vec::new();
        for (i, t) in [at - 3_600_000, at - 3_599_000, at, at + 1000, at + 2000]
            .into_iter()
            .enumerate()
        {
            let path = files::shard_path(&root, t);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            let id = format!("{:032x}", i + 1);
            let user = if i % 2 == 0 { "operator" } else { "uag_usr_x" };
            writeln!(
                file,
                "{}",
                trace_line(t, &id, "/management/v1/overview", 200, user)
            )
            .unwrap();
            expected.push(id);
        }
        expected.reverse();
        let all = |filter: &TraceFilter| {
            let mut ids = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = traces(&root, filter, 2, cursor.as_deref()).unwrap();
                assert!(page.items.len() <= 2);
                ids.extend(page.items.into_iter().map(|r| r.trace_id));
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            ids
        };
        assert_eq!(all(&TraceFilter::default()), expected);
        let users = TraceFilter {
            user: Some("uag_usr_x".into()),
            ..TraceFilter::default()
        };
        assert_eq!(all(&users), [expected[1].clone(), expected[3].clone()]);
        let text = TraceFilter {
            text: Some(expected[2][20..].to_uppercase()),
            ..TraceFilter::default()
        };
        assert_eq!(all(&text), [expected[2].clone()]);
        // Keys are not values: "route" alone matches nothing.
        let keys = TraceFilter {
            text: Some("http_status".into()),
            ..TraceFilter::default()
        };
        assert!(all(&keys).is_empty());
        let window = TraceFilter {
            window: Window {
                since: Some(at),
                until: Some(at + 1500),
            },
            ..TraceFilter::default()
        };
        assert_eq!(all(&window), [expected[1].clone(), expected[2].clone()]);
        let row = &traces(&root, &TraceFilter::default(), 1, None)
            .unwrap()
            .items[0];
        assert_eq!(row.name, "GET /management/v1/overview");
        assert_eq!(row.request_id.as_deref(), Some("req_00f067aa0ba9"));
        assert_eq!(row.span_count, 2);
        assert!(traces(&root, &TraceFilter::default(), 1, Some("nope")).is_err());
        // The timeline of one trace, found by its id.
        let detail = trace(&root, &root, &expected[4], at).unwrap().unwrap();
        assert_eq!(detail.spans.len(), 2);
        assert_eq!(
            detail.spans[1].parent_id.as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(trace(&root, &root, &format!("{:032x}", 99), at)
            .unwrap()
            .is_none());
        assert!(trace(&root, &root, "not-an-id", at).unwrap().is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn logs_and_search_merge_newest_first() {
        let root = temp();
        let traces_root = root.join("traces");
        let logs_root = root.join("logs");
        std::fs::create_dir_all(&logs_root).unwrap();
        let at = 1_795_525_200_000 + 300_000;
        let log = |t: i64, level: &str, message: &str| {
            format!(
                r#"{{"ts":"{}","level":"{level}","target":"codara::http","message":"{message}","request_id":null,"trace_id":null,"span":null,"fields":{{"n":1}}}}"#,
                crate::clock::rfc3339(t)
            )
        };
        let mut file = File::create(logs_root.join("codara-2026-11-24.jsonl")).unwrap();
        writeln!(file, "{}", log(at, "INFO", "first alpha")).unwrap();
        writeln!(file, "{}", log(at + 2000, "WARN", "second alpha")).unwrap();
        writeln!(file, "{}", log(at + 4000, "DEBUG", "third")).unwrap();
        drop(file);
        let shard = files::shard_path(&traces_root, at);
        std::fs::create_dir_all(shard.parent().unwrap()).unwrap();
        std::fs::write(
            &shard,
            format!(
                "{}\n",
                trace_line(at + 1000, &format!("{:032x}", 7), "/alpha", 200, "operator")
            ),
        )
        .unwrap();
        let messages = |filter: &LogFilter| -> Vec<String> {
            logs(&logs_root, filter, 10, None)
                .unwrap()
                .items
                .into_iter()
                .map(|l| l.message)
                .collect()
        };
        assert_eq!(
            messages(&LogFilter::default()),
            ["third", "second alpha", "first alpha"]
        );
        let warn = LogFilter {
            level: Some(log::Level::Warn),
            ..LogFilter::default()
        };
        assert_eq!(messages(&warn), ["second alpha"]);
        let alpha = LogFilter {
            text: Some("ALPHA".into()),
            ..LogFilter::default()
        };
        assert_eq!(messages(&alpha), ["second alpha", "first alpha"]);
        let kinds = |limit: usize| {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = search(
                    &traces_root,
                    &logs_root,
                    Some("alpha"),
                    Window::default(),
                    limit,
                    cursor.as_deref(),
                )
                .unwrap();
                for item in page.items {
                    seen.push(match item {
                        Found::Trace(row) => format!("trace {}", row.route.unwrap()),
                        Found::Log(line) => format!("log {}", line.message),
                    });
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            seen
        };
        let expected = ["log second alpha", "trace /alpha", "log first alpha"];
        assert_eq!(kinds(10), expected);
        assert_eq!(kinds(1), expected);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
