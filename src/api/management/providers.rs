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

#[cfg(test)]
mod tests {
    use crate::api::testing::{self, TestApp};

    /// One inventory, two planes: the management envelope and the OpenAI-style list.
    #[test]
    fn the_inventory_in_each_plane() {
        let test = TestApp::new();
        let (_, managed) = testing::json(
            test.operator("GET", "/management/v1/providers/models", None)
                .unwrap(),
        );
        let (_, openai) = testing::json(
            test.operator("GET", "/v1/user/providers/models", None)
                .unwrap(),
        );
        assert_eq!(managed["ok"], true);
        assert_eq!(openai["object"], "list");
        assert_eq!(managed["data"], openai["data"]);
        let names: Vec<&str> = openai["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["provider"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["codex", "gemini", "opencode"]);
        assert_eq!(openai["data"][0]["runtime_available"], false);
        assert_eq!(openai["data"][2]["alias"], "uag-opencode");
    }
}
