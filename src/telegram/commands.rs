//! Pure: what an update means and what to do about it. An update's JSON becomes an
//! [`Incoming`]; a message's text becomes an [`Input`] (a [`Command`], chat text, or nothing
//! for us); and [`decide`] picks the [`Step`] from the input and the [`Situation`] (who sent
//! it, whether the chat has a turn running). Also the texts the bot answers with.
//!
//! Must not do I/O: the bot threads (`bot.rs`) look things up, call this, and act.

use serde_json::Value;

/// Commands shown in Telegram's command menu (`setMyCommands`): name and description.
pub const MENU: &[(&str, &str)] = &[
    ("projects", "List your projects"),
    ("project", "Switch to a project: /project NAME"),
    (
        "project_create",
        "Create a project and switch to it: /project_create NAME [TEMPLATE]",
    ),
    ("project_info", "Show a project: /project_info NAME"),
    ("new", "Start a fresh conversation"),
    ("status", "Show what this chat works on"),
    ("link", "Link this Telegram account: /link TOKEN"),
    ("help", "How to use this bot"),
];

/// Messages that may wait behind a chat's running turn; more are refused (told to wait).
pub const MAX_WAITING_PER_CHAT: usize = 5;

/// One update, reduced to what the bot acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Telegram's `update_id`.
    pub update_id: i64,
    /// What it carries.
    pub kind: Kind,
}

/// What an update carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A new message from a person.
    Message(Message),
    /// An edited message: never runs anything (the original re-ran turns on edits).
    Edited {
        /// Its chat.
        chat_id: i64,
    },
    /// Anything else (channel posts, messages from bots or on behalf of a channel, callbacks,
    /// member changes): ignored.
    Other {
        /// Its chat, when it has one.
        chat_id: Option<i64>,
    },
}

impl Incoming {
    /// The chat the update belongs to, when it has one.
    pub fn chat_id(&self) -> Option<i64> {
        match &self.kind {
            Kind::Message(message) => Some(message.chat_id),
            Kind::Edited { chat_id } => Some(*chat_id),
            Kind::Other { chat_id } => *chat_id,
        }
    }
}

/// A message from a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chat.
    pub chat_id: i64,
    /// A private chat with the bot (not a group).
    pub private: bool,
    /// The forum topic, answered into the same topic.
    pub thread_id: Option<i64>,
    /// The message.
    pub message_id: i64,
    /// The sender's Telegram user id.
    pub from_id: i64,
    /// The sender's @username.
    pub from_username: Option<String>,
    /// The text; `None` for photos, stickers, voice and the like.
    pub text: Option<String>,
}

