//! Observability end to end: a turn's trace (complete, ordered, nested spans; found by text and
//! time; its timeline with its log lines; no prompt, reply or secret in it), `traceparent`,
//! log search with cursors across size-capped files, retention of planted old files, an
//! unwritable trace directory, `/metrics` read by a strict text-format parser and moving with
//! traffic, its loopback rule, a terminal's short log lines, and warnings for inert settings.

use crate::support::mock_model::{clis_bin, directive, MockModel};
use crate::support::{self, HttpResponse, Server, SECRET};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn get(server: &Server, path: &str, token: &str) -> Value {
    let response = server.get(path, Some(token));
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()
}

/// Polls a list route until it returns at least one row; returns the rows.
fn wait_for_rows(server: &Server, path: &str, token: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    support::wait_until(
        Duration::from_secs(20),
        &format!("rows from {path}"),
        || {
            rows = get(server, path, token)["data"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            !rows.is_empty()
        },
    );
    rows
}

// ---------------------------------------------------------------------------------------------
// A strict parser of the Prometheus text format 0.0.4.

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: the type of each family and every sample.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the one series of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().map(|s| s.value)
    }

    /// Like [`Exposition::value`], 0 when the series does not exist (yet).
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other => other
            .parse::<f64>()
            .map_err(|_| format!("bad value `{other}`")),
    }
}

/// Parses `{a="b",…}` at the start of `text`; returns the labels and the rest.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("labels must start with `{`")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without `=`")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("bad label name `{name}`"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next().ok_or("an unterminated label value")?;
            match c {
                '"' => break i,
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?} in a label value")),
                },
                '\n' => return Err("a raw newline in a label value".to_string()),
                c => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if !rest.starts_with('}')
            && !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        {
            return Err(format!("unexpected `{rest}` after a label"));
        }
    }
}

/// The family a sample name belongs to, given the families declared so far.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
            {
                return base;
            }
        }
    }
    name
}

/// Parses and checks an exposition: every line well formed, `# TYPE` (and at most one
/// `# HELP`) before a family's samples, each family's lines together, no series twice,
/// counters not negative, histograms cumulative with `+Inf` equal to `_count` and a `_sum`.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("the text must end with a newline".to_string());
    }
    let mut out = Exposition::default();
    let mut helps = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(family) {
            if finished.contains(family) {
                return Err(format!("the lines of `{family}` are not together"));
            }
            if let Some(previous) = current.take() {
                finished.insert(previous);
            }
            *current = Some(family.to_string());
        }
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let fail = |why: String| format!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() || line.contains('\r') {
            return Err(fail("empty line or carriage return".into()));
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| fail("HELP without text".into()))?;
            if !valid_metric_name(name) {
                return Err(fail("bad metric name".into()));
            }
            let mut chars = help.chars();
            while let Some(c) = chars.next() {
                if c == '\\' && !matches!(chars.next(), Some('\\') | Some('n')) {
                    return Err(fail("bad escape in HELP".into()));
                }
            }
            if !helps.insert(name.to_string()) {
                return Err(fail("HELP twice".into()));
            }
            enter(name, &mut current).map_err(fail)?;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| fail("TYPE without a type".into()))?;
            if !valid_metric_name(name) {
                return Err(fail("bad metric name".into()));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(fail("unknown type".into()));
            }
            if out
                .samples
                .iter()
                .any(|s| family_of(&s.name, &out.types) == name)
            {
                return Err(fail("TYPE after samples".into()));
            }
            if out
                .types
                .insert(name.to_string(), kind.to_string())
                .is_some()
            {
                return Err(fail("TYPE twice".into()));
            }
            enter(name, &mut current).map_err(fail)?;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| fail("a sample without a value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(fail("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(fail)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| fail("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(fail)?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| fail("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(fail("trailing fields".into()));
        }
        let family = family_of(name, &out.types).to_string();
        let kind = out
            .types
            .get(&family)
            .ok_or_else(|| fail(format!("no TYPE for `{family}`")))?
            .clone();
        enter(&family, &mut current).map_err(fail)?;
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(fail("a negative counter".into()));
        }
        if kind == "histogram" && name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(fail("a bucket without `le`".into()));
        }
        if !series.insert(format!("{name}{labels:?}")) {
            return Err(fail("the same series twice".into()));
        }
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    // Histograms: per series, cumulative buckets in increasing `le`, `+Inf` = `_count`, a `_sum`.
    for (family, kind) in &out.types {
        if kind != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in out
            .samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut key = sample.labels.clone();
            let le = parse_value(&key.remove("le").unwrap())?;
            by_series
                .entry(format!("{key:?}"))
                .or_default()
                .push((le, sample.value));
        }
        for (key, buckets) in &by_series {
            for pair in buckets.windows(2) {
                if !(pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1) {
                    return Err(format!(
                        "{family}{key}: buckets not increasing: {buckets:?}"
                    ));
                }
            }
            let last = buckets.last().unwrap();
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{key}: no +Inf bucket"));
            }
            let find = |suffix: &str| {
                out.samples
                    .iter()
                    .find(|s| {
                        s.name == format!("{family}{suffix}") && format!("{:?}", s.labels) == *key
                    })
                    .map(|s| s.value)
            };
            if find("_count") != Some(last.1) {
                return Err(format!("{family}{key}: _count is not the +Inf bucket"));
            }
            if find("_sum").is_none() {
                return Err(format!("{family}{key}: no _sum"));
            }
        }
    }
    Ok(out)
}

