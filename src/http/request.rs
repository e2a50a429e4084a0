//! The parsed request handed to handlers: method, decoded path, query, headers, body, request id,
//! and what admission granted before the body was read.
//!
//! Owns turning a `tiny_http::Request` into plain data, with the body read under a size limit and
//! a deadline that grows with its length. Must not know about routes.

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::turns::locks::Slot;
use serde::de::DeserializeOwned;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request as handlers see it; everything already read and decoded.
#[derive(Debug, Clone)]
pub struct Request {
    /// Upper-case method name.
    pub method: String,
    /// The percent-decoded path, without query.
    pub path: String,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body (empty until read by the dispatcher).
    pub body: Vec<u8>,
    /// The peer address.
    pub remote_addr: Option<SocketAddr>,
    /// The request id echoed in `X-Request-Id`.
    pub request_id: String,
    /// What admission granted before the body was read (a turn slot).
    pub admission: Admission,
    /// The path parameters the matched route bound by name (`{id}` → `id`).
    pub params: Params,
}

/// Path parameters bound by name by the router: handlers read `request.param("id")` and never
/// count segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// Binds `name` to `value`.
    pub fn push(&mut self, name: &'static str, value: String) {
        self.0.push((name, value));
    }

    /// The value bound to `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every binding in pattern order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_str()))
    }
}

/// What admission granted a request before its body was read: a user's turn slot, which the
/// handler takes and keeps until the turn ends. A slot nobody took is freed with the request.
#[derive(Clone, Default)]
pub struct Admission {
    slot: Arc<Mutex<Option<Slot>>>,
}

impl Admission {
    /// An admission holding `slot`.
    pub fn holding(slot: Slot) -> Admission {
        Admission {
            slot: Arc::new(Mutex::new(Some(slot))),
        }
    }

    /// Takes the slot out; dropping it frees the user's slot.
    pub fn take_slot(&self) -> Option<Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.slot.lock().map(|slot| slot.is_some()).unwrap_or(false);
        f.debug_struct("Admission").field("slot", &held).finish()
    }
}

impl Request {
    /// Builds a request from its parts (the dispatcher and handler tests use this).
    pub fn new(method: &str, url: &str) -> Request {
        let (raw_path, raw_query) = url.split_once('?').unwrap_or((url, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: percent_decode(raw_path, false),
            query: parse_query(raw_query),
            headers: Vec::new(),
            body: Vec::new(),
            remote_addr: None,
            request_id: String::new(),
            admission: Admission::default(),
            params: Params::default(),
        }
    }

    /// The path parameter `name` of the matched route. Its absence is a bug in the route table
    /// (a handler reading a name its pattern does not bind), not a client error.
    pub fn param(&self, name: &str) -> Result<&str> {
        self.params.get(name).ok_or_else(|| {
            Error::Internal(format!(
                "the route of {} {} binds no parameter `{name}`",
                self.method, self.path
            ))
        })
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The bearer token of the `Authorization` header, if any.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// Path segments without empty ones (`/a//b/` → `["a", "b"]`).
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The client address as text, for throttling and records.
    pub fn client_ip(&self) -> String {
        self.remote_addr
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// Whether the peer is this host (a loopback address) and the request does not say it was
    /// forwarded: a reverse proxy on the same host connects from loopback on behalf of anyone.
    pub fn is_direct_loopback(&self) -> bool {
        let loopback = self.remote_addr.is_some_and(|addr| match addr.ip() {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        });
        let forwarded = self.headers.iter().any(|(name, _)| {
            matches!(name.as_str(), "forwarded" | "x-forwarded-for" | "x-real-ip")
        });
        loopback && !forwarded
    }

    /// Parses the body as JSON into `T`, with a 400 that says what is wrong and where.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::bad_request(
                "request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            let param = missing_or_unknown_field(&e.to_string());
            Error::BadRequest {
                message: format!("invalid JSON body: {e}"),
                param,
            }
        })
    }

    /// Parses the body as JSON when there is one; `None` for an empty body.
    pub fn json_opt<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.json().map(Some)
    }
}

fn missing_or_unknown_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_string)
}

/// The grace every request gets before the minimum rate applies: a small body on a slow link.
const BODY_GRACE: Duration = Duration::from_secs(10);

