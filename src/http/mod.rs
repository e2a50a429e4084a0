//! The HTTP server: the accept loop, the body intake stage, the two worker pools, and the
//! per-request pipeline.
//!
//! One accept thread takes requests from tiny_http and never reads from or waits on a client.
//! A request whose body is still on the socket goes to the intake stage, which routes,
//! authenticates and admits it and only then reads the body, under a deadline; with the body in
//! memory it moves to the `api` or `turns` pool, so a slow client never holds a worker. Any other
//! request goes straight to its pool and is prepared there. A full stage or pool is answered 503
//! with `Retry-After` at once. Must not know about domain tables.

pub mod assets;
pub mod pool;
pub mod request;
pub mod response;
pub mod router;
pub mod sse;

pub use self::request::Request;
pub use self::response::{Body, Plane, Response};

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use pool::Pool;
use router::Endpoint;
use std::net::TcpListener;
use std::os::unix::io::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves until SIGTERM/SIGINT, then lets running requests finish within the grace period.
pub fn serve(app: Arc<App>, listener: TcpListener) -> Result<()> {
    let config = app.config.server.clone();
    set_socket_timeouts(&listener, Duration::from_secs(config.read_timeout_seconds))?;
    let limits = tiny_http::Limits {
        max_connections_per_ip: config.max_connections_per_ip,
        tcp_nodelay: config.tcp_nodelay,
        // tiny_http reads heads and bodies up to 1 KiB itself: the same deadline as ours.
        request_deadline: Some(Arc::new({
            let config = config.clone();
            move |length| request::body_allowance(&config, Some(length as u64))
        })),
        ..tiny_http::Limits::default()
    };
    let server = tiny_http::Server::from_listener_with_limits(listener, None, limits)
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

    crate::telemetry::metrics::init_routes(router::labels());
    let pools = Arc::new(Pools::start(&app));
    let intake: Pool<tiny_http::Request> = {
        let app = Arc::clone(&app);
        let pools = Arc::clone(&pools);
        // No queue: a body that no intake thread can read now is refused, not parked.
        Pool::new(
            "intake",
            config.max_pending_bodies,
            0,
            Arc::new(move |raw| intake(&app, &pools, raw)),
        )
    };
    crate::telemetry::metrics::register_pool("intake", intake.gauge());
    crate::telemetry::metrics::register_pool("api", pools.api.gauge());
    crate::telemetry::metrics::register_pool("turns", pools.turns.gauge());

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
            refuse(raw, &Error::ShuttingDown);
            break;
        }
        dispatch(&pools, &intake, raw);
    }

    // Intake first: what it finishes still goes to the pools, which wait for it.
    let grace_end = Instant::now() + Duration::from_secs(config.shutdown_grace_seconds);
    let grace = || grace_end.saturating_duration_since(Instant::now());
    let left =
        intake.shutdown(grace()) + pools.api.shutdown(grace()) + pools.turns.shutdown(grace());
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

/// The worker pools that run handlers: `api` for short requests, `turns` for agent turns.
struct Pools {
    api: Pool<Job>,
    turns: Pool<Job>,
}

impl Pools {
    fn start(app: &Arc<App>) -> Pools {
        let worker: Arc<dyn Fn(Job) + Send + Sync> = {
            let app = Arc::clone(app);
            Arc::new(move |job| work(&app, job))
        };
        let config = &app.config.server;
        Pools {
            api: Pool::new("api", config.workers, config.queue, Arc::clone(&worker)),
            // Turns are long: a turn that cannot start now is refused at once rather than queued.
            turns: Pool::new("turns", config.turn_workers, 0, worker),
        }
    }

    /// The pool that runs `method url` (the router decides).
    fn for_request(&self, method: &str, url: &str) -> &Pool<Job> {
        match router::pool_for(method, url) {
            router::Pool::Turns => &self.turns,
            router::Pool::Api => &self.api,
        }
    }
}

/// Work for a pool worker.
enum Job {
    /// Straight from the accept thread, its body (if any) already in memory: prepared on the
    /// worker.
    Received(tiny_http::Request),
    /// From the intake stage: prepared and its body read; only the handler is left.
    Prepared(Box<Prepared>),
}

/// A request that passed routing, authentication and admission, with its body in memory.
struct Prepared {
    exchange: Exchange,
    endpoint: &'static Endpoint,
    principal: Principal,
}

/// A request in flight: tiny_http's handle to answer it, the parsed request, its arrival,
/// whether its route logs successes at debug level only (and is not traced), the route it
/// matched (its place in the route table, for the metrics) and its telemetry context.
struct Exchange {
    raw: tiny_http::Request,
    request: Request,
    started: Instant,
    quiet: bool,
    route: Option<usize>,
    context: crate::telemetry::Context,
}

