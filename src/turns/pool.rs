//! The pool account of a turn: which one runs it (`pool::select` over the accounts, the session's
//! CLI state moved along when the account changes), and the run's effect on the account's health,
//! recorded best-effort: bookkeeping that fails is logged, never allowed to cost a turn its record.

use super::attempt::Outcome;
use super::TurnRequest;
use crate::app::App;
use crate::error::{Error, Result};
use crate::providers::Provider;
use crate::store::{self, accounts::Account};

/// Records a run's effect on its account (cooldown, needs-reauth, or a success); returns whether
/// the failure was the account's (so another account may help). Bookkeeping errors are logged:
/// they must not cost the turn its record.
pub(super) fn record_health(app: &App, account: &Account, result: &Outcome) -> bool {
    let recorded = if result.failed() {
        let message = format!("{}\n{}", result.error_message(), result.process.stderr_tail);
        crate::accounts::record_failure(&app.store, &account.id, &message)
    } else {
        crate::accounts::record_success(&app.store, &account.id).map(|_| false)
    };
    recorded.unwrap_or_else(|error| {
        log::error!("recording the health of account {}: {error}", account.id);
        false
    })
}

/// Picks the pool account for a codex turn (none when the pool is empty: the provider's default
/// home is used). Moves the session's CLI state when the sticky account is not the one chosen.
/// A `pool_select` span says which account and why.
pub(super) fn choose_account(
    app: &App,
    request: &TurnRequest,
    sticky: Option<&str>,
) -> Result<Option<Account>> {
    let span = crate::telemetry::span("pool_select");
    let chosen = select_account(app, request, sticky, &span);
    match &chosen {
        Ok(Some(account)) => span.attr("account", &account.id),
        Ok(None) => span.attr("account", "none"),
        Err(error) => {
            span.attr("error", error.code());
            span.fail();
        }
    }
    chosen
}

fn select_account(
    app: &App,
    request: &TurnRequest,
    sticky: Option<&str>,
    span: &crate::telemetry::Span,
) -> Result<Option<Account>> {
    if request.provider != Provider::Codex {
        return Ok(None);
    }
    let accounts = app
        .store
        .read(|conn| store::accounts::list(conn, Some("codex")))?;
    if accounts.is_empty() {
        return Ok(None);
    }
    let now = crate::clock::now_ms();
    let snapshots: Vec<_> = accounts.iter().map(crate::accounts::snapshot).collect();
    let threshold = app.config.accounts.headroom_threshold_percent;
    match crate::pool::select::select(&snapshots, sticky, threshold, now) {
        crate::pool::select::Selection::Chosen {
            id,
            reason,
            migrate_from,
        } => {
            span.attr("reason", reason.as_str());
            let account = accounts
                .into_iter()
                .find(|a| a.id == id)
                .ok_or_else(|| Error::Internal("selected a missing account".into()))?;
            let data_dir = &app.config.storage.data_dir;
            if let Some(from) = &migrate_from {
                let user = request.owner.id();
                crate::accounts::migrate_session_state(
                    &crate::accounts::home(data_dir, "codex", Some(from), user),
                    &crate::accounts::home(data_dir, "codex", Some(&id), user),
                )?;
            }
            app.store.write(|tx| {
                crate::audit::record(tx, crate::audit::Record {
                    actor: &crate::audit::Actor::System,
                    action: "account.selected",
                    target_type: "account",
                    target_id: &id,
                    before: None,
                    after: Some(serde_json::json!({"reason": reason.as_str(), "migrated_from": migrate_from, "user_id": request.owner.id()})),
                    request_id: None,
                })
            })?;
            Ok(Some(account))
        }
        crate::pool::select::Selection::NoneReady { next_ready_at_ms } => {
            let now = crate::clock::now_ms();
            Err(Error::NoAccountReady {
                message: match next_ready_at_ms {
                    Some(at) => format!(
                        "no codex account is ready; the next one frees up at {}",
                        crate::clock::rfc3339(at)
                    ),
                    None => "no codex account is usable (all disabled or need re-authentication)"
                        .to_string(),
                },
                // Rounded up, at least 1 s; none when no account will free up by itself.
                retry_after_secs: next_ready_at_ms
                    .map(|at| ((at - now).max(0) as u64).div_ceil(1000).max(1)),
            })
        }
    }
}
