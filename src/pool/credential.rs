//! Validating an uploaded provider credential and reading or updating the tokens inside one.
//!
//! Owns the accepted credential shapes for `provider = codex`: `OAUTH_SESSION` is codex's own
//! `auth.json` (`{"OPENAI_API_KEY": null|string, "tokens": {"id_token", "access_token",
//! "refresh_token", "account_id"?}, "last_refresh"?}`), `API_KEY` is one bare key. It produces the
//! exact text the vault seals and reads expiry, account id, email and plan from the JWT claims.
//! Must not log, store or echo credential text: error messages name fields, never values.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::fmt;

/// The largest credential accepted, in bytes (a codex auth.json is a few KiB).
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;

/// The one provider whose accounts are pooled.
pub const PROVIDER_CODEX: &str = "codex";

/// The claim namespace codex's id_token carries the ChatGPT account in.
const OPENAI_AUTH_CLAIM: &str = "https://api.openai.com/auth";

/// How an account authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A ChatGPT login: codex's `auth.json`.
    OauthSession,
    /// An OpenAI API key.
    ApiKey,
}

impl CredentialKind {
    /// Parses `OAUTH_SESSION` or `API_KEY` (case-insensitive); anything else is a 400 on `auth_type`.
    pub fn parse(text: &str) -> Result<CredentialKind> {
        match text.trim().to_ascii_uppercase().as_str() {
            "OAUTH_SESSION" => Ok(CredentialKind::OauthSession),
            "API_KEY" => Ok(CredentialKind::ApiKey),
            _ => Err(Error::bad_param(
                "auth_type",
                "auth_type must be OAUTH_SESSION or API_KEY",
            )),
        }
    }

    /// The stored and wire form: `OAUTH_SESSION` or `API_KEY`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::OauthSession => "OAUTH_SESSION",
            CredentialKind::ApiKey => "API_KEY",
        }
    }
}

/// A credential that passed validation, with what could be read from it.
#[derive(Clone, PartialEq)]
pub struct ValidatedCredential {
    /// How the account authenticates.
    pub kind: CredentialKind,
    /// The exact text to seal: compact JSON for an OAuth session, the trimmed key for an API key.
    pub normalized: String,
    /// Expiry of the OAuth access token (its JWT `exp`), when readable.
    pub access_token_expires_at_ms: Option<i64>,
    /// A label suggestion: the email in the id_token, when present.
    pub account_label_hint: Option<String>,
    /// The ChatGPT plan (`chatgpt_plan_type`), when present.
    pub plan: Option<String>,
    /// The ChatGPT account id (`chatgpt_account_id`, else `tokens.account_id`), when present.
    pub chatgpt_account_id: Option<String>,
}

impl fmt::Debug for ValidatedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedCredential")
            .field("kind", &self.kind)
            .field(
                "normalized",
                &format_args!("<{} bytes redacted>", self.normalized.len()),
            )
            .field(
                "access_token_expires_at_ms",
                &self.access_token_expires_at_ms,
            )
            .field("account_label_hint", &self.account_label_hint)
            .field("plan", &self.plan)
            .field("chatgpt_account_id", &self.chatgpt_account_id)
            .finish()
    }
}

/// Validates an uploaded credential for `provider` and `auth_type`; every failure is a 400 naming
/// the field (`provider`, `auth_type` or `credential`) without echoing the credential.
///
/// Also used to re-read expiry and claims from a credential after a refresh or a sync-back.
pub fn validate(provider: &str, auth_type: &str, text: &str) -> Result<ValidatedCredential> {
    if provider.trim() != PROVIDER_CODEX {
        return Err(Error::bad_param(
            "provider",
            "only codex accounts are pooled; gemini and opencode use the host's CLI login",
        ));
    }
    let kind = CredentialKind::parse(auth_type)?;
    if text.len() > MAX_CREDENTIAL_BYTES {
        return Err(Error::bad_param(
            "credential",
            format!("credential is larger than {MAX_CREDENTIAL_BYTES} bytes"),
        ));
    }
    match kind {
        CredentialKind::OauthSession => validate_oauth(text),
        CredentialKind::ApiKey => validate_api_key(text),
    }
}

