//! The parsed request handed to handlers: method, decoded path, query, headers, body, request id.
//!
//! Owns turning a `tiny_http::Request` into plain data, with the body read under a size limit and
//! the socket's read timeout. Must not know about routes or domain types.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::io::Read;
use std::net::SocketAddr;

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
        }
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

/// Reads the body of `request` into memory, refusing more than `limit` bytes.
pub fn read_body(request: &mut tiny_http::Request, limit: u64) -> Result<Vec<u8>> {
    if let Some(length) = request.body_length() {
        if length as u64 > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
    }
    let mut body = Vec::new();
    let reader = request.as_reader();
    match reader.take(limit + 1).read_to_end(&mut body) {
        Ok(_) if body.len() as u64 > limit => Err(Error::PayloadTooLarge { limit }),
        Ok(_) => Ok(body),
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
