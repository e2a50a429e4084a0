//! The dashboard: the pre-built files of `ui-dist/`, baked into the binary, with history fallback.
//!
//! Owns content types and cache headers of embedded files. Must not read the filesystem: the
//! dashboard is whatever was compiled in.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use include_dir::{include_dir, Dir};
use std::sync::Arc;

static UI_DIST: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/ui-dist");

/// `GET /dashboard/...`: the file if it exists, 404 for a missing asset, else the app shell.
pub fn dashboard(_app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    // `/dashboard` binds nothing, `/dashboard/{*path}` the rest of the path.
    let rest = request.params.get("path").unwrap_or("");
    if !rest.is_empty() {
        if let Some(file) = UI_DIST.get_file(rest) {
            return Ok(serve(rest, file.contents()));
        }
        let last = rest.rsplit('/').next().unwrap_or("");
        if rest.starts_with("assets/") || last.contains('.') {
            return Err(Error::NotFound(format!(
                "dashboard asset not found: /dashboard/{rest}"
            )));
        }
    }
    let shell = UI_DIST
        .get_file("index.html")
        .ok_or_else(|| Error::Internal("ui-dist/index.html was not compiled in".to_string()))?;
    Ok(serve("index.html", shell.contents()))
}

fn serve(path: &str, contents: &[u8]) -> Response {
    let cache = if path == "index.html" {
        "no-cache"
    } else {
        "public, max-age=3600"
    };
    Response::bytes(200, content_type(path), contents.to_vec())
        .with_header("Cache-Control", cache)
        .with_header("X-Content-Type-Options", "nosniff")
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("assets/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.unknown"), "application/octet-stream");
    }

    #[test]
    fn shell_is_embedded() {
        assert!(UI_DIST.get_file("index.html").is_some());
    }
}
