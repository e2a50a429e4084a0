//! Whether a failed CLI attempt is run again, and how — a pure decision, tested from a table.
//!
//! An agent turn is not idempotent: nothing is retried once the workspace changed. Within that,
//! a resumed CLI session the CLI has lost is started fresh with the transcript, and a failure
//! that is the account's (rate limit, quota, auth) is retried once on another pool account.

/// What the pipeline knows about the attempt that just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attempted {
    /// The attempt failed (error event, non-zero exit, stall, timeout, could not run).
    pub failed: bool,
    /// It was a resume of a stored CLI session.
    pub resumed: bool,
    /// Its failure reads like "no such session" and it produced nothing.
    pub lost_session: bool,
    /// It ran on a pool account, and the failure was that account's (cooldown, needs reauth).
    pub account_failed: bool,
    /// Killed for silence (a stall is the turn's, not the account's).
    pub stalled: bool,
    /// The workspace differs from its state before the turn.
    pub workspace_changed: bool,
    /// The turn already moved to another account once.
    pub switched_account: bool,
}

/// The next step of a turn after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep this attempt's result (success, or a failure that must not be retried).
    Done,
    /// Run again as a fresh CLI session seeded with the whole transcript.
    FreshSession,
    /// Run again on another pool account, if one is ready.
    OtherAccount,
}

/// The decision (see the module comment).
pub fn next(attempt: Attempted) -> Next {
    if !attempt.failed || attempt.workspace_changed {
        return Next::Done;
    }
    if attempt.resumed && attempt.lost_session {
        return Next::FreshSession;
    }
    if attempt.account_failed && !attempt.stalled && !attempt.switched_account {
        return Next::OtherAccount;
    }
    Next::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(attempt: Attempted, expected: Next) {
        assert_eq!(next(attempt), expected, "{attempt:?}");
    }

    #[test]
    fn decisions() {
        let failed = Attempted {
            failed: true,
            ..Attempted::default()
        };
        // Success is final.
        check(Attempted::default(), Next::Done);
        check(
            Attempted {
                resumed: true,
                lost_session: true,
                ..Attempted::default()
            },
            Next::Done,
        );
        // A plain failure is final.
        check(failed, Next::Done);
        // A lost session is restarted fresh, unless the workspace changed.
        let lost = Attempted {
            resumed: true,
            lost_session: true,
            ..failed
        };
        check(lost, Next::FreshSession);
        check(
            Attempted {
                workspace_changed: true,
                ..lost
            },
            Next::Done,
        );
        // "Lost" only matters for a resume.
        check(
            Attempted {
                lost_session: true,
                ..failed
            },
            Next::Done,
        );
        // The account's failure moves to another account once, never after a change, a stall,
        // or a move already made.
        let account = Attempted {
            account_failed: true,
            ..failed
        };
        check(account, Next::OtherAccount);
        for done in [
            Attempted {
                workspace_changed: true,
                ..account
            },
            Attempted {
                stalled: true,
                ..account
            },
            Attempted {
                switched_account: true,
                ..account
            },
        ] {
            check(done, Next::Done);
        }
        // A lost session is tried fresh first; its own failure may then move account.
        check(
            Attempted {
                account_failed: true,
                ..lost
            },
            Next::FreshSession,
        );
    }
}
