//! The one error type of Codara and its mapping to HTTP status, wire shapes and exit codes.
//!
//! Every fallible path in the crate returns [`Error`]. Rendering into the OpenAI error object or
//! the management envelope happens in `http::response`; this module only decides status, code and
//! message. Must not log: the caller that gives up on an error logs it once.

use std::fmt;
use std::path::PathBuf;

/// Every failure Codara can report, carrying what a person needs to act on it.
#[derive(Debug)]
pub enum Error {
    /// The request is malformed; `param` names the offending field when there is one.
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// No credential, or one that is not valid.
    Unauthorized(String),
    /// A valid credential that may not do this.
    Forbidden(String),
    /// The route or the resource does not exist (or must not be confirmed to exist).
    NotFound(String),
    /// A request field names something this caller does not have (an unknown, foreign or
    /// unstored `previous_response_id`): a 404 that names the field, as OpenAI answers it.
    UnknownReference {
        param: &'static str,
        code: &'static str,
        message: String,
    },
    /// The route exists but not with this method; `allowed` goes into the `Allow` header.
    MethodNotAllowed { allowed: String },
    /// The request conflicts with the current state (duplicate, busy session).
    Conflict(String),
    /// The body is larger than `[server].max_body_bytes`.
    PayloadTooLarge { limit: u64 },
    /// The client did not send its body within the read timeout.
    RequestTimeout,
    /// Too many attempts from this client; retry after the given seconds.
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// Every worker of the pool that would run this request is busy.
    Busy {
        pool: &'static str,
        retry_after_secs: u64,
    },
    /// A route that this build does not serve yet.
    NotImplemented(String),
    /// A feature or dependency that exists but cannot serve this request now.
    Unavailable { code: &'static str, message: String },
    /// No pool account can take a turn now; nothing ran, so a retry after the next account
    /// frees up (when known) is safe.
    NoAccountReady {
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// The agent CLI or its model failed; the message is the CLI's own.
    BadGateway(String),
    /// A Telegram Bot API call failed. `status` is the HTTP status when an answer came back
    /// (`None`: refused, reset or timed out), `retry_after_secs` the flood wait Telegram asked
    /// for. The message never holds the bot token (which is part of the call's URL).
    Telegram {
        method: String,
        status: Option<u16>,
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// The agent CLI went silent (`cli_stalled`) or overran the turn (`turn_timeout`).
    GatewayTimeout { code: &'static str, message: String },
    /// The server is shutting down and takes no new work.
    ShuttingDown,
    /// Configuration that stops start-up: where, which key, and why.
    Config {
        source: String,
        key: String,
        reason: String,
    },
    /// A filesystem operation failed on `path`.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An SQLite statement failed; `op` names what was being done.
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    /// Sealed data could not be opened or the master key is unusable.
    Vault(String),
    /// A broken invariant inside Codara; the message is logged, never sent to clients.
    Internal(String),
}

/// Shorthand for results that fail with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 400 that names the offending field.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Error {
        Error::BadRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    /// A 400 about the request as a whole.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::BadRequest {
            message: message.into(),
            param: None,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps an SQLite error with the operation it happened in.
    pub fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| Error::Sql { op, source }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest { .. } => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) | Error::UnknownReference { .. } => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::RequestTimeout => 408,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge { .. } => 413,
            Error::TooManyRequests { .. } => 429,
            Error::NotImplemented(_) => 501,
            Error::BadGateway(_) | Error::Telegram { .. } => 502,
            Error::GatewayTimeout { .. } => 504,
            Error::Busy { .. }
            | Error::Unavailable { .. }
            | Error::NoAccountReady { .. }
            | Error::ShuttingDown => 503,
            Error::Config { .. }
            | Error::Io { .. }
            | Error::Sql { .. }
            | Error::Vault(_)
            | Error::Internal(_) => 500,
        }
    }

