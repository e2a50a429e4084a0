//! The provider account pool as a service: adding accounts (validated, sealed), listing,
//! removing, the CLI-primary flag, recovery, health after runs (cooldown, needs-reauth),
//! materializing a credential into the account's isolated CLI home, and sealing back what the CLI
//! refreshed.
//!
//! Owns `<data_dir>/homes/codex/<account_id>/` (0700, `auth.json` 0600). The host's
//! `~/.codex/auth.json` is never read or written. Must not log credentials; selection itself is
//! the pure `pool::select`.

use crate::audit::{self, Actor};
use crate::clock;
use crate::error::{Error, Result};
use crate::pool::{self, select::AccountSnapshot};
use crate::store::{self, accounts::Account, accounts::AccountStatus};
use crate::vault::Vault;
use serde_json::json;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Input of [`add`].
pub struct NewAccount {
    /// Operator-chosen id (`[A-Za-z0-9._-]{1,64}`).
    pub id: String,
    /// Only `codex` is pooled.
    pub provider: String,
    /// `OAUTH_SESSION` or `API_KEY`.
    pub auth_type: String,
    /// Shown name (defaults to the email in the credential, else the id).
    pub label: Option<String>,
    /// The credential file's text.
    pub credential: String,
}

fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_param(
            "id",
            "`id` must be 1-64 letters, digits, `.`, `_` or `-`",
        ))
    }
}

/// Checks a new account's id and credential without touching storage: what a command runs
/// before it opens (and so creates) the database, so that bad input leaves nothing behind.
pub fn check_new(input: &NewAccount) -> Result<()> {
    validate_id(&input.id)?;
    pool::credential::validate(&input.provider, &input.auth_type, &input.credential).map(|_| ())
}

/// Validates, seals and stores a new account.
pub fn add(
    store: &store::Store,
    vault: &Vault,
    input: NewAccount,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<Account> {
    validate_id(&input.id)?;
    let validated =
        pool::credential::validate(&input.provider, &input.auth_type, &input.credential)?;
    let now = clock::now_ms();
    let account = Account {
        id: input.id.clone(),
        provider: input.provider.trim().to_string(),
        auth_type: validated.kind.as_str().to_string(),
        label: input
            .label
            .filter(|l| !l.trim().is_empty())
            .or(validated.account_label_hint.clone())
            .unwrap_or_else(|| input.id.clone()),
        enabled: true,
        cli_primary: false,
        status: AccountStatus::Ready,
        sealed_credential: vault.seal(validated.normalized.as_bytes())?,
        access_token_expires_at: validated.access_token_expires_at_ms,
        plan: validated.plan.clone(),
        chatgpt_account_id: validated.chatgpt_account_id.clone(),
        created_at: now,
        updated_at: now,
        ..Account::default()
    };
    store.write(|tx| {
        let first = store::accounts::list(tx, Some(&account.provider))?.is_empty();
        if !store::accounts::insert(tx, &account)? {
            return Err(Error::Conflict(format!(
                "an account with id {} already exists",
                account.id
            )));
        }
        if first {
            store::accounts::set_primary(tx, &account.provider, &account.id, now)?;
        }
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "account.added",
                target_type: "account",
                target_id: &account.id,
                before: None,
                after: Some(audit::state(&audit::AccountState::new(&account, now))?),
                request_id,
            },
        )
    })?;
    get(store, &input.id)
}

/// One account or 404.
pub fn get(store: &store::Store, id: &str) -> Result<Account> {
    store
        .read(|conn| store::accounts::get(conn, id))?
        .ok_or_else(|| Error::NotFound(format!("no account {id}")))
}

