//! `GET /management/v1/overview`: uptime, version, storage and provider configuration, counts,
//! running turns, warm processes, warnings.

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
    // Turns between their first snapshot and their stored row: the ones running now.
    let running_turns: Vec<_> = app
        .store
        .read(crate::store::turn_journal::list)?
        .iter()
        .map(|turn| {
            json!({
                "turn_id": turn.turn_id,
                "user_id": turn.user_id,
                "client_session_id": turn.client_session_id,
                "provider": turn.provider,
                "model": turn.model,
                "workspace_id": turn.workspace_id,
                "account_id": turn.account_id,
                "started_at": crate::clock::rfc3339(turn.started_at),
            })
        })
        .collect();
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
            "running_turns": running_turns,
            "warm": {
                "max_processes": app.config.server.max_warm_processes,
                "processes": warm_agents,
                "retiring": app.warm.retiring(),
            },
            "warnings": warnings(app),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use crate::api::testing::{self, TestApp};
    use crate::store::turn_journal::{self, Entry};

    /// A turn in the journal (between its first snapshot and its stored row) is a running turn.
    #[test]
    fn running_turns_come_from_the_journal() {
        let test = TestApp::new();
        let overview = || {
            testing::json(
                test.operator("GET", "/management/v1/overview", None)
                    .unwrap(),
            )
            .1
        };
        assert_eq!(overview()["data"]["running_turns"], serde_json::json!([]));
        test.app
            .store
            .write(|tx| {
                turn_journal::insert(
                    tx,
                    &Entry {
                        turn_id: "trn_running".into(),
                        user_id: "uag_usr_1".into(),
                        client_session_id: Some("conv".into()),
                        provider: "codex".into(),
                        model: "m".into(),
                        started_at: 1_000,
                        ..Entry::default()
                    },
                )
            })
            .unwrap();
        let running = &overview()["data"]["running_turns"];
        assert_eq!(running[0]["turn_id"], "trn_running");
        assert_eq!(running[0]["client_session_id"], "conv");
        assert_eq!(running[0]["started_at"], "1970-01-01T00:00:01.000Z");
        // The prompt is not part of the overview.
        assert!(running[0].get("prompt").is_none());
    }
}
