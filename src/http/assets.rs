//! The dashboard: the hand-written files of `ui-dist/`, baked into the binary, with history
//! fallback, versioned asset URLs and a strict Content-Security-Policy.
//!
//! Owns content types, cache headers and security headers of embedded files. Assets are served
//! under `/dashboard/assets/<hash>/…`, where `<hash>` is [`ASSETS_VERSION`] (a content hash made
//! by `build.rs`): the shell (`index.html`, never cached) names that path, and ES modules import
//! each other relatively, so every file of one build shares one version and may be cached for a
//! year. Must not read the filesystem: the dashboard is whatever was compiled in.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Plane, Request, Response};
use include_dir::{include_dir, Dir, File};
use std::sync::Arc;

static UI_DIST: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/ui-dist");

/// The content hash of `ui-dist/assets/` (16 hex digits), the version segment of asset URLs.
pub const ASSETS_VERSION: &str = env!("CODARA_UI_HASH");

/// The policy sent with every dashboard response: the app's own origin only, no inline script
/// or style, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Cache header of an asset requested under the current version.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Where `index.html` names the versioned asset directory and the gateway's version.
const ASSETS_PLACEHOLDER: &str = "__CODARA_ASSETS__";
const VERSION_PLACEHOLDER: &str = "__CODARA_VERSION__";

/// What a path under `/dashboard/` is.
enum Target<'a> {
    /// The app shell (history fallback).
    Shell,
    /// An embedded file; `current` when requested under [`ASSETS_VERSION`].
    Asset {
        path: &'a str,
        file: &'a File<'a>,
        current: bool,
    },
    /// Looks like a file, and none is embedded there.
    Missing,
}

/// Resolves the path after `/dashboard/` (decoded, empty segments dropped by the router).
fn resolve(rest: &str) -> Target<'static> {
    if rest.is_empty() || rest == "index.html" {
        return Target::Shell;
    }
    if let Some(under) = rest.strip_prefix("assets/") {
        // `assets/<hash>/<file>` → `assets/<file>`; an unversioned `assets/<file>` is served too.
        let (version, file) = match under.split_once('/') {
            Some((segment, file)) if is_version(segment) => (Some(segment), file),
            _ => (None, under),
        };
        let path = format!("assets/{file}");
        return match UI_DIST.get_file(&path) {
            Some(found) => Target::Asset {
                path: found.path().to_str().unwrap_or(""),
                file: found,
                current: version == Some(ASSETS_VERSION),
            },
            None => Target::Missing,
        };
    }
    let last = rest.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        return Target::Missing;
    }
    Target::Shell
}

/// A version segment: 16 lowercase hex digits.
fn is_version(segment: &str) -> bool {
    segment.len() == 16
        && segment
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `GET /dashboard/...`: the file if it exists, 404 for a missing asset, else the app shell.
pub fn dashboard(_app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    // `/dashboard` binds nothing, `/dashboard/{*path}` the rest of the path.
    let rest = request.params.get("path").unwrap_or("");
    let response = match resolve(rest) {
        Target::Shell => shell()?,
        Target::Asset {
            path,
            file,
            current,
        } => {
            let cache = if current { IMMUTABLE } else { "no-cache" };
            Response::bytes(200, content_type(path), file.contents().to_vec())
                .with_header("Cache-Control", cache)
        }
        Target::Missing => {
            let error = Error::NotFound(format!("dashboard file not found: /dashboard/{rest}"));
            Response::error(&error, Plane::Management, &request.request_id)
                .with_header("Cache-Control", "no-store")
        }
    };
    Ok(secure(response))
}

/// The app shell with the versioned asset directory filled in; never cached, so a new build's
/// assets are picked up on the next load.
fn shell() -> Result<Response> {
    let template = UI_DIST
        .get_file("index.html")
        .and_then(|f| f.contents_utf8())
        .ok_or_else(|| Error::Internal("ui-dist/index.html was not compiled in".to_string()))?;
    let html = template
        .replace(
            ASSETS_PLACEHOLDER,
            &format!("/dashboard/assets/{ASSETS_VERSION}"),
        )
        .replace(VERSION_PLACEHOLDER, crate::VERSION);
    Ok(
        Response::bytes(200, "text/html; charset=utf-8", html.into_bytes())
            .with_header("Cache-Control", "no-cache"),
    )
}

/// The security headers of every dashboard response.
fn secure(response: Response) -> Response {
    response
        .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("X-Frame-Options", "DENY")
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
/// Every embedded asset's path under `ui-dist/` (for tests and the docs' size figures).
pub fn asset_paths() -> Vec<&'static str> {
    fn walk(dir: &'static Dir<'static>, out: &mut Vec<&'static str>) {
        for file in dir.files() {
            out.push(file.path().to_str().unwrap_or(""));
        }
        for sub in dir.dirs() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&UI_DIST, &mut out);
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(rest: &str) -> String {
        match resolve(rest) {
            Target::Shell => "shell".to_string(),
            Target::Missing => "missing".to_string(),
            Target::Asset { path, current, .. } => format!("{path} current={current}"),
        }
    }

    #[test]
    fn paths() {
        let v = ASSETS_VERSION;
        for (rest, expected) in [
            ("", "shell".to_string()),
            ("index.html", "shell".to_string()),
            ("users/uag_usr_1", "shell".to_string()),
            ("observability/traces/abc", "shell".to_string()),
            ("assets/app.js", "assets/app.js current=false".to_string()),
            (
                &format!("assets/{v}/app.js"),
                "assets/app.js current=true".to_string(),
            ),
            (
                "assets/0123456789abcdef/app.css",
                format!(
                    "assets/app.css current={}",
                    ASSETS_VERSION == "0123456789abcdef"
                ),
            ),
            (
                &format!("assets/{v}/pages/users.js"),
                "assets/pages/users.js current=true".to_string(),
            ),
            (&format!("assets/{v}/missing.js"), "missing".to_string()),
            ("assets/nothing", "missing".to_string()),
            ("favicon.ico", "missing".to_string()),
        ] {
            assert_eq!(describe(rest), expected, "{rest}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("assets/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("assets/icon.svg"), "image/svg+xml");
        assert_eq!(content_type("x.unknown"), "application/octet-stream");
    }

    /// Every embedded file has a known type, and the shell names its assets only through the
    /// placeholder (a hard-coded `/dashboard/assets/` path would escape versioning).
    #[test]
    fn embedded_files() {
        let paths = asset_paths();
        assert!(paths.contains(&"index.html"), "{paths:?}");
        for path in &paths {
            assert_ne!(content_type(path), "application/octet-stream", "{path}");
        }
        let shell = UI_DIST
            .get_file("index.html")
            .and_then(|f| f.contents_utf8())
            .unwrap();
        assert!(shell.contains(ASSETS_PLACEHOLDER));
        assert!(!shell.contains("/dashboard/assets/"));
        assert!(is_version(ASSETS_VERSION), "{ASSETS_VERSION}");
    }
}
