//! `POST /channels/telegram/{bot}/webhook`: Telegram's deliveries in webhook mode. The route
//! has no bearer (`Access::Channel`): the bot's secret in `X-Telegram-Bot-Api-Secret-Token`
//! is its credential, checked by `api::auth` before the body is read. The update is stored and the answer goes out at once; the bot's own
//! thread handles it (a turn never holds Telegram's request open).

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::Result;
use crate::http::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// The header Telegram sends the webhook's `secret_token` in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Stores the update of an authorized delivery (400 when it is not one).
pub fn webhook(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let bot = request.param("bot")?;
    let update: Value = request.json()?;
    let stored = crate::telegram::receive(app, bot, &update)?;
    Ok(Response::envelope(
        &request.request_id,
        json!({ "stored": stored }),
    ))
}
