//! The route table: every route once, as data — its method and path pattern, the handler, the
//! credential it requires, and whether it is a turn (admitted before the body is read and run on
//! the turns pool). Which plane (error shape) a path belongs to is decided here too.
//!
//! Patterns are read top to bottom and bind path parameters by name: `{id}` takes one segment,
//! `{*id}` the rest of the path (one segment or more, joined by `/`); handlers read them with
//! `Request::param` and never index segments. Must not contain handler logic: a route names a
//! plain function in `api/` and the credential it requires.

use crate::api::auth::Principal;
use crate::api::management as m;
use crate::api::{health, metrics, openai, responses, telegram, user};
use crate::app::App;
use crate::error::Result;
use crate::http::assets;
use crate::http::request::{Admission, Params};
use crate::http::{Plane, Request, Response};
use std::sync::Arc;

/// A handler: a plain function of the app, the parsed request and the authenticated caller.
pub type Handler = fn(&Arc<App>, &Request, &Principal) -> Result<Response>;

/// Admission: run right after authentication, before the body is read; refuses a caller at a
/// limit (429) or grants what the handler needs (a user's turn slot).
pub type Admit = fn(&Arc<App>, &Principal) -> Result<Admission>;

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
    /// No bearer: a channel's own secret, which the handler checks (Telegram's
    /// `X-Telegram-Bot-Api-Secret-Token`, compared in constant time).
    Channel,
    /// The operator, or no credential from loopback without proxy headers (`/metrics`: a
    /// local Prometheus needs no token; see `[telemetry].metrics_loopback`).
    OperatorOrLoopback,
}

/// The worker pool a request runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Short requests (`[server].workers` plus a queue).
    Api,
    /// Agent turns (`[server].turn_workers`, no queue).
    Turns,
}

/// One route: a method on a path pattern, with everything decided about it before the handler.
#[derive(Clone, Copy)]
pub struct Endpoint {
    /// Upper-case method (`HEAD` is served by the `GET` route).
    pub method: &'static str,
    /// The path pattern (`/management/v1/users/{id}`).
    pub pattern: &'static str,
    /// The handler.
    pub handler: Handler,
    /// Who may call it.
    pub access: Access,
    /// A turn route's admission (a user's budget and `max_concurrency` slot), checked before
    /// the body is read. Exactly the routes with one run on the turns pool.
    pub admit: Option<Admit>,
    /// Successes are logged at debug level (liveness probes, dashboard files).
    pub quiet: bool,
}

impl Endpoint {
    /// The pool that runs this route: turns for the routes that admit a turn, else api.
    pub fn pool(&self) -> Pool {
        match self.admit {
            Some(_) => Pool::Turns,
            None => Pool::Api,
        }
    }

    /// Marks a turn route: `admit` runs before the body is read, and the route runs on the
    /// turns pool.
    const fn turn(self, admit: Admit) -> Endpoint {
        Endpoint {
            admit: Some(admit),
            ..self
        }
    }

    /// Logs successes at debug level only.
    const fn quiet(self) -> Endpoint {
        Endpoint {
            quiet: true,
            ..self
        }
    }
}

const fn endpoint(
    method: &'static str,
    pattern: &'static str,
    handler: Handler,
    access: Access,
) -> Endpoint {
    Endpoint {
        method,
        pattern,
        handler,
        access,
        admit: None,
        quiet: false,
    }
}

const fn get(pattern: &'static str, handler: Handler, access: Access) -> Endpoint {
    endpoint("GET", pattern, handler, access)
}

const fn post(pattern: &'static str, handler: Handler, access: Access) -> Endpoint {
    endpoint("POST", pattern, handler, access)
}

const fn patch(pattern: &'static str, handler: Handler, access: Access) -> Endpoint {
    endpoint("PATCH", pattern, handler, access)
}

const fn delete(pattern: &'static str, handler: Handler, access: Access) -> Endpoint {
    endpoint("DELETE", pattern, handler, access)
}

use Access::{Channel, Client, Operator, OperatorOrLoopback, Public, User};

