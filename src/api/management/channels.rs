//! `/management/v1/channels` and a user's channel links: the Telegram bots' status, one-time
//! link tokens (`POST /management/v1/users/{id}/channels/link-token`, the original gateway's
//! route and fields), a user's links, and unlinking.

use crate::api::auth::Principal;
use crate::api::wire::{self, LinkTokenView, LinkView, TelegramBotView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store::telegram::{self as table, UpdateState};
use crate::telegram::links;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateLinkToken {
    /// Only `telegram` (the original also named `lark` and `feishu`, which it never served).
    channel: Option<String>,
    bot_name: Option<String>,
    expires_in_minutes: Option<i64>,
}

/// `GET /management/v1/channels`: the Telegram channel's settings and each bot's status.
pub fn status(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let telegram = &app.config.channels.telegram;
    let mut bots = Vec::new();
    for bot in &telegram.bots {
        let (pending, links) = app.store.read(|conn| {
            Ok((
                table::count_updates(conn, &bot.name, UpdateState::Pending)?,
                table::count_links(conn, &bot.name)?,
            ))
        })?;
        bots.push(wire::json(&TelegramBotView::of(
            bot,
            telegram.enabled && bot.enabled,
            app.telegram.status(&bot.name),
            pending,
            links,
        ))?);
    }
    let data = json!({
        "telegram": {
            "enabled": telegram.enabled,
            "receive_mode": telegram.receive_mode,
            "api_base": telegram.api_base,
            "stream": telegram.stream,
            "provider": telegram.provider,
            "bots": bots,
        }
    });
    Ok(Response::envelope(&request.request_id, data))
}

/// `POST /management/v1/users/{id}/channels/link-token` `{channel?, bot_name?,
/// expires_in_minutes?}`: a one-time token the user sends to the bot as `/link <token>`; shown
/// once (201).
pub fn create_link_token(
    app: &Arc<App>,
    request: &Request,
    principal: &Principal,
) -> Result<Response> {
    let id = request.param("id")?;
    let body: CreateLinkToken = request.json_opt()?.unwrap_or_default();
    if let Some(channel) = body.channel.as_deref().filter(|c| *c != "telegram") {
        return Err(Error::bad_param(
            "channel",
            format!("unsupported channel `{channel}`; only `telegram` is served"),
        ));
    }
    crate::users::get(&app.store, id)?;
    let telegram = &app.config.channels.telegram;
    let bot = links::resolve_bot(telegram, body.bot_name.as_deref())?;
    let issued = links::issue_token(
        &app.store,
        id,
        bot,
        body.expires_in_minutes,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    let username = app
        .telegram
        .status(bot)
        .and_then(|s| s.username)
        .or_else(|| telegram.bot(bot).and_then(|b| b.username.clone()));
    let data = wire::json(&LinkTokenView::of(&issued, username.as_deref()))?;
    Ok(Response::envelope(&request.request_id, data).with_status(201))
}

/// `GET /management/v1/users/{id}/channels/links`: the user's linked Telegram accounts.
pub fn links(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    crate::users::get(&app.store, id)?;
    let found = app.store.read(|conn| table::links_for_user(conn, id))?;
    let data = wire::json(&found.iter().map(LinkView::from).collect::<Vec<_>>())?;
    Ok(Response::envelope(&request.request_id, data))
}

/// `DELETE /management/v1/users/{id}/channels/links/{link_id}`: unlinks that Telegram account;
/// its next message gets the linking instructions.
pub fn unlink(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    let link_id = request.param("link_id")?;
    let link = links::unlink(
        &app.store,
        id,
        link_id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&LinkView::from(&link))?,
    ))
}