/// How an answer leaves the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Keep the connection for the next request (unless the response says `Connection: close`).
    KeepAlive,
    /// Close it without reading what is left of the body.
    Close,
}

/// Hands `raw` to the stage that serves it, or answers 503 when that stage is full. Runs on the
/// accept thread: nothing here reads from or waits on a client.
fn dispatch(pools: &Pools, intake: &Pool<tiny_http::Request>, raw: tiny_http::Request) {
    if raw.body_pending() {
        if let Err(raw) = intake.try_submit(raw) {
            log::warn!(
                "intake is full ({} bodies being read); answering 503",
                intake.in_flight()
            );
            crate::telemetry::metrics::rejected(intake.name());
            refuse(raw, &busy(intake));
        }
        return;
    }
    let pool = pools.for_request(raw.method().as_str(), raw.url());
    if let Err(Job::Received(raw)) = pool.try_submit(Job::Received(raw)) {
        log::warn!("{} pool is full; answering 503", pool.name());
        crate::telemetry::metrics::rejected(pool.name());
        refuse(raw, &busy(pool));
    }
}

fn busy<T: Send>(pool: &Pool<T>) -> Error {
    Error::Busy {
        pool: pool.name(),
        retry_after_secs: 1,
    }
}

/// Answers a request from the accept thread (a full stage, shutting down) and closes the
/// connection, without ever blocking: a client that does not read, or an earlier response still
/// being written on the same connection, must not stall dispatch for everyone.
fn refuse(raw: tiny_http::Request, error: &Error) {
    let request_id = client_request_id(&raw).unwrap_or_else(|| crate::crypto::random_id("req_"));
    let plane = router::plane_of_url(raw.url());
    let route = router::index_of_url(raw.method().as_str(), raw.url());
    crate::telemetry::metrics::request(route, error.status(), Duration::ZERO);
    let response = Response::error(error, plane, &request_id).into_tiny(&request_id);
    if let Err(e) = raw.try_respond_and_close(response) {
        log::debug!("a refusal ({}) was not delivered: {e}", error.status());
    }
}

/// The intake stage: prepares a request whose body is still on the socket, then reads the body
/// under [`request::body_allowance`] and passes the request on to its pool. A request refused
/// before or while its body is read is answered with the connection closed, so that nothing
/// waits for the rest of the body.
fn intake(app: &Arc<App>, pools: &Pools, raw: tiny_http::Request) {
    let mut exchange = Exchange::begin(raw);
    let context = exchange.context.clone();
    let prepared = context.enter(|| {
        guarded(|| {
            let (endpoint, principal) = prepare(app, &mut exchange.request, &mut exchange.route)?;
            let pool = pools.for_request(&exchange.request.method, exchange.raw.url());
            // No body is taken in that no worker could take on (a hint: workers may free up).
            if !pool.has_room_within(ROOM_GRACE) {
                crate::telemetry::metrics::rejected(pool.name());
                return Err(busy(pool));
            }
            let server = &app.config.server;
            let length = exchange.raw.body_length().map(|n| n as u64);
            let deadline = Instant::now() + request::body_allowance(server, length);
            let _span = crate::telemetry::span("read_body");
            exchange.request.body =
                request::read_body(&mut exchange.raw, server.max_body_bytes, Some(deadline))?;
            Ok((endpoint, principal))
        })
    });
    let (endpoint, principal) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return exchange.fail(&error, Ending::Close),
    };
    let pool = pools.for_request(&exchange.request.method, exchange.raw.url());
    let job = Job::Prepared(Box::new(Prepared {
        exchange,
        endpoint,
        principal,
    }));
    // Only a wait: a worker may be finishing its last answer. `try_submit` decides, atomically.
    pool.has_room_within(ROOM_GRACE);
    if let Err(Job::Prepared(prepared)) = pool.try_submit(job) {
        log::warn!("{} pool is full; answering 503", pool.name());
        crate::telemetry::metrics::rejected(pool.name());
        // The body is in: the connection can stay.
        prepared.exchange.fail(&busy(pool), Ending::KeepAlive);
    }
}

/// How long a request whose body is being read (on an intake thread) waits for a worker that
/// is finishing its previous answer before it is refused as busy.
const ROOM_GRACE: Duration = Duration::from_millis(100);

/// Runs a job on an api or turns worker.
fn work(app: &Arc<App>, job: Job) {
    let prepared = match job {
        Job::Prepared(prepared) => *prepared,
        Job::Received(raw) => {
            let mut exchange = Exchange::begin(raw);
            let context = exchange.context.clone();
            let prepared = context.enter(|| {
                guarded(|| {
                    let prepared = prepare(app, &mut exchange.request, &mut exchange.route)?;
                    // A declared body is at most 1 KiB and already in memory. Without one there
                    // is nothing to read (an upgrade request's reader is the raw stream).
                    if exchange.raw.body_length().is_some_and(|length| length > 0) {
                        let limit = app.config.server.max_body_bytes;
                        exchange.request.body = request::read_body(&mut exchange.raw, limit, None)?;
                    }
                    Ok(prepared)
                })
            });
            match prepared {
                Ok((endpoint, principal)) => Prepared {
                    exchange,
                    endpoint,
                    principal,
                },
                Err(error) => return exchange.fail(&error, Ending::KeepAlive),
            }
        }
    };
    finish(app, prepared);
}

