//! One JSON-RPC connection over a warm agent's stdio: a reader thread that owns the child (it
//! spawns it, so `PR_SET_PDEATHSIG` is tied to a thread that lives as long as the child) and
//! routes each line — a reply to whoever asked, a notification or a server request to the turn
//! subscribed to its session — and a writer thread that owns stdin, so no caller ever blocks on
//! a child that stopped reading.
//!
//! Both dialects are JSON lines: codex's app-server omits the `"jsonrpc"` field, ACP sends
//! `"jsonrpc":"2.0"`. Must not know any method but by the names callers pass.

use crate::error::{Error, Result};
use crate::process::{self, CommandSpec, RunOutcome};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The two line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// codex `app-server`: JSON-RPC without the `"jsonrpc"` member; sessions are `threadId`s.
    Codex,
    /// The Agent Client Protocol: JSON-RPC 2.0; sessions are `sessionId`s.
    Acp,
}

impl Dialect {
    /// The session a notification or server request belongs to.
    fn session_of(self, params: &Value) -> Option<&str> {
        let key = match self {
            Dialect::Codex => "threadId",
            Dialect::Acp => "sessionId",
        };
        params.get(key).and_then(Value::as_str)
    }

    fn envelope(self, mut message: Value) -> Value {
        if self == Dialect::Acp {
            if let Some(object) = message.as_object_mut() {
                object.insert("jsonrpc".into(), "2.0".into());
            }
        }
        message
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error code.
    pub code: i64,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// What the agent sent that a turn receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A notification.
    Notification {
        /// Its method.
        method: String,
        /// Its params.
        params: Value,
    },
    /// A request the agent expects an answer to (approvals).
    Request {
        /// The agent's request id, echoed in the answer.
        id: Value,
        /// Its method.
        method: String,
        /// Its params.
        params: Value,
    },
    /// The reply to one of our requests sent with [`Peer::request_to`].
    Reply {
        /// Our request id.
        id: u64,
        /// The result, or the error.
        outcome: std::result::Result<Value, RpcError>,
    },
}

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, Sender<Incoming>>,
    sessions: HashMap<String, Sender<Incoming>>,
    closed: bool,
}

/// The pure answer to an agent request (approvals), by protocol.
pub type Policy = fn(&str, &Value) -> std::result::Result<Value, RpcError>;

/// A live JSON-RPC connection to one warm agent process.
pub struct Peer {
    dialect: Dialect,
    label: String,
    outbox: Mutex<Option<Sender<String>>>,
    next_id: AtomicU64,
    routes: Mutex<Routes>,
    pgid: AtomicI32,
    ended: Mutex<Option<RunOutcome>>,
    /// Answers server requests that no turn is subscribed to (pure policy).
    unrouted: Policy,
}

