//! Users and their API keys: provisioning (with rollback), status changes, key lifecycle, and
//! turning a raw `uagk_live_…` key into an authenticated user.
//!
//! Owns the key format (`uagk_live_` + 32 base62 chars from the OS CSPRNG, stored as SHA-256)
//! and user policy. Every mutation writes its audit entry in the same transaction. Must not
//! return or log a raw key except in the one result that issues it.

use crate::audit::{self, Actor};
use crate::clock;
use crate::error::{Error, Result};
use crate::store::{self, api_keys::ApiKey, api_keys::KeyStatus, users::User, users::UserStatus};
use std::path::Path;

/// The prefix every user API key starts with.
pub const KEY_PREFIX: &str = "uagk_live_";
/// The Dashboard Admin's email.
pub const DASHBOARD_ADMIN_EMAIL: &str = "dashboard-admin@codara.local";

/// A newly issued key: `raw` is shown once and then forgotten.
pub struct IssuedKey {
    /// The stored row.
    pub key: ApiKey,
    /// The raw key.
    pub raw: String,
}

/// Input of [`create`].
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Email (validated, unique).
    pub email: String,
    /// Shown name.
    pub display_name: String,
    /// Concurrent turns; the configured default when `None`.
    pub max_concurrency: Option<i64>,
    /// Tokens per UTC day.
    pub daily_token_budget: Option<i64>,
    /// Label of the first key.
    pub key_label: Option<String>,
    /// Expiry of the first key, epoch ms.
    pub key_expires_at: Option<i64>,
}

/// Changes of [`update`]; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    /// New display name.
    pub display_name: Option<String>,
    /// New concurrency limit.
    pub max_concurrency: Option<i64>,
    /// New budget; `Some(None)` clears it.
    pub daily_token_budget: Option<Option<i64>>,
}

/// Checks an email address: one `@`, a dotted domain, no spaces, bounded length.
pub fn validate_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split('@').count() == 2
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(Error::bad_param(
            "email",
            "`email` must be a valid address like name@example.com",
        ))
    }
}

fn validate_fields(
    display_name: Option<&str>,
    max_concurrency: Option<i64>,
    budget: Option<i64>,
) -> Result<()> {
    if let Some(name) = display_name {
        if name.trim().is_empty() || name.len() > 200 {
            return Err(Error::bad_param(
                "display_name",
                "`display_name` must be 1-200 characters",
            ));
        }
    }
    if let Some(n) = max_concurrency {
        if !(1..=64).contains(&n) {
            return Err(Error::bad_param(
                "max_concurrency",
                "`max_concurrency` must be 1-64",
            ));
        }
    }
    if let Some(n) = budget {
        if n < 1 {
            return Err(Error::bad_param(
                "daily_token_budget",
                "`daily_token_budget` must be positive",
            ));
        }
    }
    Ok(())
}

/// Checks a new user's fields without touching storage: what a command runs before it opens
/// (and so creates) the database, so that bad input leaves nothing behind. [`create`] checks
/// the same again.
pub fn check_new(input: &NewUser) -> Result<()> {
    validate_email(&input.email)?;
    validate_fields(
        Some(&input.display_name),
        input.max_concurrency,
        input.daily_token_budget,
    )
}

