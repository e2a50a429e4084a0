//! The route table: one `match` from (path segments) to the handlers and the access each needs.
//!
//! Read top to bottom; each group notes which pool runs it. Must not contain handler logic: a
//! route names a plain function in `api/` and the credential it requires.

use crate::api;
use crate::app::App;
use crate::error::Result;
use crate::http::request::Admission;
use crate::http::{Request, Response};
use std::sync::Arc;

/// A handler: a plain function of the app, the parsed request and the authenticated caller.
pub type Handler = fn(&Arc<App>, &Request, &api::auth::Principal) -> Result<Response>;

/// Admission: run right after authentication, before the body is read; refuses a caller at a
/// limit (429) or grants what the handler needs (a user's turn slot).
pub type Admit = fn(&Arc<App>, &api::auth::Principal) -> Result<Admission>;

/// The credential a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (liveness, login, the dashboard shell).
    Public,
    /// An operator token or the operator secret.
    Operator,
    /// Any authenticated caller of the OpenAI plane (operator or user).
    Client,
    /// A user API key only (self-service).
    User,
}

/// What a method and path resolve to.
pub enum Route {
    /// A handler and its access rule.
    Found(Handler, Access),
    /// The path exists with other methods (listed for `Allow`).
    MethodNotAllowed(String),
    /// No such path.
    NotFound,
}

/// Whether the request runs on the `turns` pool (agent turns) rather than the `api` pool.
///
/// `url` is read the way [`route`] reads a path (decoded, empty segments dropped), so that no
/// spelling of a turn route (`/v1//chat/completions`, `%2F`) escapes the turns pool.
pub fn runs_on_turn_pool(url: &str) -> bool {
    let path = url.split('?').next().unwrap_or("");
    let path = crate::http::request::percent_decode(path, false);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    admission(&segments).is_some()
}

/// The admission of a turn route (a user's budget and `max_concurrency` slot), checked before
/// the body is read; other routes admit everyone who authenticated. This is the one list of turn
/// routes: it also decides which requests run on the turns pool ([`runs_on_turn_pool`]).
pub fn admission(segments: &[&str]) -> Option<Admit> {
    match segments {
        ["v1", "chat", "completions"] | ["v1", "responses"] => Some(api::openai::admit),
        ["management", "v1", "playground", "chat"] => Some(api::management::playground::admit),
        _ => None,
    }
}