/// Every route. No two patterns match the same path (a unit test checks it), so the order is
/// for reading; a path's methods are listed in `Allow` in this order. One line per route: the
/// table is read, not formatted.
#[rustfmt::skip]
static ROUTES: &[Endpoint] = &[
    // Public routes (api pool).
    get("/", health::root, Public),
    get("/healthz", health::healthz, Public).quiet(),
    get("/dashboard", assets::dashboard, Public),
    get("/dashboard/{*path}", assets::dashboard, Public).quiet(),
    // Prometheus: the operator, or no credential from loopback; scrapes log quietly, untraced.
    get("/metrics", metrics::get, OperatorOrLoopback).quiet(),

    // OpenAI-compatible plane. `chat/completions` and `POST responses` are turns (turns pool);
    // reading or deleting a stored response runs on the api pool.
    get("/v1/models", openai::models, Client),
    // Model ids may contain `/` (`opencode/big-pickle`).
    get("/v1/models/{*id}", openai::model, Client),
    post("/v1/chat/completions", openai::chat_completions, Client).turn(openai::admit),
    post("/v1/responses", responses::create, Client).turn(openai::admit),
    get("/v1/responses/{id}", responses::retrieve, Client),
    delete("/v1/responses/{id}", responses::delete, Client),
    get("/v1/user/providers/models", openai::provider_models, Client),
    // User self-service (api pool), user keys only.
    get("/v1/user/me", user::me, User),
    get("/v1/user/keys", user::keys, User),
    post("/v1/user/keys", user::create_key, User),
    delete("/v1/user/keys/{id}", user::revoke_key, User),
    post("/v1/user/keys/{id}/rotate", user::rotate_key, User),
    get("/v1/user/usage", user::usage, User),
    get("/v1/user/sessions", user::sessions, User),
    get("/v1/user/sessions/{id}", user::session, User),
    post("/v1/user/workspace/reset", user::reset_workspace, User),

    // Management plane (api pool; the playground's chat is a turn).
    post("/management/v1/auth/token", m::auth::token, Public),
    post("/management/v1/auth/logout", m::auth::logout, Operator),
    get("/management/v1/overview", m::overview::get, Operator),
    get("/management/v1/version", m::version::get, Operator),
    get("/management/v1/config", m::settings::config, Operator),
    get("/management/v1/users", m::users::list, Operator),
    post("/management/v1/users", m::users::create, Operator),
    get("/management/v1/users/{id}", m::users::detail, Operator),
    patch("/management/v1/users/{id}", m::users::update, Operator),
    delete("/management/v1/users/{id}", m::users::delete, Operator),
    post("/management/v1/users/{id}/suspend", m::users::suspend, Operator),
    post("/management/v1/users/{id}/unsuspend", m::users::unsuspend, Operator),
    get("/management/v1/users/{id}/keys", m::users::keys, Operator),
    post("/management/v1/users/{id}/keys", m::users::create_key, Operator),
    delete("/management/v1/users/{id}/keys/{key_id}", m::users::revoke_key, Operator),
    post("/management/v1/users/{id}/keys/{key_id}/rotate", m::users::rotate_key, Operator),
    get("/management/v1/audit", m::audit::search, Operator),
    get("/management/v1/accounts", m::accounts::list, Operator),
    post("/management/v1/accounts", m::accounts::add, Operator),
    patch("/management/v1/accounts/{id}", m::accounts::update, Operator),
    delete("/management/v1/accounts/{id}", m::accounts::delete, Operator),
    post("/management/v1/accounts/{id}/primary", m::accounts::primary, Operator),
    delete("/management/v1/accounts/{id}/primary", m::accounts::clear_primary, Operator),
    post("/management/v1/accounts/{id}/recover", m::accounts::recover, Operator),
    post("/management/v1/usage/refresh", m::accounts::refresh, Operator),
    get("/management/v1/providers/models", m::providers::models, Operator),
    post("/management/v1/playground/chat", m::playground::chat, Operator)
        .turn(m::playground::admit),
    get("/management/v1/sessions", m::sessions::list, Operator),
    get("/management/v1/sessions/{id}", m::sessions::detail, Operator),
    delete("/management/v1/sessions/{id}", m::sessions::wipe, Operator),
    get("/management/v1/sessions/{id}/turns/{turn}/diff", m::sessions::turn_diff, Operator),
    post("/management/v1/sessions/{id}/turns/{turn}/revert", m::sessions::turn_revert, Operator),
    get("/management/v1/workspaces", m::workspaces::list, Operator),
    get("/management/v1/workspaces/{id}", m::workspaces::detail, Operator),
    delete("/management/v1/workspaces/{id}", m::workspaces::delete, Operator),
    post("/management/v1/workspaces/{id}/reset", m::workspaces::reset, Operator),
    get("/management/v1/projects", m::projects::list, Operator),
    post("/management/v1/projects", m::projects::create, Operator),
    get("/management/v1/projects/{name}", m::projects::info, Operator),
    get("/management/v1/channels", m::channels::status, Operator),
    post("/management/v1/users/{id}/channels/link-token", m::channels::create_link_token, Operator),
    get("/management/v1/users/{id}/channels/links", m::channels::links, Operator),
    delete("/management/v1/users/{id}/channels/links/{link_id}", m::channels::unlink, Operator),

    // Chat channels (api pool): the update is stored and answered at once, its turn runs on
    // the bot's own threads.
    post("/channels/telegram/{bot}/webhook", telegram::webhook, Channel),
    get("/management/v1/traces", m::observability::traces, Operator),
    get("/management/v1/traces/{id}", m::observability::trace, Operator),
    get("/management/v1/logs", m::observability::logs, Operator),
    get("/management/v1/observability/search", m::observability::search, Operator),
];