/// Creates a user, provisions `<root>/<id>` (0700, git), and issues the first key. Nothing is left
/// half-created: a duplicate email is a 409 before anything touches the disk, and the directory is
/// removed again if the database write fails.
pub fn create(
    store: &store::Store,
    config: &crate::config::Config,
    input: NewUser,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<(User, IssuedKey)> {
    check_new(&input)?;
    let email = validate_email(&input.email)?;
    if store
        .read(|conn| store::users::find_by_email(conn, &email))?
        .is_some()
    {
        return Err(Error::Conflict(format!(
            "a user with email {email} already exists"
        )));
    }
    let id = crate::crypto::random_id("uag_usr_");
    let root = &config.workspace.root;
    crate::datadir::ensure_private_dir(root)?;
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let dir = root.join(&id);
    let now = clock::now_ms();
    let user = User {
        id: id.clone(),
        email: email.clone(),
        display_name: input.display_name.trim().to_string(),
        status: UserStatus::Active,
        workspace_path: dir.display().to_string(),
        max_concurrency: input
            .max_concurrency
            .unwrap_or(i64::from(config.users.default_max_concurrency)),
        daily_token_budget: input.daily_token_budget,
        created_by: actor.as_string(),
        created_at: now,
        updated_at: now,
    };
    provision(&dir, config)?;
    let result = store.write(|tx| {
        if !store::users::insert(tx, &user)? {
            return Err(Error::Conflict(format!(
                "a user with email {email} already exists"
            )));
        }
        let issued = issue_key(
            tx,
            &user.id,
            input.key_label.as_deref(),
            input.key_expires_at,
            now,
        )?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "user.created",
                target_type: "user",
                target_id: &user.id,
                before: None,
                after: Some(audit::state(&audit::UserState::from(&user))?),
                request_id,
            },
        )?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "user.key.created",
                target_type: "api_key",
                target_id: &issued.key.id,
                before: None,
                after: Some(audit::state(&audit::KeyState::from(&issued.key))?),
                request_id,
            },
        )?;
        Ok(issued)
    });
    match result {
        Ok(issued) => Ok((user, issued)),
        Err(error) => {
            // The row was not written: take the workspace back so nothing is half-created.
            let _ = std::fs::remove_dir_all(&dir);
            Err(error)
        }
    }
}

fn provision(dir: &Path, config: &crate::config::Config) -> Result<()> {
    crate::datadir::ensure_private_dir(dir)?;
    if crate::workspace::git_available(&config.host) {
        // A directory created just now: nothing in it can be hostile yet.
        crate::workspace::ensure_repo(dir, &config.host, None)?;
    }
    Ok(())
}

/// Issues a new key for `user_id` inside the caller's transaction.
pub fn issue_key(
    conn: &rusqlite::Connection,
    user_id: &str,
    label: Option<&str>,
    expires_at: Option<i64>,
    now: i64,
) -> Result<IssuedKey> {
    if let Some(label) = label {
        if label.len() > 100 {
            return Err(Error::bad_param(
                "label",
                "`label` must be at most 100 characters",
            ));
        }
    }
    if expires_at.is_some_and(|at| at <= now) {
        return Err(Error::bad_param(
            "expires_at",
            "`expires_at` must be in the future",
        ));
    }
    let raw = format!(
        "{KEY_PREFIX}{}",
        crate::crypto::random_base62(32).map_err(|e| Error::io("getrandom", e))?
    );
    let key = ApiKey {
        id: crate::crypto::random_id("uag_key_"),
        user_id: user_id.to_string(),
        key_hash: crate::crypto::sha256_hex(raw.as_bytes()),
        key_prefix: raw[..KEY_PREFIX.len() + 4].to_string(),
        label: label.map(str::to_string),
        status: KeyStatus::Active,
        created_at: now,
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    store::api_keys::insert(conn, &key)?;
    Ok(IssuedKey { key, raw })
}

/// Loads a user or 404.
pub fn get(store: &store::Store, id: &str) -> Result<User> {
    store
        .read(|conn| store::users::get(conn, id))?
        .ok_or_else(|| Error::NotFound(format!("no user {id}")))
}

fn change(
    store: &store::Store,
    id: &str,
    action: &str,
    actor: &Actor,
    request_id: Option<&str>,
    apply: impl FnOnce(&mut User) -> Result<()>,
) -> Result<User> {
    store.write(|tx| {
        let before =
            store::users::get(tx, id)?.ok_or_else(|| Error::NotFound(format!("no user {id}")))?;
        let mut user = before.clone();
        apply(&mut user)?;
        user.updated_at = clock::now_ms();
        store::users::update(tx, &user)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action,
                target_type: "user",
                target_id: id,
                before: Some(audit::state(&audit::UserState::from(&before))?),
                after: Some(audit::state(&audit::UserState::from(&user))?),
                request_id,
            },
        )?;
        Ok(user)
    })
}