/// Reads an update; `None` when it has no `update_id` (not an update at all).
pub fn parse_update(update: &Value) -> Option<Incoming> {
    let update_id = update.get("update_id")?.as_i64()?;
    let chat_of = |message: &Value| message.pointer("/chat/id").and_then(Value::as_i64);
    let kind = if let Some(message) = update.get("message").filter(|m| m.is_object()) {
        let from = message.get("from");
        let person = from.is_some_and(|f| f.get("is_bot").and_then(Value::as_bool) != Some(true))
            // A message "from" a channel or an anonymous group admin carries `sender_chat`.
            && message.get("sender_chat").is_none();
        match (
            chat_of(message),
            from.and_then(|f| f.get("id")).and_then(Value::as_i64),
        ) {
            (Some(chat_id), Some(from_id)) if person => Kind::Message(Message {
                chat_id,
                private: message.pointer("/chat/type").and_then(Value::as_str) == Some("private"),
                thread_id: message.get("message_thread_id").and_then(Value::as_i64),
                message_id: message
                    .get("message_id")
                    .and_then(Value::as_i64)
                    .unwrap_or_default(),
                from_id,
                from_username: from
                    .and_then(|f| f.get("username"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                text: message
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }),
            (chat_id, _) => Kind::Other { chat_id },
        }
    } else if let Some(edited) = ["edited_message", "edited_channel_post"]
        .iter()
        .find_map(|key| update.get(*key))
    {
        match chat_of(edited) {
            Some(chat_id) => Kind::Edited { chat_id },
            None => Kind::Other { chat_id: None },
        }
    } else {
        let chat_id = update
            .as_object()
            .and_then(|fields| fields.values().find_map(chat_of));
        Kind::Other { chat_id }
    };
    Some(Incoming { update_id, kind })
}

/// A command the bot knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/help`, `/start` without a token.
    Help,
    /// `/link TOKEN`, or `/start TOKEN` (a `t.me/<bot>?start=TOKEN` deep link).
    Link(String),
    /// `/projects`.
    Projects,
    /// `/project_create NAME [TEMPLATE]`.
    ProjectCreate {
        /// The project name.
        name: String,
        /// The template, when given.
        template: Option<String>,
    },
    /// `/project_info NAME`.
    ProjectInfo(String),
    /// `/project NAME`.
    Project(String),
    /// `/new`.
    New,
    /// `/status`.
    Status,
    /// A known command without its argument: answered with its usage.
    Usage(&'static str),
    /// Any other command: answered with the help.
    Unknown(String),
}

impl Command {
    /// Whether it changes what the chat works on: such commands wait behind a running turn,
    /// like text, so that a chat's messages take effect in the order they were sent.
    pub fn changes_the_chat(&self) -> bool {
        matches!(
            self,
            Command::ProjectCreate { .. } | Command::Project(_) | Command::New
        )
    }
}

/// What a message's text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A command for this bot.
    Command(Command),
    /// Text for the agent: a chat turn.
    Text(String),
    /// `/cmd@other_bot`: addressed to another bot in the group.
    NotForUs,
    /// No text (a photo, a sticker, blank text).
    NoText,
}

/// Reads a message's text. A command is `/name` at the very start, optionally `@bot`, then
/// whitespace or the end (`/usr/bin is missing` is text); `bot_username` is this bot's @name
/// when known (with `None`, any `@suffix` is taken as ours).
pub fn parse(text: Option<&str>, bot_username: Option<&str>) -> Input {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Input::NoText;
    };
    let Some(rest) = text.strip_prefix('/') else {
        return Input::Text(text.to_string());
    };
    let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (word, args) = (&rest[..word_end], rest[word_end..].trim());
    let (name, target) = match word.split_once('@') {
        Some((name, target)) => (name, Some(target)),
        None => (word, None),
    };
    let name_ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let target_ok = target
        .is_none_or(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if !name_ok || !target_ok {
        return Input::Text(text.to_string());
    }
    if let (Some(target), Some(ours)) = (target, bot_username) {
        if !target.eq_ignore_ascii_case(ours.trim_start_matches('@')) {
            return Input::NotForUs;
        }
    }
    let mut words = args.split_whitespace().map(str::to_string);
    let mut first = || words.next();
    let command = match name.to_ascii_lowercase().as_str() {
        "help" | "commands" => Command::Help,
        "start" => first().map_or(Command::Help, Command::Link),
        "link" => first().map_or(Command::Usage("link"), Command::Link),
        "projects" => Command::Projects,
        "project_create" => match first() {
            Some(name) => Command::ProjectCreate {
                name,
                template: first(),
            },
            None => Command::Usage("project_create"),
        },
        "project_info" => first().map_or(Command::Usage("project_info"), Command::ProjectInfo),
        "project" => first().map_or(Command::Usage("project"), Command::Project),
        "new" => Command::New,
        "status" => Command::Status,
        other => Command::Unknown(other.to_string()),
    };
    Input::Command(command)
}

/// Who sent a message, as far as the decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// No link on this bot.
    Unlinked,
    /// Linked to a user who is suspended or deleted.
    Inactive,
    /// Linked to an active user.
    Linked,
}

/// What the decision needs besides the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// The sender.
    pub sender: Sender,
    /// The message came in a private chat (in a group, the bot may see every message).
    pub private_chat: bool,
    /// The chat has a turn running, or an earlier message of it is waiting.
    pub chat_busy: bool,
    /// Messages of this chat already waiting.
    pub waiting: usize,
    /// The bot runs `max_turns` turns.
    pub bot_full: bool,
}

/// A fixed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The help (its linked or unlinked form).
    Help {
        /// Whether the sender is linked.
        linked: bool,
    },
    /// How to link.
    NotLinked,
    /// The linked account cannot be used.
    Inactive,
    /// A command's usage.
    Usage(&'static str),
    /// Only text is understood.
    NoText,
    /// Too many messages wait already.
    TooManyWaiting,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing (and no answer).
    Ignore,
    /// Answer with a fixed text.
    Answer(Answer),
    /// Link the sender with this token.
    Link(String),
    /// Run a command of a linked user.
    Run(Command),
    /// Run a chat turn with this text.
    Turn(String),
    /// Leave it for later: the chat's turn (or the bot's capacity) must free up first.
    Wait,
}

