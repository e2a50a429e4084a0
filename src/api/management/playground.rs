//! `POST /management/v1/playground/chat`: a chat turn run as the Dashboard Admin user, streamed
//! exactly like `/v1/chat/completions`.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::request::Admission;
use crate::http::{Request, Response};
use crate::store::users::User;
use std::sync::Arc;

/// The key id of playground turns: the operator acting as the Dashboard Admin, not a user key.
pub const KEY_ID: &str = "playground";

/// Admission before the body is read: the Dashboard Admin's budget and turn slot, since the
/// turn runs as that user.
pub fn admit(app: &Arc<App>, _principal: &Principal) -> Result<Admission> {
    crate::turns::admit::user(app, &dashboard_admin(app)?).map(Admission::holding)
}

/// Runs the turn as the Dashboard Admin (provisioned at start-up).
pub fn chat(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let principal = Principal::User {
        user: Box::new(dashboard_admin(app)?),
        key_id: KEY_ID.to_string(),
    };
    crate::api::openai::chat_completions(app, request, &principal)
}

fn dashboard_admin(app: &App) -> Result<User> {
    app.store
        .read(|conn| crate::store::users::find_by_email(conn, crate::users::DASHBOARD_ADMIN_EMAIL))?
        .ok_or_else(|| Error::Internal("the Dashboard Admin user is missing".to_string()))
}