/// Updates display name, concurrency or budget.
pub fn update(
    store: &store::Store,
    id: &str,
    patch: Patch,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<User> {
    validate_fields(
        patch.display_name.as_deref(),
        patch.max_concurrency,
        patch.daily_token_budget.flatten(),
    )?;
    change(store, id, "user.updated", actor, request_id, |user| {
        if user.status == UserStatus::Deleted {
            return Err(Error::Conflict("a deleted user cannot be changed".into()));
        }
        if let Some(name) = patch.display_name {
            user.display_name = name.trim().to_string();
        }
        if let Some(n) = patch.max_concurrency {
            user.max_concurrency = n;
        }
        if let Some(budget) = patch.daily_token_budget {
            user.daily_token_budget = budget;
        }
        Ok(())
    })
}

/// Suspends (`true`) or reactivates (`false`) a user; a deleted user stays deleted.
pub fn set_suspended(
    store: &store::Store,
    id: &str,
    suspended: bool,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<User> {
    let action = if suspended {
        "user.suspended"
    } else {
        "user.unsuspended"
    };
    change(store, id, action, actor, request_id, |user| {
        if user.status == UserStatus::Deleted {
            return Err(Error::Conflict(
                "a deleted user cannot be suspended or reactivated".into(),
            ));
        }
        user.status = if suspended {
            UserStatus::Suspended
        } else {
            UserStatus::Active
        };
        Ok(())
    })
}

/// Deletes a user in one transaction: status `deleted`, every key revoked, every session ended.
/// Files are kept.
pub fn delete(
    store: &store::Store,
    id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<User> {
    store.write(|tx| {
        let before =
            store::users::get(tx, id)?.ok_or_else(|| Error::NotFound(format!("no user {id}")))?;
        if before.status == UserStatus::Deleted {
            return Err(Error::Conflict("this user is already deleted".into()));
        }
        let now = clock::now_ms();
        let mut user = before.clone();
        user.status = UserStatus::Deleted;
        user.updated_at = now;
        store::users::update(tx, &user)?;
        let keys_revoked = store::api_keys::revoke_all(tx, id, now)?;
        let sessions_ended = store::sessions::delete_for_user(tx, id)?;
        let channel_links_removed = store::telegram::delete_links_for_user(tx, id)?;
        let after = audit::state(&audit::UserDeletedState {
            user: audit::UserState::from(&user),
            keys_revoked,
            sessions_ended,
            channel_links_removed,
        })?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "user.deleted",
                target_type: "user",
                target_id: id,
                before: Some(audit::state(&audit::UserState::from(&before))?),
                after: Some(after),
                request_id,
            },
        )?;
        Ok(user)
    })
}

/// Issues an additional key for a user.
pub fn create_key(
    store: &store::Store,
    user_id: &str,
    label: Option<&str>,
    expires_at: Option<i64>,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<IssuedKey> {
    store.write(|tx| {
        let user = store::users::get(tx, user_id)?
            .ok_or_else(|| Error::NotFound(format!("no user {user_id}")))?;
        if user.status == UserStatus::Deleted {
            return Err(Error::Conflict("a deleted user cannot get keys".into()));
        }
        let issued = issue_key(tx, user_id, label, expires_at, clock::now_ms())?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "user.key.created",
                target_type: "api_key",
                target_id: &issued.key.id,
                before: None,
                after: Some(audit::state(&audit::KeyState::from(&issued.key))?),
                request_id,
            },
        )?;
        Ok(issued)
    })
}

/// Revokes one key of a user (404 when it is not theirs).
pub fn revoke_key(
    store: &store::Store,
    user_id: &str,
    key_id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<ApiKey> {
    store.write(|tx| {
        let key = store::api_keys::get(tx, user_id, key_id)?
            .ok_or_else(|| Error::NotFound(format!("no key {key_id}")))?;
        store::api_keys::revoke(tx, key_id, clock::now_ms())?;
        let after = store::api_keys::get(tx, user_id, key_id)?.unwrap_or(key.clone());
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "user.key.revoked",
                target_type: "api_key",
                target_id: key_id,
                before: Some(audit::state(&audit::KeyState::from(&key))?),
                after: Some(audit::state(&audit::KeyState::from(&after))?),
                request_id,
            },
        )?;
        Ok(after)
    })
}

