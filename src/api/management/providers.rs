//! `GET /management/v1/providers/models`: the provider inventory in the management envelope
//! (the same list `/v1/user/providers/models` serves OpenAI-style).

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::Result;
use crate::http::{Request, Response};
use serde_json::json;
use std::sync::Arc;

/// Per provider: models, default, alias, whether its CLI is installed.
pub fn models(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    Ok(Response::envelope(
        &request.request_id,
        json!(crate::api::openai::provider_inventory(app)),
    ))
}
