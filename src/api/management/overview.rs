//! `GET /management/v1/overview`: uptime, version, storage and provider configuration, counts.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::Result;
use crate::http::{Request, Response};
use serde_json::json;
use std::sync::Arc;

/// What the operator should act on, one sentence each.
fn warnings(app: &App) -> Vec<String> {
    let mut warnings = Vec::new();
    for (provider, fallbacks) in app.warm.status().1 {
        if let Some(reason) = fallbacks.last_reason {
            warnings.push(format!(
                "{provider} turns ran exec instead of the warm process {} time(s); last: {reason}",
                fallbacks.count
            ));
        }
    }
    if !app.sandbox.enforced() {
        warnings.push(format!(
            "agent runs are not confined ({}); an agent can read the vault key, the database and \
             every tenant's files",
            app.sandbox.describe()
        ));
    }
    warnings
}

/// The operator's landing summary.
pub fn get(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let now_ms = crate::clock::now_ms();
    let active_tokens = app
        .store
        .read(|conn| crate::store::operator_tokens::count_active(conn, now_ms))?;
    let schema_version = app.store.schema_version()?;
    let (users_total, users_active) = app.store.read(crate::store::users::count)?;
    let database_bytes = std::fs::metadata(app.store.path())
        .map(|m| m.len())
        .unwrap_or(0);
    let (warm_agents, fallbacks) = app.warm.status();
    let providers: Vec<_> = app
        .config
        .providers
        .iter()
        .into_iter()
        .map(|(name, provider)| {
            json!({
                "name": name,
                "enabled": provider.is_enabled(),
                "binary": provider.binary,
                "default_model": provider.default_model,
                "models": provider.models,
                "mode": provider.mode.as_str(),
                "warm_idle_seconds": provider.warm_idle(),
                "exec_fallbacks": fallbacks.get(&name).cloned().unwrap_or_default(),
            })
        })
        .collect();
    Ok(Response::envelope(
        &request.request_id,
        json!({
            "version": crate::VERSION,
            "started_at": crate::clock::rfc3339(app.started_at_ms),
            "uptime_seconds": app.uptime().as_secs(),
            "storage": {
                "data_dir": app.config.storage.data_dir.display().to_string(),
                "database_path": app.store.path().display().to_string(),
                "database_bytes": database_bytes,
                "schema_version": schema_version,
            },
            "workspaces_root": app.config.workspace.root.display().to_string(),
            "server": {
                "api_workers": app.config.server.workers,
                "turn_workers": app.config.server.turn_workers,
            },
            "counts": {
                "operator_tokens_active": active_tokens,
                "users_total": users_total,
                "users_active": users_active,
                "providers_enabled": providers.iter().filter(|p| p["enabled"] == true).count(),
            },
            "providers": providers,
            "sandbox": {
                "mode": app.sandbox.mode.as_str(),
                "landlock_abi": app.sandbox.abi,
                "enforced": app.sandbox.enforced(),
                "user_turns_refused": app.sandbox.refuses_users(),
                "status": app.sandbox.describe(),
            },
            "running_cli_processes": crate::process::live_groups(),
            "warm": {
                "max_processes": app.config.server.max_warm_processes,
                "processes": warm_agents,
                "retiring": app.warm.retiring(),
            },
            "warnings": warnings(app),
        }),
    ))
}