/// Replaces a key: the old one is revoked and a new one with the same label and expiry is issued.
pub fn rotate_key(
    store: &store::Store,
    user_id: &str,
    key_id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<IssuedKey> {
    store.write(|tx| {
        let user = store::users::get(tx, user_id)?
            .ok_or_else(|| Error::NotFound(format!("no user {user_id}")))?;
        if user.status == UserStatus::Deleted {
            return Err(Error::Conflict("a deleted user cannot get keys".into()));
        }
        let old = store::api_keys::get(tx, user_id, key_id)?
            .ok_or_else(|| Error::NotFound(format!("no key {key_id}")))?;
        if old.status != KeyStatus::Active {
            return Err(Error::Conflict(format!(
                "key {key_id} is revoked; create a new key instead"
            )));
        }
        let now = clock::now_ms();
        store::api_keys::revoke(tx, key_id, now)?;
        let expires = old.expires_at.filter(|at| *at > now);
        let issued = issue_key(tx, user_id, old.label.as_deref(), expires, now)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "user.key.rotated",
                target_type: "api_key",
                target_id: key_id,
                before: Some(audit::state(&audit::KeyState::from(&old))?),
                after: Some(audit::state(&audit::KeyState::from(&issued.key))?),
                request_id,
            },
        )?;
        Ok(issued)
    })
}

/// Resolves a raw user key to its user: `None` when no such key exists (a guess, which the
/// caller counts against the client), else the user or why not (401 revoked/expired, 403 status).
pub fn authenticate(store: &store::Store, raw: &str) -> Result<Option<(User, ApiKey)>> {
    if !raw.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let hash = crate::crypto::sha256_hex(raw.as_bytes());
    let now = clock::now_ms();
    let found = store.read(|conn| {
        let Some(key) = store::api_keys::find_by_hash(conn, &hash)? else {
            return Ok(None);
        };
        let user = store::users::get(conn, &key.user_id)?;
        Ok(user.map(|u| (u, key)))
    })?;
    let Some((user, key)) = found else {
        return Ok(None);
    };
    // The user's status comes first: deleting a user revokes its keys, and the caller should
    // still learn that the user is gone (403), not merely that the key is revoked.
    match user.status {
        UserStatus::Suspended => return Err(Error::Forbidden("this user is suspended".into())),
        UserStatus::Deleted => return Err(Error::Forbidden("this user was deleted".into())),
        UserStatus::Active => {}
    }
    if key.status != KeyStatus::Active {
        return Err(Error::Unauthorized("this API key was revoked".into()));
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(Error::Unauthorized("this API key has expired".into()));
    }
    // Recording every use would make each request a write; a minute of precision is enough.
    if key.last_used_at.is_none_or(|at| now - at > 60_000) {
        let id = key.id.clone();
        if let Err(error) = store.write(|tx| store::api_keys::touch(tx, &id, now)) {
            log::warn!("could not record the use of key {id}: {error}");
        }
    }
    Ok(Some((user, key)))
}

/// Creates the Dashboard Admin user once (at start-up); its key is never shown.
pub fn ensure_dashboard_admin(
    store: &store::Store,
    config: &crate::config::Config,
) -> Result<User> {
    if let Some(user) =
        store.read(|conn| store::users::find_by_email(conn, DASHBOARD_ADMIN_EMAIL))?
    {
        return Ok(user);
    }
    let input = NewUser {
        email: DASHBOARD_ADMIN_EMAIL.to_string(),
        display_name: "Dashboard Admin".to_string(),
        max_concurrency: Some(1),
        key_label: Some("playground".to_string()),
        ..NewUser::default()
    };
    let (user, _discarded) = create(store, config, input, &Actor::System, None)?;
    log::info!("provisioned the Dashboard Admin user {}", user.id);
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(validate_email(" A@Example.com ").unwrap(), "a@example.com");
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a@.com",
            "a@b.com.",
            "a b@c.com",
            "a@@b.com",
            "a@b..com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
