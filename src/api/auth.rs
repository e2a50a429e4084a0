//! Turns the `Authorization` header into a [`Principal`] according to the route's access rule.
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
pub fn authenticate(app: &App, request: &Request, access: Access) -> Result<Principal> {
    if access == Access::Public {
        return Ok(Principal::Anonymous);
    }
    let bearer = request.bearer().ok_or_else(|| {
        Error::Unauthorized("missing credential: send Authorization: Bearer <token>".to_string())
    })?;
    if bearer.starts_with("uagk_") {
        let (user, key) = crate::users::authenticate(&app.store, bearer)?;
        if access == Access::Operator {
            return Err(Error::Forbidden(
                "user API keys cannot use the management plane".to_string(),
            ));
        }
        return Ok(Principal::User {
            user: Box::new(user),
            key_id: key.id,
        });
    }
    let credential = crate::operator::authenticate(&app.store, &app.operator_secret, bearer)?;
    if access == Access::User {
        return Err(Error::Forbidden(
            "this route needs a user API key; operators use /management/v1/users".to_string(),
        ));
    }
    Ok(Principal::Operator(credential))
}
