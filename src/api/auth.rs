//! Turns the `Authorization` header into a [`Principal`] according to the route's access rule,
//! counting unknown credentials against the client address in the login throttle.
//!
//! Must not mint or store credentials (that is `operator` and `users`); it only asks who the
//! caller is and whether that kind of caller may use the route.

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::router::Access;
use crate::http::Request;
use crate::operator::OperatorCredential;
use crate::store::users::User;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credential (public routes only).
    Anonymous,
    /// The operator, by token or secret.
    Operator(OperatorCredential),
    /// A user, by one of their API keys.
    User {
        /// The user (active).
        user: Box<User>,
        /// The key used.
        key_id: String,
    },
}

impl Principal {
    /// Whether the caller presented a user API key (the playground's operator-driven turns as
    /// the Dashboard Admin do not count).
    pub fn is_user_key(&self) -> bool {
        matches!(self, Principal::User { key_id, .. }
            if key_id != crate::api::management::playground::KEY_ID)
    }

    /// Who the caller acts as in traces: `operator`, a user id, or nobody.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::User { user, .. } => Some(&user.id),
            Principal::Operator(_) => Some("operator"),
            Principal::Anonymous => None,
        }
    }

    /// The audit actor for this caller.
    pub fn actor(&self) -> crate::audit::Actor {
        match self {
            Principal::User { user, .. } => crate::audit::Actor::User(user.id.clone()),
            Principal::Operator(_) => crate::audit::Actor::Operator,
            Principal::Anonymous => crate::audit::Actor::System,
        }
    }
}

/// Authenticates `request` for a route with `access`.
///
/// A bearer that matches no credential at all (not a stale one: a logged-out or expired token
/// or key was real once) counts as a failed login for the client's address, so keys and tokens
/// cannot be guessed faster than passwords; while the address is throttled every bearer from it
/// gets 429, valid or not. Requests without a credential do not count: they guess nothing.
pub fn authenticate(app: &App, request: &Request, access: Access) -> Result<Principal> {
    if access == Access::Public {
        return Ok(Principal::Anonymous);
    }
    if access == Access::Channel {
        // A channel's own secret, checked here, before the body is read: a stranger cannot
        // make the gateway take in a body for a webhook it has no secret for. Telegram's
        // webhook is today's only channel route.
        let bot = request.param("bot")?;
        crate::telegram::authorize_webhook(
            &app.config,
            bot,
            request.header(crate::api::telegram::SECRET_HEADER),
        )?;
        return Ok(Principal::Anonymous);
    }
    // `/metrics` from this host needs no credential (unless `[telemetry].metrics_loopback` is
    // off); a credential that is sent is checked like any other.
    if access == Access::OperatorOrLoopback
        && request.bearer().is_none()
        && app.config.telemetry.metrics_loopback
        && request.is_direct_loopback()
    {
        return Ok(Principal::Anonymous);
    }
    let bearer = request.bearer().ok_or_else(|| {
        Error::Unauthorized("missing credential: send Authorization: Bearer <token>".to_string())
    })?;
    let client = request.client_ip();
    app.login_throttle.check(&client, crate::clock::now_ms())?;
    let unknown = |what: &str| {
        app.login_throttle
            .record_failure(&client, crate::clock::now_ms());
        log::warn!("unknown {what} from {client}");
        Error::Unauthorized(format!("invalid {what}"))
    };
    if bearer.starts_with("uagk_") {
        let (user, key) =
            crate::users::authenticate(&app.store, bearer)?.ok_or_else(|| unknown("API key"))?;
        if matches!(access, Access::Operator | Access::OperatorOrLoopback) {
            return Err(Error::Forbidden(
                "user API keys cannot use the management plane".to_string(),
            ));
        }
        return Ok(Principal::User {
            user: Box::new(user),
            key_id: key.id,
        });
    }
    let credential = crate::operator::authenticate(&app.store, &app.operator_secret, bearer)?
        .ok_or_else(|| unknown("bearer token"))?;
    if access == Access::User {
        return Err(Error::Forbidden(
            "this route needs a user API key; operators use /management/v1/users".to_string(),
        ));
    }
    Ok(Principal::Operator(credential))
}
