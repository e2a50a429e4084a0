//! Parsing the ChatGPT usage endpoint and the OAuth token endpoint, and building the refresh request.
//!
//! Owns the wire shapes codex itself uses: `GET /backend-api/wham/usage` (quota windows) and
//! `POST https://auth.openai.com/oauth/token` (refresh, JSON body with codex's client id). Windows are
//! told apart by their length, not their position, and unknown values stay `None` — never invented.
//! Must not do the HTTP itself: the caller sends and receives, these functions only shape bytes.

use super::select::Window;
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::fmt;

/// The scope codex asks for on refresh.
pub const REFRESH_SCOPE: &str = "openid profile email";
/// What one usage response says about an account.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageWindows {
    /// The window about 5 hours long, if the response had one.
    pub five_hour: Option<Window>,
    /// The window about a week long, if the response had one.
    pub weekly: Option<Window>,
    /// `plan_type`, if present.
    pub plan: Option<String>,
}

/// Parses a usage response body observed at `now_ms`.
///
/// Windows come from `rate_limit.primary_window` and `rate_limit.secondary_window`, classified by
/// `limit_window_seconds`: 4–6 h is the 5-hour window, 6–8 days the weekly one; a window of another
/// or unknown length, or without a numeric `used_percent`, is ignored. If two windows claim the same
/// slot the fuller one counts. `resets_at_ms` comes from `reset_at` (epoch s) or else
/// `now_ms + reset_after_seconds × 1000`. Malformed JSON or a non-object body is a 502 error.
pub fn parse_usage(body: &str, now_ms: i64) -> Result<UsageWindows> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        Error::BadGateway(format!(
            "the usage endpoint returned malformed JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(root) = value else {
        return Err(Error::BadGateway(
            "the usage endpoint returned JSON that is not an object".into(),
        ));
    };
    let mut usage = UsageWindows {
        plan: root.get("plan_type").and_then(non_empty),
        ..UsageWindows::default()
    };
    let Some(Value::Object(limits)) = root.get("rate_limit") else {
        return Ok(usage);
    };
    for key in ["primary_window", "secondary_window"] {
        let Some(Value::Object(raw)) = limits.get(key) else {
            continue;
        };
        let Some((length, window)) = parse_window(raw, now_ms) else {
            continue;
        };
        let slot = if (4.0 * 3600.0..=6.0 * 3600.0).contains(&length) {
            &mut usage.five_hour
        } else if (6.0 * 86_400.0..=8.0 * 86_400.0).contains(&length) {
            &mut usage.weekly
        } else {
            continue;
        };
        if slot.is_none_or(|old| window.used_percent > old.used_percent) {
            *slot = Some(window);
        }
    }
    Ok(usage)
}

/// One window object: its length in seconds and the observed [`Window`].
fn parse_window(raw: &Map<String, Value>, now_ms: i64) -> Option<(f64, Window)> {
    let length = number(raw.get("limit_window_seconds")?)?;
    let used_percent = number(raw.get("used_percent")?)?;
    let reset_at = raw
        .get("reset_at")
        .and_then(number)
        .filter(|&s| s > 0.0)
        .map(|s| (s * 1000.0) as i64);
    let reset_after = raw
        .get("reset_after_seconds")
        .and_then(number)
        .filter(|&s| s >= 0.0)
        .map(|s| now_ms.saturating_add((s * 1000.0) as i64));
    Some((
        length,
        Window {
            used_percent,
            resets_at_ms: reset_at.or(reset_after),
        },
    ))
}

/// New tokens from a successful refresh.
#[derive(Clone, PartialEq)]
pub struct RefreshedTokens {
    /// The new access token.
    pub access_token: String,
    /// A new refresh token, when the server rotated it (refresh tokens are single-use).
    pub refresh_token: Option<String>,
    /// A new id_token, when returned.
    pub id_token: Option<String>,
    /// `now_ms + expires_in × 1000`, when `expires_in` was given.
    pub expires_at_ms: Option<i64>,
}

