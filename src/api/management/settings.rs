//! `GET /management/v1/config`: the effective configuration (file, environment and defaults
//! merged, as the server runs it) without secrets, for the dashboard's Settings page.
//!
//! Secrets never leave: the operator secret and the master key are named by where they come
//! from, provider `env` values and Telegram bot tokens are not shown, and an `extra_args` word
//! that looks like a credential is replaced.

use crate::api::auth::Principal;
use crate::app::App;
use crate::config::Config;
use crate::error::Result;
use crate::http::{Request, Response};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// What replaces a value that is not shown.
const HIDDEN: &str = "[hidden]";

/// The effective configuration.
pub fn config(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    Ok(Response::envelope(&request.request_id, view(&app.config)))
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// A command-line word, unless it looks like it carries a credential.
fn shown_arg(arg: &str) -> &str {
    let lower = arg.to_ascii_lowercase();
    let secret = ["key", "token", "secret", "password", "auth"]
        .iter()
        .any(|word| lower.contains(word));
    if secret && arg.contains('=') {
        HIDDEN
    } else {
        arg
    }
}

fn view(config: &Config) -> Value {
    let providers: Vec<Value> = config
        .providers
        .iter()
        .into_iter()
        .map(|(name, p)| {
            json!({
                "name": name,
                "enabled": p.is_enabled(),
                "binary": p.binary,
                "default_model": p.default_model,
                "models": p.models,
                "allow_any_model": p.allow_any_model,
                "mode": p.mode.as_str(),
                "warm_idle_seconds": p.warm_idle(),
                "stall_timeout_seconds": p.stall_timeout(),
                "turn_timeout_seconds": p.turn_timeout(),
                "extra_args": p.extra_args.iter().map(|a| shown_arg(a)).collect::<Vec<_>>(),
                // Names only: values are often API keys.
                "env": p.env.keys().collect::<Vec<_>>(),
                "auth_path": p.auth_path.as_deref().map(path),
            })
        })
        .collect();
    let s = &config.server;
    let telegram = &config.channels.telegram;
    json!({
        "source": config.source.as_deref().map(path),
        "server": {
            "host": s.host,
            "port": s.port,
            "public_url": s.public_url,
            "workers": s.workers,
            "queue": s.queue,
            "turn_workers": s.turn_workers,
            "max_body_bytes": s.max_body_bytes,
            "read_timeout_seconds": s.read_timeout_seconds,
            "body_timeout_seconds": s.body_timeout_seconds,
            "min_body_rate_bytes": s.min_body_rate_bytes,
            "max_pending_bodies": s.max_pending_bodies,
            "max_connections_per_ip": s.max_connections_per_ip,
            "shutdown_grace_seconds": s.shutdown_grace_seconds,
            "image_fetch_private": s.image_fetch_private,
            "max_warm_processes": s.max_warm_processes,
        },
        "storage": {
            "data_dir": path(&config.storage.data_dir),
            "database_path": path(&config.storage.database_path()),
        },
        "workspace": {
            "root": path(&config.workspace.root),
            "lock_timeout_seconds": config.workspace.lock_timeout_seconds,
            "default_template": config.workspace.default_template,
        },
        "providers": providers,
        "accounts": {
            "refresh_interval_seconds": config.accounts.refresh_interval_seconds,
            "usage_endpoints": config.accounts.usage_endpoints,
            "oauth_token_url": config.accounts.oauth_token_url,
            "headroom_threshold_percent": config.accounts.headroom_threshold_percent,
        },
        "users": {"default_max_concurrency": config.users.default_max_concurrency},
        "logging": {
            "level": config.logging.level,
            "json": config.logging.json,
            "root": config.logging.root.as_deref().map(path),
            "retention_days": config.logging.retention_days,
        },
        "telemetry": {
            "enabled": config.telemetry.enabled,
            "trace_root": config.telemetry.trace_root.as_deref().map(path),
            "trace_retention_days": config.telemetry.trace_retention_days,
        },
        "release": {
            "enabled": config.release.enabled,
            "repository": config.release.repository,
            "api_base_url": config.release.api_base_url,
        },
        "channels": {"telegram": {
            "enabled": telegram.enabled,
            "receive_mode": telegram.receive_mode,
            "bots": telegram.bots.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        }},
        "sandbox": {
            "mode": config.sandbox.mode.as_str(),
            "read_paths": config.sandbox.read_paths.iter().map(|p| path(p)).collect::<Vec<_>>(),
        },
        "secrets": {
            "operator_secret": if config.secrets.operator_secret.is_some() {
                "environment (API_TOKEN)"
            } else {
                "generated file (<data_dir>/operator.secret)"
            },
            "master_key": if config.secrets.master_key.is_some() {
                "environment (UAG_MASTER_KEY)"
            } else {
                "file (<data_dir>/master.key)"
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{self, TestApp};

    #[test]
    fn arguments_that_carry_credentials_are_hidden() {
        for (arg, expected) in [
            ("--verbose", "--verbose"),
            ("--api-key=sk-123", HIDDEN),
            ("--token=abc", HIDDEN),
            ("--auth-file", "--auth-file"),
            ("model=gpt", "model=gpt"),
        ] {
            assert_eq!(shown_arg(arg), expected, "{arg}");
        }
    }

    /// The configuration is shown, and no secret of it is.
    #[test]
    fn no_secret_is_shown() {
        let mut config = Config::default();
        config.secrets.operator_secret = Some("op-secret-value".into());
        config.secrets.master_key = Some("aa".repeat(32));
        config
            .providers
            .codex
            .env
            .insert("OPENAI_API_KEY".into(), "sk-live-value".into());
        config.providers.codex.extra_args = vec!["--api-key=sk-arg-value".into()];
        let bot = "name = \"helper\"\ntoken = \"123:bot-token-value\"\n\
                   webhook_secret = \"hook-secret-value\"\n";
        config
            .channels
            .telegram
            .bots
            .push(toml::from_str(bot).expect("a bot block"));
        let data = view(&config);
        let text = data.to_string();
        for secret in [
            "op-secret-value",
            &"aa".repeat(32),
            "sk-live-value",
            "sk-arg-value",
            "bot-token-value",
            "hook-secret-value",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(data["providers"][0]["env"], json!(["OPENAI_API_KEY"]));
        assert_eq!(data["providers"][0]["extra_args"], json!([HIDDEN]));
        assert_eq!(data["channels"]["telegram"]["bots"], json!(["helper"]));
        assert_eq!(
            data["secrets"]["operator_secret"],
            "environment (API_TOKEN)"
        );
    }

    #[test]
    fn the_route_answers_in_the_envelope() {
        let test = TestApp::new();
        let (status, body) =
            testing::json(test.operator("GET", "/management/v1/config", None).unwrap());
        assert_eq!(status, 200);
        assert_eq!(body["data"]["providers"][0]["name"], "codex");
        assert!(body["data"]["server"]["workers"].as_u64().unwrap() > 0);
        assert!(!body.to_string().contains(&test.app.operator_secret));
    }
}