fn validate_oauth(text: &str) -> Result<ValidatedCredential> {
    let bad = |message: String| Error::bad_param("credential", message);
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| {
        bad(format!(
            "an OAUTH_SESSION credential must be codex's auth.json, but it is not JSON ({})",
            describe_json_error(&e)
        ))
    })?;
    let Value::Object(root) = &value else {
        return Err(bad(
            "an OAUTH_SESSION credential must be a JSON object shaped like codex's auth.json"
                .into(),
        ));
    };
    match root.get("OPENAI_API_KEY") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(bad("OPENAI_API_KEY must be null or a string".into())),
    }
    let tokens = match root.get("tokens") {
        Some(Value::Object(tokens)) => tokens,
        Some(_) => return Err(bad("tokens must be an object".into())),
        None => return Err(bad(
            "missing tokens: upload the whole auth.json of a logged-in codex (~/.codex/auth.json)"
                .into(),
        )),
    };
    let required = |name: &str| -> Result<&str> {
        match tokens.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) | None | Some(Value::Null) => Err(bad(format!(
                "missing tokens.{name}: re-import the full auth.json of a logged-in codex"
            ))),
            Some(_) => Err(bad(format!("tokens.{name} must be a string"))),
        }
    };
    let id_token = required("id_token")?;
    let access_token = required("access_token")?;
    required("refresh_token")?;
    match tokens.get("account_id") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(bad("tokens.account_id must be a string".into())),
    }
    let id_claims = jwt_claims(id_token).ok_or_else(|| {
        bad("tokens.id_token is not a JWT (it may have been cut off when copied)".into())
    })?;
    let access_claims = jwt_claims(access_token);
    let auth_claim = |claims: &Map<String, Value>, key: &str| -> Option<String> {
        non_empty(claims.get(OPENAI_AUTH_CLAIM)?.get(key)?)
    };
    let from_claims = |key: &str| -> Option<String> {
        auth_claim(&id_claims, key).or_else(|| auth_claim(access_claims.as_ref()?, key))
    };
    let email = id_claims.get("email").and_then(non_empty).or_else(|| {
        non_empty(
            access_claims
                .as_ref()?
                .get("https://api.openai.com/profile")?
                .get("email")?,
        )
    });
    Ok(ValidatedCredential {
        kind: CredentialKind::OauthSession,
        normalized: value.to_string(),
        access_token_expires_at_ms: access_claims.as_ref().and_then(expiry_ms),
        account_label_hint: email,
        plan: from_claims("chatgpt_plan_type"),
        chatgpt_account_id: from_claims("chatgpt_account_id")
            .or_else(|| tokens.get("account_id").and_then(non_empty)),
    })
}

fn validate_api_key(text: &str) -> Result<ValidatedCredential> {
    let bad = |message: &str| Error::bad_param("credential", message);
    let key = text.trim();
    if key.is_empty() {
        return Err(bad("the API key is empty"));
    }
    if key.starts_with(['{', '[', '"']) {
        return Err(bad(
            "an API_KEY credential is the bare key on one line; this looks like JSON (an auth.json is auth_type OAUTH_SESSION)",
        ));
    }
    if key.chars().any(char::is_whitespace) {
        return Err(bad(
            "the API key must be a single line without spaces or line breaks",
        ));
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad(
            "the API key contains characters other than printable ASCII",
        ));
    }
    Ok(ValidatedCredential {
        kind: CredentialKind::ApiKey,
        normalized: key.to_string(),
        access_token_expires_at_ms: None,
        account_label_hint: None,
        plan: None,
        chatgpt_account_id: None,
    })
}

/// The OAuth access token inside a normalized `OAUTH_SESSION` credential; `None` for an API key
/// or anything without `tokens.access_token`.
pub fn access_token(normalized: &str) -> Option<String> {
    token(normalized, "access_token")
}

