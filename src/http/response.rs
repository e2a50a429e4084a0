//! Responses: JSON, the management envelope, errors in either plane's shape, redirects, streams.
//!
//! Owns the wire shape of every response and of every error. Must not decide statuses of domain
//! failures: that is `error::Error::status`.

use crate::error::Error;
use serde_json::{json, Value};
use std::io::Read;

/// A response body: bytes now, or a reader drained by tiny_http as data arrives (SSE).
pub enum Body {
    /// A complete body.
    Bytes(Vec<u8>),
    /// A body produced incrementally; sent chunked.
    Stream(Box<dyn Read + Send>),
}

/// A response as handlers return it.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers besides the ones the dispatcher adds (`X-Request-Id`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

/// Which error shape a path gets (decided by `router::plane`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// `/v1/*`: the OpenAI error object.
    OpenAi,
    /// Everything else: the `{ok:false,error:{code,message}}` envelope.
    Management,
}

impl Response {
    /// A JSON response with the given status.
    pub fn json(status: u16, value: &Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Bytes(value.to_string().into_bytes()),
        }
    }

    /// The management success envelope `{ok:true,data,meta:{request_id}}`.
    pub fn envelope(request_id: &str, data: Value) -> Response {
        Response::json(
            200,
            &json!({"ok": true, "data": data, "meta": {"request_id": request_id}}),
        )
    }

    /// Raw bytes with a content type.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Bytes(body),
        }
    }

    /// A 200 event stream: not cached, and not buffered by a proxy (`X-Accel-Buffering`), so
    /// each frame reaches the client as it is written.
    pub fn sse(stream: crate::http::sse::SseBody) -> Response {
        Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/event-stream".into()),
                ("Cache-Control".into(), "no-cache".into()),
                ("X-Accel-Buffering".into(), "no".into()),
            ],
            body: Body::Stream(Box::new(stream)),
        }
    }

    /// A temporary redirect.
    pub fn redirect(location: &str) -> Response {
        Response {
            status: 307,
            headers: vec![("Location".into(), location.into())],
            body: Body::Bytes(Vec::new()),
        }
    }

    /// Replaces the status (e.g. 201 for a creation).
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Renders `error` in the shape of `plane`, with the headers the status calls for.
    pub fn error(error: &Error, plane: Plane, request_id: &str) -> Response {
        let message = error.public_message();
        let body = match plane {
            Plane::OpenAi => json!({"error": {
                "message": message,
                "type": error.openai_type(),
                "param": error.param(),
                "code": error.code(),
            }}),
            Plane::Management => {
                let mut detail = json!({"code": error.code(), "message": message});
                if let Some(param) = error.param() {
                    detail["param"] = param.into();
                }
                json!({"ok": false, "error": detail, "meta": {"request_id": request_id}})
            }
        };
        let mut response = Response::json(error.status(), &body);
        match error {
            Error::Unauthorized(_) => response = response.with_header("WWW-Authenticate", "Bearer"),
            Error::MethodNotAllowed { allowed } => {
                response = response.with_header("Allow", allowed)
            }
            Error::PayloadTooLarge { .. } | Error::RequestTimeout => {
                response = response.with_header("Connection", "close")
            }
            _ => {}
        }
        if let Some(seconds) = error.retry_after_secs() {
            response = response.with_header("Retry-After", &seconds.to_string());
        }
        // Honoured by the openai SDKs (which otherwise retry 409, 429 and 5xx on their own).
        let retry = if error.should_retry() {
            "true"
        } else {
            "false"
        };
        response.with_header("x-should-retry", retry)
    }

    /// Converts into a tiny_http response, adding the request id header.
    pub fn into_tiny(self, request_id: &str) -> tiny_http::ResponseBox {
        let mut headers: Vec<tiny_http::Header> = self
            .headers
            .iter()
            .filter_map(|(name, value)| {
                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
            })
            .collect();
        if let Ok(header) =
            tiny_http::Header::from_bytes(&b"X-Request-Id"[..], request_id.as_bytes())
        {
            headers.push(header);
        }
        let status = tiny_http::StatusCode(self.status);
        match self.body {
            Body::Bytes(bytes) => {
                let length = bytes.len();
                tiny_http::Response::new(
                    status,
                    headers,
                    std::io::Cursor::new(bytes),
                    Some(length),
                    None,
                )
                .boxed()
            }
            Body::Stream(reader) => tiny_http::Response::new(status, headers, reader, None, None)
                .with_chunked_threshold(0)
                .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response) -> Value {
        match &response.body {
            Body::Bytes(bytes) => serde_json::from_slice(bytes).unwrap(),
            Body::Stream(_) => panic!("stream"),
        }
    }

    #[test]
    fn openai_error_shape() {
        let response = Response::error(
            &Error::bad_param("model", "unknown model"),
            Plane::OpenAi,
            "req_1",
        );
        assert_eq!(response.status, 400);
        let value = body(&response);
        assert_eq!(value["error"]["param"], "model");
        assert_eq!(value["error"]["type"], "invalid_request_error");
        assert_eq!(value["error"]["code"], "invalid_request");
    }

    #[test]
    fn management_error_shape_and_headers() {
        let response = Response::error(
            &Error::Unauthorized("missing".into()),
            Plane::Management,
            "req_2",
        );
        assert_eq!(response.status, 401);
        assert!(response
            .headers
            .iter()
            .any(|(n, v)| n == "WWW-Authenticate" && v == "Bearer"));
        let value = body(&response);
        assert_eq!(value["ok"], false);
        assert_eq!(value["error"]["code"], "unauthorized");
        assert_eq!(value["meta"]["request_id"], "req_2");
    }
}
