//! A loopback stand-in for the GitHub releases API (the outside world is out of reach in tests).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A running fake; counts the requests it answered.
pub struct FakeGithub {
    /// Base URL to put in `[release].api_base_url`.
    pub base_url: String,
    /// Requests answered so far.
    pub hits: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
}

impl FakeGithub {
    /// Serves `GET /repos/<repo>/releases/latest` with `status` and `body`.
    pub fn start(status: u16, body: &str) -> FakeGithub {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr: SocketAddr = server.server_addr().to_ip().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let body = body.to_string();
        {
            let server = Arc::clone(&server);
            let hits = Arc::clone(&hits);
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let ok = request.url().ends_with("/releases/latest");
                    let response = tiny_http::Response::from_string(if ok {
                        body.clone()
                    } else {
                        "{}".into()
                    })
                    .with_status_code(if ok { status } else { 404 });
                    let _ = request.respond(response);
                }
            });
        }
        FakeGithub {
            base_url: format!("http://{addr}"),
            hits,
            server,
        }
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
