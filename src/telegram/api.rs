//! The Bot API client: one JSON POST per call to `<api_base>/bot<token>/<method>` over ureq,
//! with a timeout on every call, retries with backoff on network errors, 5xx and 429 (honouring
//! `retry_after`), and errors that never carry the token.
//!
//! The token is part of every URL, so nothing here formats a URL or a ureq error into a
//! message: failures are described from their kind and Telegram's own `description`, and
//! [`Client::redact`] scrubs the token from any text as a last guard. Holds no lock: a call
//! that hangs delays only the thread that made it. Must not decide what to send.

use crate::error::{Error, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The most time one call may wait for Telegram's `retry_after` before it gives up.
pub const MAX_FLOOD_WAIT: Duration = Duration::from_secs(60);

/// Largest answer read (a `getUpdates` batch of 100 updates is far below).
const MAX_ANSWER_BYTES: u64 = 8 * 1024 * 1024;

/// A Bot API client for one bot.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// `<api_base>/bot<token>/`: secret.
    prefix: String,
    token: String,
    timeout: Duration,
}

impl Client {
    /// A client of `token` at `api_base`, whose calls time out after `timeout` unless a call
    /// asks for longer (the long poll).
    pub fn new(api_base: &str, token: &str, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("codara/{}", crate::VERSION))
            .build()
            .into();
        Client {
            agent,
            prefix: format!("{}/bot{token}/", api_base.trim_end_matches('/')),
            token: token.to_string(),
            timeout,
        }
    }

    /// The timeout of an ordinary call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `text` with the token replaced by `<token>`.
    pub fn redact(&self, text: &str) -> String {
        if self.token.is_empty() {
            return text.to_string();
        }
        text.replace(&self.token, "<token>")
    }

    /// One call with the ordinary timeout; the `result` of a successful answer.
    pub fn call(&self, method: &str, params: &Value) -> Result<Value> {
        self.call_within(method, params, self.timeout)
    }

    /// One call that may take up to `timeout`.
    pub fn call_within(&self, method: &str, params: &Value, timeout: Duration) -> Result<Value> {
        let fail =
            |status: Option<u16>, message: String, retry_after_secs: Option<u64>| Error::Telegram {
                method: method.to_string(),
                status,
                message: self.redact(&message),
                retry_after_secs,
            };
        let body = params.to_string();
        let answer = self
            .agent
            .post(format!("{}{method}", self.prefix))
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json")
            .send(body.as_bytes());
        let mut response = answer.map_err(|e| fail(None, describe(&e), None))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| fail(Some(status), describe(&e), None))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 200 && value["ok"] == true {
            return Ok(value["result"].clone());
        }
        let retry_after = value
            .pointer("/parameters/retry_after")
            .and_then(Value::as_u64);
        let description = match value["description"].as_str() {
            Some(description) => format!("HTTP {status}: {description}"),
            None => format!("HTTP {status}"),
        };
        Err(fail(Some(status), description, retry_after))
    }

    /// [`Client::call`] with the retries of `policy`; sleeps between attempts in short steps and
    /// gives up early once the gateway is shutting down.
    pub fn call_retrying(&self, method: &str, params: &Value, policy: Policy) -> Result<Value> {
        let mut attempt = 0;
        loop {
            let error = match self.call(method, params) {
                Ok(result) => return Ok(result),
                Err(error) => error,
            };
            let wait = match &error {
                Error::Telegram {
                    status,
                    retry_after_secs,
                    ..
                } => next_wait(policy, attempt, *status, *retry_after_secs),
                _ => None,
            };
            let Some(wait) = wait else {
                return Err(error);
            };
            log::debug!("{error}; retrying in {} ms", wait.as_millis());
            if !pause(wait) {
                return Err(error);
            }
            attempt += 1;
        }
    }
}

/// How often and how long a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// The first backoff; each next one doubles.
    pub first_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
}

impl Policy {
    /// For a reply the user waits for: a few attempts within about a minute.
    pub const DELIVERY: Policy = Policy {
        attempts: 5,
        first_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(8),
    };

