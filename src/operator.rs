//! Operator authentication: exchanging the operator secret for access tokens, checking bearers,
//! logging out, and throttling failed logins and unknown bearers per client address.
//!
//! Owns the token format (`cdt_` + 43 base62 chars, stored as SHA-256) and the throttle. Must not
//! keep raw tokens anywhere but in the response that returns them once.

use crate::clock;
use crate::error::{Error, Result};
use crate::store::{meta, operator_tokens, Store};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long an access token lives.
pub const TOKEN_TTL_MS: i64 = 8 * 3600 * 1000;
/// Failed logins from one address allowed within [`THROTTLE_WINDOW_MS`].
pub const MAX_FAILED_LOGINS: u32 = 5;
/// The window over which failed logins are counted, and the lockout after too many.
pub const THROTTLE_WINDOW_MS: i64 = 5 * 60 * 1000;

/// A freshly minted access token; `token` is shown to the caller once and then forgotten.
pub struct IssuedToken {
    /// The raw bearer value.
    pub token: String,
    /// The token's id (not secret).
    pub id: String,
    /// Expiry, epoch ms.
    pub expires_at: i64,
}

/// How an operator request authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCredential {
    /// A minted access token, by id.
    Token(String),
    /// The operator secret itself (drop-in compatibility with the original gateway).
    Secret,
}

#[derive(Default)]
struct Failures {
    count: u32,
    first_ms: i64,
}

/// Per-address counter of failed logins and unknown bearer credentials (guesses). Keyed by the
/// peer IP address as text: behind a reverse proxy every client shares the proxy's address.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    /// Fails with 429 when `addr` has used up its attempts for the current window.
    pub fn check(&self, addr: &str, now_ms: i64) -> Result<()> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = failures.get(addr) {
            let window_end = entry.first_ms + THROTTLE_WINDOW_MS;
            if entry.count >= MAX_FAILED_LOGINS && now_ms < window_end {
                let retry_after_secs = ((window_end - now_ms) / 1000).max(1) as u64;
                return Err(Error::TooManyRequests {
                    message: format!(
                        "too many failed logins or invalid credentials from this address; try again in {retry_after_secs} s"
                    ),
                    retry_after_secs,
                });
            }
        }
        Ok(())
    }

    /// Counts a failed login or an unknown credential from `addr`.
    pub fn record_failure(&self, addr: &str, now_ms: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Forget stale entries so the map cannot grow without bound.
        failures.retain(|_, f| now_ms < f.first_ms + THROTTLE_WINDOW_MS);
        let entry = failures.entry(addr.to_string()).or_insert(Failures {
            count: 0,
            first_ms: now_ms,
        });
        entry.count += 1;
    }

    fn record_success(&self, addr: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }
}

/// The operator secret a login checks against, and whether Codara generated it.
pub struct Secret<'a> {
    /// The secret in effect.
    pub value: &'a str,
    /// Generated into `operator.secret` (not configured): its first sign-in is recorded, after
    /// which `serve` stops printing it.
    pub generated: bool,
}

