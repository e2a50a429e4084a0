//! Admission of a turn before anything is read or run: the sandbox must be able to confine a
//! user's turn, the user's daily token budget must not be spent, and one of their
//! `max_concurrency` slots must be free. Every front (chat, responses, playground, channels)
//! admits through here, so the limits are the same everywhere.

use crate::app::App;
use crate::error::{Error, Result};
use crate::store::users::User;
use crate::turns::locks::Slot;

/// 503 for a turn from a user key when the sandbox cannot confine it (`auto` on a kernel
/// without Landlock); checked at admission and again in `engine::preflight`.
pub fn refuse_unconfined(app: &App, via_user_key: bool) -> Result<()> {
    if via_user_key && app.sandbox.refuses_users() {
        return Err(Error::Unavailable {
            code: "sandbox_unavailable",
            message: "agent turns from user keys are refused: this kernel has no Landlock \
                      (Linux >= 5.13 with landlock enabled), so the agent could read the whole \
                      host; the operator can set [sandbox].mode = \"off\" to accept that risk"
                .to_string(),
        });
    }
    Ok(())
}

/// A turn slot for `user`, or 429 when their daily token budget is spent or `max_concurrency`
/// turns are running. Taken before the body is read, so a user at a limit is refused without
/// uploading anything; the slot is held until the turn ends.
pub fn user(app: &App, user: &User) -> Result<Slot> {
    if let Some(budget) = user.daily_token_budget {
        let today = crate::clock::ymd(crate::clock::now_ms());
        let spent = app
            .store
            .read(|conn| crate::store::usage::tokens_on(conn, &user.id, &today))?;
        if spent >= budget {
            return Err(Error::TooManyRequests {
                message: format!(
                    "the daily token budget of {budget} is used up ({spent} spent today, UTC)"
                ),
                retry_after_secs: 3600,
            });
        }
    }
    let max = user.max_concurrency.max(1) as usize;
    app.user_slots
        .try_acquire(&user.id, max)
        .ok_or_else(|| Error::TooManyRequests {
            message: format!(
                "this user already runs {max} turn(s) at once (max_concurrency); retry when one finishes"
            ),
            retry_after_secs: 5,
        })
}
