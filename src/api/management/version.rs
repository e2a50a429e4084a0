//! `GET /management/v1/version?check_updates=`: the running version and, on request, the release check.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::release::{CheckStatus, ReleaseCheck};
use serde_json::{json, Value};
use std::sync::Arc;

/// The version, plus the latest release when `check_updates=true` and checking is enabled.
pub fn get(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let check_updates = match request.query_param("check_updates") {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(Error::bad_param(
                "check_updates",
                format!("expected true or false, got `{other}`"),
            ))
        }
    };
    let release = crate::release::check_cached(app, check_updates);
    Ok(Response::envelope(
        &request.request_id,
        json!({"name": "codara", "version": crate::VERSION, "release_check": release_json(&release)}),
    ))
}

/// The wire form of a release check.
pub fn release_json(check: &ReleaseCheck) -> Value {
    json!({
        "enabled": check.enabled,
        "status": match check.status {
            CheckStatus::Disabled => "disabled",
            CheckStatus::NotChecked => "not_checked",
            CheckStatus::Unconfigured => "unconfigured",
            CheckStatus::Ok => "ok",
            CheckStatus::Unavailable => "unavailable",
        },
        "repository": check.repository,
        "current_version": check.current_version,
        "latest_version": check.latest_version,
        "update_available": check.update_available,
        "release_url": check.release_url,
        "error": check.error,
        "cached": check.cached,
    })
}

#[cfg(test)]
mod tests {
    use crate::api::testing::{self, TestApp};

    #[test]
    fn check_updates_is_a_boolean() {
        let test = TestApp::new();
        for (query, expected) in [
            ("", "ok 200"),
            ("?check_updates=", "ok 200"),
            ("?check_updates=false", "ok 200"),
            ("?check_updates=0", "ok 200"),
            ("?check_updates=true", "ok 200"),
            ("?check_updates=1", "ok 200"),
            (
                "?check_updates=yes",
                "400 check_updates: expected true or false, got `yes`",
            ),
        ] {
            let url = format!("/management/v1/version{query}");
            let got = testing::error(test.operator("GET", &url, None));
            assert_eq!(got, expected, "{url}");
        }
        // Checking is off by default: asking does not call out.
        let (_, body) = testing::json(
            test.operator("GET", "/management/v1/version?check_updates=1", None)
                .unwrap(),
        );
        assert_eq!(body["data"]["release_check"]["status"], "disabled");
        assert_eq!(body["data"]["version"], crate::VERSION);
    }
}