/// The OAuth refresh token inside a normalized `OAUTH_SESSION` credential, if any.
pub fn refresh_token(normalized: &str) -> Option<String> {
    token(normalized, "refresh_token")
}

fn token(normalized: &str, name: &str) -> Option<String> {
    let value: Value = serde_json::from_str(normalized).ok()?;
    non_empty(value.get("tokens")?.get(name)?)
}

/// Writes refreshed tokens into a normalized `OAUTH_SESSION` credential: `tokens.access_token`,
/// `tokens.refresh_token` and `tokens.id_token` when given, and `last_refresh` (RFC 3339 of
/// `now_ms`); every other field is kept. Returns the new text to seal (re-run [`validate`] on it to
/// read the new expiry). Fails with an internal error if `normalized` is not such a credential.
pub fn apply_refresh(
    normalized: &str,
    new_access: &str,
    new_refresh: Option<&str>,
    new_id: Option<&str>,
    now_ms: i64,
) -> Result<String> {
    let not_oauth = || {
        Error::Internal(
            "stored credential is not a codex auth.json; cannot apply a token refresh".into(),
        )
    };
    if new_access.trim().is_empty() {
        return Err(Error::Internal(
            "token refresh produced an empty access token".into(),
        ));
    }
    let mut value: Value = serde_json::from_str(normalized).map_err(|_| not_oauth())?;
    let root = value.as_object_mut().ok_or_else(not_oauth)?;
    let tokens = root
        .get_mut("tokens")
        .and_then(Value::as_object_mut)
        .ok_or_else(not_oauth)?;
    tokens.insert("access_token".into(), Value::String(new_access.to_string()));
    for (name, new) in [("refresh_token", new_refresh), ("id_token", new_id)] {
        if let Some(new) = new.filter(|t| !t.trim().is_empty()) {
            tokens.insert(name.into(), Value::String(new.to_string()));
        }
    }
    root.insert(
        "last_refresh".into(),
        Value::String(crate::clock::rfc3339(now_ms)),
    );
    Ok(value.to_string())
}

/// Decodes base64url (RFC 4648 §5), with or without padding.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    crate::crypto::base64_decode(
        text,
        crate::crypto::Base64::Url,
        crate::crypto::Padding::Optional,
    )
}

/// The claims (payload) of a JWT `header.payload.signature`, when it decodes to a JSON object.
/// The signature is not checked: the claims only inform, the provider decides.
pub fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    match serde_json::from_slice(&base64url_decode(payload)?).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// The `exp` claim (epoch seconds, integer or not) as epoch ms.
fn expiry_ms(claims: &Map<String, Value>) -> Option<i64> {
    let exp = claims.get("exp")?;
    let seconds = exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))?;
    seconds.checked_mul(1000).filter(|&ms| ms > 0)
}