impl Peer {
    /// Starts `command` on a new reader thread (and a writer thread); returns once the child is
    /// spawned. `unrouted` answers agent requests outside any subscribed turn.
    pub fn start(
        command: CommandSpec,
        dialect: Dialect,
        label: String,
        unrouted: Policy,
    ) -> Result<Arc<Peer>> {
        let peer = Arc::new(Peer {
            dialect,
            label: label.clone(),
            outbox: Mutex::new(None),
            next_id: AtomicU64::new(1),
            routes: Mutex::new(Routes::default()),
            pgid: AtomicI32::new(0),
            ended: Mutex::new(None),
            unrouted,
        });
        let (spawned_tx, spawned_rx) = mpsc::channel::<Result<()>>();
        let reader = Arc::clone(&peer);
        std::thread::Builder::new()
            .name(format!("warm-{label}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let spawned = spawned_tx.clone();
                let mut on_start = |resident: process::Resident| {
                    reader.pgid.store(resident.pgid, Ordering::SeqCst);
                    match writer(resident.stdin, &reader.label) {
                        Ok(outbox) => {
                            if let Ok(mut slot) = reader.outbox.lock() {
                                *slot = Some(outbox);
                            }
                            let _ = spawned.send(Ok(()));
                        }
                        Err(error) => {
                            process::signal_group(resident.pgid, libc::SIGKILL);
                            let _ = spawned.send(Err(error));
                        }
                    }
                };
                let ended = process::run_resident(&command, &mut on_start, &mut |line| {
                    reader.dispatch(line)
                });
                match ended {
                    Ok(outcome) => {
                        log::info!(
                            "warm {} process ended: exit={:?} signal={:?}",
                            reader.label,
                            outcome.exit_code,
                            outcome.signal
                        );
                        reader.close(Some(outcome));
                    }
                    Err(error) => {
                        let _ = spawned_tx.send(Err(error));
                        reader.close(None);
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("starting a warm agent thread: {e}")))?;
        match spawned_rx.recv() {
            Ok(Ok(())) => Ok(peer),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Internal(format!(
                "the warm {label} process did not start"
            ))),
        }
    }

    /// The child's process group, 0 before it started.
    pub fn pgid(&self) -> i32 {
        self.pgid.load(Ordering::SeqCst)
    }

    /// Whether the process still runs (its stdout is open).
    pub fn alive(&self) -> bool {
        self.routes.lock().map(|r| !r.closed).unwrap_or(false)
    }

    /// How the process ended, once it has.
    pub fn ended(&self) -> Option<RunOutcome> {
        self.ended.lock().ok().and_then(|e| e.clone())
    }

    /// Sends a request and waits up to `timeout` for its reply.
    pub fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> std::result::Result<Value, RpcError> {
        let (tx, rx) = mpsc::channel();
        let id = self.request_to(method, params, tx)?;
        let reply = rx.recv_timeout(timeout);
        if let Ok(mut routes) = self.routes.lock() {
            routes.pending.remove(&id);
        }
        match reply {
            Ok(Incoming::Reply { outcome, .. }) => outcome,
            Ok(_) => Err(local_error("an unexpected message answered the request")),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(local_error(&format!(
                "the {} agent did not answer {method} within {} s",
                self.label,
                timeout.as_secs()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.gone()),
        }
    }

    /// Sends a request whose reply goes to `reply_to` as [`Incoming::Reply`]; returns its id.
    pub fn request_to(
        &self,
        method: &str,
        params: Value,
        reply_to: Sender<Incoming>,
    ) -> std::result::Result<u64, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        {
            let mut routes = self
                .routes
                .lock()
                .map_err(|_| local_error("the agent's routes are poisoned"))?;
            if routes.closed {
                return Err(self.gone());
            }
            routes.pending.insert(id, reply_to);
        }
        self.send(json!({"id": id, "method": method, "params": params}))?;
        Ok(id)
    }

    /// Sends a notification.
    pub fn notify(&self, method: &str, params: Value) -> std::result::Result<(), RpcError> {
        self.send(json!({"method": method, "params": params}))
    }

    /// Answers a request of the agent.
    pub fn answer(
        &self,
        id: &Value,
        outcome: std::result::Result<Value, RpcError>,
    ) -> std::result::Result<(), RpcError> {
        let message = match outcome {
            Ok(result) => json!({"id": id, "result": result}),
            Err(error) => {
                json!({"id": id, "error": {"code": error.code, "message": error.message}})
            }
        };
        self.send(message)
    }

    /// Routes the session's notifications and requests to the returned receiver until
    /// [`Peer::unsubscribe`]; a closed process disconnects it.
    pub fn subscribe(&self, session: &str) -> (Sender<Incoming>, Receiver<Incoming>) {
        let (tx, rx) = mpsc::channel();
        if let Ok(mut routes) = self.routes.lock() {
            if !routes.closed {
                routes.sessions.insert(session.to_string(), tx.clone());
            }
        }
        (tx, rx)
    }

    /// Stops routing the session's messages (they are dropped until the next subscription).
    pub fn unsubscribe(&self, session: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.sessions.remove(session);
        }
    }

    /// Forgets a pending request (its reply, if any, is dropped).
    pub fn forget(&self, id: u64) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.pending.remove(&id);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`, to the process group; returns once it ended (or
    /// after the grace period on top).
    pub fn stop(&self, grace: Duration) {
        let pgid = self.pgid();
        if pgid <= 1 || !self.alive() {
            return;
        }
        process::signal_group(pgid, libc::SIGTERM);
        if !self.wait_closed(grace) {
            process::signal_group(pgid, libc::SIGKILL);
            self.wait_closed(grace);
        }
    }

    /// SIGKILL to the process group at once.
    pub fn kill(&self) {
        let pgid = self.pgid();
        if pgid > 1 {
            process::signal_group(pgid, libc::SIGKILL);
        }
    }

    fn wait_closed(&self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while self.alive() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn send(&self, message: Value) -> std::result::Result<(), RpcError> {
        let line = self.dialect.envelope(message).to_string();
        let outbox = self
            .outbox
            .lock()
            .map_err(|_| local_error("the agent's outbox is poisoned"))?;
        match outbox.as_ref() {
            Some(outbox) if outbox.send(line).is_ok() => Ok(()),
            _ => Err(self.gone()),
        }
    }

    fn gone(&self) -> RpcError {
        local_error(&format!("the warm {} process is gone", self.label))
    }

    /// One stdout line: a reply to its asker, a message to the turn subscribed to its session;
    /// an agent request nobody is subscribed to is answered by the policy at once.
    fn dispatch(&self, line: &str) {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            log::debug!("warm {}: not JSON: {:.200}", self.label, line);
            return;
        };
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id").filter(|id| !id.is_null());
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        match (method, id) {
            (None, Some(id)) => {
                let Some(id) = id.as_u64() else { return };
                if let Some(to) = routes.pending.remove(&id) {
                    let outcome = match message.get("error") {
                        Some(error) => Err(RpcError {
                            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                            message: error
                                .get("message")
                                .and_then(Value::as_str)
                                .unwrap_or("error")
                                .to_string(),
                        }),
                        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    let _ = to.send(Incoming::Reply { id, outcome });
                }
            }
            (Some(method), id) => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                let route = self
                    .dialect
                    .session_of(&params)
                    .and_then(|s| routes.sessions.get(s));
                let incoming = match id {
                    Some(id) => Incoming::Request {
                        id: id.clone(),
                        method: method.to_string(),
                        params,
                    },
                    None => Incoming::Notification {
                        method: method.to_string(),
                        params,
                    },
                };
                let undelivered = match route {
                    Some(to) => to.send(incoming).err().map(|e| e.0),
                    None => Some(incoming),
                };
                drop(routes);
                if let Some(Incoming::Request { id, method, params }) = undelivered {
                    let answer = (self.unrouted)(&method, &params);
                    log::info!(
                        "warm {}: answered {method} outside a turn: {}",
                        self.label,
                        match &answer {
                            Ok(result) => result.to_string(),
                            Err(error) => error.to_string(),
                        }
                    );
                    let _ = self.answer(&id, answer);
                }
            }
            (None, None) => {}
        }
    }

    /// The process ended: every pending request and subscription is disconnected.
    fn close(&self, outcome: Option<RunOutcome>) {
        if let Ok(mut ended) = self.ended.lock() {
            *ended = outcome;
        }
        if let Ok(mut outbox) = self.outbox.lock() {
            *outbox = None;
        }
        if let Ok(mut routes) = self.routes.lock() {
            routes.closed = true;
            routes.pending.clear();
            routes.sessions.clear();
        }
    }
}

/// An error raised on our side (not by the agent).
pub fn local_error(message: &str) -> RpcError {
    RpcError {
        code: -32000,
        message: message.to_string(),
    }
}

/// The writer thread: lines from the outbox to the child's stdin until either side closes.
fn writer(stdin: std::process::ChildStdin, label: &str) -> Result<Sender<String>> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name(format!("warm-{label}-in"))
        .stack_size(128 * 1024)
        .spawn(move || {
            use std::io::Write;
            let mut stdin = std::io::BufWriter::new(stdin);
            for line in rx {
                let written = stdin
                    .write_all(line.as_bytes())
                    .and_then(|_| stdin.write_all(b"\n"))
                    .and_then(|_| stdin.flush());
                if written.is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::Internal(format!("starting a warm agent writer: {e}")))?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line-echoing child: every request comes back as the reply `{"echo": params}`, and
    /// `notify` lines are printed as a notification of session `s1`.
    fn echo() -> Arc<Peer> {
        let script = r#"while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"ping"'*) printf '{"id":%s,"result":{"pong":true}}\n' "$id" ;;
    *'"method":"fail"'*) printf '{"id":%s,"error":{"code":-32601,"message":"Method not found"}}\n' "$id" ;;
    *'"method":"chat"'*) printf '{"method":"note","params":{"threadId":"s1","n":1}}\n{"id":7,"method":"approve","params":{"threadId":"s1"}}\n{"id":%s,"result":{}}\n' "$id" ;;
    *'"method":"stray"'*) printf '{"id":9,"method":"approve","params":{"threadId":"nobody"}}\n' ;;
    *) printf '%s\n' "$line" >&2 ;;
  esac
done"#;
        let command = CommandSpec::new("/bin/sh", std::env::temp_dir())
            .args(["-c", script])
            .env("PATH", "/usr/bin:/bin");
        Peer::start(command, Dialect::Codex, "test".into(), |_, _| {
            Ok(json!({"decision": "accept"}))
        })
        .unwrap()
    }

    #[test]
    fn replies_reach_their_askers_and_notifications_their_session() {
        let peer = echo();
        let second = Duration::from_secs(5);
        assert_eq!(
            peer.request("ping", json!({}), second).unwrap(),
            json!({"pong": true})
        );
        let error = peer.request("fail", json!({}), second).unwrap_err();
        assert_eq!(error.code, -32601);
        let (tx, rx) = peer.subscribe("s1");
        let id = peer.request_to("chat", json!({}), tx).unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(rx.recv_timeout(second).unwrap());
        }
        assert!(matches!(&seen[0], Incoming::Notification { method, .. } if method == "note"));
        assert!(
            matches!(&seen[1], Incoming::Request { id, method, .. } if method == "approve" && id == &json!(7))
        );
        assert!(matches!(&seen[2], Incoming::Reply { id: got, outcome: Ok(_) } if *got == id));
        peer.stop(Duration::from_secs(2));
        assert!(!peer.alive());
        assert!(peer.request("ping", json!({}), second).is_err());
        // A closed process disconnects its subscribers.
        assert!(rx.recv_timeout(second).is_err());
    }

    #[test]
    fn a_killed_process_fails_what_waits_on_it() {
        let peer = echo();
        let (tx, rx) = peer.subscribe("s1");
        let _ = peer.request_to("silence", json!({}), tx).unwrap();
        peer.kill();
        match rx.recv_timeout(Duration::from_secs(5)) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            other => panic!("expected a disconnect, got {other:?}"),
        }
        assert!(peer
            .ended()
            .is_some_and(|e| e.signal == Some(libc::SIGKILL)));
    }
}