fn change(
    store: &store::Store,
    id: &str,
    action: &str,
    actor: &Actor,
    request_id: Option<&str>,
    apply: impl FnOnce(&mut Account, i64),
) -> Result<Account> {
    store.write(|tx| {
        let before = store::accounts::get(tx, id)?
            .ok_or_else(|| Error::NotFound(format!("no account {id}")))?;
        let now = clock::now_ms();
        let mut account = before.clone();
        apply(&mut account, now);
        account.updated_at = now;
        store::accounts::update(tx, &account)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action,
                target_type: "account",
                target_id: id,
                before: Some(audit::state(&audit::AccountState::new(&before, now))?),
                after: Some(audit::state(&audit::AccountState::new(&account, now))?),
                request_id,
            },
        )?;
        Ok(account)
    })
}

/// Changes label and/or enabled.
pub fn update(
    store: &store::Store,
    id: &str,
    label: Option<String>,
    enabled: Option<bool>,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<Account> {
    if label
        .as_deref()
        .is_some_and(|l| l.trim().is_empty() || l.len() > 200)
    {
        return Err(Error::bad_param(
            "label",
            "`label` must be 1-200 characters",
        ));
    }
    change(
        store,
        id,
        "account.updated",
        actor,
        request_id,
        |account, _| {
            if let Some(label) = label {
                account.label = label.trim().to_string();
            }
            if let Some(enabled) = enabled {
                account.enabled = enabled;
            }
        },
    )
}

/// Clears cooldown and needs-reauth so the account is tried again.
pub fn recover(
    store: &store::Store,
    id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<Account> {
    change(
        store,
        id,
        "account.recovered",
        actor,
        request_id,
        |account, _| {
            account.status = AccountStatus::Ready;
            account.cooldown_until = None;
            account.consecutive_failures = 0;
            account.last_error = None;
        },
    )
}

/// Makes `id` the CLI-primary account of its provider.
pub fn set_primary(
    store: &store::Store,
    id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<Account> {
    let account = get(store, id)?;
    store.write(|tx| {
        let now = clock::now_ms();
        store::accounts::set_primary(tx, &account.provider, id, now)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "account.primary_set",
                target_type: "account",
                target_id: id,
                before: None,
                after: Some(json!({"cli_primary": true})),
                request_id,
            },
        )
    })?;
    get(store, id)
}

/// Clears the CLI-primary mark of `id`: selection then ranks its provider's accounts by
/// headroom alone. Clearing an account that is not primary changes nothing and is not audited.
pub fn clear_primary(
    store: &store::Store,
    id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<Account> {
    let account = get(store, id)?;
    if account.cli_primary {
        store.write(|tx| {
            store::accounts::clear_primary(tx, id, clock::now_ms())?;
            audit::record(
                tx,
                audit::Record {
                    actor,
                    action: "account.primary_cleared",
                    target_type: "account",
                    target_id: id,
                    before: Some(json!({"cli_primary": true})),
                    after: Some(json!({"cli_primary": false})),
                    request_id,
                },
            )
        })?;
    }
    get(store, id)
}

/// Removes an account and its isolated home.
pub fn remove(
    store: &store::Store,
    data_dir: &Path,
    id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<()> {
    let account = get(store, id)?;
    store.write(|tx| {
        store::accounts::delete(tx, id)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "account.removed",
                target_type: "account",
                target_id: id,
                before: Some(audit::state(&audit::AccountState::new(
                    &account,
                    clock::now_ms(),
                ))?),
                after: None,
                request_id,
            },
        )
    })?;
    // Every user's home under this account: their transcripts go with the account.
    let homes = data_dir.join("homes").join(&account.provider).join(id);
    if homes.exists() {
        std::fs::remove_dir_all(&homes).map_err(|e| Error::io(&homes, e))?;
    }
    Ok(())
}

/// `<data_dir>/homes/<provider>/<account_id or "default">/<user_id>`: the CLI home of one user
/// on one account.
pub fn home(data_dir: &Path, provider: &str, account: Option<&str>, user_id: &str) -> PathBuf {
    data_dir
        .join("homes")
        .join(provider)
        .join(account.unwrap_or("default"))
        .join(user_id)
}

/// The pure view `pool::select` works on.
pub fn snapshot(account: &Account) -> AccountSnapshot {
    use pool::select::{Status, Window};
    let status = match account.status {
        AccountStatus::NeedsReauth => Status::NeedsReauth,
        AccountStatus::Error => Status::Error,
        AccountStatus::Ready | AccountStatus::Cooldown => match account.cooldown_until {
            Some(until_ms) => Status::Cooldown { until_ms },
            None => Status::Ready,
        },
    };
    let window = |used: Option<f64>, resets: Option<i64>| {
        used.map(|used_percent| Window {
            used_percent,
            resets_at_ms: resets,
        })
    };
    AccountSnapshot {
        id: account.id.clone(),
        enabled: account.enabled,
        status,
        cli_primary: account.cli_primary,
        five_hour: window(account.five_hour_used_percent, account.five_hour_resets_at),
        weekly: window(account.weekly_used_percent, account.weekly_resets_at),
        last_used_ms: account.last_used_at,
    }
}

/// Writes the account's credential into the run's home; returns the environment codex needs
/// (an API key for providers that read one from `env_key`; codex's shell tool filters it out).
/// [`scrub`] removes it again after the run.
pub fn materialize(vault: &Vault, account: &Account, home: &Path) -> Result<Vec<(String, String)>> {
    crate::datadir::ensure_private_dir(home)?;
    let plaintext = vault.open(&account.sealed_credential)?;
    let text = String::from_utf8(plaintext)
        .map_err(|_| Error::Vault("a sealed credential is not UTF-8".into()))?;
    let (file, env) = if account.auth_type == "API_KEY" {
        let file = json!({"OPENAI_API_KEY": text, "tokens": null}).to_string();
        (
            file,
            vec![
                ("OPENAI_API_KEY".to_string(), text.clone()),
                ("CODEX_API_KEY".to_string(), text),
            ],
        )
    } else {
        (text, Vec::new())
    };
    crate::datadir::write_new_private(&home.join("auth.json"), file.as_bytes())?;
    Ok(env)
}

/// Removes the credential from a home after its run (after [`sync_back`]).
pub fn scrub(home: &Path) -> Result<()> {
    let path = home.join("auth.json");
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
        _ => Ok(()),
    }
}