impl fmt::Debug for RefreshedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshedTokens")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Parses the token endpoint's answer to a refresh, received at `now_ms`.
///
/// An OAuth error body (`{"error": "invalid_grant", "error_description": …}`) becomes a 502 whose
/// message carries the error code, so `cooldown::classify` reads it as an auth failure; a body
/// without a non-empty `access_token` or that is not JSON is a 502 too. Never echoes tokens.
pub fn parse_refresh_response(body: &str, now_ms: i64) -> Result<RefreshedTokens> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        Error::BadGateway(format!(
            "the token endpoint returned malformed JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(root) = value else {
        return Err(Error::BadGateway(
            "the token endpoint returned JSON that is not an object".into(),
        ));
    };
    if let Some(error) = root.get("error") {
        let code = non_empty(error)
            .or_else(|| error.get("code").and_then(non_empty))
            .unwrap_or_else(|| "unknown_error".into());
        let description = root
            .get("error_description")
            .or_else(|| error.get("message"))
            .and_then(non_empty)
            .map(|d| format!(": {}", printable(&d)))
            .unwrap_or_default();
        return Err(Error::BadGateway(format!(
            "token refresh refused: {}{description}",
            printable(&code)
        )));
    }
    let access_token = root
        .get("access_token")
        .and_then(non_empty)
        .ok_or_else(|| Error::BadGateway("the token endpoint returned no access_token".into()))?;
    Ok(RefreshedTokens {
        access_token,
        refresh_token: root.get("refresh_token").and_then(non_empty),
        id_token: root.get("id_token").and_then(non_empty),
        expires_at_ms: root
            .get("expires_in")
            .and_then(number)
            .filter(|&s| s > 0.0)
            .map(|s| now_ms.saturating_add((s * 1000.0) as i64)),
    })
}

