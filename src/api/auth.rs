//! Turns the `Authorization` header into a [`Principal`] according to the route's access rule.
//!
//! Must not mint or store tokens (that is `operator`); it only asks who the caller is.

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::router::Access;
use crate::http::Request;
use crate::operator::OperatorCredential;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credential (public routes only).
    Anonymous,
    /// The operator, by token or secret.
    Operator(OperatorCredential),
}

/// Authenticates `request` for a route with `access`.
pub fn authenticate(app: &App, request: &Request, access: Access) -> Result<Principal> {
    match access {
        Access::Public => Ok(Principal::Anonymous),
        Access::Operator | Access::Client => {
            let bearer = request.bearer().ok_or_else(|| {
                Error::Unauthorized(
                    "missing credential: send Authorization: Bearer <token>".to_string(),
                )
            })?;
            let credential =
                crate::operator::authenticate(&app.store, &app.operator_secret, bearer)?;
            Ok(Principal::Operator(credential))
        }
    }
}