/// Routes, authenticates and admits a request: everything decided before its body is read.
/// `route` learns the matched route even when authentication or admission then refuse.
fn prepare(
    app: &Arc<App>,
    request: &mut Request,
    route: &mut Option<usize>,
) -> Result<(&'static Endpoint, Principal)> {
    let segments = request.segments();
    if segments
        .iter()
        .any(|s| *s == ".." || *s == "." || s.contains('\\') || s.contains('\0'))
    {
        return Err(Error::bad_request(
            "path must not contain `.` or `..` segments",
        ));
    }
    let (endpoint, params) = match router::route(&request.method, &segments) {
        router::Route::Found(endpoint, params) => (endpoint, params),
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
    request.params = params;
    *route = router::index_of(endpoint);
    let principal = {
        let span = crate::telemetry::span("auth");
        let principal = crate::api::auth::authenticate(app, request, endpoint.access);
        match &principal {
            Ok(principal) => {
                if let Some(user) = principal.user_id() {
                    crate::telemetry::annotate(crate::telemetry::Field::User, user);
                }
            }
            Err(_) => span.fail(),
        }
        principal?
    };
    if let Some(admit) = endpoint.admit {
        let span = crate::telemetry::span("admission");
        request.admission = admit(app, &principal).inspect_err(|_| span.fail())?;
    }
    Ok((endpoint, principal))
}

/// Calls the handler (a panic is a 500 with the request id) and sends its response.
fn finish(app: &Arc<App>, prepared: Prepared) {
    let Prepared {
        mut exchange,
        endpoint,
        principal,
    } = prepared;
    let context = exchange.context.clone();
    let result =
        context.enter(|| guarded(|| (endpoint.handler)(app, &exchange.request, &principal)));
    exchange.quiet = endpoint.quiet;
    match result {
        Ok(response) => exchange.deliver(response, Ending::KeepAlive),
        Err(error) => exchange.fail(&error, Ending::KeepAlive),
    }
}

/// Runs `f`, turning a panic into a 500.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Error::Internal("the handler panicked".to_string())))
}

impl Exchange {
    /// Parses `raw` into a [`Request`] with its request id.
    fn begin(raw: tiny_http::Request) -> Exchange {
        let traceparent = raw
            .headers()
            .iter()
            .find(|h| h.field.equiv("traceparent"))
            .map(|h| h.value.as_str());
        let context = crate::telemetry::Context::for_request(client_request_id(&raw), traceparent);
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
        request.request_id = context.request_id().to_string();
        Exchange {
            raw,
            request,
            started: Instant::now(),
            quiet: false,
            route: None,
            context,
        }
    }

    /// Answers `error` in the shape of the request's plane (500s are logged in full).
    fn fail(self, error: &Error, ending: Ending) {
        if error.is_internal() {
            self.context
                .enter(|| log::error!("{} {}: {error}", self.request.method, self.request.path));
        }
        let plane = router::plane(&self.request.segments());
        let response = Response::error(error, plane, &self.request.request_id);
        self.deliver(response, ending);
    }

    /// Sends `response`, logs the request, counts it and ends its trace.
    fn deliver(self, mut response: Response, ending: Ending) {
        let Exchange {
            raw,
            request,
            started,
            quiet,
            route,
            context,
        } = self;
        if let Some(traceparent) = context.traceparent() {
            response.headers.push(("traceparent".into(), traceparent));
        }
        // A turn slot the handler did not take is freed before the client sees the answer, or
        // its next request could find the user still at `max_concurrency`.
        drop(request.admission.take_slot());
        let status = response.status;
        let streaming = matches!(response.body, Body::Stream(_));
        let close = ending == Ending::Close
            || response.headers.iter().any(|(name, value)| {
                name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            });
        let tiny = response.into_tiny(&request.request_id);
        let sent = if close {
            raw.respond_and_close(tiny)
        } else {
            raw.respond(tiny)
        };
        let elapsed = started.elapsed();
        crate::telemetry::metrics::request(route, status, elapsed);
        context.enter(|| {
            let elapsed = elapsed.as_secs_f64() * 1000.0;
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
        let template = route.and_then(router::pattern_at);
        context.finish_http(&request.method, template, status, !quiet);
    }
}

/// The client's `X-Request-Id` when it is short and plain.
fn client_request_id(raw: &tiny_http::Request) -> Option<String> {
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
