//! Handler tests without sockets: an `App` in a temp dir (with no agent CLI to run) and
//! requests built in memory, routed through the real route table so that path parameters are
//! bound as in production.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::Result;
use crate::http::router::{self, Route};
use crate::http::{Body, Request, Response};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// An app over a fresh data dir and workspaces root, removed on drop.
pub(crate) struct TestApp {
    pub(crate) app: Arc<App>,
    dir: PathBuf,
}

impl TestApp {
    /// Opens an app with the default configuration in a new temp dir.
    pub(crate) fn new() -> TestApp {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-api-"));
        let mut config = crate::config::Config::default();
        config.storage.data_dir = dir.join("data");
        config.workspace.root = dir.join("workspaces");
        config.host.path = "/usr/local/bin:/usr/bin:/bin".to_string();
        // No handler test runs an agent: a turn stops at the missing CLI (503).
        for provider in [
            &mut config.providers.codex,
            &mut config.providers.gemini,
            &mut config.providers.opencode,
        ] {
            provider.binary = dir.join("no-such-cli").display().to_string();
        }
        std::fs::create_dir_all(&config.workspace.root).expect("the workspaces root");
        let app = App::open(
            config,
            "secret-for-tests".to_string(),
            crate::datadir::SecretSource::Configured,
        )
        .expect("the app opens");
        TestApp {
            app: Arc::new(app),
            dir,
        }
    }

    /// Calls the handler `method url` routes to, as `principal`, with `body`.
    pub(crate) fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<&str>,
        principal: &Principal,
    ) -> Result<Response> {
        let mut request = Request::new(method, url);
        request.request_id = "req_test".to_string();
        request.body = body.unwrap_or("").as_bytes().to_vec();
        let endpoint = match router::route(&request.method, &request.segments()) {
            Route::Found(endpoint, params) => {
                request.params = params;
                endpoint
            }
            Route::MethodNotAllowed(_) | Route::NotFound => panic!("no route for {method} {url}"),
        };
        (endpoint.handler)(&self.app, &request, principal)
    }

    /// Calls as the operator.
    pub(crate) fn operator(&self, method: &str, url: &str, body: Option<&str>) -> Result<Response> {
        let principal = Principal::Operator(crate::operator::OperatorCredential::Secret);
        self.call(method, url, body, &principal)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A response's status and JSON body.
pub(crate) fn json(response: Response) -> (u16, Value) {
    let Body::Bytes(bytes) = response.body else {
        panic!("a streamed body");
    };
    (
        response.status,
        serde_json::from_slice(&bytes).expect("a JSON body"),
    )
}

/// An error as `<status> <param>: <message>`, the shape table tests compare.
pub(crate) fn error(result: Result<Response>) -> String {
    match result {
        Ok(response) => format!("ok {}", response.status),
        Err(e) => format!("{} {}: {e}", e.status(), e.param().unwrap_or("-")),
    }
}
