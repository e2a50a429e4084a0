//! Pure: how a turn's reply becomes Telegram messages. [`compose`] adds the failure and the
//! modified files to the agent's text; [`split`] cuts it into messages within Telegram's limit
//! on line boundaries without losing a character; [`plan`] says which messages to send, edit
//! or delete so that the chat shows the text (the streamed reply is the same text growing);
//! [`Throttle`] spaces the edits of a streamed reply.
//!
//! Must not do I/O: `bot.rs` carries the plan out.

use std::time::{Duration, Instant};

/// Telegram's limit on a message's text, in UTF-16 code units (what it counts).
pub const LIMIT: usize = 4096;

/// Modified files listed under a reply; the rest are counted.
pub const MAX_FILES_LISTED: usize = 30;

/// The reply text a chat gets for a turn: the agent's text, then the failure (if the turn
/// failed), then the files it changed.
pub fn compose(reply: &str, modified_files: &[String], failure: Option<&str>) -> String {
    let mut text = reply.trim_end().to_string();
    if let Some(failure) = failure {
        if !text.trim().is_empty() {
            text.push_str("\n\n");
        }
        text.push_str("⚠️ The turn failed: ");
        text.push_str(failure);
    }
    if !modified_files.is_empty() {
        if !text.trim().is_empty() {
            text.push_str("\n\n");
        }
        text.push_str("Modified files:");
        for file in modified_files.iter().take(MAX_FILES_LISTED) {
            text.push_str("\n- ");
            text.push_str(file);
        }
        if modified_files.len() > MAX_FILES_LISTED {
            text.push_str(&format!(
                "\n…and {} more",
                modified_files.len() - MAX_FILES_LISTED
            ));
        }
    }
    if text.trim().is_empty() {
        text = "(The agent finished without a reply.)".to_string();
    }
    text
}

/// Length as Telegram counts it.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Cuts `text` into pieces of at most `limit` UTF-16 units whose concatenation is `text`.
/// Each cut is after the last newline in the second half of the window, else after its last
/// space there, else after any newline or space, else at the limit (never inside a character).
pub fn split(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(2);
    let mut chunks = Vec::new();
    let mut rest = text;
    while utf16_len(rest) > limit {
        let mut units = 0;
        let mut end = 0;
        for (at, c) in rest.char_indices() {
            if units + c.len_utf16() > limit {
                break;
            }
            units += c.len_utf16();
            end = at + c.len_utf8();
        }
        let window = &rest[..end];
        let half = window.len() / 2;
        let after =
            |c: char, from: usize| window.rfind(c).filter(|&at| at >= from).map(|at| at + 1);
        let cut = after('\n', half)
            .or_else(|| after(' ', half))
            .or_else(|| after('\n', 0))
            .or_else(|| after(' ', 0))
            .unwrap_or(window.len())
            .max(1);
        chunks.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        chunks.push(rest.to_string());
    }
    chunks
}

/// The messages that show `text`: [`split`] at [`LIMIT`], without pieces that are only
/// whitespace (Telegram refuses empty messages and trims the rest anyway).
pub fn messages(text: &str) -> Vec<String> {
    let pieces: Vec<String> = split(text, LIMIT)
        .into_iter()
        .filter(|piece| !piece.trim().is_empty())
        .collect();
    if pieces.is_empty() {
        vec!["…".to_string()]
    } else {
        pieces
    }
}

/// A message the bot has sent for a reply, with the text it shows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Telegram's message id.
    pub message_id: i64,
    /// Its current text.
    pub text: String,
}

/// One Bot API call of a [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Send piece `i` as a new message.
    Send(usize),
    /// Edit message `i` of the sent ones to show piece `i`.
    Edit(usize),
    /// Delete this message (the text got shorter: a retry replaced a partial reply).
    Delete(i64),
}

/// The calls that make the chat show `pieces`, given the messages already `sent` for this
/// reply: unchanged messages stay, changed ones are edited, missing ones sent, extra ones
/// deleted.
pub fn plan(pieces: &[String], sent: &[Sent]) -> Vec<Op> {
    let mut ops = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        match sent.get(i) {
            Some(message) if message.text == *piece => {}
            Some(_) => ops.push(Op::Edit(i)),
            None => ops.push(Op::Send(i)),
        }
    }
    ops.extend(
        sent.iter()
            .skip(pieces.len())
            .map(|message| Op::Delete(message.message_id)),
    );
    ops
}

/// Spaces the edits of a streamed reply: at most one per `interval`, and none before a flood
/// wait Telegram asked for has passed.
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    next: Option<Instant>,
}

