//! Process-wide counters, gauges and histograms, and their Prometheus text rendering (format
//! 0.0.4).
//!
//! The hot path (one update per HTTP request) is lock-free: a fixed table of atomics per route
//! template, sized once from the route table. Rarer events (turns, refusals, CLI stalls) go
//! through small maps under a mutex. Labels are route templates, pool and provider names and
//! other closed sets: never a raw path, a user id or anything a client can vary at will.
//! Must not read the database or the app: gauges of the app's state (accounts, warm processes)
//! are rendered by `api::metrics` through [`Exposition`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds of the duration histograms, in seconds (plus `+Inf`): sub-millisecond
/// management reads up to multi-minute agent turns.
pub const BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0, 600.0,
];
const N_BUCKETS: usize = BUCKETS.len() + 1;

/// The statuses counted one by one; any other is counted as `other`.
const STATUSES: [u16; 27] = [
    200, 201, 204, 206, 301, 302, 304, 307, 400, 401, 403, 404, 405, 408, 409, 411, 413, 415, 422,
    429, 431, 500, 501, 502, 503, 504, 505,
];
const N_STATUSES: usize = STATUSES.len() + 1;

/// A lock-free histogram of durations.
struct Histogram {
    counts: [AtomicU64; N_BUCKETS],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; N_BUCKETS],
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        self.counts[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ([u64; N_BUCKETS], f64) {
        let mut counts = [0; N_BUCKETS];
        for (slot, count) in counts.iter_mut().zip(&self.counts) {
            *slot = count.load(Ordering::Relaxed);
        }
        (counts, self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

fn bucket_of(elapsed: Duration) -> usize {
    let seconds = elapsed.as_secs_f64();
    BUCKETS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(BUCKETS.len())
}

/// Requests and their durations for one route template.
struct RouteStats {
    method: &'static str,
    route: &'static str,
    statuses: [AtomicU64; N_STATUSES],
    duration: Histogram,
}

/// Route templates in the router's order; the last entry counts requests no route matched.
static ROUTES: OnceLock<Vec<RouteStats>> = OnceLock::new();

/// Sizes the request table from the route table, `(method, template)` per route (once).
pub fn init_routes(routes: impl Iterator<Item = (&'static str, &'static str)>) {
    let _ = ROUTES.get_or_init(|| {
        routes
            .chain(std::iter::once(("other", "unmatched")))
            .map(|(method, route)| RouteStats {
                method,
                route,
                statuses: [const { AtomicU64::new(0) }; N_STATUSES],
                duration: Histogram::new(),
            })
            .collect()
    });
}

/// Counts one answered request: its route (index in the route table, `None` when no route
/// matched), its status and how long it took.
pub fn request(route: Option<usize>, status: u16, elapsed: Duration) {
    let Some(routes) = ROUTES.get() else { return };
    let unmatched = routes.len() - 1;
    let stats = &routes[route.filter(|i| *i < unmatched).unwrap_or(unmatched)];
    let slot = STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len());
    stats.statuses[slot].fetch_add(1, Ordering::Relaxed);
    stats.duration.observe(elapsed);
}

static LOG_BYTES: AtomicU64 = AtomicU64::new(0);
static LOG_LINES: AtomicU64 = AtomicU64::new(0);
static TRACE_BYTES: AtomicU64 = AtomicU64::new(0);
static TRACES_WRITTEN: AtomicU64 = AtomicU64::new(0);
static TRACES_DROPPED: AtomicU64 = AtomicU64::new(0);
static TRACES_QUEUED: AtomicI64 = AtomicI64::new(0);
static ACTIVE_TURNS: AtomicI64 = AtomicI64::new(0);

/// A log line of `bytes` reached the log file.
pub(crate) fn log_written(bytes: usize) {
    LOG_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    LOG_LINES.fetch_add(1, Ordering::Relaxed);
}

/// `events` trace lines of `bytes` in all reached a shard.
pub(crate) fn traces_written(events: usize, bytes: usize) {
    TRACES_WRITTEN.fetch_add(events as u64, Ordering::Relaxed);
    TRACE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// `events` trace lines were lost: the writer's queue was full or the shard unwritable.
pub(crate) fn traces_dropped(events: usize) {
    TRACES_DROPPED.fetch_add(events as u64, Ordering::Relaxed);
}

/// Trace lines waiting in the writer's queue changed by `delta`.
pub(crate) fn traces_queued(delta: i64) {
    TRACES_QUEUED.fetch_add(delta, Ordering::Relaxed);
}

/// Bytes written to log files and trace shards so far (for benchmarks and tests).
pub fn bytes_written() -> (u64, u64) {
    (
        LOG_BYTES.load(Ordering::Relaxed),
        TRACE_BYTES.load(Ordering::Relaxed),
    )
}

/// Trace lines waiting for the writer now.
pub fn trace_queue_depth() -> i64 {
    TRACES_QUEUED.load(Ordering::Relaxed)
}

/// Trace lines dropped so far.
pub fn traces_dropped_total() -> u64 {
    TRACES_DROPPED.load(Ordering::Relaxed)
}

/// A running turn; the active-turns gauge counts it until dropped.
pub struct ActiveTurn(());

/// Counts a turn as running until the returned guard is dropped.
pub fn turn_started() -> ActiveTurn {
    ACTIVE_TURNS.fetch_add(1, Ordering::Relaxed);
    ActiveTurn(())
}

impl Drop for ActiveTurn {
    fn drop(&mut self) {
        ACTIVE_TURNS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Labelled counters of rare events: (metric, labels) → count.
type Counters = BTreeMap<(&'static str, Vec<(&'static str, &'static str)>), u64>;

static COUNTERS: Mutex<Counters> = Mutex::new(BTreeMap::new());

/// Plain histogram data under a lock (for rare observations).
#[derive(Clone)]
struct Plain {
    counts: [u64; N_BUCKETS],
    sum: f64,
}

static TURN_DURATIONS: Mutex<BTreeMap<&'static str, Plain>> = Mutex::new(BTreeMap::new());

fn count(name: &'static str, labels: Vec<(&'static str, &'static str)>) {
    if let Ok(mut counters) = COUNTERS.lock() {
        *counters.entry((name, labels)).or_insert(0) += 1;
    }
}

/// A request refused with 503 because `pool` (intake, api, turns) was full.
pub fn rejected(pool: &'static str) {
    count("codara_pool_rejected_total", vec![("pool", pool)]);
}

/// A turn of `provider` ended with `outcome` (ok, error, stalled, timeout, refused) after
/// `elapsed`.
pub fn turn_finished(provider: &'static str, outcome: &'static str, elapsed: Duration) {
    count(
        "codara_turns_total",
        vec![("provider", provider), ("outcome", outcome)],
    );
    if let Ok(mut durations) = TURN_DURATIONS.lock() {
        let plain = durations.entry(provider).or_insert(Plain {
            counts: [0; N_BUCKETS],
            sum: 0.0,
        });
        plain.counts[bucket_of(elapsed)] += 1;
        plain.sum += elapsed.as_secs_f64();
    }
}

/// A CLI of `provider` went silent past its stall timeout.
pub fn cli_stalled(provider: &'static str) {
    count("codara_cli_stalls_total", vec![("provider", provider)]);
}

/// A CLI of `provider` overran its turn timeout.
pub fn cli_timed_out(provider: &'static str) {
    count("codara_cli_timeouts_total", vec![("provider", provider)]);
}

/// A CLI of `provider` had to be killed (SIGKILL) because it did not stop when asked.
pub fn cli_killed(provider: &'static str) {
    count("codara_cli_kills_total", vec![("provider", provider)]);
}

/// A worker pool's load, read at scrape time.
#[derive(Clone)]
pub struct PoolGauge {
    /// Items accepted and not finished (running plus queued).
    pub in_flight: Arc<AtomicUsize>,
    /// Worker threads.
    pub workers: usize,
    /// Workers plus queue slots.
    pub capacity: usize,
}

static POOLS: Mutex<Vec<(&'static str, PoolGauge)>> = Mutex::new(Vec::new());

/// Registers a pool for the queue-depth gauges (the latest registration of a name wins).
pub fn register_pool(name: &'static str, gauge: PoolGauge) {
    if let Ok(mut pools) = POOLS.lock() {
        pools.retain(|(n, _)| *n != name);
        pools.push((name, gauge));
    }
}

/// A Prometheus text exposition being written: each family's `# HELP` and `# TYPE` once,
/// then its samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family: `kind` is counter, gauge or histogram.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.text
            .push_str(&format!("# HELP {name} {}\n", escape_help(help)));
        self.text.push_str(&format!("# TYPE {name} {kind}\n"));
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        push_labels(&mut self.text, labels, None);
        self.text.push(' ');
        self.text.push_str(&format_value(value));
        self.text.push('\n');
    }

    /// The samples of one histogram series: `counts` per bucket of [`BUCKETS`] and `+Inf`
    /// (not cumulative), and the sum in seconds.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], counts: &[u64], sum: f64) {
        let mut cumulative = 0;
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            let le = BUCKETS
                .get(i)
                .map(|b| format_value(*b))
                .unwrap_or_else(|| "+Inf".to_string());
            self.text.push_str(name);
            self.text.push_str("_bucket");
            push_labels(&mut self.text, labels, Some(&le));
            self.text.push_str(&format!(" {cumulative}\n"));
        }
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    /// The text, ready to serve.
    pub fn finish(self) -> String {
        self.text
    }
}

fn push_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: whole numbers without a fraction, `+Inf`/`-Inf`/`NaN` spelled out.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Renders everything this module counts.
pub fn render(out: &mut Exposition) {
    render_requests(out);
    render_pools(out);
    render_turns(out);
    out.family(
        "codara_log_bytes_written_total",
        "counter",
        "Bytes appended to the log files.",
    );
    out.sample(
        "codara_log_bytes_written_total",
        &[],
        LOG_BYTES.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "codara_log_lines_written_total",
        "counter",
        "Lines appended to the log files.",
    );
    out.sample(
        "codara_log_lines_written_total",
        &[],
        LOG_LINES.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "codara_trace_bytes_written_total",
        "counter",
        "Bytes appended to the trace shards.",
    );
    out.sample(
        "codara_trace_bytes_written_total",
        &[],
        TRACE_BYTES.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "codara_trace_events_written_total",
        "counter",
        "Traces appended to the trace shards.",
    );
    out.sample(
        "codara_trace_events_written_total",
        &[],
        TRACES_WRITTEN.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "codara_trace_events_dropped_total",
        "counter",
        "Traces lost because the writer's queue was full or the shard could not be written.",
    );
    out.sample(
        "codara_trace_events_dropped_total",
        &[],
        TRACES_DROPPED.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "codara_trace_queue_depth",
        "gauge",
        "Traces waiting for the writer thread.",
    );
    out.sample(
        "codara_trace_queue_depth",
        &[],
        TRACES_QUEUED.load(Ordering::Relaxed).max(0) as f64,
    );
}

fn render_requests(out: &mut Exposition) {
    let routes = ROUTES.get().map(Vec::as_slice).unwrap_or_default();
    out.family(
        "codara_http_requests_total",
        "counter",
        "HTTP requests answered, by method, route template and status.",
    );
    for stats in routes {
        for (slot, count) in stats.statuses.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let status = STATUSES
                .get(slot)
                .map(u16::to_string)
                .unwrap_or_else(|| "other".to_string());
            out.sample(
                "codara_http_requests_total",
                &[
                    ("method", stats.method),
                    ("route", stats.route),
                    ("status", &status),
                ],
                count as f64,
            );
        }
    }
    out.family(
        "codara_http_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to its last byte sent, by method and route template.",
    );
    for stats in routes {
        let (counts, sum) = stats.duration.snapshot();
        if counts.iter().all(|c| *c == 0) {
            continue;
        }
        out.histogram(
            "codara_http_request_duration_seconds",
            &[("method", stats.method), ("route", stats.route)],
            &counts,
            sum,
        );
    }
}

fn render_pools(out: &mut Exposition) {
    let pools = POOLS.lock().map(|p| p.clone()).unwrap_or_default();
    out.family(
        "codara_pool_in_flight",
        "gauge",
        "Requests a pool has accepted and not finished (running and queued).",
    );
    for (name, gauge) in &pools {
        let in_flight = gauge.in_flight.load(Ordering::Relaxed);
        out.sample("codara_pool_in_flight", &[("pool", name)], in_flight as f64);
    }
    out.family(
        "codara_pool_queue_depth",
        "gauge",
        "Requests waiting for a free worker of a pool.",
    );
    for (name, gauge) in &pools {
        let in_flight = gauge.in_flight.load(Ordering::Relaxed);
        out.sample(
            "codara_pool_queue_depth",
            &[("pool", name)],
            in_flight.saturating_sub(gauge.workers) as f64,
        );
    }
    out.family(
        "codara_pool_capacity",
        "gauge",
        "Workers plus queue slots of a pool; more requests are answered 503.",
    );
    for (name, gauge) in &pools {
        out.sample(
            "codara_pool_capacity",
            &[("pool", name)],
            gauge.capacity as f64,
        );
    }
    let counters = COUNTERS.lock().map(|c| c.clone()).unwrap_or_default();
    render_counters(
        out,
        &counters,
        "codara_pool_rejected_total",
        "Requests answered 503 because a pool (or the intake stage) was full.",
    );
}

fn render_counters(out: &mut Exposition, counters: &Counters, name: &'static str, help: &str) {
    out.family(name, "counter", help);
    for ((metric, labels), value) in counters {
        if *metric == name {
            out.sample(name, labels, *value as f64);
        }
    }
}

fn render_turns(out: &mut Exposition) {
    let counters = COUNTERS.lock().map(|c| c.clone()).unwrap_or_default();
    render_counters(
        out,
        &counters,
        "codara_turns_total",
        "Agent turns, by provider and outcome (ok, error, stalled, timeout, refused).",
    );
    out.family(
        "codara_turn_duration_seconds",
        "histogram",
        "Wall time of agent turns, lock wait to stored outcome, by provider.",
    );
    let durations = TURN_DURATIONS.lock().map(|d| d.clone()).unwrap_or_default();
    for (provider, plain) in &durations {
        out.histogram(
            "codara_turn_duration_seconds",
            &[("provider", provider)],
            &plain.counts,
            plain.sum,
        );
    }
    out.family("codara_turns_active", "gauge", "Agent turns running now.");
    out.sample(
        "codara_turns_active",
        &[],
        ACTIVE_TURNS.load(Ordering::Relaxed).max(0) as f64,
    );
    render_counters(
        out,
        &counters,
        "codara_cli_stalls_total",
        "CLI runs stopped for silence past the stall timeout, by provider.",
    );
    render_counters(
        out,
        &counters,
        "codara_cli_timeouts_total",
        "CLI runs stopped for overrunning the turn timeout, by provider.",
    );
    render_counters(
        out,
        &counters,
        "codara_cli_kills_total",
        "CLIs killed with SIGKILL after they did not stop when asked, by provider.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text() {
        let mut out = Exposition::default();
        out.family("x_total", "counter", "Things.\nMore");
        out.sample("x_total", &[("a", "q\"uo\\te\n")], 3.0);
        out.sample("x_total", &[], 0.5);
        out.family("d_seconds", "histogram", "Durations.");
        let mut counts = [0u64; N_BUCKETS];
        counts[0] = 2;
        counts[N_BUCKETS - 1] = 1;
        out.histogram("d_seconds", &[("p", "c")], &counts, 1.25);
        let text = out.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP x_total Things.\\nMore");
        assert_eq!(lines[1], "# TYPE x_total counter");
        assert_eq!(lines[2], r#"x_total{a="q\"uo\\te\n"} 3"#);
        assert_eq!(lines[3], "x_total 0.5");
        assert_eq!(lines[6], r#"d_seconds_bucket{p="c",le="0.0005"} 2"#);
        assert!(
            text.contains("d_seconds_bucket{p=\"c\",le=\"600\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{p=\"c\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("d_seconds_sum{p=\"c\"} 1.25\n"), "{text}");
        assert!(text.ends_with("d_seconds_count{p=\"c\"} 3\n"), "{text}");
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_of(Duration::from_micros(100)), 0);
        assert_eq!(bucket_of(Duration::from_micros(500)), 0);
        assert_eq!(bucket_of(Duration::from_micros(501)), 1);
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS.len());
    }
}
