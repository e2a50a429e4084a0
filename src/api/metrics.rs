//! `GET /metrics`: Prometheus text format 0.0.4, for the operator token or, without one, from
//! loopback (see `router::Access::OperatorOrLoopback`).
//!
//! The process-wide counters are `telemetry::metrics`'; this file adds what the app's state
//! says at scrape time: build info, the account pool, warm processes. Labels are closed sets
//! and operator-chosen names (providers, account ids): nothing here names a user, a workspace
//! or a session, because a local process may read it.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::Result;
use crate::http::{Request, Response};
use crate::store::accounts::AccountStatus;
use crate::telemetry::metrics::{self, Exposition};
use std::sync::Arc;

/// The content type of the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric.
pub fn get(app: &Arc<App>, _request: &Request, _principal: &Principal) -> Result<Response> {
    let mut out = Exposition::default();
    out.family(
        "codara_build_info",
        "gauge",
        "Always 1; the labels say which build runs.",
    );
    out.sample("codara_build_info", &[("version", crate::VERSION)], 1.0);
    out.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process, seconds since the Unix epoch.",
    );
    out.sample(
        "process_start_time_seconds",
        &[],
        app.started_at_ms as f64 / 1000.0,
    );
    process(&mut out);
    metrics::render(&mut out);
    accounts(app, &mut out)?;
    warm(app, &mut out);
    Ok(Response::bytes(
        200,
        CONTENT_TYPE,
        out.finish().into_bytes(),
    ))
}

/// Resident memory and open descriptors of this process (Linux `/proc`).
fn process(out: &mut Exposition) {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok());
    if let Some(pages) = resident {
        out.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the gateway process.",
        );
        out.sample("process_resident_memory_bytes", &[], pages * page);
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        out.family(
            "process_open_fds",
            "gauge",
            "Open file descriptors of the gateway process.",
        );
        out.sample("process_open_fds", &[], entries.count() as f64);
    }
}

/// Per account: its state (one series per state, 1 for the current one), whether it is
/// enabled, and its observed quota headroom.
fn accounts(app: &App, out: &mut Exposition) -> Result<()> {
    let accounts = app
        .store
        .read(|conn| crate::store::accounts::list(conn, None))?;
    let now = crate::clock::now_ms();
    out.family(
        "codara_account_state",
        "gauge",
        "1 for the state each pool account is in (ready, cooldown, needs_reauth, error).",
    );
    for account in &accounts {
        let current = crate::accounts::effective_status(account, now);
        for state in [
            AccountStatus::Ready,
            AccountStatus::Cooldown,
            AccountStatus::NeedsReauth,
            AccountStatus::Error,
        ] {
            out.sample(
                "codara_account_state",
                &[
                    ("provider", &account.provider),
                    ("account", &account.id),
                    ("state", state.as_str()),
                ],
                if state == current { 1.0 } else { 0.0 },
            );
        }
    }
    out.family(
        "codara_account_enabled",
        "gauge",
        "1 when selection may use the pool account.",
    );
    for account in &accounts {
        out.sample(
            "codara_account_enabled",
            &[("provider", &account.provider), ("account", &account.id)],
            if account.enabled { 1.0 } else { 0.0 },
        );
    }
    out.family(
        "codara_account_quota_headroom_percent",
        "gauge",
        "Observed quota left of a pool account: 100 minus the most used window (absent when unknown).",
    );
    for account in &accounts {
        let snapshot = crate::accounts::snapshot(account);
        if let Some(headroom) = crate::pool::select::headroom(&snapshot, now) {
            out.sample(
                "codara_account_quota_headroom_percent",
                &[("provider", &account.provider), ("account", &account.id)],
                headroom,
            );
        }
    }
    Ok(())
}

/// Warm agent processes per provider: how many, how many busy, their memory, and the turns
/// that ran exec because none was available.
fn warm(app: &App, out: &mut Exposition) {
    let (agents, fallbacks) = app.warm.status();
    let providers = crate::providers::Provider::ALL;
    out.family(
        "codara_warm_processes",
        "gauge",
        "Live warm agent processes, by provider.",
    );
    for provider in providers {
        let n = agents.iter().filter(|a| a.provider == provider).count();
        out.sample(
            "codara_warm_processes",
            &[("provider", provider.name())],
            n as f64,
        );
    }
    out.family(
        "codara_warm_busy_processes",
        "gauge",
        "Warm agent processes running a turn now, by provider.",
    );
    for provider in providers {
        let n = agents
            .iter()
            .filter(|a| a.provider == provider && a.busy > 0)
            .count();
        out.sample(
            "codara_warm_busy_processes",
            &[("provider", provider.name())],
            n as f64,
        );
    }
    out.family(
        "codara_warm_resident_memory_bytes",
        "gauge",
        "Resident memory of the warm agent processes (whole process groups), by provider.",
    );
    for provider in providers {
        let bytes: u64 = agents
            .iter()
            .filter(|a| a.provider == provider)
            .map(|a| a.rss_bytes)
            .sum();
        out.sample(
            "codara_warm_resident_memory_bytes",
            &[("provider", provider.name())],
            bytes as f64,
        );
    }
    out.family(
        "codara_warm_retiring_processes",
        "gauge",
        "Warm agent processes being stopped now.",
    );
    out.sample(
        "codara_warm_retiring_processes",
        &[],
        app.warm.retiring() as f64,
    );
    out.family(
        "codara_warm_exec_fallbacks_total",
        "counter",
        "Turns of a warm-mode provider that ran exec because no warm process was available.",
    );
    for provider in providers {
        let count = fallbacks.get(&provider).map_or(0, |f| f.count);
        out.sample(
            "codara_warm_exec_fallbacks_total",
            &[("provider", provider.name())],
            count as f64,
        );
    }
}