impl Throttle {
    /// A throttle that lets the first call through.
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            next: None,
        }
    }

    /// Whether a call may go out at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    /// How long until a call may go out.
    pub fn wait(&self, now: Instant) -> Duration {
        self.next
            .map(|next| next.saturating_duration_since(now))
            .unwrap_or_default()
    }

    /// A call went out at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.next = Some(now + self.interval);
    }

    /// Telegram answered 429 with `retry_after` at `now`.
    pub fn flooded(&mut self, now: Instant, retry_after: Duration) {
        let until = now + retry_after.max(self.interval);
        self.next = Some(self.next.map_or(until, |next| next.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` split at `limit` → the pieces joined by `|`.
    fn check(text: &str, limit: usize, expected: &str) {
        let pieces = split(text, limit);
        assert_eq!(pieces.concat(), text, "nothing lost");
        for piece in &pieces {
            assert!(utf16_len(piece) <= limit.max(2), "{piece:?} over {limit}");
        }
        assert_eq!(pieces.join("|"), expected, "{text:?} at {limit}");
    }

    #[test]
    fn splitting() {
        check("", 10, "");
        check("short", 10, "short");
        check("exactly 10", 10, "exactly 10");
        check("aaaa\nbbbb\ncccc", 10, "aaaa\nbbbb\n|cccc");
        check("aaaaaaa\nbb cc dd", 10, "aaaaaaa\n|bb cc dd");
        check("aaaa bbbb cccc", 10, "aaaa bbbb |cccc");
        check("a\nbbbbbbbbbbbbbbb", 10, "a\n|bbbbbbbbbb|bbbbb");
        check(
            "abcdefghijklmnopqrstuvwxyz",
            10,
            "abcdefghij|klmnopqrst|uvwxyz",
        );
        // The last newline in the second half wins over a later space.
        check("aaaaaa\nbb c", 10, "aaaaaa\n|bb c");
        // UTF-16: an emoji counts 2 and is never cut in half.
        check("😀😀😀😀😀😀", 5, "😀😀|😀😀|😀😀");
        check("ééééé", 4, "éééé|é");
    }

    #[test]
    fn a_long_reply_becomes_several_messages_without_loss() {
        let line = "0123456789 ".repeat(9) + "\n";
        let text = line.repeat(100);
        let pieces = messages(&text);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| utf16_len(p) <= LIMIT));
        assert!(
            pieces[..2].iter().all(|p| p.ends_with('\n')),
            "cut at lines"
        );
        assert_eq!(messages("  \n "), ["…"]);
    }

    #[test]
    fn composing() {
        assert_eq!(compose("Done.\n", &[], None), "Done.");
        assert_eq!(
            compose("Done.", &["a.txt".into(), "src/b.rs".into()], None),
            "Done.\n\nModified files:\n- a.txt\n- src/b.rs"
        );
        assert_eq!(
            compose("partial", &[], Some("the agent stalled")),
            "partial\n\n⚠️ The turn failed: the agent stalled"
        );
        assert_eq!(compose("", &[], Some("x")), "⚠️ The turn failed: x");
        assert_eq!(
            compose(" ", &[], None),
            "(The agent finished without a reply.)"
        );
        let many: Vec<String> = (0..32).map(|i| format!("f{i}")).collect();
        assert!(compose("ok", &many, None).ends_with("- f29\n…and 2 more"));
    }

    #[test]
    fn plans() {
        let sent = |texts: &[&str]| -> Vec<Sent> {
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| Sent {
                    message_id: 10 + i as i64,
                    text: t.to_string(),
                })
                .collect()
        };
        let pieces =
            |texts: &[&str]| -> Vec<String> { texts.iter().map(|t| t.to_string()).collect() };
        assert_eq!(plan(&pieces(&["a"]), &[]), [Op::Send(0)]);
        assert_eq!(plan(&pieces(&["ab"]), &sent(&["a"])), [Op::Edit(0)]);
        assert_eq!(plan(&pieces(&["a"]), &sent(&["a"])), []);
        assert_eq!(
            plan(&pieces(&["a", "b", "c"]), &sent(&["a", "x"])),
            [Op::Edit(1), Op::Send(2)]
        );
        assert_eq!(
            plan(&pieces(&["z"]), &sent(&["a", "b", "c"])),
            [Op::Edit(0), Op::Delete(11), Op::Delete(12)]
        );
    }

    #[test]
    fn throttling() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut throttle = Throttle::new(second);
        assert!(throttle.ready(start));
        throttle.sent(start);
        assert!(!throttle.ready(start + second / 2));
        assert_eq!(throttle.wait(start + second / 2), second / 2);
        assert!(throttle.ready(start + second));
        throttle.flooded(start + second, 5 * second);
        assert!(!throttle.ready(start + 5 * second));
        assert!(throttle.ready(start + 6 * second));
        // A short flood wait never lets calls come faster than the interval.
        throttle.flooded(start + 6 * second, Duration::ZERO);
        assert!(!throttle.ready(start + 6 * second + second / 2));
    }
}