/// A finite number, also when sent as a numeric string.
fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A string value that is not blank.
fn non_empty(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// At most 200 printable characters of a server-supplied string, for an error message.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_007_200_000;

    fn win(used: f64, resets_at_ms: Option<i64>) -> Option<Window> {
        Some(Window {
            used_percent: used,
            resets_at_ms,
        })
    }

    fn check(input: Value, expected: UsageWindows) {
        assert_eq!(
            parse_usage(&input.to_string(), NOW).unwrap(),
            expected,
            "input: {input}"
        );
    }

    fn five(used: f64, extra: Value) -> Value {
        let mut w = json!({"used_percent": used, "limit_window_seconds": 18000});
        w.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        w
    }

    fn week(used: f64, extra: Value) -> Value {
        let mut w = json!({"used_percent": used, "limit_window_seconds": 604800});
        w.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        w
    }

    #[test]
    fn usage_table() {
        check(
            json!({
                "plan_type": "plus",
                "rate_limit": {
                    "allowed": true,
                    "limit_reached": false,
                    "primary_window": five(12.5, json!({"reset_after_seconds": 600, "reset_at": 1_800_007_800})),
                    "secondary_window": week(40.0, json!({"reset_after_seconds": 86400}))
                },
                "credits": {"has_credits": false}
            }),
            UsageWindows {
                five_hour: win(12.5, Some(NOW + 600_000)),
                weekly: win(40.0, Some(NOW + 86_400_000)),
                plan: Some("plus".into()),
            },
        );
        // Swapped order: decided by length, not position.
        check(
            json!({"rate_limit": {
                "primary_window": week(70.0, json!({"reset_at": 1_800_100_000})),
                "secondary_window": five(3.0, json!({"reset_after_seconds": 10}))
            }}),
            UsageWindows {
                five_hour: win(3.0, Some(NOW + 10_000)),
                weekly: win(70.0, Some(1_800_100_000_000)),
                plan: None,
            },
        );
        // A free plan with only a weekly window in the primary slot.
        check(
            json!({"plan_type": "free", "rate_limit": {"primary_window": week(5.0, json!({})), "secondary_window": null}}),
            UsageWindows {
                five_hour: None,
                weekly: win(5.0, None),
                plan: Some("free".into()),
            },
        );
        // Missing secondary.
        check(
            json!({"rate_limit": {"primary_window": five(99.0, json!({"reset_after_seconds": 1.5}))}}),
            UsageWindows {
                five_hour: win(99.0, Some(NOW + 1_500)),
                weekly: None,
                plan: None,
            },
        );
        // reset_at wins over reset_after_seconds; numeric strings are read.
        check(
            json!({"rate_limit": {"primary_window": {
                "used_percent": "20", "limit_window_seconds": "18000",
                "reset_after_seconds": 5, "reset_at": 1_800_009_000
            }}}),
            UsageWindows {
                five_hour: win(20.0, Some(1_800_009_000_000)),
                ..UsageWindows::default()
            },
        );
        // Unknown values stay None: no length, no used_percent, other lengths, wrong types.
        check(
            json!({"plan_type": "", "rate_limit": {
                "primary_window": {"used_percent": 50, "reset_after_seconds": 5},
                "secondary_window": {"limit_window_seconds": 604800, "reset_after_seconds": 5}
            }}),
            UsageWindows::default(),
        );
        check(
            json!({"rate_limit": {
                "primary_window": {"used_percent": 50, "limit_window_seconds": 86400},
                "secondary_window": {"used_percent": true, "limit_window_seconds": 18000}
            }}),
            UsageWindows::default(),
        );
        check(
            json!({"rate_limit": null, "plan_type": 5}),
            UsageWindows::default(),
        );
        check(json!({"rate_limit": "busy"}), UsageWindows::default());
        check(json!({}), UsageWindows::default());
        // Two windows of the same length: the fuller one counts.
        check(
            json!({"rate_limit": {
                "primary_window": five(10.0, json!({})),
                "secondary_window": five(60.0, json!({}))
            }}),
            UsageWindows {
                five_hour: win(60.0, None),
                ..UsageWindows::default()
            },
        );
        // Negative or zero reset values are ignored.
        check(
            json!({"rate_limit": {"primary_window": five(1.0, json!({"reset_at": 0, "reset_after_seconds": -3}))}}),
            UsageWindows {
                five_hour: win(1.0, None),
                ..UsageWindows::default()
            },
        );
    }

    #[test]
    fn malformed_usage_is_an_error() {
        for body in [
            "",
            "{",
            "<html>502 Bad Gateway</html>",
            "[1]",
            "\"text\"",
            "null",
        ] {
            let error = parse_usage(body, NOW).unwrap_err();
            assert_eq!(error.status(), 502, "{body}");
            assert!(error.to_string().contains("usage endpoint"), "{error}");
        }
    }

    #[test]
    fn refresh_response() {
        let ok = parse_refresh_response(
            r#"{"access_token":"at2","refresh_token":"rt2","id_token":"id2","expires_in":3600,"token_type":"Bearer"}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(
            ok,
            RefreshedTokens {
                access_token: "at2".into(),
                refresh_token: Some("rt2".into()),
                id_token: Some("id2".into()),
                expires_at_ms: Some(NOW + 3_600_000),
            }
        );
        assert!(!format!("{ok:?}").contains("at2"));
        let minimal = parse_refresh_response(r#"{"access_token":"at3"}"#, NOW).unwrap();
        assert_eq!(minimal.refresh_token, None);
        assert_eq!(minimal.id_token, None);
        assert_eq!(minimal.expires_at_ms, None);

        let refused = parse_refresh_response(
            r#"{"error":"invalid_grant","error_description":"Refresh token has been used"}"#,
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "token refresh refused: invalid_grant: Refresh token has been used"
        );
        assert_eq!(
            crate::pool::cooldown::classify(&refused.to_string(), NOW),
            crate::pool::cooldown::Failure::Auth
        );
        let nested = parse_refresh_response(
            r#"{"error":{"code":"refresh_token_expired","message":"expired"}}"#,
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            nested.to_string(),
            "token refresh refused: refresh_token_expired: expired"
        );
        for body in [
            "",
            "[]",
            r#"{"access_token":""}"#,
            r#"{"refresh_token":"x"}"#,
        ] {
            assert_eq!(
                parse_refresh_response(body, NOW).unwrap_err().status(),
                502,
                "{body}"
            );
        }
    }
}