/// A string value that is not blank.
fn non_empty(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A serde_json error as line/column only (its message never contains the input).
fn describe_json_error(error: &serde_json::Error) -> String {
    format!("line {}, column {}", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut acc = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                acc |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn jwt(claims: Value) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64url(claims.to_string().as_bytes())
        )
    }

    fn id_token() -> String {
        jwt(json!({
            "email": "dev@example.com",
            "exp": 1_800_003_600,
            "https://api.openai.com/auth": {
                "chatgpt_account_id": "acc-123",
                "chatgpt_plan_type": "plus"
            }
        }))
    }

    fn access() -> String {
        jwt(json!({"exp": 1_800_864_000, "scp": ["openid"]}))
    }

    fn auth_json() -> Value {
        json!({
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": id_token(),
                "access_token": access(),
                "refresh_token": "rt_secret_value",
                "account_id": "acc-123"
            },
            "last_refresh": "2027-01-01T00:00:00Z"
        })
    }

    fn check(auth_type: &str, input: &str, expected: Result<&str, &str>) {
        let got = validate("codex", auth_type, input);
        match (&got, expected) {
            (Ok(v), Ok(normalized)) => assert_eq!(v.normalized, normalized, "input: {input}"),
            (Err(e), Err(fragment)) => {
                assert_eq!(e.param(), Some("credential"), "{e}");
                assert_eq!(e.status(), 400);
                assert!(e.to_string().contains(fragment), "{e} lacks {fragment:?}");
                assert!(!e.to_string().contains("rt_secret_value"), "{e}");
            }
            _ => panic!("input {input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn good_oauth_session_reads_claims() {
        let text = format!(
            "\n  {}  \n",
            serde_json::to_string_pretty(&auth_json()).unwrap()
        );
        let v = validate("codex", "OAUTH_SESSION", &text).unwrap();
        assert_eq!(v.kind, CredentialKind::OauthSession);
        assert_eq!(v.normalized, auth_json().to_string());
        assert_eq!(v.access_token_expires_at_ms, Some(1_800_864_000_000));
        assert_eq!(v.account_label_hint.as_deref(), Some("dev@example.com"));
        assert_eq!(v.plan.as_deref(), Some("plus"));
        assert_eq!(v.chatgpt_account_id.as_deref(), Some("acc-123"));
        assert!(!format!("{v:?}").contains("rt_secret_value"));
        assert_eq!(access_token(&v.normalized), Some(access()));
        assert_eq!(
            refresh_token(&v.normalized).as_deref(),
            Some("rt_secret_value")
        );
    }

    #[test]
    fn oauth_session_without_optional_claims() {
        let mut value = auth_json();
        value["tokens"]["id_token"] = Value::String(jwt(json!({"sub": "x"})));
        value["tokens"]["access_token"] = Value::String("opaque-token".into());
        value["tokens"]
            .as_object_mut()
            .unwrap()
            .remove("account_id");
        value.as_object_mut().unwrap().remove("last_refresh");
        let v = validate("codex", "oauth_session", &value.to_string()).unwrap();
        assert_eq!(v.access_token_expires_at_ms, None);
        assert_eq!(v.account_label_hint, None);
        assert_eq!(v.plan, None);
        assert_eq!(v.chatgpt_account_id, None);
    }

    #[test]
    fn oauth_session_errors() {
        let without = |path: &str| {
            let mut value = auth_json();
            value["tokens"].as_object_mut().unwrap().remove(path);
            value.to_string()
        };
        let with = |field: &str, new: Value| {
            let mut value = auth_json();
            value["tokens"][field] = new;
            value.to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            ("sk-abc".into(), "not JSON"),
            ("{\"tokens\": {".into(), "not JSON"),
            ("[1, 2]".into(), "JSON object"),
            ("{\"OPENAI_API_KEY\": \"sk-x\"}".into(), "missing tokens"),
            ("{\"tokens\": \"x\"}".into(), "tokens must be an object"),
            (
                "{\"OPENAI_API_KEY\": 5, \"tokens\": {}}".into(),
                "OPENAI_API_KEY",
            ),
            (without("id_token"), "missing tokens.id_token"),
            (without("refresh_token"), "missing tokens.refresh_token"),
            (without("access_token"), "missing tokens.access_token"),
            (
                with("id_token", Value::String("  ".into())),
                "missing tokens.id_token",
            ),
            (
                with("refresh_token", json!(7)),
                "tokens.refresh_token must be a string",
            ),
            (
                with("account_id", json!(7)),
                "tokens.account_id must be a string",
            ),
            (
                with("id_token", Value::String("not-a-jwt".into())),
                "not a JWT",
            ),
            (
                with("id_token", Value::String("a.!!!.c".into())),
                "not a JWT",
            ),
        ];
        for (input, fragment) in cases {
            check("OAUTH_SESSION", &input, Err(fragment));
        }
    }

    #[test]
    fn api_keys() {
        check("API_KEY", "  sk-proj-abc123\n", Ok("sk-proj-abc123"));
        check("api_key", "sk-abc", Ok("sk-abc"));
        check("API_KEY", "   \n", Err("empty"));
        check("API_KEY", "sk-abc def", Err("single line"));
        check("API_KEY", "sk-abc\nsk-def", Err("single line"));
        check("API_KEY", "sk-abc\tdef", Err("single line"));
        check(
            "API_KEY",
            "{\"OPENAI_API_KEY\": \"sk-abc\"}",
            Err("looks like JSON"),
        );
        check("API_KEY", "sk-\u{7f}abc", Err("printable ASCII"));
        let v = validate("codex", "API_KEY", "sk-abc").unwrap();
        assert_eq!(v.kind, CredentialKind::ApiKey);
        assert_eq!(v.access_token_expires_at_ms, None);
        assert_eq!(access_token(&v.normalized), None);
    }

    #[test]
    fn provider_auth_type_and_size() {
        let e = validate("gemini", "API_KEY", "k").unwrap_err();
        assert_eq!(e.param(), Some("provider"));
        let e = validate("codex", "SERVICE_ACCOUNT", "k").unwrap_err();
        assert_eq!(e.param(), Some("auth_type"));
        let big = "k".repeat(MAX_CREDENTIAL_BYTES + 1);
        check("API_KEY", &big, Err("larger than"));
        assert_eq!(
            CredentialKind::parse("API_KEY").unwrap().as_str(),
            "API_KEY"
        );
    }

    #[test]
    fn refresh_updates_tokens_and_keeps_the_rest() {
        let mut original = auth_json();
        original["custom"] = json!({"keep": true});
        let normalized = original.to_string();
        let now = 1_800_007_200_123;
        let updated =
            apply_refresh(&normalized, "new-access", Some("new-refresh"), None, now).unwrap();
        let value: Value = serde_json::from_str(&updated).unwrap();
        assert_eq!(value["tokens"]["access_token"], "new-access");
        assert_eq!(value["tokens"]["refresh_token"], "new-refresh");
        assert_eq!(value["tokens"]["id_token"], original["tokens"]["id_token"]);
        assert_eq!(value["tokens"]["account_id"], "acc-123");
        assert_eq!(value["last_refresh"], "2027-01-15T10:00:00.123Z");
        assert_eq!(value["custom"], json!({"keep": true}));
        assert_eq!(value["OPENAI_API_KEY"], Value::Null);
        // The result is still a valid credential.
        validate("codex", "OAUTH_SESSION", &updated).unwrap();

        let new_id = jwt(json!({"email": "other@example.com"}));
        let updated = apply_refresh(&normalized, &access(), None, Some(&new_id), now).unwrap();
        assert_eq!(refresh_token(&updated).as_deref(), Some("rt_secret_value"));
        let v = validate("codex", "OAUTH_SESSION", &updated).unwrap();
        assert_eq!(v.account_label_hint.as_deref(), Some("other@example.com"));

        assert!(apply_refresh("sk-abc", "a", None, None, now).is_err());
        assert!(apply_refresh("{\"tokens\": 1}", "a", None, None, now).is_err());
        assert!(apply_refresh(&normalized, " ", None, None, now).is_err());
    }

    #[test]
    fn base64url_and_claims() {
        assert_eq!(base64url_decode("aGk").unwrap(), b"hi");
        assert_eq!(base64url_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64url_decode("+/8"), None);
        assert_eq!(base64url_decode("a"), None);
        for n in 0..7u8 {
            let bytes: Vec<u8> = (0..n)
                .map(|i| i.wrapping_mul(97).wrapping_add(250))
                .collect();
            assert_eq!(base64url_decode(&b64url(&bytes)).unwrap(), bytes);
        }
        assert_eq!(
            jwt_claims(&jwt(json!({"exp": 5}))).and_then(|c| expiry_ms(&c)),
            Some(5_000)
        );
        assert_eq!(
            jwt_claims(&jwt(json!({"exp": 5.5}))).and_then(|c| expiry_ms(&c)),
            Some(5_000)
        );
        assert_eq!(jwt_claims(&jwt(json!([1]))), None);
        assert_eq!(jwt_claims("a.b"), None);
        assert_eq!(jwt_claims("a.b.c.d"), None);
    }
}