/// Decides what to do with `input` in `situation`. An unlinked (or inactive) sender never gets
/// a turn; in a group their plain messages are not answered either (the bot may see every
/// message there), only their commands. Text and commands that change the chat wait behind the
/// chat's running turn; reads (`/status`, `/projects`, `/project_info`, `/help`) are answered at
/// once.
pub fn decide(input: &Input, situation: Situation) -> Step {
    let linked = situation.sender == Sender::Linked;
    let command = match input {
        Input::NotForUs => return Step::Ignore,
        Input::Text(_) | Input::NoText if !linked && !situation.private_chat => {
            return Step::Ignore
        }
        Input::NoText if linked => return Step::Answer(Answer::NoText),
        Input::NoText => return Step::Answer(refusal(situation.sender)),
        Input::Command(Command::Help | Command::Unknown(_)) => {
            return Step::Answer(Answer::Help { linked })
        }
        Input::Command(Command::Link(token)) => return Step::Link(token.clone()),
        Input::Command(Command::Usage("link")) => return Step::Answer(Answer::Usage("link")),
        _ if !linked => return Step::Answer(refusal(situation.sender)),
        Input::Command(Command::Usage(name)) => return Step::Answer(Answer::Usage(name)),
        Input::Command(command) => Some(command),
        Input::Text(_) => None,
    };
    let changes = command.is_none_or(Command::changes_the_chat);
    let must_wait = changes && (situation.chat_busy || (command.is_none() && situation.bot_full));
    match (must_wait, command, input) {
        (true, _, _) if situation.waiting >= MAX_WAITING_PER_CHAT => {
            Step::Answer(Answer::TooManyWaiting)
        }
        (true, _, _) => Step::Wait,
        (false, Some(command), _) => Step::Run(command.clone()),
        (false, None, Input::Text(text)) => Step::Turn(text.clone()),
        (false, None, _) => Step::Ignore,
    }
}

fn refusal(sender: Sender) -> Answer {
    match sender {
        Sender::Inactive => Answer::Inactive,
        Sender::Unlinked | Sender::Linked => Answer::NotLinked,
    }
}

/// The text of a fixed answer.
pub fn answer_text(answer: &Answer) -> String {
    match answer {
        Answer::Help { linked } => help(*linked),
        Answer::NotLinked => "This Telegram account is not linked to a Codara user yet, so I \
             cannot run anything for you.\n\nAsk your Codara operator for a link token, then send:\n\
             /link <token>"
            .to_string(),
        Answer::Inactive => "The Codara account linked to this Telegram account is suspended or \
             deleted; ask your Codara operator."
            .to_string(),
        Answer::Usage(name) => usage(name).to_string(),
        Answer::NoText => {
            "I only understand text messages: send your request as text, or /help.".to_string()
        }
        Answer::TooManyWaiting => format!(
            "{MAX_WAITING_PER_CHAT} messages already wait for the running turn in this chat; \
             this one was not queued. Send it again when the turn has finished."
        ),
    }
}

/// The help text.
pub fn help(linked: bool) -> String {
    let mut text = String::from(
        "Codara runs a coding agent for you. Every text message is a turn of the agent in your \
         current project; the reply lists the files it changed.\n\nCommands:\n",
    );
    for (name, description) in MENU {
        if *name == "link" && linked {
            continue;
        }
        text.push_str(&format!("/{name} - {description}\n"));
    }
    if !linked {
        text.push_str("\nFirst link this Telegram account: ask your Codara operator for a link token and send /link <token>.");
    }
    text.trim_end().to_string()
}

