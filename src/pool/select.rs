//! Choosing the provider account for a turn, as a pure function of account snapshots.
//!
//! Owns the selection policy of SPEC §5: a session sticks to its account while that account is
//! usable; otherwise the CLI-primary account while it is usable and above the headroom threshold;
//! otherwise the usable account with the most headroom (ties: earliest reset of the binding window,
//! then least recently used, then id). Must not read the clock, the store or the vault: the caller
//! passes snapshots and `now_ms`, and records the outcome.

use std::cmp::Ordering;

/// Where an account stands, as the store records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Status {
    /// Nothing known against it.
    Ready,
    /// Rate limited until `until_ms`; once that has passed the account is ready again by itself.
    Cooldown {
        /// Epoch ms at which the cooldown ends.
        until_ms: i64,
    },
    /// The provider refused the credential; an operator must upload a fresh one.
    NeedsReauth,
    /// Broken for another reason (an unreadable credential, say); never chosen.
    Error,
}

/// One observed quota window (5-hour or weekly) of an account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Percentage of the window used when it was observed (may be outside 0..=100 as reported).
    pub used_percent: f64,
    /// Epoch ms at which the window resets, when the provider said.
    pub resets_at_ms: Option<i64>,
}

impl Window {
    /// The percentage used at `now_ms`, clamped to 0..=100: 0 once the reset time has passed
    /// (the observation is stale), and 100 for a value that is not a number.
    pub fn used_at(&self, now_ms: i64) -> f64 {
        if self.resets_at_ms.is_some_and(|reset| reset <= now_ms) {
            return 0.0;
        }
        if self.used_percent.is_nan() {
            return 100.0;
        }
        self.used_percent.clamp(0.0, 100.0)
    }

    /// The reset time if it is still ahead of `now_ms`.
    fn future_reset(&self, now_ms: i64) -> Option<i64> {
        self.resets_at_ms.filter(|&reset| reset > now_ms)
    }
}

/// What selection needs to know about one account.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSnapshot {
    /// The account id.
    pub id: String,
    /// False when the account is switched off (it is never chosen).
    pub enabled: bool,
    /// The recorded status.
    pub status: Status,
    /// Whether this is the provider's CLI-primary account.
    pub cli_primary: bool,
    /// The observed 5-hour window, if any.
    pub five_hour: Option<Window>,
    /// The observed weekly window, if any.
    pub weekly: Option<Window>,
    /// Epoch ms of the last turn on this account; `None` if never used (sorts as least recent).
    pub last_used_ms: Option<i64>,
}

/// Why an account was chosen; `as_str` is the form used in audit entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The session's own account, still usable.
    Sticky,
    /// The CLI-primary account, usable and above the headroom threshold.
    CliPrimary,
    /// The usable account with the most observed headroom.
    MostHeadroom,
    /// The winner had no observed quota (ranked as if it had full headroom).
    UnknownQuota,
}

impl Reason {
    /// A stable snake_case name: `sticky`, `cli_primary`, `most_headroom`, `unknown_quota`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Sticky => "sticky",
            Reason::CliPrimary => "cli_primary",
            Reason::MostHeadroom => "most_headroom",
            Reason::UnknownQuota => "unknown_quota",
        }
    }
}

/// The outcome of [`select`].
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Run on account `id`.
    Chosen {
        /// The chosen account.
        id: String,
        /// Why it was chosen.
        reason: Reason,
        /// The session's previous account when the session has to move (its state should follow).
        migrate_from: Option<String>,
    },
    /// No account can run a turn now.
    NoneReady {
        /// The earliest time an account is expected back (a cooldown end or a quota reset);
        /// `None` when no account will come back by itself.
        next_ready_at_ms: Option<i64>,
    },
}

/// Whether an account can take a turn at a given time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Readiness {
    /// It can run now.
    Usable,
    /// It is cooling down or its observed quota is exhausted; back at the given time if known.
    Waiting(Option<i64>),
    /// Broken or needing re-authentication: it will not return by itself.
    Out,
}

