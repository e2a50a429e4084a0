//! Liveness and the root redirect.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::Result;
use crate::http::{Request, Response};
use serde_json::json;
use std::sync::Arc;

/// `GET /`: the dashboard.
pub fn root(_app: &Arc<App>, _request: &Request, _principal: &Principal) -> Result<Response> {
    Ok(Response::redirect("/dashboard"))
}

/// `GET /healthz`: 200 while the process serves and its database answers, else 503.
pub fn healthz(app: &Arc<App>, _request: &Request, _principal: &Principal) -> Result<Response> {
    let database_ok = app.store.schema_version().is_ok();
    let status = if database_ok { 200 } else { 503 };
    Ok(Response::json(
        status,
        &json!({
            "status": if database_ok { "ok" } else { "degraded" },
            "version": crate::VERSION,
            "uptime_seconds": app.uptime().as_secs(),
            "database": if database_ok { "ok" } else { "unavailable" },
        }),
    ))
}