/// A command's usage line.
pub fn usage(name: &str) -> &'static str {
    match name {
        "link" => "Usage: /link TOKEN (your Codara operator gives you the token)",
        "project_create" => {
            "Usage: /project_create NAME [TEMPLATE] (templates: default, python, docs, empty)"
        }
        "project_info" => "Usage: /project_info NAME (see /projects)",
        "project" => "Usage: /project NAME (see /projects)",
        _ => "Send /help for the commands.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `text` (and the bot's username) → the input, rendered short.
    fn check(text: &str, username: Option<&str>, expected: &str) {
        let got = match parse(Some(text), username) {
            Input::Command(command) => format!("{command:?}"),
            Input::Text(text) => format!("text {text:?}"),
            Input::NotForUs => "not for us".to_string(),
            Input::NoText => "no text".to_string(),
        };
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn parsing() {
        let bot = Some("codara_bot");
        check("/help", bot, "Help");
        check("/HELP", bot, "Help");
        check("/help@codara_bot", bot, "Help");
        check("/help@Codara_Bot extra", bot, "Help");
        check("/help@other_bot", bot, "not for us");
        check("/help@other_bot", None, "Help");
        check("/start", bot, "Help");
        check("/start tok123", bot, "Link(\"tok123\")");
        check("/link  tok123 ", bot, "Link(\"tok123\")");
        check("/link", bot, "Usage(\"link\")");
        check("/projects", bot, "Projects");
        check(
            "/project_create demo",
            bot,
            "ProjectCreate { name: \"demo\", template: None }",
        );
        check(
            "/project_create@codara_bot demo Python",
            bot,
            "ProjectCreate { name: \"demo\", template: Some(\"Python\") }",
        );
        check("/project_create", bot, "Usage(\"project_create\")");
        check("/project_info demo", bot, "ProjectInfo(\"demo\")");
        check("/project_info", bot, "Usage(\"project_info\")");
        check("/project demo", bot, "Project(\"demo\")");
        check("/project .x", bot, "Project(\".x\")");
        check("/project", bot, "Usage(\"project\")");
        check("/new", bot, "New");
        check("/status", bot, "Status");
        check("/frobnicate now", bot, "Unknown(\"frobnicate\")");
        check("  fix the tests  ", bot, "text \"fix the tests\"");
        check("/usr/bin is missing", bot, "text \"/usr/bin is missing\"");
        check("/ spaced", bot, "text \"/ spaced\"");
        check("/help@", bot, "text \"/help@\"");
        check("  ", bot, "no text");
        assert_eq!(parse(None, bot), Input::NoText);
    }

    /// Input and situation → step, rendered short.
    fn step(input: &str, sender: Sender, busy: bool, waiting: usize, full: bool) -> String {
        let (input, private_chat) = match input.strip_prefix("group: ") {
            Some(text) => (text, false),
            None => (input, true),
        };
        let input = parse(Some(input), Some("b"));
        let situation = Situation {
            sender,
            private_chat,
            chat_busy: busy,
            waiting,
            bot_full: full,
        };
        match decide(&input, situation) {
            Step::Ignore => "ignore".into(),
            Step::Answer(answer) => format!("answer {answer:?}"),
            Step::Link(token) => format!("link {token}"),
            Step::Run(command) => format!("run {command:?}"),
            Step::Turn(text) => format!("turn {text}"),
            Step::Wait => "wait".into(),
        }
    }

    #[test]
    fn decisions() {
        use Sender::{Inactive, Linked, Unlinked};
        let cases: &[(&str, Sender, bool, usize, bool, &str)] = &[
            // Unlinked senders never get a turn or a command, only help and linking.
            ("hello", Unlinked, false, 0, false, "answer NotLinked"),
            ("/projects", Unlinked, false, 0, false, "answer NotLinked"),
            ("/new", Unlinked, false, 0, false, "answer NotLinked"),
            (
                "/help",
                Unlinked,
                false,
                0,
                false,
                "answer Help { linked: false }",
            ),
            (
                "/nope",
                Unlinked,
                false,
                0,
                false,
                "answer Help { linked: false }",
            ),
            ("/link t1", Unlinked, false, 0, false, "link t1"),
            ("/start t1", Unlinked, false, 0, false, "link t1"),
            ("/link", Unlinked, false, 0, false, "answer Usage(\"link\")"),
            // In a group, an unlinked member's chatter is not answered; commands are.
            ("group: hello", Unlinked, false, 0, false, "ignore"),
            (
                "group: /status",
                Unlinked,
                false,
                0,
                false,
                "answer NotLinked",
            ),
            ("group: hello", Inactive, false, 0, false, "ignore"),
            ("group: hello", Linked, false, 0, false, "turn hello"),
            ("hello", Inactive, false, 0, false, "answer Inactive"),
            ("/link t2", Inactive, false, 0, false, "link t2"),
            // Linked.
            ("hello", Linked, false, 0, false, "turn hello"),
            ("/help@other", Linked, false, 0, false, "ignore"),
            (
                "/project",
                Linked,
                false,
                0,
                false,
                "answer Usage(\"project\")",
            ),
            ("/status", Linked, false, 0, false, "run Status"),
            (
                "/nope",
                Linked,
                false,
                0,
                false,
                "answer Help { linked: true }",
            ),
            // A running turn in the chat: text and changes wait, reads are answered.
            ("hello", Linked, true, 0, false, "wait"),
            ("/new", Linked, true, 0, false, "wait"),
            ("/project p", Linked, true, 1, false, "wait"),
            ("/status", Linked, true, 1, false, "run Status"),
            ("/projects", Linked, true, 1, false, "run Projects"),
            (
                "hello",
                Linked,
                true,
                MAX_WAITING_PER_CHAT,
                false,
                "answer TooManyWaiting",
            ),
            // The bot at its turn limit: only turns wait.
            ("hello", Linked, false, 0, true, "wait"),
            ("/new", Linked, false, 0, true, "run New"),
        ];
        for (input, sender, busy, waiting, full, expected) in cases {
            assert_eq!(
                step(input, *sender, *busy, *waiting, *full),
                *expected,
                "{input:?} {sender:?} busy={busy} waiting={waiting} full={full}"
            );
        }
        // A message without text.
        let no_text = |sender| {
            decide(
                &Input::NoText,
                Situation {
                    sender,
                    private_chat: true,
                    chat_busy: false,
                    waiting: 0,
                    bot_full: false,
                },
            )
        };
        assert_eq!(no_text(Linked), Step::Answer(Answer::NoText));
        assert_eq!(no_text(Unlinked), Step::Answer(Answer::NotLinked));
    }

    #[test]
    fn updates() {
        let message = json!({"update_id": 7, "message": {
            "message_id": 3, "chat": {"id": -100, "type": "supergroup"}, "message_thread_id": 5,
            "from": {"id": 42, "is_bot": false, "username": "ann"}, "text": "hi"}});
        assert_eq!(
            parse_update(&message),
            Some(Incoming {
                update_id: 7,
                kind: Kind::Message(Message {
                    chat_id: -100,
                    private: false,
                    thread_id: Some(5),
                    message_id: 3,
                    from_id: 42,
                    from_username: Some("ann".into()),
                    text: Some("hi".into()),
                }),
            })
        );
        let edited = json!({"update_id": 8, "edited_message": {"message_id": 3,
            "chat": {"id": 1}, "from": {"id": 42}, "text": "hi!"}});
        assert_eq!(
            parse_update(&edited).map(|u| u.kind),
            Some(Kind::Edited { chat_id: 1 })
        );
        let from_bot = json!({"update_id": 9, "message": {"message_id": 1, "chat": {"id": 1},
            "from": {"id": 5, "is_bot": true}, "text": "/help"}});
        assert_eq!(
            parse_update(&from_bot).map(|u| u.kind),
            Some(Kind::Other { chat_id: Some(1) })
        );
        let as_channel = json!({"update_id": 10, "message": {"message_id": 1, "chat": {"id": 2},
            "from": {"id": 136817688}, "sender_chat": {"id": -5}, "text": "x"}});
        assert_eq!(
            parse_update(&as_channel).map(|u| u.kind),
            Some(Kind::Other { chat_id: Some(2) })
        );
        let photo = json!({"update_id": 11, "message": {"message_id": 1, "chat": {"id": 3},
            "from": {"id": 4}, "photo": [], "caption": "look"}});
        match parse_update(&photo).map(|u| u.kind) {
            Some(Kind::Message(m)) => assert_eq!(m.text, None),
            other => panic!("{other:?}"),
        }
        let callback = json!({"update_id": 12, "callback_query": {"id": "x"}});
        assert_eq!(
            parse_update(&callback).map(|u| u.kind),
            Some(Kind::Other { chat_id: None })
        );
        assert_eq!(parse_update(&json!({"message": {}})), None);
    }

    #[test]
    fn help_depends_on_linking() {
        assert!(help(false).contains("/link"));
        assert!(!help(true).contains("/link"));
        for (name, _) in MENU {
            if *name != "link" {
                assert!(help(true).contains(&format!("/{name}")), "{name}");
            }
        }
    }
}
