//! `POST /management/v1/playground/chat`: a chat turn run as the Dashboard Admin user, streamed
//! exactly like `/v1/chat/completions`.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use std::sync::Arc;

/// The key id of playground turns: the operator acting as the Dashboard Admin, not a user key.
pub const KEY_ID: &str = "playground";

/// Runs the turn as the Dashboard Admin (provisioned at start-up).
pub fn chat(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let admin = app
        .store
        .read(|conn| crate::store::users::find_by_email(conn, crate::users::DASHBOARD_ADMIN_EMAIL))?
        .ok_or_else(|| Error::Internal("the Dashboard Admin user is missing".to_string()))?;
    let principal = Principal::User {
        user: Box::new(admin),
        key_id: KEY_ID.to_string(),
    };
    crate::api::openai::chat_completions(app, request, &principal)
}