/// How long a client gets to send a body of `length` bytes (`None`: chunked, length unknown):
/// 10 s plus the length at `min_body_rate_bytes` per second, at most `body_timeout_seconds`.
/// A fixed timeout would either cut off large uploads on slow links or let a client hold a
/// reader for minutes with a small body sent a byte at a time.
pub fn body_allowance(server: &ServerConfig, length: Option<u64>) -> Duration {
    let most = Duration::from_secs(server.body_timeout_seconds);
    match length {
        Some(length) => {
            let transfer =
                Duration::from_secs_f64(length as f64 / server.min_body_rate_bytes as f64);
            most.min(BODY_GRACE + transfer)
        }
        None => most,
    }
}

/// Reads the body of `request` into memory, refusing more than `limit` bytes; with a deadline,
/// reads that are not done by then fail (408).
pub fn read_body(
    request: &mut tiny_http::Request,
    limit: u64,
    deadline: Option<Instant>,
) -> Result<Vec<u8>> {
    let declared = request.body_length();
    if declared.is_some_and(|length| length as u64 > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    if deadline.is_some() {
        request.set_read_deadline(deadline);
    }
    let mut body = Vec::new();
    // A declared length bounds the read itself: an upgrade request's reader is the raw stream.
    let read = request
        .as_reader()
        .take(declared.map_or(limit + 1, |length| length as u64))
        .read_to_end(&mut body);
    if deadline.is_some() {
        request.set_read_deadline(None);
    }
    match read {
        Ok(_) if body.len() as u64 > limit => Err(Error::PayloadTooLarge { limit }),
        Ok(_) => match declared {
            Some(length) if body.len() < length => Err(Error::bad_request(format!(
                "the request body ended after {} of {length} bytes",
                body.len()
            ))),
            _ => Ok(body),
        },
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(Error::RequestTimeout)
        }
        Err(e) => Err(Error::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as space in query strings); invalid escapes stay literal.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_paths_and_queries() {
        let request = Request::new("get", "/a%2Fb/%2e%2e/c?x=1+2&y=%41&flag");
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/a/b/../c");
        assert_eq!(request.query_param("x"), Some("1 2"));
        assert_eq!(request.query_param("y"), Some("A"));
        assert_eq!(request.query_param("flag"), Some(""));
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz", false), "%zz");
    }

    #[test]
    fn body_allowance_grows_with_length_up_to_the_cap() {
        let server = ServerConfig::default();
        let secs = |length| body_allowance(&server, length).as_secs_f64();
        assert_eq!(secs(Some(0)), 10.0);
        assert_eq!(secs(Some(10 * 1024)), 20.0);
        assert_eq!(secs(Some(200_000)), 60.0, "capped at body_timeout_seconds");
        assert_eq!(secs(None), 60.0, "chunked: the cap");
    }

    #[test]
    fn an_admission_slot_is_taken_once_and_freed_on_drop() {
        let slots = crate::turns::locks::Slots::default();
        let admission = Admission::holding(slots.try_acquire("u", 1).unwrap());
        let copy = admission.clone();
        assert!(slots.try_acquire("u", 1).is_none());
        let slot = copy.take_slot().expect("the slot");
        assert!(admission.take_slot().is_none(), "taken once");
        drop(slot);
        assert!(slots.try_acquire("u", 1).is_some());
        let unclaimed = Admission::holding(slots.try_acquire("v", 1).unwrap());
        drop(unclaimed);
        assert!(
            slots.try_acquire("v", 1).is_some(),
            "freed with the request"
        );
    }

    #[test]
    fn bearer_parsing() {
        let mut request = Request::new("GET", "/");
        request
            .headers
            .push(("authorization".into(), "Bearer  abc ".into()));
        assert_eq!(request.bearer(), Some("abc"));
        request.headers[0].1 = "Basic abc".into();
        assert_eq!(request.bearer(), None);
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            model: String,
        }
        let mut request = Request::new("POST", "/");
        request.body = b"{}".to_vec();
        let error = request.json::<Body>().unwrap_err();
        assert_eq!(error.param(), Some("model"));
        request.body = b"{not json".to_vec();
        assert!(request
            .json::<Body>()
            .unwrap_err()
            .to_string()
            .contains("invalid JSON body"));
    }
}
