//! The shortest end-to-end path: start, log in, read the overview, stop cleanly.

use crate::support;

#[test]
fn start_login_overview_stop() {
    let mut server = support::server().start();
    let health = server.get("/healthz", None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let token = server.login();
    let overview = server.get("/management/v1/overview", Some(&token));
    assert_eq!(overview.status, 200, "{}", overview.text());
    assert_eq!(overview.json()["data"]["storage"]["schema_version"], 7);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}