/// Where `account` stands at `now_ms`.
///
/// Usable means enabled, status ready (or a cooldown that has ended), and no observed window at
/// 100 % that has not reset yet. An exhausted window would only fail the turn, so it waits for its
/// reset like a cooldown does (the original also skipped accounts at 100 %).
pub fn readiness(account: &AccountSnapshot, now_ms: i64) -> Readiness {
    if !account.enabled {
        return Readiness::Out;
    }
    let cooling_until = match account.status {
        Status::Ready => None,
        Status::Cooldown { until_ms } => (until_ms > now_ms).then_some(until_ms),
        Status::NeedsReauth | Status::Error => return Readiness::Out,
    };
    let exhausted: Vec<&Window> = windows(account)
        .filter(|w| w.used_at(now_ms) >= 100.0)
        .collect();
    if cooling_until.is_none() && exhausted.is_empty() {
        return Readiness::Usable;
    }
    // Back when the cooldown has ended and every exhausted window has reset.
    let mut back = cooling_until;
    for window in exhausted {
        match (back, window.future_reset(now_ms)) {
            (_, None) => return Readiness::Waiting(None),
            (None, reset) => back = reset,
            (Some(b), Some(r)) => back = Some(b.max(r)),
        }
    }
    Readiness::Waiting(back)
}

/// True when `account` can run a turn at `now_ms` (see [`readiness`]).
pub fn is_usable(account: &AccountSnapshot, now_ms: i64) -> bool {
    readiness(account, now_ms) == Readiness::Usable
}

/// Observed headroom at `now_ms`: `100 − max(used)` over the known windows, where a window whose
/// reset has passed counts as 0 % used; `None` when no window is known (never invented).
pub fn headroom(account: &AccountSnapshot, now_ms: i64) -> Option<f64> {
    windows(account)
        .map(|w| w.used_at(now_ms))
        .reduce(f64::max)
        .map(|used| 100.0 - used)
}

/// Picks the account for a turn; see the module header for the rules.
///
/// `sticky` is the session's current account, if it has one. When it is given but cannot be used
/// (or no longer exists) and another account is chosen, `migrate_from` names it.
pub fn select(
    accounts: &[AccountSnapshot],
    sticky: Option<&str>,
    headroom_threshold_percent: f64,
    now_ms: i64,
) -> Selection {
    if let Some(id) = sticky {
        if accounts.iter().any(|a| a.id == id && is_usable(a, now_ms)) {
            return Selection::Chosen {
                id: id.to_string(),
                reason: Reason::Sticky,
                migrate_from: None,
            };
        }
    }
    let mut usable: Vec<&AccountSnapshot> =
        accounts.iter().filter(|a| is_usable(a, now_ms)).collect();
    if usable.is_empty() {
        return Selection::NoneReady {
            next_ready_at_ms: accounts
                .iter()
                .filter_map(|a| match readiness(a, now_ms) {
                    Readiness::Waiting(at) => at,
                    Readiness::Usable | Readiness::Out => None,
                })
                .min(),
        };
    }
    let migrate_from = sticky.map(str::to_string);
    usable.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(primary) = usable.iter().find(|a| a.cli_primary) {
        if headroom(primary, now_ms).unwrap_or(100.0) >= headroom_threshold_percent {
            return Selection::Chosen {
                id: primary.id.clone(),
                reason: Reason::CliPrimary,
                migrate_from,
            };
        }
    }
    let Some(best) = usable.iter().copied().min_by(|a, b| rank(a, b, now_ms)) else {
        return Selection::NoneReady {
            next_ready_at_ms: None,
        };
    };
    let reason = if headroom(best, now_ms).is_some() {
        Reason::MostHeadroom
    } else {
        Reason::UnknownQuota
    };
    Selection::Chosen {
        id: best.id.clone(),
        reason,
        migrate_from,
    }
}

/// The known windows of an account.
fn windows(account: &AccountSnapshot) -> impl Iterator<Item = &Window> {
    account.five_hour.iter().chain(account.weekly.iter())
}

/// The reset of the window that limits the headroom: among the windows at the highest use, the
/// latest future reset (headroom grows only when all of them reset); `None` if any is unknown.
fn binding_reset(account: &AccountSnapshot, now_ms: i64) -> Option<i64> {
    let top = headroom(account, now_ms).map(|h| 100.0 - h)?;
    let mut latest = None;
    for window in windows(account).filter(|w| w.used_at(now_ms) >= top) {
        let reset = window.future_reset(now_ms)?;
        latest = Some(latest.map_or(reset, |l: i64| l.max(reset)));
    }
    latest
}