/// Resolves a method and the path's segments.
pub fn route(method: &str, segments: &[&str]) -> Route {
    use Access::{Client, Operator, Public, User};
    let method = if method == "HEAD" { "GET" } else { method };
    let methods: &[(&str, Handler, Access)] = match segments {
        // Public routes (api pool).
        [] => &[("GET", api::health::root, Public)],
        ["healthz"] => &[("GET", api::health::healthz, Public)],
        ["dashboard", ..] => &[("GET", crate::http::assets::dashboard, Public)],

        // OpenAI-compatible plane. `chat/completions` and `POST responses` run on the turns pool
        // (see `admission`); reading or deleting a stored response runs on the api pool.
        ["v1", "models"] => &[("GET", api::openai::models, Client)],
        // Model ids may contain one `/` (`opencode/big-pickle`).
        ["v1", "models", _] => &[("GET", api::openai::model, Client)],
        ["v1", "models", _, _] => &[("GET", api::openai::model, Client)],
        ["v1", "chat", "completions"] => &[("POST", api::openai::chat_completions, Client)],
        ["v1", "responses"] => &[("POST", api::responses::create, Client)],
        ["v1", "responses", _] => &[
            ("GET", api::responses::retrieve, Client),
            ("DELETE", api::responses::delete, Client),
        ],
        ["v1", "user", "providers", "models"] => &[("GET", api::openai::provider_models, Client)],
        // User self-service (api pool), user keys only.
        ["v1", "user", "me"] => &[("GET", api::user::me, User)],
        ["v1", "user", "keys"] => &[
            ("GET", api::user::keys, User),
            ("POST", api::user::create_key, User),
        ],
        ["v1", "user", "keys", _] => &[("DELETE", api::user::revoke_key, User)],
        ["v1", "user", "keys", _, "rotate"] => &[("POST", api::user::rotate_key, User)],
        ["v1", "user", "usage"] => &[("GET", api::user::usage, User)],
        ["v1", "user", "sessions"] => &[("GET", api::user::sessions, User)],
        ["v1", "user", "sessions", _] => &[("GET", api::user::session, User)],
        ["v1", "user", "workspace", "reset"] => &[("POST", api::user::reset_workspace, User)],

        // Management plane (api pool).
        ["management", "v1", "auth", "token"] => &[("POST", api::management::auth::token, Public)],
        ["management", "v1", "auth", "logout"] => {
            &[("POST", api::management::auth::logout, Operator)]
        }
        ["management", "v1", "overview"] => &[("GET", api::management::overview::get, Operator)],
        ["management", "v1", "users"] => &[
            ("GET", api::management::users::list, Operator),
            ("POST", api::management::users::create, Operator),
        ],
        ["management", "v1", "users", _] => &[
            ("GET", api::management::users::detail, Operator),
            ("PATCH", api::management::users::update, Operator),
            ("DELETE", api::management::users::delete, Operator),
        ],
        ["management", "v1", "users", _, "suspend"] => {
            &[("POST", api::management::users::suspend, Operator)]
        }
        ["management", "v1", "users", _, "unsuspend"] => {
            &[("POST", api::management::users::unsuspend, Operator)]
        }
        ["management", "v1", "users", _, "keys"] => &[
            ("GET", api::management::users::keys, Operator),
            ("POST", api::management::users::create_key, Operator),
        ],
        ["management", "v1", "users", _, "keys", _] => {
            &[("DELETE", api::management::users::revoke_key, Operator)]
        }
        ["management", "v1", "users", _, "keys", _, "rotate"] => {
            &[("POST", api::management::users::rotate_key, Operator)]
        }
        ["management", "v1", "audit"] => &[("GET", api::management::audit::search, Operator)],
        ["management", "v1", "accounts"] => &[
            ("GET", api::management::accounts::list, Operator),
            ("POST", api::management::accounts::add, Operator),
        ],
        ["management", "v1", "accounts", _] => &[
            ("PATCH", api::management::accounts::update, Operator),
            ("DELETE", api::management::accounts::delete, Operator),
        ],
        ["management", "v1", "accounts", _, "primary"] => {
            &[("POST", api::management::accounts::primary, Operator)]
        }
        ["management", "v1", "accounts", _, "recover"] => {
            &[("POST", api::management::accounts::recover, Operator)]
        }
        ["management", "v1", "usage", "refresh"] => {
            &[("POST", api::management::accounts::refresh, Operator)]
        }
        ["management", "v1", "playground", "chat"] => {
            &[("POST", api::management::playground::chat, Operator)]
        }
        ["management", "v1", "version"] => &[("GET", api::management::version::get, Operator)],
        ["management", "v1", "sessions"] => &[("GET", api::management::sessions::list, Operator)],
        ["management", "v1", "sessions", _] => &[
            ("GET", api::management::sessions::detail, Operator),
            ("DELETE", api::management::sessions::wipe, Operator),
        ],
        ["management", "v1", "sessions", _, "turns", _, "diff"] => {
            &[("GET", api::management::sessions::turn_diff, Operator)]
        }
        ["management", "v1", "sessions", _, "turns", _, "revert"] => {
            &[("POST", api::management::sessions::turn_revert, Operator)]
        }
        ["management", "v1", "workspaces"] => {
            &[("GET", api::management::workspaces::list, Operator)]
        }
        ["management", "v1", "workspaces", _] => &[
            ("GET", api::management::workspaces::detail, Operator),
            ("DELETE", api::management::workspaces::delete, Operator),
        ],
        ["management", "v1", "workspaces", _, "reset"] => {
            &[("POST", api::management::workspaces::reset, Operator)]
        }
        ["management", "v1", "projects"] => &[
            ("GET", api::management::projects::list, Operator),
            ("POST", api::management::projects::create, Operator),
        ],
        ["management", "v1", "projects", _] => {
            &[("GET", api::management::projects::info, Operator)]
        }
        ["management", "v1", "providers", "models"] => {
            &[("GET", api::openai::provider_models, Operator)]
        }
        _ => return Route::NotFound,
    };
    match methods.iter().find(|(m, _, _)| *m == method) {
        Some((_, handler, access)) => Route::Found(*handler, *access),
        None => {
            let mut allowed: Vec<&str> = methods.iter().map(|(m, _, _)| *m).collect();
            if allowed.contains(&"GET") {
                allowed.push("HEAD");
            }
            Route::MethodNotAllowed(allowed.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, path: &str, expected: &str) {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let got = match route(method, &segments) {
            Route::Found(_, access) => format!("{access:?}"),
            Route::MethodNotAllowed(allowed) => format!("405 {allowed}"),
            Route::NotFound => "404".to_string(),
        };
        assert_eq!(got, expected, "{method} {path}");
    }

    #[test]
    fn table() {
        check("GET", "/healthz", "Public");
        check("HEAD", "/healthz", "Public");
        check("POST", "/healthz", "405 GET, HEAD");
        check("GET", "/dashboard/a/b", "Public");
        check("POST", "/management/v1/auth/token", "Public");
        check("GET", "/management/v1/auth/token", "405 POST");
        check("GET", "/management/v1/overview", "Operator");
        check("GET", "/management/v1/nope", "404");
        check("GET", "/v1/models", "Client");
        check("GET", "/v1/chat/completions", "405 POST");
        check("POST", "/v1/responses", "Client");
        check("GET", "/v1/responses", "405 POST");
        check("GET", "/v1/responses/resp_1", "Client");
        check("DELETE", "/v1/responses/resp_1", "Client");
        check("POST", "/v1/responses/resp_1", "405 GET, DELETE, HEAD");
    }

    #[test]
    fn turn_pool_paths() {
        assert!(runs_on_turn_pool("/v1/chat/completions?x=1"));
        assert!(runs_on_turn_pool("/management/v1/playground/chat"));
        assert!(!runs_on_turn_pool("/v1/models"));
        // Every spelling the router accepts for a turn route.
        assert!(runs_on_turn_pool("/v1//chat/completions/"));
        assert!(runs_on_turn_pool("/v1/chat%2Fcompletions"));
        assert!(!runs_on_turn_pool("/v1/chat/completions/x"));
        assert!(runs_on_turn_pool("/v1/responses"));
        assert!(runs_on_turn_pool("/v1//responses/?stream=true"));
        assert!(!runs_on_turn_pool("/v1/responses/resp_1"));
    }
}