    /// The stable machine-readable code, the same on both planes.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } => "invalid_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::UnknownReference { code, .. } => code,
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::RequestTimeout => "request_timeout",
            Error::Conflict(_) => "conflict",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::TooManyRequests { .. } => "rate_limited",
            Error::Busy { .. } => "busy",
            Error::NotImplemented(_) => "not_implemented",
            Error::BadGateway(_) => "provider_error",
            Error::Telegram { .. } => "telegram_error",
            Error::GatewayTimeout { code, .. } => code,
            Error::Unavailable { code, .. } => code,
            Error::NoAccountReady { .. } => "no_account_ready",
            Error::ShuttingDown => "shutting_down",
            Error::Config { .. } => "config_error",
            Error::Io { .. } | Error::Sql { .. } | Error::Vault(_) | Error::Internal(_) => {
                "internal_error"
            }
        }
    }

    /// The OpenAI error `type` for `/v1` responses.
    pub fn openai_type(&self) -> &'static str {
        if let Error::UnknownReference { .. } = self {
            // OpenAI's own type for a `previous_response_id` it cannot find.
            return "invalid_request_error";
        }
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400 | 405 | 408 | 409 | 413 => "invalid_request_error",
            503 => "service_unavailable_error",
            _ => "server_error",
        }
    }

    /// The `param` of the OpenAI error object.
    pub fn param(&self) -> Option<&str> {
        match self {
            Error::BadRequest { param, .. } => param.as_deref(),
            Error::UnknownReference { param, .. } => Some(param),
            _ => None,
        }
    }

    /// Seconds for a `Retry-After` header, when the client should come back later.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Error::TooManyRequests {
                retry_after_secs, ..
            }
            | Error::Busy {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Error::NoAccountReady {
                retry_after_secs, ..
            } => *retry_after_secs,
            Error::ShuttingDown => Some(5),
            _ => None,
        }
    }

    /// Whether a client may safely send the same request again (`x-should-retry`): only when
    /// nothing ran and the cause passes (a full pool, no account ready yet, a rate limit,
    /// shutdown) — exactly the errors with a `Retry-After`. An agent turn is not idempotent, so
    /// every other error, above all one raised after a turn may have started, says no.
    pub fn should_retry(&self) -> bool {
        self.retry_after_secs().is_some()
    }

    /// Whether this is a fault inside Codara (a 500): logged in full, never shown to clients.
    pub fn is_internal(&self) -> bool {
        self.status() >= 500 && !matches!(self.status(), 501..=504)
    }

    /// The message sent to clients: internal details (paths, SQL) stay in the log.
    pub fn public_message(&self) -> String {
        if self.is_internal() {
            "internal error; the server log has the details under this request id".to_string()
        } else {
            self.to_string()
        }
    }

    /// The process exit code when this error ends a CLI command: 2 for usage/config, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } | Error::BadRequest { .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest { message, .. } => f.write_str(message),
            Error::Unauthorized(message)
            | Error::Forbidden(message)
            | Error::NotFound(message)
            | Error::Conflict(message)
            | Error::Vault(message)
            | Error::NotImplemented(message)
            | Error::BadGateway(message)
            | Error::Internal(message) => f.write_str(message),
            Error::Unavailable { message, .. }
            | Error::UnknownReference { message, .. }
            | Error::NoAccountReady { message, .. }
            | Error::TooManyRequests { message, .. }
            | Error::GatewayTimeout { message, .. } => f.write_str(message),
            Error::Telegram {
                method, message, ..
            } => write!(f, "Telegram {method} failed: {message}"),
            Error::MethodNotAllowed { allowed } => {
                write!(f, "method not allowed on this route; allowed: {allowed}")
            }
            Error::PayloadTooLarge { limit } => {
                write!(f, "request body is larger than the limit of {limit} bytes")
            }
            Error::RequestTimeout => f.write_str("the request body did not arrive in time"),
            Error::Busy {
                pool,
                retry_after_secs,
            } => write!(
                f,
                "all {pool} workers are busy; retry in {retry_after_secs} s"
            ),
            Error::ShuttingDown => f.write_str("the server is shutting down"),
            Error::Config {
                source,
                key,
                reason,
            } => write!(f, "{source}: {key}: {reason}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Sql { op, source } => write!(f, "database error while {op}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Sql { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_agree() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (
                Error::bad_param("model", "unknown model"),
                400,
                "invalid_request",
            ),
            (Error::Unauthorized("x".into()), 401, "unauthorized"),
            (Error::NotFound("x".into()), 404, "not_found"),
            (
                Error::UnknownReference {
                    param: "previous_response_id",
                    code: "previous_response_not_found",
                    message: "x".into(),
                },
                404,
                "previous_response_not_found",
            ),
            (
                Error::MethodNotAllowed {
                    allowed: "GET".into(),
                },
                405,
                "method_not_allowed",
            ),
            (
                Error::PayloadTooLarge { limit: 10 },
                413,
                "payload_too_large",
            ),
            (
                Error::Busy {
                    pool: "api",
                    retry_after_secs: 1,
                },
                503,
                "busy",
            ),
            (Error::Internal("boom".into()), 500, "internal_error"),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn internal_details_are_not_public() {
        let error = Error::io("/secret/path", std::io::Error::other("denied"));
        assert!(!error.public_message().contains("/secret/path"));
        assert!(error.to_string().contains("/secret/path"));
    }
}
