//! The HTTP server: the accept loop, the two worker pools, and the per-request pipeline.
//!
//! One accept thread takes requests from tiny_http and hands each to the `api` or `turns` pool;
//! a full pool (workers and its short queue) is answered 503 with `Retry-After` at once. In a worker: request id, route,
//! authentication, body (size-limited), handler, response. Must not know about domain tables.

pub mod assets;
pub mod pool;
pub mod request;
pub mod response;
pub mod router;
pub mod sse;

pub use self::request::Request;
pub use self::response::{Body, Plane, Response};

use crate::app::App;
use crate::error::{Error, Result};
use pool::Pool;
use std::net::TcpListener;
use std::os::unix::io::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves until SIGTERM/SIGINT, then lets running requests finish within the grace period.
pub fn serve(app: Arc<App>, listener: TcpListener) -> Result<()> {
    let timeout = Duration::from_secs(app.config.server.read_timeout_seconds);
    set_socket_timeouts(&listener, timeout)?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| Error::Internal(format!("cannot start the HTTP server: {e}")))?;
    let server = Arc::new(server);
    let signals = crate::shutdown::Signals::install().map_err(|e| Error::io("sigaction", e))?;
    {
        let server = Arc::clone(&server);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                signals.wait();
                log::info!("shutdown requested; no new requests are accepted");
                server.unblock();
            })
            .map_err(|e| Error::io("thread spawn", e))?;
    }

    let handler: Arc<dyn Fn(tiny_http::Request) + Send + Sync> = {
        let app = Arc::clone(&app);
        Arc::new(move |raw| handle(&app, raw))
    };
    let server_config = &app.config.server;
    let api_pool = Pool::new(
        "api",
        server_config.workers,
        server_config.queue,
        Arc::clone(&handler),
    );
    // Turns are long: a turn that cannot start now is refused at once rather than queued.
    let turn_pool = Pool::new("turns", server_config.turn_workers, 0, handler);

    loop {
        let raw = match server.recv() {
            Ok(raw) => raw,
            Err(_) if crate::shutdown::requested() => break,
            Err(e) => {
                log::warn!("accept failed: {e}");
                continue;
            }
        };
        if crate::shutdown::requested() {
            reject(raw, &Error::ShuttingDown);
            break;
        }
        let pool = if router::runs_on_turn_pool(raw.url()) {
            &turn_pool
        } else {
            &api_pool
        };
        if let Err(raw) = pool.try_submit(raw) {
            log::warn!("{} pool is full; answering 503", pool.name());
            reject(
                raw,
                &Error::Busy {
                    pool: pool.name(),
                    retry_after_secs: 1,
                },
            );
        }
    }

    let grace = Duration::from_secs(app.config.server.shutdown_grace_seconds);
    let left = api_pool.shutdown(grace) + turn_pool.shutdown(grace);
    if left > 0 {
        log::warn!("{left} requests were still running when the grace period ended");
    }
    // CLIs still running past the grace period are stopped, not left behind; their turns are
    // in the journal and are stored as interrupted at the next start.
    let live = crate::process::live_groups();
    if live > 0 {
        log::warn!("stopping {live} CLI process group(s) still running");
        crate::process::terminate_all(Duration::from_secs(2));
    }
    log::info!("stopped");
    Ok(())
}

/// Answers a request from the accept thread without a worker (pool full, shutting down).
fn reject(raw: tiny_http::Request, error: &Error) {
    let request_id = request_id_for(&raw);
    let plane = Plane::of(raw.url());
    let _ = raw.respond(Response::error(error, plane, &request_id).into_tiny(&request_id));
}

/// The per-request pipeline, run on a worker.
fn handle(app: &Arc<App>, mut raw: tiny_http::Request) {
    let started = Instant::now();
    let request_id = request_id_for(&raw);
    let mut request = Request::new(raw.method().as_str(), raw.url());
    request.headers = raw
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    request.remote_addr = raw.remote_addr().copied();
    request.request_id = request_id.clone();
    let plane = Plane::of(&request.path);

    let response = crate::telemetry::with_request_id(&request_id, || {
        let outcome = catch_unwind(AssertUnwindSafe(|| respond(app, &mut raw, &mut request)));
        let result =
            outcome.unwrap_or_else(|_| Err(Error::Internal("the handler panicked".to_string())));
        match result {
            Ok(response) => response,
            Err(error) => {
                if error.is_internal() {
                    log::error!("{} {}: {error}", request.method, request.path);
                }
                Response::error(&error, plane, &request_id)
            }
        }
    });
    let status = response.status;
    let streaming = matches!(response.body, Body::Stream(_));
    let sent = raw.respond(response.into_tiny(&request_id));
    crate::telemetry::with_request_id(&request_id, || {
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let quiet = request.path == "/healthz" || request.path.starts_with("/dashboard/");
        if let Err(e) = sent {
            log::info!(
                "{} {} {status}: client went away: {e}",
                request.method,
                request.path
            );
        } else if quiet && status < 400 {
            log::debug!(
                "{} {} {status} {elapsed:.1}ms",
                request.method,
                request.path
            );
        } else {
            let kind = if streaming { " (stream)" } else { "" };
            log::info!(
                "{} {} {status} {elapsed:.1}ms{kind}",
                request.method,
                request.path
            );
        }
    });
}

fn respond(
    app: &Arc<App>,
    raw: &mut tiny_http::Request,
    request: &mut Request,
) -> Result<Response> {
    let segments = request.segments();
    if segments
        .iter()
        .any(|s| *s == ".." || *s == "." || s.contains('\\') || s.contains('\0'))
    {
        return Err(Error::bad_request(
            "path must not contain `.` or `..` segments",
        ));
    }
    let (handler, access) = match router::route(&request.method, &segments) {
        router::Route::Found(handler, access) => (handler, access),
        router::Route::MethodNotAllowed(allowed) => {
            return Err(Error::MethodNotAllowed { allowed })
        }
        router::Route::NotFound => {
            return Err(Error::NotFound(format!(
                "no route for {} {}",
                request.method, request.path
            )))
        }
    };
    let principal = crate::api::auth::authenticate(app, request, access)?;
    if matches!(request.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
        request.body = request::read_body(raw, app.config.server.max_body_bytes)?;
    }
    handler(app, request, &principal)
}

/// The client's `X-Request-Id` when it is short and plain, else a new `req_<12hex>`.
fn request_id_for(raw: &tiny_http::Request) -> String {
    raw.headers()
        .iter()
        .find(|h| h.field.equiv("X-Request-Id"))
        .map(|h| h.value.as_str().trim())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| crate::crypto::random_id("req_"))
}

/// Sets SO_RCVTIMEO/SO_SNDTIMEO on the listener; Linux copies them to every accepted socket,
/// which is how a slow client is kept from holding a worker (tiny_http has no timeout option).
fn set_socket_timeouts(listener: &TcpListener, timeout: Duration) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as _,
        tv_usec: timeout.subsec_micros() as _,
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: setsockopt on a listener we own with a correctly sized timeval.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Error::io("setsockopt", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