fn scrape(server: &Server) -> Exposition {
    let response = server.get("/metrics", None);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_exposition(&response.text()).unwrap_or_else(|e| panic!("{e}\n---\n{}", response.text()))
}

#[test]
fn the_exposition_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    assert!(
        parse_exposition(good).is_ok(),
        "{:?}",
        parse_exposition(good)
    );
    for bad in [
        "a 1",
        "a 1\n",
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",
        "# TYPE a gauge\na{x=1} 1\n",
        "# TYPE a gauge\na one\n",
        "# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n",
        "# TYPE a gauge\na 1\na 2\n",
        "# TYPE a counter\na -1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
        "# TYPE a gauge\na{x=\"\\q\"} 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn metrics_parse_strictly_and_move_with_traffic() {
    let server = support::server().start();
    let token = server.login();
    let before = scrape(&server);
    assert_eq!(
        before.value(
            "codara_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        before.value("codara_pool_capacity", &[("pool", "api")]),
        Some(136.0)
    );
    assert!(before.value("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    let overview = |status: &'static str| {
        [
            ("method", "GET"),
            ("route", "/management/v1/overview"),
            ("status", status),
        ]
    };
    // The login's trace is on its way to its shard: start counting once it is there.
    let mut before = before;
    support::wait_until(Duration::from_secs(10), "the login's trace", || {
        before = scrape(&server);
        before.count("codara_trace_events_written_total", &[]) >= 1.0
    });
    let (log_bytes, trace_bytes) = (
        before.count("codara_log_bytes_written_total", &[]),
        before.count("codara_trace_bytes_written_total", &[]),
    );
    let written = before.count("codara_trace_events_written_total", &[]);
    for _ in 0..20 {
        assert_eq!(
            server.get("/management/v1/overview", Some(&token)).status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(server.get("/management/v1/overview", None).status, 401);
    }
    assert_eq!(server.get("/no/such/raw-path-7731", None).status, 404);
    // The writer is a thread of its own: wait until it wrote the 23 traces.
    let mut after = scrape(&server);
    support::wait_until(Duration::from_secs(10), "23 traces written", || {
        after = scrape(&server);
        after.count("codara_trace_events_written_total", &[]) >= written + 23.0
    });
    assert_eq!(
        after.count("codara_http_requests_total", &overview("200"))
            - before.count("codara_http_requests_total", &overview("200")),
        20.0
    );
    assert_eq!(
        after.count("codara_http_requests_total", &overview("401")),
        2.0
    );
    assert_eq!(
        after.count(
            "codara_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    let histogram = [("method", "GET"), ("route", "/management/v1/overview")];
    assert_eq!(
        after.count("codara_http_request_duration_seconds_count", &histogram)
            - before.count("codara_http_request_duration_seconds_count", &histogram),
        22.0
    );
    // Scrapes are counted but not traced (quiet): exactly the 23 requests made traces.
    assert_eq!(
        after.count("codara_trace_events_written_total", &[]),
        written + 23.0
    );
    assert_eq!(after.count("codara_trace_events_dropped_total", &[]), 0.0);
    // Route templates only: no raw path ever becomes a label.
    assert!(after
        .samples
        .iter()
        .all(|s| s.labels.values().all(|v| !v.contains("raw-path"))));
    // Log + trace bytes per management request stay within the target (0.5 KB).
    let bytes = after.count("codara_log_bytes_written_total", &[]) - log_bytes
        + after.count("codara_trace_bytes_written_total", &[])
        - trace_bytes;
    let per_request = bytes / 23.0;
    assert!(per_request <= 512.0, "{per_request} bytes per request");
    assert_eq!(after.value("codara_turns_active", &[]), Some(0.0));
}

/// A non-loopback address of this host (the source address of a route off the machine; no
/// packet is sent).
fn outside_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.123:9")
        .or_else(|_| socket.connect("10.255.255.1:9"))
        .expect("this host has a route off loopback");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

#[test]
fn metrics_need_the_operator_token_except_directly_from_loopback() {
    let server = support::server().arg("--host").arg("0.0.0.0").start();
    let token = server.login();
    let key = {
        let response = server.post_json(
            "/management/v1/users",
            Some(&token),
            r#"{"email":"metrics@example.com","display_name":"Metrics"}"#,
        );
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["data"]["api_key"]["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let outside = std::net::SocketAddr::new(outside_address(), server.addr.port());
    let status = |addr, headers: &[(&str, &str)]| -> HttpResponse {
        support::http(addr, "GET", "/metrics", headers, None)
    };
    let bearer = format!("Bearer {token}");
    let user = format!("Bearer {key}");
    assert_eq!(status(loopback, &[]).status, 200);
    // Through a proxy on this host: not the host itself asking.
    for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        let refused = status(loopback, &[(header, "203.0.113.9")]);
        assert_eq!(refused.status, 401, "{header}: {}", refused.text());
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(
        status(
            loopback,
            &[("X-Forwarded-For", "x"), ("Authorization", &bearer)]
        )
        .status,
        200
    );
    // From another address: the token or nothing.
    assert_eq!(status(outside, &[]).status, 401);
    assert_eq!(status(outside, &[("Authorization", &bearer)]).status, 200);
    assert_eq!(status(outside, &[("Authorization", &user)]).status, 403);
    assert_eq!(status(loopback, &[("Authorization", &user)]).status, 403);
    assert_eq!(
        status(loopback, &[("Authorization", "Bearer nope")]).status,
        401
    );
    drop(server);

    let strict = support::server()
        .toml("[telemetry]\nmetrics_loopback = false\n")
        .start();
    assert_eq!(strict.get("/metrics", None).status, 401);
    assert_eq!(strict.get("/metrics", Some(SECRET)).status, 200);
}

// ---------------------------------------------------------------------------------------------
// Traces of requests and turns.

fn spans_by_id(detail: &Value) -> BTreeMap<String, Value> {
    detail["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

/// Every span but the root hangs under a span of the trace and lies within it; spans come in
/// order of their start.
fn assert_complete_and_nested(detail: &Value, client_parent: Option<&str>) {
    let spans = detail["spans"].as_array().unwrap();
    let by_id = spans_by_id(detail);
    assert_eq!(by_id.len(), spans.len(), "span ids are unique");
    assert_eq!(detail["root"]["span_count"], spans.len());
    let offsets: Vec<f64> = spans
        .iter()
        .map(|s| s["offset_ms"].as_f64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s["parent_id"]
                .as_str()
                .is_none_or(|p| !by_id.contains_key(p))
        })
        .collect();
    assert_eq!(roots.len(), 1, "one root: {roots:?}");
    assert_eq!(roots[0]["name"], "http");
    assert_eq!(roots[0]["parent_id"].as_str(), client_parent);
    for span in spans {
        for key in ["started_at", "status", "attributes"] {
            assert!(!span[key].is_null(), "{key} of {span}");
        }
        let Some(parent) = span["parent_id"].as_str().and_then(|p| by_id.get(p)) else {
            continue;
        };
        let start = span["offset_ms"].as_f64().unwrap();
        let end = start + span["duration_ms"].as_f64().unwrap();
        let parent_start = parent["offset_ms"].as_f64().unwrap();
        let parent_end = parent_start + parent["duration_ms"].as_f64().unwrap();
        assert!(
            start + 0.002 >= parent_start && end <= parent_end + 0.002,
            "{} [{start}, {end}] outside {} [{parent_start}, {parent_end}]",
            span["name"],
            parent["name"]
        );
    }
}

fn names(detail: &Value) -> BTreeSet<String> {
    detail["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Everything under the trace root and the log dir, as text.
fn telemetry_text(data_dir: &Path) -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    walk(&data_dir.join("traces"), &mut out);
    walk(&data_dir.join("logs"), &mut out);
    out
}

#[test]
fn a_turn_is_one_trace_of_nested_spans_with_its_log_lines() {
    let mock = MockModel::start();
    // codex runs warm (the default), gemini exec: both ways a CLI starts are traced.
    let toml = mock.codara_toml(&clis_bin()).replace(
        "[providers.gemini]\n",
        "[providers.gemini]\nmode = \"exec\"\n",
    );
    let server = support::server().toml(&toml).start();
    let token = server.login();
    let mut baseline = scrape(&server);
    support::wait_until(Duration::from_secs(10), "the login's trace", || {
        baseline = scrape(&server);
        baseline.count("codara_trace_events_written_total", &[]) >= 1.0
    });
    let bytes = |metrics: &Exposition| {
        metrics.count("codara_log_bytes_written_total", &[])
            + metrics.count("codara_trace_bytes_written_total", &[])
    };
    let before = now_ms() - 1;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let prompt = format!(
        "PROMPT-MARKER-5519 {}",
        directive(json!({"reply": "REPLY-MARKER-8817 done"}))
    );
    let body = json!({"model": "uag-codex", "stream": true, "client_session_id": "traced",
                      "messages": [{"role": "user", "content": prompt}]})
    .to_string();
    let response = server.request(
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
            (
                "traceparent",
                &format!("00-{client_trace}-{client_span}-01"),
            ),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    // The mock streams its reply in pieces.
    assert!(response.text().contains("RKER-881"), "{}", response.text());
    // Log + trace bytes of the turn (its request's trace and every line logged meanwhile,
    // the warm process's start included) stay within the target (4 KB).
    let mut after_turn = scrape(&server);
    support::wait_until(Duration::from_secs(10), "the turn's trace", || {
        after_turn = scrape(&server);
        after_turn.count("codara_trace_events_written_total", &[]) >= 2.0
    });
    let per_turn = bytes(&after_turn) - bytes(&baseline);
    eprintln!("log + trace bytes of one warm codex turn: {per_turn}");
    assert!(per_turn <= 4096.0, "{per_turn} bytes for one turn");
    let returned = response.header("traceparent").unwrap().to_string();
    assert!(
        returned.starts_with(&format!("00-{client_trace}-")),
        "{returned}"
    );
    assert!(
        !returned.contains(client_span),
        "a span of its own: {returned}"
    );

    // Found by text and provider within the last quarter hour.
    let rows = wait_for_rows(
        &server,
        &format!("/management/v1/traces?q={client_trace}&provider=codex&range=15m"),
        &token,
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["name"], "POST /v1/chat/completions");
    assert_eq!(row["route"], "/v1/chat/completions");
    assert_eq!(row["method"], "POST");
    assert_eq!(row["status"], "ok");
    assert_eq!(row["http_status"], 200);
    assert_eq!(row["user_id"], "operator");
    let after = now_ms() + 1;

    let detail = get(
        &server,
        &format!("/management/v1/traces/{client_trace}"),
        &token,
    )["data"]
        .clone();
    assert_eq!(detail["trace_id"], client_trace);
    assert_eq!(detail["root"], *row);
    assert_complete_and_nested(&detail, Some(client_span));
    let seen = names(&detail);
    for name in [
        "http",
        "auth",
        "admission",
        "turn",
        "lock_wait",
        "snapshot",
        "pool_select",
        "attempt",
        "warm_handoff",
        "cli_run",
        "first_output",
        "first_delta",
        "diff",
        "persist",
    ] {
        assert!(seen.contains(name), "no {name} span in {seen:?}");
    }
    let by_name = |name: &str| -> Value {
        detail["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    let turn = by_name("turn");
    assert_eq!(turn["attributes"]["provider"], "codex");
    assert_eq!(turn["attributes"]["outcome"], "ok");
    let turn_id = turn["attributes"]["turn_id"].as_str().unwrap().to_string();
    assert_eq!(by_name("attempt")["attributes"]["mode"], "warm");
    // The turn ran on its stream's thread, under the request's root.
    let spans = spans_by_id(&detail);
    assert_eq!(
        spans[turn["parent_id"].as_str().unwrap()]["name"],
        "http",
        "{turn}"
    );
    // Its log lines: the request's and the turn's, oldest first.
    let logs = detail["logs"].as_array().unwrap();
    assert!(
        logs.iter().all(|l| l["trace_id"] == client_trace),
        "{logs:?}"
    );
    let ts: Vec<&str> = logs.iter().map(|l| l["ts"].as_str().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .starts_with("POST /v1/chat/completions 200")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l["fields"]["turn_id"] == turn_id.as_str() && l["span"] == "turn"),
        "{logs:?}"
    );

    // Time ranges: in the range of the request, not in one that ended before it.
    let in_range = get(
        &server,
        &format!("/management/v1/traces?q={client_trace}&since={before}&until={after}"),
        &token,
    );
    assert_eq!(in_range["data"].as_array().unwrap().len(), 1);
    let earlier = get(
        &server,
        &format!("/management/v1/traces?q={client_trace}&until={before}"),
        &token,
    );
    assert_eq!(earlier["data"].as_array().unwrap().len(), 0);
    // The explorer's search finds the root and the log lines by the turn id.
    let found = get(
        &server,
        &format!("/management/v1/observability/search?q={turn_id}&range=1h"),
        &token,
    );
    let kinds: BTreeSet<&str> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            assert!(item["ts"].is_string(), "{item}");
            item["kind"].as_str().unwrap()
        })
        .collect();
    assert_eq!(kinds, BTreeSet::from(["trace", "log"]), "{found}");

    // An exec turn (gemini): the CLI's spawn instead of a warm hand-off.
    let exec = server.post_json(
        "/v1/chat/completions",
        Some(&token),
        &json!({"model": "uag-gemini", "messages": [{"role": "user", "content": "exec turn"}]})
            .to_string(),
    );
    assert_eq!(exec.status, 200, "{}", exec.text());
    let exec_trace = exec.header("traceparent").unwrap()[3..35].to_string();
    wait_for_rows(
        &server,
        &format!("/management/v1/traces?q={exec_trace}&provider=gemini"),
        &token,
    );
    let detail = get(
        &server,
        &format!("/management/v1/traces/{exec_trace}"),
        &token,
    )["data"]
        .clone();
    assert_complete_and_nested(&detail, None);
    let seen = names(&detail);
    for name in ["spawn", "cli_run", "first_output", "first_delta", "persist"] {
        assert!(seen.contains(name), "no {name} span in {seen:?}");
    }
    let cli_run = detail["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cli_run")
        .unwrap();
    assert_eq!(cli_run["attributes"]["exit_code"], 0, "{cli_run}");

    // Counted by provider and outcome.
    let metrics = scrape(&server);
    assert_eq!(
        metrics.count(
            "codara_turns_total",
            &[("provider", "codex"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        metrics.count(
            "codara_turns_total",
            &[("provider", "gemini"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        metrics.count(
            "codara_turn_duration_seconds_count",
            &[("provider", "codex")]
        ),
        1.0
    );
    assert_eq!(
        metrics.value("codara_warm_processes", &[("provider", "codex")]),
        Some(1.0)
    );

    // No prompt, reply or credential is in any trace or log line.
    let text = telemetry_text(&server.data_dir());
    for secret in ["PROMPT-MARKER-5519", "RKER-881", SECRET, &token] {
        assert!(
            !text.contains(secret),
            "{secret} reached the telemetry files"
        );
    }
}

#[test]
fn traceparent_request_ids_and_unknown_traces() {
    let server = support::server().start();
    let token = server.login();
    let trace_of = |headers: &[(&str, &str)]| -> (String, HttpResponse) {
        let auth = format!("Bearer {token}");
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        let response = server.request("GET", "/management/v1/version", &all, None);
        assert_eq!(response.status, 200);
        let traceparent = response.header("traceparent").unwrap().to_string();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
        (parts[1].to_string(), response)
    };
    let (own, response) = trace_of(&[]);
    // A generated request id is the start of the root span id.
    let span = response.header("traceparent").unwrap()[36..48].to_string();
    assert_eq!(
        response.header("x-request-id"),
        Some(format!("req_{span}").as_str())
    );
    // Invalid headers start a trace of their own.
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "garbage",
    ] {
        let (id, _) = trace_of(&[("traceparent", bad)]);
        assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(id, "0".repeat(32));
    }
    let (continued, response) = trace_of(&[
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        ),
        ("X-Request-Id", "client-chosen-1"),
    ]);
    assert_eq!(continued, "0af7651916cd43dd8448eb211c80319c");
    assert!(
        response.header("traceparent").unwrap().ends_with("-00"),
        "flags kept"
    );
    assert_eq!(response.header("x-request-id"), Some("client-chosen-1"));
    wait_for_rows(
        &server,
        &format!("/management/v1/traces?q={continued}"),
        &token,
    );
    let detail = get(
        &server,
        &format!("/management/v1/traces/{continued}"),
        &token,
    )["data"]
        .clone();
    assert_eq!(detail["spans"][0]["parent_id"], "b7ad6b7169203331");
    let upper = format!("/management/v1/traces/{}", continued.to_uppercase());
    assert_eq!(
        get(&server, &upper, &token)["data"]["trace_id"],
        continued.as_str()
    );
    assert_eq!(detail["root"]["name"], "GET /management/v1/version");
    // The client's request id is searchable.
    let by_request = wait_for_rows(&server, "/management/v1/traces?q=client-chosen-1", &token);
    assert_eq!(by_request[0]["trace_id"], continued.as_str());
    wait_for_rows(&server, &format!("/management/v1/traces?q={own}"), &token);
    for unknown in [
        "ffffffffffffffffffffffffffffffff",
        "nope",
        "0af7651916cd43dd8448eb211c80319",
    ] {
        let response = server.get(&format!("/management/v1/traces/{unknown}"), Some(&token));
        assert_eq!(response.status, 404, "{unknown}: {}", response.text());
        assert_eq!(response.json()["error"]["code"], "not_found");
    }
    drop(server);

    // Tracing off: request ids as before, no traceparent, no shard.
    let untraced = support::server()
        .toml("[telemetry]\nenabled = false\n")
        .start();
    let token = untraced.login();
    let response = untraced.get("/management/v1/overview", Some(&token));
    assert_eq!(response.status, 200);
    assert!(response.header("traceparent").is_none());
    assert!(response.header("x-request-id").unwrap().starts_with("req_"));
    assert_eq!(
        get(&untraced, "/management/v1/traces", &token)["data"],
        json!([])
    );
    assert!(!untraced.data_dir().join("traces").exists());
    let logged = wait_for_rows(&untraced, "/management/v1/logs?q=overview", &token);
    assert_eq!(logged[0]["trace_id"], Value::Null, "{logged:?}");
}

#[test]
fn logs_page_newest_first_across_capped_files() {
    let server = support::server()
        .toml("[logging]\nmax_bytes = 2048\n")
        .start();
    let token = server.login();
    for i in 0..30 {
        let response = server.get(
            &format!("/management/v1/users?marker=page-{i}"),
            Some(&token),
        );
        assert_eq!(response.status, 200);
    }
    // Several files of at most 2 KiB each.
    let files: Vec<PathBuf> = std::fs::read_dir(server.data_dir().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= 2048, "{} is {size} bytes", file.display());
    }
    // Every access line of the users list, one page of 7 at a time: newest first, none twice.
    // (A request's access line is written after its response: wait for the last.)
    support::wait_until(Duration::from_secs(5), "30 access lines", || {
        server
            .log_files_text()
            .matches("GET /management/v1/users 200")
            .count()
            == 30
    });
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            &server,
            &format!("/management/v1/logs?q=users&target=http&level=info&limit=7{cursor}"),
            &token,
        );
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 7);
        for line in data {
            assert_eq!(line["level"], "INFO");
            assert!(
                line["trace_id"].as_str().is_some_and(|t| t.len() == 32),
                "{line}"
            );
            assert_eq!(line["span"], "http");
            seen.push(line["ts"].as_str().unwrap().to_string());
        }
        match page["meta"]["page"]["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 30, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "{seen:?}");
    let warn = get(&server, "/management/v1/logs?level=warn&range=1h", &token);
    assert!(warn["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["level"] == "WARN" || l["level"] == "ERROR"));
}

// ---------------------------------------------------------------------------------------------
// Retention and an unwritable trace directory.

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "{}\n").unwrap();
}

fn ymd(ms: i64) -> String {
    // Days since the epoch → civil date (Howard Hinnant's algorithm).
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn shard(traces: &Path, ms: i64) -> PathBuf {
    let date = ymd(ms);
    let hour = ms.rem_euclid(86_400_000) / 3_600_000;
    traces
        .join("events")
        .join(&date[..4])
        .join(&date[5..7])
        .join(&date[8..10])
        .join(format!("{hour:02}.jsonl"))
}

#[test]
fn retention_removes_exactly_the_expired_files() {
    let dir = support::TempDir::new("retention");
    let data = dir.path().join("data");
    let (logs, traces) = (data.join("logs"), data.join("traces"));
    let now = now_ms();
    let day = 86_400_000;
    // Three days kept: log files of the last three days and today stay; shards whose hour
    // ended within three days stay.
    let kept = [
        logs.join(format!("codara-{}.jsonl", ymd(now - 3 * day))),
        logs.join(format!("codara-{}.2.jsonl", ymd(now - day))),
        logs.join("notes.txt"),
        logs.join(format!("codara-{}.jsonl.gz", ymd(now - 40 * day))),
        shard(&traces, now - 3 * day + 3_600_000),
        shard(&traces, now - 2 * day),
        traces.join("events/2001/01/01/notes.txt"),
    ];
    let gone = [
        logs.join(format!("codara-{}.jsonl", ymd(now - 4 * day))),
        logs.join(format!("codara-{}.1.jsonl", ymd(now - 4 * day))),
        logs.join("codara-2001-01-01.jsonl"),
        shard(&traces, now - 3 * day - 2 * 3_600_000),
        shard(&traces, now - 30 * day),
        traces.join("events/2001/01/01/00.jsonl"),
    ];
    for path in kept.iter().chain(&gone) {
        touch(path);
    }
    let server = support::server()
        .dir(dir.path())
        .toml("[logging]\nretention_days = 3\n[telemetry]\ntrace_retention_days = 3\n")
        .start();
    support::wait_until(Duration::from_secs(10), "the pruner's first pass", || {
        gone.iter().all(|p| !p.exists())
    });
    for path in &kept {
        assert!(path.exists(), "{} was removed", path.display());
    }
    assert!(
        !shard(&traces, now - 30 * day).parent().unwrap().exists(),
        "the emptied day directory went too"
    );
    assert!(server
        .log_files_text()
        .contains("pruned telemetry past retention"));
}

#[test]
fn an_unwritable_trace_directory_drops_and_counts_and_requests_go_on() {
    let dir = support::TempDir::new("blocked");
    std::fs::write(
        dir.path().join("blocker"),
        "a file where a directory should be",
    )
    .unwrap();
    let server = support::server()
        .dir(dir.path())
        .toml("[telemetry]\ntrace_root = \"blocker/traces\"\n")
        .start();
    let token = server.login();
    let mut last = 0.0;
    for round in 0..3 {
        for _ in 0..5 {
            assert_eq!(
                server.get("/management/v1/overview", Some(&token)).status,
                200
            );
        }
        support::wait_until(Duration::from_secs(10), "dropped traces counted", || {
            let dropped = scrape(&server).count("codara_trace_events_dropped_total", &[]);
            let rose = dropped >= last + 5.0;
            if rose {
                last = dropped;
            }
            rose
        });
        assert!(last >= 5.0 * (round + 1) as f64);
    }
    assert_eq!(
        scrape(&server).count("codara_trace_events_written_total", &[]),
        0.0
    );
    server.wait_for_stderr("cannot write traces under", Duration::from_secs(5));
    // The explorer answers, empty.
    assert_eq!(
        get(&server, "/management/v1/traces", &token)["data"],
        json!([])
    );
}

// ---------------------------------------------------------------------------------------------
// Terminals and inert settings.

#[test]
#[allow(clippy::disallowed_methods)] // Runs the binary under test with a terminal as stderr.
fn a_terminal_gets_short_lines_unless_json_is_asked_for() {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    for (json, expect_json) in [(false, false), (true, true)] {
        let dir = support::TempDir::new("tty");
        std::fs::write(
            dir.path().join("codara.toml"),
            format!("[logging]\njson = {json}\n"),
        )
        .unwrap();
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two new descriptors into the integers we pass.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: both descriptors are ours; each File closes its own.
        let (mut master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                std::fs::File::from_raw_fd(slave),
            )
        };
        let mut child = std::process::Command::new(support::binary())
            .args(["serve", "--port", "0"])
            .current_dir(dir.path())
            .env_clear()
            .env("API_TOKEN", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(slave)
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut text = String::new();
        while !text.contains("listening on") {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let line = text
            .lines()
            .find(|l| l.contains("listening on"))
            .unwrap_or_else(|| panic!("no start-up line on the terminal: {text:?}"))
            .trim()
            .to_string();
        let is_json = serde_json::from_str::<Value>(&line).is_ok();
        assert_eq!(is_json, expect_json, "{line}");
        if !expect_json {
            // `HH:MM:SS.mmm LEVEL target: message`.
            let bytes = line.as_bytes();
            assert!(bytes[2] == b':' && bytes[8] == b'.', "{line}");
            assert!(line.contains(" INFO  cli::serve: codara "), "{line}");
        }
    }
}

#[test]
fn inert_settings_are_warned_about_at_start_and_in_doctor() {
    let toml = "[providers.gemini]\nauth_path = \"/nonexistent/oauth.json\"\n";
    let server = support::server().toml(toml).start();
    server.wait_for_stderr(
        "[providers.<p>].auth_path / UAG_<P>_AUTH_PATH (credentials come from the account pool) is configured, but this build does not act on it",
        Duration::from_secs(5),
    );
    let (code, out, _) = support::run_cli(&server.dir, &["doctor"], &[]);
    assert!(
        out.lines().any(|l| l.starts_with("warn")
            && l.contains("auth_path")
            && l.contains("does not act on it")),
        "exit {code}:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("telemetry") && l.contains("traces")),
        "{out}"
    );
}
