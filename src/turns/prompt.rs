//! Pure conversation logic: normalized messages, the transcript hash chain, and what to send the
//! CLI — only the new messages when the stored CLI session can be resumed, else the whole
//! transcript flattened into one prompt.

/// One message as the gateway compares and forwards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// system | developer | user | assistant | tool.
    pub role: String,
    /// The text (content parts already joined).
    pub text: String,
    /// Images the message carries, decoded (not part of the transcript hash: the text is).
    pub images: Vec<Image>,
}

/// An image from a content part, checked and decoded; the engine saves it into the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub mime: String,
    /// The image bytes.
    pub bytes: std::sync::Arc<[u8]>,
}

impl Message {
    /// Builds a text message.
    pub fn new(role: &str, text: &str) -> Message {
        Message {
            role: role.to_string(),
            text: text.to_string(),
            images: Vec::new(),
        }
    }
}

/// What was stored about the conversation after the last turn.
#[derive(Debug, Clone)]
pub struct Stored<'a> {
    /// The CLI session to resume.
    pub cli_session_id: Option<&'a str>,
    /// Hash of the last request's messages plus the reply.
    pub transcript_hash: &'a str,
    /// Hash of the last request's messages alone.
    pub request_hash: &'a str,
    /// Messages covered by `transcript_hash`.
    pub message_count: usize,
}

/// The decision for one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Resume the CLI session, sending only `messages[new_from..]`.
    Resume {
        /// The CLI session id.
        cli_session_id: String,
        /// Index of the first new message.
        new_from: usize,
        /// The prompt built from the new messages.
        prompt: String,
    },
    /// Start a fresh CLI session with the whole transcript.
    Fresh {
        /// The flattened transcript.
        prompt: String,
        /// Why a stored session was not resumed (`None` when there was none).
        diverged: bool,
    },
}

/// Hash of a message list: a chain over (role, trimmed text), so prefixes can be compared.
pub fn transcript_hash(messages: &[Message]) -> String {
    let mut state = [0u8; 32];
    for message in messages {
        let mut input = Vec::with_capacity(32 + message.role.len() + message.text.len() + 2);
        input.extend_from_slice(&state);
        input.extend_from_slice(message.role.as_bytes());
        input.push(0);
        input.extend_from_slice(message.text.trim().as_bytes());
        state = crate::crypto::sha256(&input);
    }
    crate::crypto::hex(&state)
}

/// Decides between resuming and starting fresh, and builds the prompt.
pub fn plan(messages: &[Message], stored: Option<&Stored<'_>>) -> Plan {
    if let Some(stored) = stored {
        if let Some(cli_session_id) = stored.cli_session_id {
            let k = stored.message_count;
            // The client resent the history including our reply.
            if messages.len() > k && transcript_hash(&messages[..k]) == stored.transcript_hash {
                return Plan::Resume {
                    cli_session_id: cli_session_id.to_string(),
                    new_from: k,
                    prompt: new_messages_prompt(&messages[k..]),
                };
            }
            // The client resent the history without our reply (some clients do).
            let without_reply = k.saturating_sub(1);
            if messages.len() > without_reply
                && transcript_hash(&messages[..without_reply]) == stored.request_hash
                && messages[without_reply].role != "assistant"
            {
                return Plan::Resume {
                    cli_session_id: cli_session_id.to_string(),
                    new_from: without_reply,
                    prompt: new_messages_prompt(&messages[without_reply..]),
                };
            }
        }
        return Plan::Fresh {
            prompt: flatten(messages),
            diverged: true,
        };
    }
    Plan::Fresh {
        prompt: flatten(messages),
        diverged: false,
    }
}

