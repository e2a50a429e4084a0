//! The embedded dashboard: the HTML shell with history fallback, every asset under its versioned
//! URL with its content type, cache header and the Content-Security-Policy, 404 for missing
//! files, path traversal refused on raw request lines, and a static check that the app needs
//! nothing the policy forbids.

use crate::support::{self, HttpResponse};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `ui-dist/assets`, relative to it.
fn asset_files() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let base = root().join("ui-dist/assets");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

/// The checks every dashboard response passes: the policy and the other security headers.
fn assert_secured(path: &str, response: &HttpResponse) {
    let csp = response
        .header("Content-Security-Policy")
        .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{path}: {csp} lacks {directive}");
    }
    for loose in ["unsafe-inline", "unsafe-eval", "http:", "https:", "*"] {
        assert!(!csp.contains(loose), "{path}: {csp} allows {loose}");
    }
    assert_eq!(
        response.header("X-Content-Type-Options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(response.header("X-Frame-Options"), Some("DENY"), "{path}");
}

/// The versioned asset directory the shell names: `/dashboard/assets/<16 hex>`.
fn asset_dir(shell: &str) -> String {
    let start = shell
        .find("/dashboard/assets/")
        .expect("the shell names its assets");
    let dir = &shell[start..start + "/dashboard/assets/".len() + 16];
    let version = dir.rsplit('/').next().unwrap();
    assert!(
        version.bytes().all(|b| b.is_ascii_hexdigit()),
        "a content hash: {dir}"
    );
    dir.to_string()
}

#[test]
fn shell_is_served_for_the_app_routes() {
    let mut server = support::server().start();
    for path in [
        "/dashboard",
        "/dashboard/",
        "/dashboard/workspaces/abc",
        "/dashboard/sessions/ses_1?x=1",
        "/dashboard/observability/traces/t1",
        "/dashboard/index.html",
    ] {
        let response = server.get(path, None);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let content_type = response.header("Content-Type").unwrap_or("");
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert_eq!(response.header("Cache-Control"), Some("no-cache"), "{path}");
        assert_secured(path, &response);
        let html = response.text();
        assert!(html.contains("data-codara-shell"), "{path}");
        assert!(!html.contains("__CODARA_"), "{path}: a placeholder left");
        assert!(html.contains("<meta name=\"codara-version\" content=\""));
    }
    // HEAD gets the headers without the body.
    let head = server.request("HEAD", "/dashboard/users", &[], None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_secured("HEAD /dashboard/users", &head);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// Every file of `ui-dist/assets` is served under the shell's versioned directory with its
/// content type, a year-long immutable cache and the policy; unversioned or stale URLs get the
/// same bytes but `no-cache`.
#[test]
fn every_asset_has_its_type_cache_and_csp() {
    let mut server = support::server().start();
    let shell = server.get("/dashboard", None).text();
    let dir = asset_dir(&shell);
    let files = asset_files();
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let expected_type = match file.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "svg" => "image/svg+xml",
            other => panic!("{file}: add a content type check for .{other}"),
        };
        let bytes = std::fs::read(root().join("ui-dist/assets").join(file)).unwrap();
        let path = format!("{dir}/{file}");
        let response = server.get(&path, None);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let content_type = response.header("Content-Type").unwrap_or("");
        assert!(
            content_type.starts_with(expected_type),
            "{path}: {content_type}"
        );
        assert_eq!(
            response.header("Cache-Control"),
            Some("public, max-age=31536000, immutable"),
            "{path}"
        );
        assert_secured(&path, &response);
        assert_eq!(response.body, bytes, "{path}: not the file's bytes");

        for other in [
            format!("/dashboard/assets/{file}"),
            format!("/dashboard/assets/0000000000000000/{file}"),
        ] {
            let response = server.get(&other, None);
            assert_eq!(response.status, 200, "{other}");
            assert_eq!(
                response.header("Cache-Control"),
                Some("no-cache"),
                "{other}"
            );
            assert_eq!(response.body, bytes, "{other}");
        }
    }
    // The shell names the entry module, the stylesheet and the icon under that directory.
    for file in ["app.js", "app.css", "icon.svg"] {
        assert!(shell.contains(&format!("{dir}/{file}")), "{file}: {shell}");
    }
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// The app needs nothing the policy forbids and loads nothing from elsewhere: no inline script
/// or style, no `on…=` attributes, no `eval`, no HTML strings, no third-party URL.
#[test]
fn the_app_is_compatible_with_its_policy() {
    let mut files = vec!["index.html".to_string()];
    files.extend(asset_files().into_iter().map(|f| format!("assets/{f}")));
    let mut total = 0;
    for file in &files {
        let text = std::fs::read_to_string(root().join("ui-dist").join(file)).unwrap();
        total += text.len();
        // An SVG names its XML namespace; that is not a request.
        let text = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for banned in [
            "style=",
            "setAttribute('style'",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "javascript:",
            "http://",
            "@import",
        ] {
            assert!(!text.contains(banned), "{file} uses {banned}");
        }
        if file.ends_with(".html") {
            for tag in text.split("<script").skip(1) {
                let head = &tag[..tag.find('>').unwrap()];
                assert!(head.contains("src="), "{file}: an inline script");
                assert!(
                    !tag[tag.find('>').unwrap() + 1..].starts_with(|c: char| c != '<'),
                    "{file}: a script with a body"
                );
            }
            assert!(!text.contains("<style"), "{file}: an inline stylesheet");
            let handler = text.match_indices(" on").any(|(at, _)| {
                let name: String = text[at + 3..]
                    .chars()
                    .take_while(char::is_ascii_lowercase)
                    .collect();
                !name.is_empty() && text[at + 3 + name.len()..].starts_with('=')
            });
            assert!(!handler, "{file}: an event handler attribute");
        }
        // The only https URL anywhere is a release link the API hands over at run time.
        assert!(!text.contains("https://"), "{file} names a third-party URL");
    }
    // Small: the whole app, hand-written, stays well under 200 KB.
    assert!(total < 200_000, "ui-dist is {total} bytes");
}

#[test]
fn missing_files_are_404_not_the_shell() {
    let mut server = support::server().start();
    for path in [
        "/dashboard/assets/missing.js",
        "/dashboard/assets/0123456789abcdef/missing.js",
        "/dashboard/nope.png",
        "/dashboard/favicon.ico",
    ] {
        let response = server.get(path, None);
        assert_eq!(response.status, 404, "{path}: {}", response.text());
        assert!(!response.text().contains("data-codara-shell"), "{path}");
        assert_eq!(response.json()["error"]["code"], "not_found", "{path}");
        assert_secured(path, &response);
    }
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn path_traversal_is_refused() {
    let mut server = support::server().start();
    for path in [
        "/dashboard/../../etc/passwd",
        "/dashboard/..%2f..%2fetc%2fpasswd",
        "/dashboard/%2e%2e/%2e%2e/etc/passwd",
        "/dashboard/assets/../../../../etc/passwd",
        "/dashboard/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    ] {
        // Written byte for byte: no client-side normalization of the request line.
        let mut stream = support::connect(server.addr);
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let response = support::read_one_response(&mut stream, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{path}: no response"));
        assert!(
            matches!(response.status, 400 | 404),
            "{path}: {} {}",
            response.status,
            response.text()
        );
        assert!(!response.text().contains("root:"), "{path}: leaked a file");
        assert!(
            !response.text().contains("data-codara-shell"),
            "{path}: served the shell"
        );
    }
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}
