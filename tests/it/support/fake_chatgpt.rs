//! A loopback stand-in for ChatGPT's usage endpoint and OpenAI's OAuth token endpoint, the two
//! services the account pool's refresher talks to (the outside world is out of reach in tests).
//!
//! - `GET /backend-api/wham/usage` answers per bearer token as configured with
//!   [`FakeChatgpt::set_usage`]: a JSON body, a bare status, malformed JSON, or a JSON body after
//!   a delay. An unknown token gets 401, as the real endpoint would.
//! - `POST /oauth/token` answers per `refresh_token` in the (JSON or form) body as configured with
//!   [`FakeChatgpt::set_token`]; an unknown refresh token gets 400 `invalid_grant`.
//!
//! Every request is recorded (bearer, `ChatGPT-Account-Id`, body) so tests can assert on what the
//! gateway sent.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the usage endpoint answers one bearer token.
#[derive(Debug, Clone)]
pub enum Usage {
    /// 200 with this JSON body.
    Json(Value),
    /// This status with an empty JSON object body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with this JSON body, after sleeping this long.
    Delayed(Duration, Value),
}

/// One request to the usage endpoint.
#[derive(Debug, Clone)]
pub struct UsageRequest {
    /// The bearer token sent.
    pub bearer: Option<String>,
    /// The `ChatGPT-Account-Id` header sent.
    pub account_id: Option<String>,
}

/// One request to the token endpoint.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `Content-Type` sent.
    pub content_type: Option<String>,
    /// The body, parsed from JSON or `application/x-www-form-urlencoded` into a JSON object.
    pub body: Value,
}

#[derive(Default)]
struct State {
    usage: Mutex<HashMap<String, Usage>>,
    tokens: Mutex<HashMap<String, (u16, Value)>>,
    usage_requests: Mutex<Vec<UsageRequest>>,
    token_requests: Mutex<Vec<TokenRequest>>,
    shutdown: AtomicBool,
}

/// A running fake on `127.0.0.1:<ephemeral>`; stops on drop.
pub struct FakeChatgpt {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    server: Arc<tiny_http::Server>,
    state: Arc<State>,
}

impl FakeChatgpt {
    /// Starts the server (one thread per request, so a delayed answer blocks nobody).
    pub fn start() -> FakeChatgpt {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let state = Arc::new(State::default());
        {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || handle(request, &state));
                }
            });
        }
        FakeChatgpt {
            base_url: format!("http://{addr}"),
            server,
            state,
        }
    }

    /// The usage endpoint URL.
    pub fn usage_url(&self) -> String {
        format!("{}/backend-api/wham/usage", self.base_url)
    }

    /// The token endpoint URL.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base_url)
    }

    /// An `[accounts]` block pointing the gateway here, with client id `test-client` and the
    /// background refresher off (refreshes happen only when a test asks).
    pub fn accounts_toml(&self) -> String {
        format!(
            "[accounts]\nusage_endpoints = [\"{}\"]\noauth_token_url = \"{}\"\n\
             oauth_client_id = \"test-client\"\nrefresh_interval_seconds = 0\n",
            self.usage_url(),
            self.token_url()
        )
    }

    /// Sets how the usage endpoint answers `bearer`.
    pub fn set_usage(&self, bearer: &str, answer: Usage) {
        self.state
            .usage
            .lock()
            .unwrap()
            .insert(bearer.to_string(), answer);
    }

    /// Sets how the token endpoint answers a refresh with `refresh_token`.
    pub fn set_token(&self, refresh_token: &str, status: u16, body: Value) {
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(refresh_token.to_string(), (status, body));
    }

    /// Every usage request so far, in arrival order.
    pub fn usage_requests(&self) -> Vec<UsageRequest> {
        self.state.usage_requests.lock().unwrap().clone()
    }

    /// Every token request so far, in arrival order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.token_requests.lock().unwrap().clone()
    }
}

impl Drop for FakeChatgpt {
    fn drop(&mut self) {
        self.state.shutdown.store(true, Ordering::Relaxed);
        self.server.unblock();
    }
}

/// A usage body as ChatGPT sends it: a 5-hour primary and a weekly secondary window.
pub fn usage_body(five_hour: (f64, u64), weekly: (f64, u64)) -> Value {
    json!({
        "plan_type": "plus",
        "rate_limit": {
            "allowed": true,
            "limit_reached": false,
            "primary_window": {
                "used_percent": five_hour.0,
                "limit_window_seconds": 18_000,
                "reset_after_seconds": five_hour.1,
            },
            "secondary_window": {
                "used_percent": weekly.0,
                "limit_window_seconds": 604_800,
                "reset_after_seconds": weekly.1,
            }
        }
    })
}

fn header(request: &tiny_http::Request, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

fn respond(request: tiny_http::Request, status: u16, body: String) {
    let content_type =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap();
    let response = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(content_type);
    let _ = request.respond(response);
}

/// Sleeps `duration` in small steps; returns early once the fake is shutting down.
fn sleep(state: &State, duration: Duration) {
    let deadline = Instant::now() + duration;
    while !state.shutdown.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Parses `a=b&c=d` (percent-decoding `+` and `%XX`) into a JSON object.
fn form(text: &str) -> Value {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Ok(b) =
                    u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
                {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let map: serde_json::Map<String, Value> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), Value::String(decode(v)))
        })
        .collect();
    Value::Object(map)
}

fn handle(mut request: tiny_http::Request, state: &State) {
    let mut raw = Vec::new();
    let _ = request.as_reader().read_to_end(&mut raw);
    let method = request.method().as_str().to_ascii_uppercase();
    let path = request.url().split('?').next().unwrap_or("").to_string();
    match (method.as_str(), path.as_str()) {
        ("GET", "/backend-api/wham/usage") => {
            let bearer = header(&request, "Authorization")
                .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()));
            state.usage_requests.lock().unwrap().push(UsageRequest {
                bearer: bearer.clone(),
                account_id: header(&request, "ChatGPT-Account-Id"),
            });
            let answer = bearer.and_then(|t| state.usage.lock().unwrap().get(&t).cloned());
            match answer {
                Some(Usage::Json(body)) => respond(request, 200, body.to_string()),
                Some(Usage::Status(status)) => respond(request, status, "{}".into()),
                Some(Usage::Malformed) => respond(
                    request,
                    200,
                    "{\"rate_limit\": {\"primary_window\": ".into(),
                ),
                Some(Usage::Delayed(delay, body)) => {
                    sleep(state, delay);
                    respond(request, 200, body.to_string())
                }
                None => respond(request, 401, json!({"detail": "Unauthorized"}).to_string()),
            }
        }
        ("POST", "/oauth/token") => {
            let content_type = header(&request, "Content-Type");
            let text = String::from_utf8_lossy(&raw).into_owned();
            let body = serde_json::from_str::<Value>(&text)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| form(&text));
            state.token_requests.lock().unwrap().push(TokenRequest {
                content_type,
                body: body.clone(),
            });
            let answer = body["refresh_token"]
                .as_str()
                .and_then(|t| state.tokens.lock().unwrap().get(t).cloned());
            let (status, body) = answer.unwrap_or_else(|| {
                (
                    400,
                    json!({"error": "invalid_grant",
                           "error_description": "unknown refresh token"}),
                )
            });
            respond(request, status, body.to_string())
        }
        _ => respond(
            request,
            404,
            json!({"detail": format!("no route for {method} {path}")}).to_string(),
        ),
    }
}