/// The prompt for a resumed turn: the new messages only, labelled when there is more than one.
pub fn new_messages_prompt(new: &[Message]) -> String {
    match new {
        [only] if only.role == "user" => only.text.clone(),
        _ => new
            .iter()
            .map(|m| format!("{}: {}", label(&m.role), m.text))
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// The whole transcript as one prompt: instructions, earlier turns, then the current request.
pub fn flatten(messages: &[Message]) -> String {
    let (instructions, rest): (Vec<&Message>, Vec<&Message>) = messages
        .iter()
        .partition(|m| m.role == "system" || m.role == "developer");
    if instructions.is_empty() && rest.len() == 1 && rest[0].role == "user" {
        return rest[0].text.clone();
    }
    let mut out = String::new();
    if !instructions.is_empty() {
        out.push_str("Instructions:\n");
        out.push_str(
            &instructions
                .iter()
                .map(|m| m.text.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
        );
        out.push_str("\n\n");
    }
    let split = rest.iter().rposition(|m| m.role != "assistant").map(|i| {
        // The current request is the trailing run of non-assistant messages.
        let mut start = i;
        while start > 0 && rest[start - 1].role != "assistant" {
            start -= 1;
        }
        start
    });
    let (history, current) = match split {
        Some(start) => rest.split_at(start),
        None => (&rest[..], &[][..]),
    };
    if !history.is_empty() {
        out.push_str("Conversation so far:\n");
        for message in history {
            out.push_str(&format!("{}: {}\n", label(&message.role), message.text));
        }
        out.push('\n');
    }
    if !current.is_empty() {
        if !history.is_empty() || !instructions.is_empty() {
            out.push_str("Current request:\n");
        }
        out.push_str(
            &current
                .iter()
                .map(|m| m.text.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
        );
    }
    out.trim_end().to_string()
}

fn label(role: &str) -> &'static str {
    match role {
        "assistant" => "Assistant",
        "system" | "developer" => "System",
        "tool" => "Tool result",
        _ => "User",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(items: &[(&str, &str)]) -> Vec<Message> {
        items.iter().map(|(r, t)| Message::new(r, t)).collect()
    }

    fn stored_after(request: &[Message], reply: &str) -> (String, String, usize) {
        let mut with_reply = request.to_vec();
        with_reply.push(Message::new("assistant", reply));
        (
            transcript_hash(&with_reply),
            transcript_hash(request),
            with_reply.len(),
        )
    }

    #[test]
    fn single_user_message_is_sent_verbatim() {
        assert_eq!(flatten(&msgs(&[("user", "hello")])), "hello");
    }

    #[test]
    fn flatten_orders_instructions_history_current() {
        let prompt = flatten(&msgs(&[
            ("system", "be brief"),
            ("user", "first"),
            ("assistant", "reply one"),
            ("user", "second"),
        ]));
        assert_eq!(
            prompt,
            "Instructions:\nbe brief\n\nConversation so far:\nUser: first\nAssistant: reply one\n\nCurrent request:\nsecond"
        );
    }

    #[test]
    fn resume_sends_only_the_new_message() {
        let first = msgs(&[("system", "s"), ("user", "one")]);
        let (transcript, request, count) = stored_after(&first, "r1");
        let stored = Stored {
            cli_session_id: Some("cli-1"),
            transcript_hash: &transcript,
            request_hash: &request,
            message_count: count,
        };
        let second = msgs(&[
            ("system", "s"),
            ("user", "one"),
            ("assistant", " r1 "),
            ("user", "two"),
        ]);
        assert_eq!(
            plan(&second, Some(&stored)),
            Plan::Resume {
                cli_session_id: "cli-1".into(),
                new_from: 3,
                prompt: "two".into()
            }
        );
    }

    #[test]
    fn resume_without_the_reply_in_history() {
        let first = msgs(&[("user", "one")]);
        let (transcript, request, count) = stored_after(&first, "r1");
        let stored = Stored {
            cli_session_id: Some("cli-1"),
            transcript_hash: &transcript,
            request_hash: &request,
            message_count: count,
        };
        let second = msgs(&[("user", "one"), ("user", "two")]);
        assert!(matches!(
            plan(&second, Some(&stored)),
            Plan::Resume { new_from: 1, .. }
        ));
    }

    #[test]
    fn diverged_history_starts_fresh_with_everything() {
        let first = msgs(&[("user", "one")]);
        let (transcript, request, count) = stored_after(&first, "r1");
        let stored = Stored {
            cli_session_id: Some("cli-1"),
            transcript_hash: &transcript,
            request_hash: &request,
            message_count: count,
        };
        let edited = msgs(&[("user", "ONE edited"), ("assistant", "r1"), ("user", "two")]);
        match plan(&edited, Some(&stored)) {
            Plan::Fresh { prompt, diverged } => {
                assert!(diverged);
                assert!(prompt.contains("ONE edited") && prompt.contains("two"));
            }
            other => panic!("{other:?}"),
        }
        // Repeating the same request (no new message) is not a resume either.
        assert!(matches!(plan(&first, Some(&stored)), Plan::Fresh { .. }));
    }

    #[test]
    fn hash_is_a_prefix_chain() {
        let a = msgs(&[("user", "x"), ("assistant", "y")]);
        assert_eq!(
            transcript_hash(&a[..1]),
            transcript_hash(&msgs(&[("user", " x")]))
        );
        assert_ne!(transcript_hash(&a), transcript_hash(&a[..1]));
        assert_ne!(
            transcript_hash(&msgs(&[("user", "x")])),
            transcript_hash(&msgs(&[("assistant", "x")]))
        );
    }
}
