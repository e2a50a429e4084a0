//! The embedded dashboard: the HTML shell with history fallback, assets with their content types,
//! 404 for missing files, and path traversal refused on raw request lines.

use crate::support;
use std::io::Write;
use std::time::Duration;

#[test]
fn shell_is_served_for_the_app_routes() {
    let mut server = support::server().start();
    for path in ["/dashboard", "/dashboard/", "/dashboard/workspaces/abc"] {
        let response = server.get(path, None);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let content_type = response.header("Content-Type").unwrap_or("");
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert_eq!(response.header("Cache-Control"), Some("no-cache"), "{path}");
        assert!(response.text().contains("data-codara-shell"), "{path}");
    }
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn assets_have_their_content_types() {
    let mut server = support::server().start();
    let js = server.get("/dashboard/assets/app.js", None);
    assert_eq!(js.status, 200, "{}", js.text());
    let content_type = js.header("Content-Type").unwrap_or("");
    assert!(
        content_type.starts_with("text/javascript")
            || content_type.starts_with("application/javascript"),
        "{content_type}"
    );
    assert!(!js.body.is_empty());
    assert!(
        !js.text().contains("data-codara-shell"),
        "an asset, not the shell"
    );
    assert_ne!(js.header("Cache-Control"), Some("no-cache"));

    let css = server.get("/dashboard/assets/app.css", None);
    assert_eq!(css.status, 200);
    assert!(css
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("text/css"));
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn missing_files_are_404_not_the_shell() {
    let mut server = support::server().start();
    for path in ["/dashboard/assets/missing.js", "/dashboard/nope.png"] {
        let response = server.get(path, None);
        assert_eq!(response.status, 404, "{path}: {}", response.text());
        assert!(!response.text().contains("data-codara-shell"), "{path}");
        assert_eq!(response.json()["error"]["code"], "not_found", "{path}");
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