/// `(method, pattern)` of every route, in table order: the labels of the request metrics.
pub fn labels() -> impl Iterator<Item = (&'static str, &'static str)> {
    ROUTES.iter().map(|e| (e.method, e.pattern))
}

/// The place of `endpoint` in the route table (what the request metrics are indexed by).
pub fn index_of(endpoint: &Endpoint) -> Option<usize> {
    ROUTES.iter().position(|e| std::ptr::eq(e, endpoint))
}

/// The pattern of the route at `index` of the table.
pub fn pattern_at(index: usize) -> Option<&'static str> {
    ROUTES.get(index).map(|e| e.pattern)
}

/// The route of a raw request target, for requests refused before they are parsed.
pub fn index_of_url(method: &str, url: &str) -> Option<usize> {
    let path = url.split('?').next().unwrap_or("");
    let path = crate::http::request::percent_decode(path, false);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match route(method, &segments) {
        Route::Found(endpoint, _) => index_of(endpoint),
        Route::MethodNotAllowed(_) | Route::NotFound => None,
    }
}

/// What a method and path resolve to.
pub enum Route {
    /// The route and the path parameters its pattern bound.
    Found(&'static Endpoint, Params),
    /// The path exists with other methods (listed for `Allow`).
    MethodNotAllowed(String),
    /// No such path.
    NotFound,
}

/// Resolves a method and the path's segments (decoded, empty ones dropped).
pub fn route(method: &str, segments: &[&str]) -> Route {
    let method = if method == "HEAD" { "GET" } else { method };
    let mut allowed: Vec<&str> = Vec::new();
    for endpoint in ROUTES {
        let Some(params) = bind(endpoint.pattern, segments) else {
            continue;
        };
        if endpoint.method == method {
            return Route::Found(endpoint, params);
        }
        allowed.push(endpoint.method);
    }
    if allowed.is_empty() {
        return Route::NotFound;
    }
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    Route::MethodNotAllowed(allowed.join(", "))
}

/// The pool that runs `method url`, read the way [`route`] reads a path (decoded, empty segments
/// dropped), so that no spelling of a turn route (`/v1//chat/completions`, `%2F`) escapes the
/// turns pool. Runs on the accept thread: no I/O.
pub fn pool_for(method: &str, url: &str) -> Pool {
    let path = url.split('?').next().unwrap_or("");
    let path = crate::http::request::percent_decode(path, false);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match route(method, &segments) {
        Route::Found(endpoint, _) => endpoint.pool(),
        Route::MethodNotAllowed(_) | Route::NotFound => Pool::Api,
    }
}

/// The plane of a path, by its first segment: `/v1/*` answers errors as OpenAI error objects,
/// everything else in the management envelope. Also for paths no route matches (a 404 under
/// `/v1` is an OpenAI error).
pub fn plane(segments: &[&str]) -> Plane {
    match segments.first() {
        Some(&"v1") => Plane::OpenAi,
        _ => Plane::Management,
    }
}

/// [`plane`] of a raw request target (before the request is parsed: refusals on the accept
/// thread).
pub fn plane_of_url(url: &str) -> Plane {
    let path = url.split('?').next().unwrap_or("");
    let path = crate::http::request::percent_decode(path, false);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    plane(&segments)
}

/// Matches `segments` against `pattern`, binding its parameters; `None` when it does not match.
fn bind(pattern: &'static str, segments: &[&str]) -> Option<Params> {
    let mut params = Params::default();
    let mut rest = segments;
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let capture = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
        if let Some(name) = capture.and_then(|c| c.strip_prefix('*')) {
            if rest.is_empty() {
                return None;
            }
            params.push(name, rest.join("/"));
            rest = &[];
            continue;
        }
        let (first, tail) = rest.split_first()?;
        match capture {
            Some(name) => params.push(name, first.to_string()),
            None if part == *first => {}
            None => return None,
        }
        rest = tail;
    }
    rest.is_empty().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `method path` → `Access` and the bound parameters, `405 <Allow>` or `404`.
    fn check(method: &str, path: &str, expected: &str) {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let got = match route(method, &segments) {
            Route::Found(endpoint, params) => {
                let mut text = format!("{:?}", endpoint.access);
                for (name, value) in params.iter() {
                    text.push_str(&format!(" {name}={value}"));
                }
                text
            }
            Route::MethodNotAllowed(allowed) => format!("405 {allowed}"),
            Route::NotFound => "404".to_string(),
        };
        assert_eq!(got, expected, "{method} {path}");
    }

