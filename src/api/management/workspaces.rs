//! `/management/v1/workspaces` handlers (being written).

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use std::sync::Arc;

/// Placeholder until the handlers land.
pub fn list(_app: &Arc<App>, _request: &Request, _principal: &Principal) -> Result<Response> {
    Err(Error::NotImplemented("not yet".into()))
}