/// Checks `presented` against the operator secret and mints an access token. The first sign-in
/// with a generated secret is recorded in `meta` in the same transaction as the token.
pub fn login(
    store: &Store,
    throttle: &LoginThrottle,
    secret: Secret<'_>,
    presented: Option<&str>,
    client_addr: &str,
) -> Result<IssuedToken> {
    let operator_secret = secret.value;
    let now_ms = clock::now_ms();
    throttle.check(client_addr, now_ms)?;
    let presented = presented.map(str::trim).filter(|s| !s.is_empty());
    let Some(presented) = presented else {
        throttle.record_failure(client_addr, now_ms);
        return Err(Error::Unauthorized(
            "operator secret required: send {\"operator_secret\": \"...\"}".to_string(),
        ));
    };
    if !crate::crypto::constant_time_eq(presented.as_bytes(), operator_secret.as_bytes()) {
        throttle.record_failure(client_addr, now_ms);
        log::warn!("failed operator login from {client_addr}");
        return Err(Error::Unauthorized("invalid operator secret".to_string()));
    }
    throttle.record_success(client_addr);
    let token = format!(
        "cdt_{}",
        crate::crypto::random_base62(43).map_err(|e| Error::io("getrandom", e))?
    );
    let id = crate::crypto::random_id("otk_");
    let expires_at = now_ms + TOKEN_TTL_MS;
    let token_hash = crate::crypto::sha256_hex(token.as_bytes());
    let secret_hash = crate::crypto::sha256_hex(operator_secret.as_bytes());
    store.write(|tx| {
        operator_tokens::delete_expired(tx, now_ms - 24 * 3600 * 1000)?;
        operator_tokens::insert(tx, &id, &token_hash, now_ms, expires_at, Some(client_addr))?;
        if secret.generated && !secret_used(tx, &secret_hash)? {
            meta::put(tx, meta::OPERATOR_SECRET_USED, secret_hash.as_bytes())?;
        }
        Ok(())
    })?;
    log::info!("operator logged in from {client_addr}; token {id}");
    Ok(IssuedToken {
        token,
        id,
        expires_at,
    })
}

/// Whether the generated operator secret `secret` has signed in at least once (`serve` then
/// prints only where it is kept).
pub fn generated_secret_used(store: &Store, secret: &str) -> Result<bool> {
    let secret_hash = crate::crypto::sha256_hex(secret.as_bytes());
    store.read(|conn| secret_used(conn, &secret_hash))
}

fn secret_used(conn: &rusqlite::Connection, secret_hash: &str) -> Result<bool> {
    Ok(meta::get(conn, meta::OPERATOR_SECRET_USED)?.as_deref() == Some(secret_hash.as_bytes()))
}

/// Resolves a bearer value to an operator credential: `None` when it is neither the secret nor
/// a token ever issued (a guess, which the caller counts against the client), else the
/// credential or why it no longer works (401 logged out/expired).
pub fn authenticate(
    store: &Store,
    operator_secret: &str,
    bearer: &str,
) -> Result<Option<OperatorCredential>> {
    if crate::crypto::constant_time_eq(bearer.as_bytes(), operator_secret.as_bytes()) {
        return Ok(Some(OperatorCredential::Secret));
    }
    let token_hash = crate::crypto::sha256_hex(bearer.as_bytes());
    let token = store.read(|conn| operator_tokens::find_by_hash(conn, &token_hash))?;
    match token {
        None => Ok(None),
        Some(token) if token.revoked_at.is_some() => Err(Error::Unauthorized(
            "this token was logged out; log in again".to_string(),
        )),
        Some(token) if token.expires_at <= clock::now_ms() => Err(Error::Unauthorized(
            "this token has expired; log in again".to_string(),
        )),
        Some(token) => Ok(Some(OperatorCredential::Token(token.id))),
    }
}

/// Revokes the token a request authenticated with; returns whether one was revoked.
pub fn logout(store: &Store, credential: &OperatorCredential) -> Result<bool> {
    match credential {
        OperatorCredential::Token(id) => {
            store.write(|tx| operator_tokens::revoke(tx, id, clock::now_ms()))
        }
        OperatorCredential::Secret => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_locks_out_after_limit_and_expires() {
        let throttle = LoginThrottle::default();
        for _ in 0..MAX_FAILED_LOGINS {
            throttle.check("1.2.3.4", 1000).unwrap();
            throttle.record_failure("1.2.3.4", 1000);
        }
        let error = throttle.check("1.2.3.4", 2000).unwrap_err();
        assert_eq!(error.status(), 429);
        assert!(error.retry_after_secs().unwrap() > 0);
        throttle.check("5.6.7.8", 2000).unwrap();
        throttle
            .check("1.2.3.4", 1000 + THROTTLE_WINDOW_MS)
            .unwrap();
    }
}