    #[test]
    fn table() {
        check("GET", "/", "Public");
        check("GET", "/healthz", "Public");
        check("HEAD", "/healthz", "Public");
        check("POST", "/healthz", "405 GET, HEAD");
        check("GET", "/dashboard", "Public");
        check("GET", "/dashboard/a/b", "Public path=a/b");
        check("POST", "/management/v1/auth/token", "Public");
        check("GET", "/management/v1/auth/token", "405 POST");
        check("GET", "/management/v1/overview", "Operator");
        check("GET", "/management/v1/nope", "404");
        check("GET", "/v1/models", "Client");
        check("GET", "/v1/models/gpt-5", "Client id=gpt-5");
        check(
            "GET",
            "/v1/models/opencode/big-pickle",
            "Client id=opencode/big-pickle",
        );
        check("POST", "/v1/models/gpt-5", "405 GET, HEAD");
        check("GET", "/v1/chat/completions", "405 POST");
        check("POST", "/v1/chat/completions/x", "404");
        check("POST", "/v1/responses", "Client");
        check("GET", "/v1/responses", "405 POST");
        check("GET", "/v1/responses/resp_1", "Client id=resp_1");
        check("DELETE", "/v1/responses/resp_1", "Client id=resp_1");
        check("POST", "/v1/responses/resp_1", "405 GET, DELETE, HEAD");
        check("DELETE", "/v1/user/keys/k1", "User id=k1");
        check("POST", "/v1/user/keys/k1/rotate", "User id=k1");
        check(
            "POST",
            "/management/v1/users/u1/keys/k1/rotate",
            "Operator id=u1 key_id=k1",
        );
        check(
            "GET",
            "/management/v1/sessions/s1/turns/2/diff",
            "Operator id=s1 turn=2",
        );
        check("GET", "/management/v1/users/u1", "Operator id=u1");
        check(
            "PUT",
            "/management/v1/users/u1",
            "405 GET, PATCH, DELETE, HEAD",
        );
        check("GET", "/management/v1/projects/p", "Operator name=p");
        check("GET", "/management/v1/users/u1/keys/k1", "405 DELETE");
        check("GET", "/management/v1/users/u1/x", "404");
        check(
            "POST",
            "/channels/telegram/main/webhook",
            "Channel bot=main",
        );
        check("GET", "/channels/telegram/main/webhook", "405 POST");
        check(
            "DELETE",
            "/management/v1/users/u1/channels/links/l1",
            "Operator id=u1 link_id=l1",
        );
        check("GET", "/metrics", "OperatorOrLoopback");
        check("GET", "/management/v1/traces", "Operator");
        check("GET", "/management/v1/traces/abc", "Operator id=abc");
        check("GET", "/management/v1/logs", "Operator");
        check("GET", "/management/v1/observability/search", "Operator");
    }