/// Orders better candidates first: most headroom (unknown counts as 100), earliest binding reset
/// (unknown last), least recently used (never used first), then id.
fn rank(a: &AccountSnapshot, b: &AccountSnapshot, now_ms: i64) -> Ordering {
    let room = |x: &AccountSnapshot| headroom(x, now_ms).unwrap_or(100.0);
    let reset = |x: &AccountSnapshot| binding_reset(x, now_ms).map_or((1, 0), |r| (0, r));
    room(b)
        .total_cmp(&room(a))
        .then_with(|| reset(a).cmp(&reset(b)))
        .then_with(|| a.last_used_ms.cmp(&b.last_used_ms))
        .then_with(|| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const MIN: i64 = 60_000;

    fn acct(id: &str) -> AccountSnapshot {
        AccountSnapshot {
            id: id.to_string(),
            enabled: true,
            status: Status::Ready,
            cli_primary: false,
            five_hour: None,
            weekly: None,
            last_used_ms: None,
        }
    }

    fn win(used: f64, reset_in_min: Option<i64>) -> Option<Window> {
        Some(Window {
            used_percent: used,
            resets_at_ms: reset_in_min.map(|m| NOW + m * MIN),
        })
    }

    fn with(
        id: &str,
        five: Option<Window>,
        week: Option<Window>,
        edit: impl FnOnce(&mut AccountSnapshot),
    ) -> AccountSnapshot {
        let mut a = acct(id);
        a.five_hour = five;
        a.weekly = week;
        edit(&mut a);
        a
    }

    fn chosen(id: &str, reason: Reason, migrate_from: Option<&str>) -> Selection {
        Selection::Chosen {
            id: id.to_string(),
            reason,
            migrate_from: migrate_from.map(str::to_string),
        }
    }

    fn check(name: &str, accounts: &[AccountSnapshot], sticky: Option<&str>, expected: Selection) {
        assert_eq!(
            select(accounts, sticky, 10.0, NOW),
            expected,
            "case: {name}"
        );
        // The input order never matters.
        let mut reversed = accounts.to_vec();
        reversed.reverse();
        assert_eq!(
            select(&reversed, sticky, 10.0, NOW),
            expected,
            "case (reversed): {name}"
        );
    }

    #[test]
    fn selection_table() {
        let primary = |a: &mut AccountSnapshot| a.cli_primary = true;
        let none = |_: &mut AccountSnapshot| {};
        let cooling = |until: i64| {
            move |a: &mut AccountSnapshot| a.status = Status::Cooldown { until_ms: until }
        };
        let cases: Vec<(&str, Vec<AccountSnapshot>, Option<&str>, Selection)> = vec![
            (
                "primary above threshold wins over more headroom",
                vec![
                    with("a", win(80.0, Some(60)), None, primary),
                    with("b", win(0.0, Some(60)), None, none),
                ],
                None,
                chosen("a", Reason::CliPrimary, None),
            ),
            (
                "primary exactly at threshold still wins",
                vec![
                    with("a", win(90.0, Some(60)), None, primary),
                    with("b", win(0.0, Some(60)), None, none),
                ],
                None,
                chosen("a", Reason::CliPrimary, None),
            ),
            (
                "primary below threshold loses to most headroom",
                vec![
                    with("a", win(95.0, Some(60)), None, primary),
                    with("b", win(40.0, Some(60)), None, none),
                    with("c", win(20.0, Some(60)), win(50.0, Some(9000)), none),
                ],
                None,
                chosen("b", Reason::MostHeadroom, None),
            ),
            (
                "primary below threshold is still best when it has most headroom",
                vec![
                    with("a", win(92.0, Some(60)), None, primary),
                    with("b", win(97.0, Some(60)), None, none),
                ],
                None,
                chosen("a", Reason::MostHeadroom, None),
            ),
            (
                "primary with unknown quota counts as full headroom",
                vec![
                    with("a", None, None, primary),
                    with("b", win(0.0, Some(60)), None, none),
                ],
                None,
                chosen("a", Reason::CliPrimary, None),
            ),
            (
                "primary in cooldown is skipped",
                vec![
                    with("a", win(0.0, Some(60)), None, |a| {
                        a.cli_primary = true;
                        a.status = Status::Cooldown {
                            until_ms: NOW + 5 * MIN,
                        };
                    }),
                    with("b", win(50.0, Some(60)), None, none),
                ],
                None,
                chosen("b", Reason::MostHeadroom, None),
            ),
            (
                "an expired cooldown counts as ready",
                vec![
                    with("a", win(10.0, Some(60)), None, |a| {
                        a.cli_primary = true;
                        a.status = Status::Cooldown { until_ms: NOW - 1 };
                    }),
                    with("b", win(0.0, Some(60)), None, none),
                ],
                None,
                chosen("a", Reason::CliPrimary, None),
            ),
            (
                "a cooldown ending exactly now counts as ready",
                vec![with("a", None, None, cooling(NOW))],
                None,
                chosen("a", Reason::UnknownQuota, None),
            ),
            (
                "needs_reauth, disabled status, error and switched off are never chosen",
                vec![
                    with("a", win(0.0, None), None, |a| {
                        a.status = Status::NeedsReauth
                    }),
                    with("b", win(0.0, None), None, |a| a.status = Status::Error),
                    with("c", win(0.0, None), None, |a| a.status = Status::Error),
                    with("d", win(0.0, None), None, |a| a.enabled = false),
                    with("e", win(99.0, None), None, none),
                ],
                None,
                chosen("e", Reason::MostHeadroom, None),
            ),
            (
                "unknown quota ranks as full headroom and says so",
                vec![
                    with("a", win(30.0, Some(60)), None, none),
                    with("b", None, None, none),
                ],
                None,
                chosen("b", Reason::UnknownQuota, None),
            ),
            (
                "known full headroom beats unknown quota on the reset tie-break",
                vec![
                    with("a", None, None, none),
                    with("b", win(0.0, Some(60)), None, none),
                ],
                None,
                chosen("b", Reason::MostHeadroom, None),
            ),
            (
                "headroom is bound by the weekly window when it is fuller",
                vec![
                    with("a", win(10.0, Some(60)), win(70.0, Some(5000)), none),
                    with("b", win(50.0, Some(60)), win(20.0, Some(5000)), none),
                ],
                None,
                chosen("b", Reason::MostHeadroom, None),
            ),
            (
                "a window whose reset has passed counts as unused",
                vec![
                    with("a", win(95.0, Some(-1)), win(5.0, Some(5000)), none),
                    with("b", win(30.0, Some(60)), None, none),
                ],
                None,
                chosen("a", Reason::MostHeadroom, None),
            ),
            (
                "equal headroom: the earliest reset wins",
                vec![
                    with("a", win(40.0, Some(120)), None, none),
                    with("b", win(40.0, Some(30)), None, none),
                    with("c", win(40.0, None), None, none),
                ],
                None,
                chosen("b", Reason::MostHeadroom, None),
            ),
            (
                "equal headroom: the reset of the binding window counts, not the other",
                vec![
                    with("a", win(10.0, Some(5)), win(40.0, Some(5000)), none),
                    with("b", win(40.0, Some(100)), win(10.0, Some(5000)), none),
                ],
                None,
                chosen("b", Reason::MostHeadroom, None),
            ),
            (
                "equal headroom and reset: least recently used wins",
                vec![
                    with("a", win(40.0, Some(60)), None, |a| {
                        a.last_used_ms = Some(NOW - MIN)
                    }),
                    with("b", win(40.0, Some(60)), None, |a| {
                        a.last_used_ms = Some(NOW - 9 * MIN)
                    }),
                    with("c", win(40.0, Some(60)), None, |a| {
                        a.last_used_ms = Some(NOW - 2 * MIN)
                    }),
                ],
                None,
                chosen("b", Reason::MostHeadroom, None),
            ),
            (
                "never used counts as least recently used",
                vec![
                    with("a", win(40.0, Some(60)), None, |a| a.last_used_ms = Some(0)),
                    with("b", win(40.0, Some(60)), None, none),
                ],
                None,
                chosen("b", Reason::MostHeadroom, None),
            ),
            (
                "everything equal: the smallest id wins",
                vec![with("b", None, None, none), with("a", None, None, none)],
                None,
                chosen("a", Reason::UnknownQuota, None),
            ),
            (
                "a usable sticky account wins even over the primary",
                vec![
                    with("a", win(0.0, Some(60)), None, primary),
                    with("b", win(85.0, Some(60)), None, none),
                ],
                Some("b"),
                chosen("b", Reason::Sticky, None),
            ),
            (
                "an unusable sticky account migrates",
                vec![
                    with("a", win(20.0, Some(60)), None, cooling(NOW + MIN)),
                    with("b", win(50.0, Some(60)), None, none),
                ],
                Some("a"),
                chosen("b", Reason::MostHeadroom, Some("a")),
            ),
            (
                "a sticky account needing reauth migrates to the primary",
                vec![
                    with("a", None, None, |a| a.status = Status::NeedsReauth),
                    with("b", win(50.0, Some(60)), None, primary),
                    with("c", win(0.0, Some(60)), None, none),
                ],
                Some("a"),
                chosen("b", Reason::CliPrimary, Some("a")),
            ),
            (
                "a sticky account that no longer exists migrates",
                vec![with("b", None, None, none)],
                Some("gone"),
                chosen("b", Reason::UnknownQuota, Some("gone")),
            ),
            (
                "an exhausted window makes the account wait for its reset",
                vec![
                    with("a", win(100.0, Some(10)), None, primary),
                    with("b", win(99.5, Some(60)), None, none),
                ],
                Some("a"),
                chosen("b", Reason::MostHeadroom, Some("a")),
            ),
            (
                "all cooling: the earliest cooldown end",
                vec![
                    with("a", None, None, cooling(NOW + 30 * MIN)),
                    with("b", None, None, cooling(NOW + 2 * MIN)),
                    with("c", None, None, |a| a.status = Status::NeedsReauth),
                    with("d", None, None, |a| {
                        a.enabled = false;
                        a.status = Status::Cooldown {
                            until_ms: NOW + MIN,
                        };
                    }),
                ],
                Some("a"),
                Selection::NoneReady {
                    next_ready_at_ms: Some(NOW + 2 * MIN),
                },
            ),
            (
                "exhausted quota comes back at its reset, after any cooldown",
                vec![
                    with("a", win(100.0, Some(45)), None, none),
                    with("b", win(100.0, Some(10)), None, cooling(NOW + 20 * MIN)),
                    with("c", win(10.0, Some(1)), win(100.0, None), none),
                ],
                None,
                Selection::NoneReady {
                    next_ready_at_ms: Some(NOW + 20 * MIN),
                },
            ),
            (
                "nothing comes back by itself",
                vec![
                    with("a", None, None, |a| a.status = Status::NeedsReauth),
                    with("b", None, None, |a| a.status = Status::Error),
                    with("c", None, None, |a| a.status = Status::Error),
                ],
                None,
                Selection::NoneReady {
                    next_ready_at_ms: None,
                },
            ),
            (
                "no accounts at all",
                vec![],
                Some("a"),
                Selection::NoneReady {
                    next_ready_at_ms: None,
                },
            ),
        ];
        assert!(cases.len() >= 15);
        for (name, accounts, sticky, expected) in cases {
            check(name, &accounts, sticky, expected);
        }
    }

    #[test]
    fn headroom_and_readiness() {
        let a = with("a", win(30.0, Some(60)), win(55.5, None), |_| {});
        assert_eq!(headroom(&a, NOW), Some(44.5));
        assert_eq!(headroom(&acct("b"), NOW), None);
        let over = with("c", win(130.0, None), None, |_| {});
        assert_eq!(headroom(&over, NOW), Some(0.0));
        assert_eq!(readiness(&over, NOW), Readiness::Waiting(None));
        let nan = with("d", win(f64::NAN, None), None, |_| {});
        assert_eq!(headroom(&nan, NOW), Some(0.0));
        let cooling = with("e", None, None, |a| {
            a.status = Status::Cooldown {
                until_ms: NOW + MIN,
            }
        });
        assert_eq!(
            readiness(&cooling, NOW),
            Readiness::Waiting(Some(NOW + MIN))
        );
        assert_eq!(readiness(&cooling, NOW + MIN), Readiness::Usable);
        assert!(is_usable(&cooling, NOW + 2 * MIN));
        assert_eq!(Reason::UnknownQuota.as_str(), "unknown_quota");
    }
}