/// Removes the pooled credentials a crashed run left in CLI homes
/// (`homes/<provider>/<account>/<user>/auth.json`; the `default` homes hold no pooled
/// credential). Returns how many were removed.
pub fn scrub_all(data_dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let dirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    for provider in dirs(&data_dir.join("homes")) {
        for account in dirs(&provider) {
            if account.file_name().is_some_and(|n| n == "default") {
                continue;
            }
            for home in dirs(&account) {
                if home.join("auth.json").exists() {
                    scrub(&home)?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

/// Largest `auth.json` read back from a home.
const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// After a run: if the CLI rewrote `auth.json` (a refreshed token), seal the new one back — only
/// when it is still the same ChatGPT account: the agent can write that file, and must not swap in
/// a login of its own for the other users of the account.
pub fn sync_back(
    store: &store::Store,
    vault: &Vault,
    account: &Account,
    home: &Path,
) -> Result<bool> {
    if account.auth_type != "OAUTH_SESSION" {
        return Ok(false);
    }
    let path = home.join("auth.json");
    let Some(text) = crate::datadir::read_regular(&path, MAX_CREDENTIAL_BYTES)
        .and_then(|bytes| String::from_utf8(bytes).ok())
    else {
        return Ok(false);
    };
    let current = vault.open(&account.sealed_credential)?;
    if text.trim().as_bytes() == current.as_slice() {
        return Ok(false);
    }
    let validated = match pool::credential::validate(&account.provider, &account.auth_type, &text) {
        Ok(v) => v,
        Err(e) => {
            log::warn!("account {}: the CLI left an auth.json that does not validate ({e}); keeping the vault copy", account.id);
            return Ok(false);
        }
    };
    if validated.normalized.as_bytes() == current.as_slice() {
        return Ok(false);
    }
    if validated.chatgpt_account_id != account.chatgpt_account_id {
        log::warn!(
            "account {}: the auth.json left after a run belongs to another ChatGPT account; \
             keeping the vault copy",
            account.id
        );
        return Ok(false);
    }
    let sealed = vault.seal(validated.normalized.as_bytes())?;
    change(
        store,
        &account.id,
        "account.credential_refreshed",
        &Actor::System,
        None,
        |a, _| {
            a.sealed_credential = sealed;
            a.access_token_expires_at = validated.access_token_expires_at_ms;
        },
    )?;
    Ok(true)
}

/// Copies one user's CLI session state (`sessions/` rollouts, history) from the home of one
/// account to another so `resume` works there. Both homes are agent-writable: symbolic links
/// are neither followed nor copied, and nothing already at the destination is overwritten.
pub fn migrate_session_state(from: &Path, to: &Path) -> Result<()> {
    let source = from.join("sessions");
    if !std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    crate::datadir::ensure_private_dir(to)?;
    copy_tree(&source, &to.join("sessions"))?;
    copy_file(&from.join("history.jsonl"), &to.join("history.jsonl"))
}

/// Largest single file copied between homes.
const MAX_STATE_FILE_BYTES: u64 = 256 * 1024 * 1024;

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    match std::fs::symlink_metadata(to) {
        Ok(meta) if !meta.is_dir() => return Ok(()),
        Ok(_) => {}
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(to)
            .map_err(|e| Error::io(to, e))?,
    }
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            copy_file(&entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies a regular file to a place where nothing exists yet (not even a dangling link).
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::symlink_metadata(to).is_ok() {
        return Ok(());
    }
    match crate::datadir::read_regular(from, MAX_STATE_FILE_BYTES) {
        Some(bytes) => crate::datadir::write_new_private(to, &bytes),
        None => Ok(()),
    }
}

/// Records a successful run on the account.
pub fn record_success(store: &store::Store, id: &str) -> Result<()> {
    store.write(|tx| {
        if let Some(mut account) = store::accounts::get(tx, id)? {
            let now = clock::now_ms();
            account.last_used_at = Some(now);
            account.consecutive_failures = 0;
            if account.status == AccountStatus::Cooldown {
                account.status = AccountStatus::Ready;
                account.cooldown_until = None;
            }
            account.updated_at = now;
            store::accounts::update(tx, &account)?;
        }
        Ok(())
    })
}

/// Applies an account-level failure (cooldown or needs-reauth); returns whether it was one.
pub fn record_failure(store: &store::Store, id: &str, message: &str) -> Result<bool> {
    let now = clock::now_ms();
    let failure = pool::cooldown::classify(message, now);
    let (status, action) = match failure {
        pool::cooldown::Failure::Other => return Ok(false),
        pool::cooldown::Failure::Auth => (AccountStatus::NeedsReauth, "account.needs_reauth"),
        pool::cooldown::Failure::RateLimit { .. } => (AccountStatus::Cooldown, "account.cooldown"),
    };
    let short: String = message.chars().take(300).collect();
    change(store, id, action, &Actor::System, None, |account, now| {
        account.status = status;
        account.last_error = Some(short);
        account.last_used_at = Some(now);
        if let pool::cooldown::Failure::RateLimit { resets_at_ms } = failure {
            account.cooldown_until = Some(pool::cooldown::next_cooldown_until(
                resets_at_ms,
                account.consecutive_failures.max(0) as u32,
                now,
            ));
            account.consecutive_failures += 1;
        }
    })?;
    Ok(true)
}

/// The end of the account's cooldown, while it lasts at `now_ms`.
pub fn cooling_until(account: &Account, now_ms: i64) -> Option<i64> {
    account.cooldown_until.filter(|until| *until > now_ms)
}

/// The status operators see at `now_ms`: a cooldown that has ended reads `ready` (the stored
/// status changes at the account's next success).
pub fn effective_status(account: &Account, now_ms: i64) -> AccountStatus {
    match account.status {
        AccountStatus::Cooldown if cooling_until(account, now_ms).is_none() => AccountStatus::Ready,
        status => status,
    }
}

/// Whether selection would consider the account at `now_ms`.
pub fn is_usable(account: &Account, now_ms: i64) -> bool {
    pool::select::is_usable(&snapshot(account), now_ms)
}

/// The outcome of one account's usage refresh.
#[derive(Debug)]
pub struct RefreshReport {
    /// The account.
    pub id: String,
    /// Whether fresh windows were stored.
    pub ok: bool,
    /// What went wrong (never a token).
    pub error: Option<String>,
}

/// Refreshes every OAuth account's token (when close to expiry) and quota windows.
pub fn refresh_all(
    store: &store::Store,
    vault: &Vault,
    config: &crate::config::AccountsConfig,
    only: Option<&str>,
) -> Result<Vec<RefreshReport>> {
    let accounts = store.read(|conn| store::accounts::list(conn, Some("codex")))?;
    if let Some(id) = only {
        if !accounts.iter().any(|a| a.id == id) {
            return Err(Error::NotFound(format!("no account {id}")));
        }
    }
    let mut reports = Vec::new();
    for account in accounts.iter().filter(|a| only.is_none_or(|id| a.id == id)) {
        let result = refresh_one(store, vault, config, account);
        let error = result.as_ref().err().map(|e| e.to_string());
        let action = if error.is_none() {
            "usage.refreshed"
        } else {
            "usage.refresh_failed"
        };
        store.write(|tx| {
            if let (Some(message), Some(mut row)) = (&error, store::accounts::get(tx, &account.id)?)
            {
                row.last_error = Some(message.chars().take(300).collect());
                row.updated_at = clock::now_ms();
                store::accounts::update(tx, &row)?;
            }
            audit::record(
                tx,
                audit::Record {
                    actor: &Actor::System,
                    action,
                    target_type: "account",
                    target_id: &account.id,
                    before: None,
                    after: Some(json!({"error": error})),
                    request_id: None,
                },
            )
        })?;
        reports.push(RefreshReport {
            id: account.id.clone(),
            ok: error.is_none(),
            error,
        });
    }
    Ok(reports)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn refresh_one(
    store: &store::Store,
    vault: &Vault,
    config: &crate::config::AccountsConfig,
    account: &Account,
) -> Result<()> {
    if account.auth_type != "OAUTH_SESSION" {
        return Ok(());
    }
    let now = clock::now_ms();
    let mut credential = String::from_utf8(vault.open(&account.sealed_credential)?)
        .map_err(|_| Error::Vault("a sealed credential is not UTF-8".into()))?;
    // Refresh the access token when it expires within 5 minutes (or its expiry is unknown and past use failed).
    if account
        .access_token_expires_at
        .is_some_and(|at| at - now < 5 * 60_000)
    {
        let refresh = pool::credential::refresh_token(&credential)
            .ok_or_else(|| Error::BadGateway("the credential has no refresh token".into()))?;
        let body = json!({
            "client_id": config.oauth_client_id,
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "scope": pool::usage::REFRESH_SCOPE,
        })
        .to_string();
        let mut response = agent()
            .post(&config.oauth_token_url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .map_err(|e| Error::BadGateway(format!("token refresh failed: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024)
            .read_to_string()
            .unwrap_or_default();
        if status == 400 || status == 401 {
            record_failure(
                store,
                &account.id,
                &format!(
                    "401 token refresh refused: {}",
                    text.chars().take(200).collect::<String>()
                ),
            )?;
            return Err(Error::BadGateway(format!(
                "token refresh refused with HTTP {status}"
            )));
        }
        if status != 200 {
            return Err(Error::BadGateway(format!(
                "token refresh returned HTTP {status}"
            )));
        }
        let tokens = pool::usage::parse_refresh_response(&text, now)?;
        credential = pool::credential::apply_refresh(
            &credential,
            &tokens.access_token,
            tokens.refresh_token.as_deref(),
            tokens.id_token.as_deref(),
            now,
        )?;
        let validated =
            pool::credential::validate(&account.provider, &account.auth_type, &credential)?;
        let sealed = vault.seal(validated.normalized.as_bytes())?;
        change(
            store,
            &account.id,
            "account.token_refreshed",
            &Actor::System,
            None,
            |a, _| {
                a.sealed_credential = sealed;
                a.access_token_expires_at = validated
                    .access_token_expires_at_ms
                    .or(tokens.expires_at_ms);
            },
        )?;
    }
    let token = pool::credential::access_token(&credential)
        .ok_or_else(|| Error::BadGateway("the credential has no access token".into()))?;
    let mut last_error = Error::BadGateway("no usage endpoint is configured".into());
    for endpoint in &config.usage_endpoints {
        let mut request = agent()
            .get(endpoint)
            .header("Authorization", format!("Bearer {token}"));
        if let Some(id) = &account.chatgpt_account_id {
            request = request.header("ChatGPT-Account-Id", id);
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(e) => {
                last_error = Error::BadGateway(format!("usage fetch from {endpoint} failed: {e}"));
                continue;
            }
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        if status == 401 || status == 403 {
            record_failure(
                store,
                &account.id,
                "401 Unauthorized from the usage endpoint",
            )?;
            return Err(Error::BadGateway(format!(
                "usage endpoint {endpoint} refused the token (HTTP {status})"
            )));
        }
        if status != 200 {
            last_error =
                Error::BadGateway(format!("usage endpoint {endpoint} returned HTTP {status}"));
            continue;
        }
        let windows = pool::usage::parse_usage(&text, clock::now_ms())?;
        change(
            store,
            &account.id,
            "account.usage_updated",
            &Actor::System,
            None,
            |a, now| {
                a.five_hour_used_percent = windows.five_hour.map(|w| w.used_percent);
                a.five_hour_resets_at = windows.five_hour.and_then(|w| w.resets_at_ms);
                a.weekly_used_percent = windows.weekly.map(|w| w.used_percent);
                a.weekly_resets_at = windows.weekly.and_then(|w| w.resets_at_ms);
                a.usage_checked_at = Some(now);
                if windows.plan.is_some() {
                    a.plan = windows.plan.clone();
                }
                a.last_error = None;
            },
        )?;
        return Ok(());
    }
    Err(last_error)
}

/// Re-encrypts every sealed value (accounts and the vault check) from `old` to `new` in one
/// transaction: either all values move to the new key or none do.
pub fn reseal_all(store: &store::Store, old: &Vault, new: &Vault) -> Result<usize> {
    store.write(|tx| {
        let mut count = 0;
        for mut account in store::accounts::list(tx, None)? {
            let plaintext = old.open(&account.sealed_credential)?;
            account.sealed_credential = new.seal(&plaintext)?;
            store::accounts::update(tx, &account)?;
            count += 1;
        }
        if let Some(sealed) = store::meta::get(tx, store::meta::VAULT_CHECK)? {
            let plaintext = old.open(&sealed)?;
            store::meta::put(tx, store::meta::VAULT_CHECK, &new.seal(&plaintext)?)?;
        }
        audit::record(
            tx,
            audit::Record {
                actor: &Actor::Cli,
                action: "vault.key_rotated",
                target_type: "vault",
                target_id: &new.key_id(),
                before: Some(json!({"key_id": old.key_id()})),
                after: Some(json!({"key_id": new.key_id(), "credentials_resealed": count})),
                request_id: None,
            },
        )?;
        Ok(count)
    })
}