    #[test]
    fn turn_routes_run_on_the_turn_pool() {
        let check = |method: &str, url: &str, expected: Pool| {
            assert_eq!(pool_for(method, url), expected, "{method} {url}");
        };
        check("POST", "/v1/chat/completions?x=1", Pool::Turns);
        check("POST", "/management/v1/playground/chat", Pool::Turns);
        check("GET", "/v1/models", Pool::Api);
        // Every spelling the router accepts for a turn route.
        check("POST", "/v1//chat/completions/", Pool::Turns);
        check("POST", "/v1/chat%2Fcompletions", Pool::Turns);
        check("POST", "/v1/chat/completions/x", Pool::Api);
        check("POST", "/v1/responses", Pool::Turns);
        check("POST", "/v1//responses/?stream=true", Pool::Turns);
        check("GET", "/v1/responses/resp_1", Pool::Api);
        // The wrong method is answered 405 by an api worker.
        check("GET", "/v1/chat/completions", Pool::Api);
        // Exactly the routes with an admission are turns.
        let turns: Vec<String> = ROUTES
            .iter()
            .filter(|e| e.pool() == Pool::Turns)
            .map(|e| format!("{} {}", e.method, e.pattern))
            .collect();
        assert_eq!(
            turns,
            [
                "POST /v1/chat/completions",
                "POST /v1/responses",
                "POST /management/v1/playground/chat"
            ]
        );
    }

    #[test]
    fn planes() {
        let check = |url: &str, expected: Plane| {
            assert_eq!(plane_of_url(url), expected, "{url}");
        };
        check("/v1/models", Plane::OpenAi);
        check("/v1", Plane::OpenAi);
        check("//v1/nope?x", Plane::OpenAi);
        check("/v1x", Plane::Management);
        check("/management/v1/overview", Plane::Management);
        check("/", Plane::Management);
    }

    /// First match wins only if no two patterns match one path: each pattern, filled in, is
    /// matched by itself (and its other methods) alone.
    #[test]
    fn patterns_do_not_overlap() {
        for endpoint in ROUTES {
            let path: Vec<&str> = endpoint
                .pattern
                .split('/')
                .filter(|p| !p.is_empty())
                .map(|p| if p.starts_with('{') { "x" } else { p })
                .collect();
            let matching: Vec<&str> = ROUTES
                .iter()
                .filter(|other| bind(other.pattern, &path).is_some())
                .map(|other| other.pattern)
                .filter(|pattern| *pattern != endpoint.pattern)
                .collect();
            assert!(
                matching.is_empty(),
                "{} overlaps {matching:?}",
                endpoint.pattern
            );
        }
    }

    #[test]
    fn each_method_and_pattern_once() {
        let mut seen = std::collections::BTreeSet::new();
        for endpoint in ROUTES {
            assert!(
                seen.insert((endpoint.method, endpoint.pattern)),
                "{} {} twice",
                endpoint.method,
                endpoint.pattern
            );
        }
    }
}