    /// For calls whose failure only costs a moment (typing, an intermediate edit): no retry.
    pub const ONCE: Policy = Policy {
        attempts: 1,
        first_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// For the receiving loop (`getUpdates`) and start-up calls: the backoff of every failure
    /// in a row, up to a minute.
    pub const RECEIVE: Policy = Policy {
        attempts: u32::MAX,
        first_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
    };
}

/// Whether a failed call may succeed when sent again: no answer (refused, reset, timed out),
/// 429, 5xx, and 409 (a `getUpdates` conflict while a webhook is still set, which start-up
/// removes). Other 4xx answers are final: the request itself is wrong.
pub fn retryable(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(status) => status == 429 || status == 409 || status >= 500,
    }
}

/// The wait before attempt `attempt + 1` after a failure with `status` (and Telegram's
/// `retry_after`), or `None` when `policy` gives up: not retryable, out of attempts, or a flood
/// wait longer than [`MAX_FLOOD_WAIT`].
pub fn next_wait(
    policy: Policy,
    attempt: u32,
    status: Option<u16>,
    retry_after_secs: Option<u64>,
) -> Option<Duration> {
    if !retryable(status) || attempt.saturating_add(1) >= policy.attempts {
        return None;
    }
    if let Some(seconds) = retry_after_secs.filter(|_| status == Some(429)) {
        let wait = Duration::from_secs(seconds);
        return (wait <= MAX_FLOOD_WAIT).then_some(wait.max(Duration::from_millis(100)));
    }
    Some(backoff(policy, attempt))
}

/// Exponential backoff: `first_backoff` doubled `attempt` times, capped at `max_backoff`.
pub fn backoff(policy: Policy, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    policy
        .first_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff)
}

/// Sleeps `duration` in steps of at most 200 ms; false when the gateway began shutting down.
pub fn pause(duration: Duration) -> bool {
    let until = Instant::now() + duration;
    loop {
        if crate::shutdown::requested() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
}

/// A ureq failure in words, without its URL (ureq's own messages can quote it).
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::Io(io) => format!("network error ({:?})", io.kind()),
        ureq::Error::Tls(what) => format!("TLS error ({what})"),
        ureq::Error::BodyExceedsLimit(limit) => format!("answer larger than {limit} bytes"),
        ureq::Error::StatusCode(status) => format!("HTTP {status}"),
        _ => "request failed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decisions() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let p = Policy::DELIVERY;
        // (attempt, status, retry_after) → wait
        type Case = (u32, Option<u16>, Option<u64>, Option<Duration>);
        let cases: &[Case] = &[
            (0, None, None, Some(ms(500))),
            (1, None, None, Some(ms(1000))),
            (3, Some(502), None, Some(ms(4000))),
            (0, Some(500), None, Some(ms(500))),
            (0, Some(429), Some(3), Some(s(3))),
            (0, Some(429), Some(0), Some(ms(100))),
            (0, Some(429), None, Some(ms(500))),
            (0, Some(429), Some(3600), None),
            // retry_after only counts on a 429.
            (0, Some(502), Some(30), Some(ms(500))),
            (0, Some(409), None, Some(ms(500))),
            (0, Some(400), None, None),
            (0, Some(403), None, None),
            (0, Some(401), None, None),
            // Out of attempts.
            (4, None, None, None),
        ];
        for (attempt, status, retry_after, expected) in cases {
            assert_eq!(
                next_wait(p, *attempt, *status, *retry_after),
                *expected,
                "attempt {attempt} status {status:?} retry_after {retry_after:?}"
            );
        }
        assert_eq!(next_wait(Policy::ONCE, 0, None, None), None);
        // The receiving loop never runs out of attempts and backs off to a minute.
        let r = Policy::RECEIVE;
        assert_eq!(next_wait(r, 0, None, None), Some(s(1)));
        assert_eq!(next_wait(r, 5, Some(503), None), Some(s(32)));
        assert_eq!(next_wait(r, 6, Some(503), None), Some(s(60)));
        assert_eq!(next_wait(r, 1_000_000, None, None), Some(s(60)));
    }

    #[test]
    fn errors_never_show_the_token() {
        let client = Client::new(
            "http://127.0.0.1:9/",
            "123:SECRET",
            Duration::from_millis(300),
        );
        assert_eq!(
            client.redact("x /bot123:SECRET/getMe"),
            "x /bot<token>/getMe"
        );
        let error = client.call("getMe", &serde_json::json!({})).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            matches!(error, Error::Telegram { status: None, .. }),
            "{text}"
        );
        assert!(text.contains("Telegram getMe failed"), "{text}");
    }
}
