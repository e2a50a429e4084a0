//! The Telegram channel end to end: the real binary against a loopback fake Bot API
//! (`support::fake_telegram`), in polling and webhook mode. Linking and unlinking, every
//! command, turns through the real codex CLI and the mock model (streamed, split, with
//! modified files, one at a time per chat, under the user's limits), restarts that resume the
//! offset without a lost or duplicated update, the webhook's secret, and a Bot API that fails
//! (5xx, 429 with `retry_after`, timeouts, hangs) without blocking the gateway or other bots.

use crate::support::fake_telegram::{message, Call, Failure, FakeTelegram};
use crate::support::mock_model::{clis_bin, directive, MockModel};
use crate::support::{self, Server};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// The bot token: given through `token_env`, and never expected in any output.
const TOKEN: &str = "424242:TEST-telegram-token-must-never-leak";
/// The webhook secret.
const SECRET: &str = "webhook-secret-for-tests_0123456789";
/// The bot's @username, as the fake's `getMe` reports it.
const USERNAME: &str = "codara_test_bot";
/// The Telegram user (and private chat) of the linked person.
const ANN: i64 = 4201;

const WAIT: Duration = Duration::from_secs(20);
const TURN_WAIT: Duration = Duration::from_secs(90);

struct Rig {
    fake: FakeTelegram,
    mock: Option<MockModel>,
    server: Server,
    operator: String,
    user: String,
    workspace: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Polling,
    Webhook,
}

/// The `[channels.telegram]` block for `fake` plus one bot `main` (token through `TG_TOKEN`).
fn channel_toml(fake: &FakeTelegram, mode: Mode, extra: &str) -> String {
    let mode = match mode {
        Mode::Polling => "polling",
        Mode::Webhook => "webhook",
    };
    format!(
        "[channels.telegram]\nenabled = true\nreceive_mode = \"{mode}\"\napi_base = \"{}\"\n\
         poll_timeout_seconds = 1\napi_timeout_seconds = 2\nedit_interval_ms = 200\n{extra}\n\
         [[channels.telegram.bots]]\nname = \"main\"\ntoken_env = \"TG_TOKEN\"\n\
         webhook_secret = \"{SECRET}\"\n",
        fake.base_url
    )
}

/// A server with the channel; `codex` runs the real CLI against a mock model, else the
/// providers point at a binary that does not exist (no turn can run).
fn rig(mode: Mode, codex: bool, channel_extra: &str, toml_extra: &str) -> Rig {
    let fake = FakeTelegram::start();
    fake.bot(TOKEN, USERNAME);
    let mock = codex.then(MockModel::start);
    let providers = match &mock {
        Some(mock) => mock.codara_toml(&clis_bin()),
        None => "[providers.codex]\nbinary = \"/nonexistent/codex\"\n".to_string(),
    };
    let toml = format!(
        "{providers}\n[workspace]\nlock_timeout_seconds = 30\n{toml_extra}\n{}",
        channel_toml(&fake, mode, channel_extra)
    );
    let server = support::server()
        .toml(&toml)
        .env("TG_TOKEN", Some(TOKEN))
        .start();
    let operator = server.login();
    let created = server.post_json(
        "/management/v1/users",
        Some(&operator),
        r#"{"email":"ann@example.com","display_name":"Ann"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let data = &created.json()["data"];
    Rig {
        fake,
        mock,
        server,
        operator,
        user: data["id"].as_str().unwrap().to_string(),
        workspace: data["workspace_path"].as_str().unwrap().to_string(),
    }
}

impl Rig {
    /// Sends `text` from `chat` and returns the first new message the bot sends there.
    fn ask(&self, chat: i64, text: &str) -> String {
        let before = self.fake.sent(TOKEN, chat).len();
        self.fake.say(TOKEN, chat, text);
        self.next_message(chat, before)
    }

    /// Waits for the bot's message number `index` (0-based) in `chat`.
    fn next_message(&self, chat: i64, index: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let sent = self.fake.sent(TOKEN, chat);
            if let Some(text) = sent.get(index) {
                return text.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no answer in chat {chat} within {WAIT:?}; calls: {:#?}",
                self.fake.calls()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A link token for the user through the management API: the raw token.
    fn link_token(&self) -> String {
        let response = self.server.post_json(
            &format!("/management/v1/users/{}/channels/link-token", self.user),
            Some(&self.operator),
            r#"{"channel":"telegram","bot_name":"main"}"#,
        );
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["data"]["raw_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Links Telegram user `chat` to the user.
    fn link(&self, chat: i64) {
        let token = self.link_token();
        let answer = self.ask(chat, &format!("/link {token}"));
        assert!(answer.contains("now linked"), "{answer}");
    }

    fn db(&self) -> Connection {
        let conn = Connection::open(self.server.data_dir().join("codara.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |row| row.get(0)).unwrap()
    }

    fn mock(&self) -> &MockModel {
        self.mock.as_ref().expect("a rig with codex")
    }

    /// Model requests whose body holds `needle`.
    fn model_requests_with(&self, needle: &str) -> usize {
        self.mock()
            .requests()
            .iter()
            .filter(|r| r.body_text().contains(needle))
            .count()
    }

    /// Audit actions, oldest first.
    fn audit_actions(&self) -> Vec<String> {
        let conn = self.db();
        let mut stmt = conn
            .prepare("SELECT action FROM audit_log ORDER BY rowid")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    /// Posts `update` to the webhook route as Telegram would.
    fn deliver(&self, bot: &str, secret: Option<&str>, body: &str) -> support::HttpResponse {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(secret) = secret {
            headers.push(("X-Telegram-Bot-Api-Secret-Token", secret));
        }
        self.server.request(
            "POST",
            &format!("/channels/telegram/{bot}/webhook"),
            &headers,
            Some(body.as_bytes()),
        )
    }

    /// Asserts the token appears in no output of the gateway.
    fn assert_token_never_shown(&self) {
        let stderr = self.server.stderr();
        assert!(!stderr.contains(TOKEN), "the token is in stderr");
        assert!(
            !self.server.log_files_text().contains(TOKEN),
            "the token is in the log files"
        );
        let status = self
            .server
            .get("/management/v1/channels", Some(&self.operator));
        assert!(!status.text().contains(TOKEN), "{}", status.text());
        let audit = self
            .server
            .get("/management/v1/audit?limit=500", Some(&self.operator));
        assert!(!audit.text().contains(TOKEN));
        assert!(!audit.text().contains(SECRET));
    }
}

/// The time of the first call (answered 200) of `method` whose text contains `needle`.
fn first_call_with(calls: &[Call], needle: &str) -> Option<Instant> {
    calls
        .iter()
        .find(|c| c.status == 200 && c.params["text"].as_str().unwrap_or("").contains(needle))
        .map(|c| c.at)
}

#[test]
fn unlinked_users_get_instructions_and_never_a_turn() {
    let rig = rig(Mode::Polling, false, "", "");
    // Start-up: the webhook is removed (pending updates kept), the username and menu learned.
    let deleted = rig.fake.wait_for_calls(TOKEN, "deleteWebhook", 1, WAIT);
    assert_eq!(deleted[0].params["drop_pending_updates"], false);
    rig.fake.wait_for_calls(TOKEN, "getMe", 1, WAIT);
    let menu = rig.fake.wait_for_calls(TOKEN, "setMyCommands", 1, WAIT);
    assert!(menu[0].params["commands"]
        .to_string()
        .contains("project_create"));
    let polls = rig.fake.wait_for_calls(TOKEN, "getUpdates", 1, WAIT);
    assert_eq!(polls[0].params["timeout"], 1);
    assert_eq!(polls[0].params["allowed_updates"], json!(["message"]));

    for text in [
        "please fix the bug",
        "/projects",
        "/project demo",
        "/new",
        "/status",
    ] {
        let answer = rig.ask(ANN, text);
        assert!(
            answer.contains("not linked") && answer.contains("/link <token>"),
            "{text}: {answer}"
        );
    }
    let help = rig.ask(ANN, "/help");
    assert!(
        help.contains("/link") && help.contains("/project_create"),
        "{help}"
    );
    let start = rig.ask(ANN, "/start");
    assert_eq!(start, help);
    let wrong = rig.ask(ANN, "/link not-a-token");
    assert!(wrong.contains("not valid"), "{wrong}");
    // A photo (no text) gets the instructions too; an edit gets nothing.
    let before = rig.fake.sent(TOKEN, ANN).len();
    let mut photo = message(ANN, ANN, "");
    photo["message"].as_object_mut().unwrap().remove("text");
    photo["message"]["photo"] = json!([{"file_id": "f"}]);
    rig.fake.push(TOKEN, photo);
    assert!(rig.next_message(ANN, before).contains("not linked"));
    let mut edited = message(ANN, ANN, "edited: run this");
    edited["edited_message"] = edited["message"].take();
    edited.as_object_mut().unwrap().remove("message");
    rig.fake.push(TOKEN, edited);
    // In a group, an unlinked member's chatter is not answered (their commands are).
    let group = -5001;
    rig.fake.push(TOKEN, message(ANN, group, "hello everyone"));
    let after = rig.ask(ANN, "/help");
    assert_eq!(after, help, "the edit was answered");
    assert!(
        rig.fake.sent(TOKEN, group).is_empty(),
        "group chatter was answered"
    );
    let before = rig.fake.sent(TOKEN, group).len();
    rig.fake.push(TOKEN, message(ANN, group, "/status"));
    assert!(rig.next_message(group, before).contains("not linked"));

    // Nothing ran and every update was handled.
    assert_eq!(rig.count("SELECT COUNT(*) FROM turns"), 0);
    assert_eq!(rig.count("SELECT COUNT(*) FROM sessions"), 0);
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM telegram_updates WHERE state != 'done'"),
        0
    );
    assert_eq!(rig.count("SELECT COUNT(*) FROM telegram_updates"), 13);
    rig.assert_token_never_shown();
}

#[test]
fn deleting_a_user_removes_its_links_and_unused_link_tokens() {
    let rig = rig(Mode::Polling, false, "", "");
    rig.link(ANN);
    let unused = rig.link_token();
    assert_eq!(rig.count("SELECT COUNT(*) FROM telegram_links"), 1);
    let deleted = rig.server.request(
        "DELETE",
        &format!("/management/v1/users/{}", rig.user),
        &[("Authorization", &format!("Bearer {}", rig.operator))],
        None,
    );
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(rig.count("SELECT COUNT(*) FROM telegram_links"), 0);
    // The chat is a stranger's again, and the token issued before the delete links nothing.
    assert!(rig.ask(ANN, "hello").contains("not linked"));
    assert!(!rig
        .ask(ANN, &format!("/link {unused}"))
        .contains("now linked"));
    assert_eq!(rig.count("SELECT COUNT(*) FROM telegram_links"), 0);
    let audit: String = rig
        .db()
        .query_row(
            "SELECT after FROM audit_log WHERE action = 'user.deleted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(audit.contains("\"channel_links_removed\":1"), "{audit}");
}

#[test]
fn link_attempts_are_throttled_per_telegram_account() {
    let rig = rig(Mode::Polling, false, "", "");
    let token = rig.link_token();
    for n in 0..5 {
        let answer = rig.ask(ANN, &format!("/link guess{n:020}"));
        assert!(answer.contains("not valid"), "{answer}");
    }
    // The sixth attempt is refused before the token is even looked at, valid or not.
    let answer = rig.ask(ANN, &format!("/link {token}"));
    assert!(answer.contains("Too many link attempts"), "{answer}");
    assert_eq!(rig.count("SELECT COUNT(*) FROM telegram_links"), 0);
    // Another Telegram account is not held back, and the token still works there.
    let other = 4202;
    assert!(rig
        .ask(other, &format!("/link {token}"))
        .contains("now linked"));
}

#[test]
fn link_flow_every_command_and_unlink() {
    let rig = rig(Mode::Polling, false, "", "");
    rig.fake.wait_for_calls(TOKEN, "getMe", 1, WAIT);
    // The link token: shown once, with the command and the deep link for the bot's username.
    let response = rig.server.post_json(
        &format!("/management/v1/users/{}/channels/link-token", rig.user),
        Some(&rig.operator),
        r#"{"expires_in_minutes": 5}"#,
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let data = &response.json()["data"];
    let token = data["raw_token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 24);
    assert_eq!(data["bot_name"], "main");
    assert_eq!(data["channel"], "telegram");
    assert_eq!(data["link_command"], format!("/link {token}"));
    assert_eq!(
        data["deep_link"],
        format!("https://t.me/{USERNAME}?start={token}")
    );
    assert!(data["token_id"].as_str().unwrap().starts_with("uag_clt_"));
    // Refusals of the route.
    for (body, status) in [
        (r#"{"bot_name":"nope"}"#, 404),
        (r#"{"expires_in_minutes":0}"#, 400),
        (r#"{"channel":"lark"}"#, 400),
    ] {
        let refused = rig.server.post_json(
            &format!("/management/v1/users/{}/channels/link-token", rig.user),
            Some(&rig.operator),
            body,
        );
        assert_eq!(refused.status, status, "{body}: {}", refused.text());
    }
    let unknown = rig.server.post_json(
        "/management/v1/users/uag_usr_nope/channels/link-token",
        Some(&rig.operator),
        "{}",
    );
    assert_eq!(unknown.status, 404);

    // Linking: the token works once (through the deep link's /start here).
    let linked = rig.ask(ANN, &format!("/start {token}"));
    assert!(
        linked.contains("now linked") && linked.contains("ann@example.com"),
        "{linked}"
    );
    let other = 4202;
    let reused = rig.ask(other, &format!("/link {token}"));
    assert!(reused.contains("not valid"), "{reused}");
    assert!(rig.ask(other, "hello").contains("not linked"));
    let links = rig.server.get(
        &format!("/management/v1/users/{}/channels/links", rig.user),
        Some(&rig.operator),
    );
    assert_eq!(links.status, 200, "{}", links.text());
    let links = links.json()["data"].clone();
    assert_eq!(links.as_array().unwrap().len(), 1, "{links}");
    assert_eq!(links[0]["telegram_user_id"], ANN);
    assert_eq!(links[0]["telegram_username"], format!("user{ANN}"));

    // Commands.
    let help = rig.ask(ANN, "/help");
    assert!(
        !help.contains("/link") && help.contains("/project_create"),
        "{help}"
    );
    assert!(rig.ask(ANN, "/projects").contains("no projects yet"));
    let created = rig.ask(ANN, "/project_create demo python");
    assert!(
        created.contains("Created project demo (template python)"),
        "{created}"
    );
    let metadata = std::path::Path::new(&rig.workspace).join("demo/.codara/project.toml");
    let metadata = std::fs::read_to_string(&metadata).unwrap();
    assert!(metadata.contains("template = \"python\""), "{metadata}");
    assert!(
        metadata.contains(&format!("created_by = \"user:{}\"", rig.user)),
        "{metadata}"
    );
    let again = rig.ask(ANN, "/project_create demo");
    assert!(again.contains("already exists"), "{again}");
    let bad = rig.ask(ANN, "/project_create ../x");
    assert!(bad.contains("`name`"), "{bad}");
    let bad_template = rig.ask(ANN, "/project_create x2 cobol");
    assert!(
        bad_template.contains("unsupported template"),
        "{bad_template}"
    );
    assert!(rig
        .ask(ANN, "/project_create")
        .starts_with("Usage: /project_create"));
    let info = rig.ask(ANN, "/project_info demo");
    assert!(
        info.contains("Template: python") && info.contains("works in it now"),
        "{info}"
    );
    assert!(rig
        .ask(ANN, "/project_info nope")
        .contains("project not found: nope"));
    assert!(rig
        .ask(ANN, "/project_create notes docs")
        .contains("switched"));
    let listed = rig.ask(ANN, "/projects");
    assert!(
        listed.contains("- demo (python)\n") && listed.contains("- notes (docs)  ← current"),
        "{listed}"
    );
    assert!(rig
        .ask(ANN, "/project@codara_test_bot demo")
        .contains("Switched to project demo"));
    assert!(rig
        .ask(ANN, "/project nope")
        .contains("project not found: nope"));
    // The original's uncaught error on `.x` (issue: a 500 or a dead handler) is an answer here.
    assert!(rig
        .ask(ANN, "/project .x")
        .contains("`name` cannot be hidden"));
    assert!(rig.ask(ANN, "/project").starts_with("Usage: /project NAME"));
    let new = rig.ask(ANN, "/new");
    assert!(new.contains("new conversation in project demo"), "{new}");
    let status = rig.ask(ANN, "/status");
    assert!(
        status.contains("Linked to Codara as Ann (ann@example.com)")
            && status.contains("Project: demo")
            && status.contains("Agent: codex")
            && status.contains("Conversation: new"),
        "{status}"
    );
    // Another bot's command in a group is not for us; unknown commands get the help.
    let before = rig.fake.sent(TOKEN, ANN).len();
    rig.fake.say(TOKEN, ANN, "/status@some_other_bot");
    assert_eq!(rig.ask(ANN, "/frobnicate"), help);
    assert_eq!(
        rig.fake.sent(TOKEN, ANN).len(),
        before + 1,
        "/status@other answered"
    );

    // Unlinking through the API: the next message gets the instructions.
    let link_id = links[0]["id"].as_str().unwrap();
    let path = format!("/management/v1/users/{}/channels/links/{link_id}", rig.user);
    let auth = format!("Bearer {}", rig.operator);
    let deleted = rig
        .server
        .request("DELETE", &path, &[("Authorization", &auth)], None);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let again = rig
        .server
        .request("DELETE", &path, &[("Authorization", &auth)], None);
    assert_eq!(again.status, 404);
    assert!(rig.ask(ANN, "/status").contains("not linked"));

    let actions = rig.audit_actions();
    let expected = [
        "telegram.link_token.created",
        "telegram.linked",
        "project.created",
        "telegram.project_switched",
        "project.created",
        "telegram.project_switched",
        "telegram.project_switched",
        "telegram.conversation_reset",
        "telegram.unlinked",
    ];
    let telegram: Vec<&str> = actions
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("telegram.") || a.starts_with("project."))
        .collect();
    assert_eq!(telegram, expected);
    assert_eq!(rig.count("SELECT COUNT(*) FROM turns"), 0);
    rig.assert_token_never_shown();
}

#[test]
fn a_codex_turn_streams_lists_modified_files_resumes_and_keeps_the_user_limits() {
    let rig = rig(Mode::Polling, true, "", "");
    rig.link(ANN);
    // A streamed reply: sent once, then edited as the deltas arrive, then final.
    let streamed = directive(json!({
        "reply": "alpha beta gamma delta epsilon", "chunks": 4, "chunk_delay_ms": 700
    }));
    rig.fake.say(TOKEN, ANN, &streamed);
    let shown = rig
        .fake
        .wait_for_text(TOKEN, ANN, "alpha beta gamma delta epsilon", TURN_WAIT);
    assert_eq!(shown.last().unwrap(), "alpha beta gamma delta epsilon");
    let typing = rig.fake.calls_of(TOKEN, "sendChatAction");
    assert!(!typing.is_empty() && typing[0].params["action"] == "typing");
    assert_eq!(typing[0].params["chat_id"], ANN);
    let sends = rig.fake.sent(TOKEN, ANN);
    let first_part = sends.last().unwrap();
    assert!(
        "alpha beta gamma delta epsilon".starts_with(first_part.as_str())
            && first_part.len() < "alpha beta gamma delta epsilon".len(),
        "the reply was not streamed: first sent {first_part:?}"
    );
    let edits = rig.fake.calls_of(TOKEN, "editMessageText");
    assert!(!edits.is_empty(), "no edit");
    // Edits are throttled: never two within the interval.
    for pair in edits.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(150),
            "edits too fast"
        );
    }

    // A turn that writes a file: the reply lists it; the session is resumed with only the new
    // message (the CLI keeps the history).
    let write = directive(json!({
        "steps": [{"write": {"path": "notes.txt", "content": "from telegram\n"}}],
        "final": "Wrote the notes."
    }));
    rig.fake.say(TOKEN, ANN, &write);
    let shown = rig.fake.wait_for_text(TOKEN, ANN, "- notes.txt", TURN_WAIT);
    assert_eq!(
        shown.last().unwrap(),
        "Wrote the notes.\n\nModified files:\n- notes.txt"
    );
    let written = std::path::Path::new(&rig.workspace).join("notes.txt");
    assert_eq!(std::fs::read_to_string(written).unwrap(), "from telegram\n");
    let conn = rig.db();
    let turns: Vec<(i64, String, String)> = {
        let mut stmt = conn
            .prepare("SELECT resumed, prompt, status FROM turns ORDER BY created_at")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.map(|r| r.unwrap()).collect()
    };
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[1], (1, write.clone(), "ok".to_string()), "{turns:?}");
    let label: String = conn
        .query_row("SELECT client_session_id FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(label, format!("telegram:main:{ANN}:1"));

    // The user's limits apply: a spent daily budget refuses the next turn, in the chat.
    let patched = rig.server.request(
        "PATCH",
        &format!("/management/v1/users/{}", rig.user),
        &[
            ("Authorization", &format!("Bearer {}", rig.operator)),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"daily_token_budget": 1}"#),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    let refused = rig.ask(ANN, "one more, please");
    assert!(refused.contains("daily token budget"), "{refused}");
    assert_eq!(rig.count("SELECT COUNT(*) FROM turns"), 2);
    assert_eq!(rig.model_requests_with("one more, please"), 0);
    rig.assert_token_never_shown();
}

#[test]
fn a_long_reply_is_split_at_lines_without_loss() {
    // Without streaming: the reply is sent when the turn ends, in as many messages as needed.
    let rig = rig(Mode::Polling, true, "stream = false", "");
    rig.link(ANN);
    let reply: String = (0..160)
        .map(|i| {
            format!(
                "line {i:04}: the quick brown fox jumps over the lazy dog {}",
                "é".repeat(i % 7)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(reply.encode_utf16().count() > 2 * 4096);
    let before = rig.fake.sent(TOKEN, ANN).len();
    rig.fake
        .say(TOKEN, ANN, &directive(json!({ "reply": reply })));
    rig.fake.wait_for_text(TOKEN, ANN, "line 0159", TURN_WAIT);
    let pieces: Vec<String> = rig.fake.sent(TOKEN, ANN)[before..].to_vec();
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    for piece in &pieces {
        assert!(piece.encode_utf16().count() <= 4096, "a piece is too long");
    }
    assert_eq!(pieces.concat(), reply, "text was lost or changed");
    assert!(
        pieces[..pieces.len() - 1].iter().all(|p| p.ends_with('\n')),
        "not cut at lines"
    );
    assert!(rig.fake.calls_of(TOKEN, "editMessageText").is_empty());
}

#[test]
fn one_turn_at_a_time_per_chat() {
    let rig = rig(Mode::Polling, true, "", "");
    rig.link(ANN);
    let slow = directive(json!({"delay": 3, "reply": "first done"}));
    let next = directive(json!({"reply": "second done"}));
    rig.fake.say(TOKEN, ANN, &slow);
    rig.mock().wait_for_requests(1, TURN_WAIT);
    support::wait_until(TURN_WAIT, "the slow turn's model request", || {
        rig.model_requests_with("first done") > 0
    });
    rig.fake.say(TOKEN, ANN, &next);
    // While the first runs, a read is answered at once and says the second waits.
    let status = rig.ask(ANN, "/status");
    assert!(
        status.contains("A turn is running in this chat") && status.contains("1 message(s) wait"),
        "{status}"
    );
    rig.fake.wait_for_text(TOKEN, ANN, "second done", TURN_WAIT);
    let first_shown = first_call_with(&rig.fake.calls_of(TOKEN, "sendMessage"), "first done")
        .or_else(|| first_call_with(&rig.fake.calls_of(TOKEN, "editMessageText"), "first done"))
        .expect("the first reply");
    let second_asked = rig
        .mock()
        .requests()
        .iter()
        .filter(|r| r.body_text().contains("second done"))
        .map(|r| r.at)
        .min()
        .expect("the second turn's request");
    assert!(
        second_asked > first_shown,
        "the second turn started before the first ended"
    );
    // (A streamed reply shows before its turn is stored.)
    support::wait_until(TURN_WAIT, "both turns stored", || {
        rig.count("SELECT COUNT(*) FROM turns") == 2
    });
}

#[test]
fn restarts_resume_the_offset_without_duplicates_or_loss() {
    let Rig {
        fake,
        mock,
        server,
        operator,
        user,
        workspace,
    } = rig(Mode::Polling, true, "", "");
    let before = Rig {
        fake,
        mock,
        server,
        operator,
        user,
        workspace,
    };
    before.link(ANN);
    let first = directive(json!({"reply": "first answer"}));
    before.fake.say(TOKEN, ANN, &first);
    before
        .fake
        .wait_for_text(TOKEN, ANN, "first answer", TURN_WAIT);
    let handled = before.fake.next_update_id() - 1;

    // Stopped (SIGTERM): an update arrives meanwhile.
    let Rig {
        fake,
        mock,
        server,
        operator,
        user,
        workspace,
    } = before;
    let (dir, tempdir) = server.stop_keep_dir();
    let second = directive(json!({"reply": "second answer"}));
    fake.say(TOKEN, ANN, &second);
    let restarted_at = Instant::now();
    let server = support::server()
        .dir(&dir)
        .env("TG_TOKEN", Some(TOKEN))
        .start();
    let mut rig = Rig {
        fake,
        mock,
        server,
        operator,
        user,
        workspace,
    };
    rig.fake
        .wait_for_text(TOKEN, ANN, "second answer", TURN_WAIT);
    let polls: Vec<Call> = rig
        .fake
        .calls_of(TOKEN, "getUpdates")
        .into_iter()
        .filter(|c| c.at > restarted_at)
        .collect();
    assert_eq!(
        polls[0].params["offset"],
        handled + 1,
        "the offset was not resumed"
    );

    // kill -9 during a turn, with another message waiting behind it.
    let slow = directive(json!({"delay": 30, "reply": "never shown"}));
    rig.fake.say(TOKEN, ANN, &slow);
    support::wait_until(TURN_WAIT, "the slow turn's model request", || {
        rig.model_requests_with("never shown") > 0
    });
    let after = directive(json!({"reply": "after the crash"}));
    rig.fake.say(TOKEN, ANN, &after);
    support::wait_until(WAIT, "the waiting update to be stored", || {
        rig.count("SELECT COUNT(*) FROM telegram_updates WHERE state = 'pending'") == 1
    });
    rig.server.signal("KILL");
    rig.server.wait_exit(WAIT);
    rig.server = support::server()
        .dir(&dir)
        .env("TG_TOKEN", Some(TOKEN))
        .start();
    let shown = rig
        .fake
        .wait_for_text(TOKEN, ANN, "after the crash", TURN_WAIT);
    assert!(
        shown
            .iter()
            .any(|t| t.contains("Codara restarted while this turn was running")),
        "{shown:#?}"
    );
    assert!(!shown.iter().any(|t| t.contains("never shown")));

    // Every update ran exactly once: one model request per prompt (a resumed session's request
    // carries the earlier prompts too, so each is counted where it is the newest).
    let prompts = [
        "first answer",
        "second answer",
        "never shown",
        "after the crash",
    ];
    let bodies: Vec<String> = rig
        .mock()
        .requests()
        .iter()
        .map(|r| r.body_text())
        .collect();
    for (i, prompt) in prompts.iter().enumerate() {
        let newest = bodies
            .iter()
            .filter(|b| {
                b.contains(prompt) && !prompts[i + 1..].iter().any(|later| b.contains(later))
            })
            .count();
        assert_eq!(newest, 1, "{prompt}");
    }
    support::wait_until(TURN_WAIT, "every update handled", || {
        rig.count("SELECT COUNT(*) FROM telegram_updates WHERE state != 'done'") == 0
    });
    let statuses: Vec<String> = {
        let conn = rig.db();
        let mut stmt = conn
            .prepare("SELECT status FROM turns ORDER BY created_at")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    };
    assert_eq!(statuses, ["ok", "ok", "interrupted", "ok"]);
    drop(tempdir);
}

#[test]
fn webhook_mode_registers_checks_the_secret_answers_at_once_and_drops_redeliveries() {
    let rig = rig(
        Mode::Webhook,
        true,
        "",
        "[server]\npublic_url = \"https://codara.example.com/\"\n",
    );
    let set = rig.fake.wait_for_calls(TOKEN, "setWebhook", 1, WAIT);
    assert_eq!(
        set[0].params["url"],
        "https://codara.example.com/channels/telegram/main/webhook"
    );
    assert_eq!(set[0].params["secret_token"], SECRET);
    assert_eq!(set[0].params["allowed_updates"], json!(["message"]));

    let update = |id: i64, text: &str| {
        let mut update = message(ANN, ANN, text);
        update["update_id"] = json!(id);
        update.to_string()
    };
    // The secret is the route's credential.
    assert_eq!(rig.deliver("main", None, &update(1, "hi")).status, 401);
    assert_eq!(
        rig.deliver("main", Some("wrong"), &update(1, "hi")).status,
        401
    );
    assert_eq!(
        rig.deliver("nope", Some(SECRET), &update(1, "hi")).status,
        404
    );
    assert_eq!(rig.deliver("main", Some(SECRET), "not json").status, 400);
    assert_eq!(
        rig.deliver("main", Some(SECRET), r#"{"message":{}}"#)
            .status,
        400
    );
    assert_eq!(rig.count("SELECT COUNT(*) FROM telegram_updates"), 0);
    // Without the secret, a body is never waited for: a stranger announcing 200 kB and sending
    // none is answered 401 at once.
    for secret in ["", "X-Telegram-Bot-Api-Secret-Token: wrong\r\n"] {
        let mut stream = support::connect(rig.server.addr);
        let started = Instant::now();
        write!(
            stream,
            "POST /channels/telegram/main/webhook HTTP/1.1\r\nHost: x\r\n{secret}\
             Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n"
        )
        .unwrap();
        let response = support::read_one_response(&mut stream, Duration::from_secs(5))
            .expect("an answer without the body");
        assert_eq!(response.status, 401, "{}", response.text());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    let token = rig.link_token();
    let linked = rig.deliver("main", Some(SECRET), &update(10, &format!("/link {token}")));
    assert_eq!(linked.status, 200, "{}", linked.text());
    assert_eq!(linked.json()["data"]["stored"], true);
    assert!(rig.next_message(ANN, 0).contains("now linked"));

    // A turn that takes seconds: Telegram's request is answered at once.
    let slow = update(
        11,
        &directive(json!({"delay": 2, "reply": "webhook turn done"})),
    );
    let started = Instant::now();
    let delivered = rig.deliver("main", Some(SECRET), &slow);
    assert_eq!(delivered.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // Telegram delivers again (it did not see the answer): stored once, run once.
    let again = rig.deliver("main", Some(SECRET), &slow);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["data"]["stored"], false);
    // An edit of the message never runs a turn.
    let mut edited: Value = serde_json::from_str(&update(12, "edited: run again")).unwrap();
    edited["edited_message"] = edited["message"].take();
    edited.as_object_mut().unwrap().remove("message");
    assert_eq!(
        rig.deliver("main", Some(SECRET), &edited.to_string())
            .status,
        200
    );
    rig.fake
        .wait_for_text(TOKEN, ANN, "webhook turn done", TURN_WAIT);
    support::wait_until(WAIT, "every update handled", || {
        rig.count("SELECT COUNT(*) FROM telegram_updates WHERE state != 'done'") == 0
    });
    assert_eq!(rig.model_requests_with("webhook turn done"), 1);
    assert_eq!(rig.model_requests_with("run again"), 0);
    assert_eq!(rig.count("SELECT COUNT(*) FROM turns"), 1);
    // No polling in webhook mode.
    assert!(rig.fake.calls_of(TOKEN, "getUpdates").is_empty());
    assert!(rig.fake.calls_of(TOKEN, "deleteWebhook").is_empty());
    let status = rig
        .server
        .get("/management/v1/channels", Some(&rig.operator));
    let bot = &status.json()["data"]["telegram"]["bots"][0];
    assert_eq!(
        bot["webhook_url"],
        "https://codara.example.com/channels/telegram/main/webhook"
    );
    assert_eq!(bot["username"], USERNAME);
    assert_eq!(bot["links"], 1);
    rig.assert_token_never_shown();
}

#[test]
fn bot_api_5xx_429_and_timeouts_are_retried_and_the_token_never_logged() {
    let rig = rig(Mode::Polling, false, "", "[logging]\nlevel = \"trace\"\n");
    rig.fake.wait_for_calls(TOKEN, "getUpdates", 1, WAIT);
    rig.link(ANN);

    // 5xx: retried with backoff until it goes through.
    let bad_gateway = Failure::Status {
        code: 502,
        description: "Bad Gateway".into(),
        retry_after: None,
    };
    let before = rig.fake.calls_of(TOKEN, "sendMessage").len();
    rig.fake.fail(TOKEN, "sendMessage", 2, bad_gateway);
    assert!(rig.ask(ANN, "/status").contains("Linked to Codara"));
    let statuses: Vec<u16> = rig.fake.calls_of(TOKEN, "sendMessage")[before..]
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [502, 502, 200]);

    // 429: the next attempt waits `retry_after`.
    let flood = Failure::Status {
        code: 429,
        description: "Too Many Requests: retry after 2".into(),
        retry_after: Some(2),
    };
    let before = rig.fake.calls_of(TOKEN, "sendMessage").len();
    rig.fake.fail(TOKEN, "sendMessage", 1, flood);
    assert!(rig.ask(ANN, "/status").contains("Linked to Codara"));
    let calls = rig.fake.calls_of(TOKEN, "sendMessage")[before..].to_vec();
    assert_eq!(calls[0].status, 429);
    assert!(
        calls[1].at - calls[0].at >= Duration::from_millis(1900),
        "retry_after ignored"
    );

    // A call that hangs past the timeout (2 s) is abandoned and sent again.
    let before = rig.fake.calls_of(TOKEN, "sendMessage").len();
    rig.fake.fail(
        TOKEN,
        "sendMessage",
        1,
        Failure::Delay(Duration::from_secs(5)),
    );
    assert!(rig.ask(ANN, "/status").contains("Linked to Codara"));
    let calls = rig.fake.calls_of(TOKEN, "sendMessage")[before..].to_vec();
    assert!(calls.len() >= 2);
    assert!(
        calls[1].at - calls[0].at >= Duration::from_millis(1900),
        "no timeout"
    );
    assert!(
        calls[1].at - calls[0].at < Duration::from_millis(4500),
        "waited for the hang"
    );
    // The hung call is answered late (Telegram may well have delivered it): wait for it so
    // that it does not pass for the next answer.
    support::wait_until(WAIT, "the hung call's late answer", || {
        rig.fake
            .calls_of(TOKEN, "sendMessage")
            .iter()
            .all(|c| c.status != 0)
    });

    // getUpdates failing (500, then a hang past long poll + timeout) delays, never loses.
    let server_error = Failure::Status {
        code: 500,
        description: "Internal Server Error".into(),
        retry_after: None,
    };
    rig.fake.fail(TOKEN, "getUpdates", 2, server_error);
    rig.fake.fail(
        TOKEN,
        "getUpdates",
        1,
        Failure::Delay(Duration::from_secs(5)),
    );
    let answer = rig.ask(ANN, "/projects");
    assert!(answer.contains("no projects yet"), "{answer}");
    let polls: Vec<u16> = rig
        .fake
        .calls_of(TOKEN, "getUpdates")
        .iter()
        .map(|c| c.status)
        .collect();
    assert!(polls.contains(&500), "{polls:?}");

    // The failures are reported without the token; the logs (at trace level) never hold it.
    let status = rig
        .server
        .get("/management/v1/channels", Some(&rig.operator));
    let bot = &status.json()["data"]["telegram"]["bots"][0];
    assert!(
        bot["last_error"].as_str().unwrap().contains("Telegram"),
        "{bot}"
    );
    assert!(rig.server.stderr().contains("getUpdates failed"));
    rig.assert_token_never_shown();
}

#[test]
fn a_hanging_bot_api_blocks_neither_the_gateway_nor_other_bots() {
    const STUCK: &str = "777:STUCK-token-also-secret";
    let fake = FakeTelegram::start();
    fake.bot(TOKEN, USERNAME);
    fake.bot(STUCK, "stuck_bot");
    for method in [
        "getMe",
        "setMyCommands",
        "deleteWebhook",
        "getUpdates",
        "sendMessage",
    ] {
        fake.fail(STUCK, method, 1000, Failure::Delay(Duration::from_secs(30)));
    }
    let toml = format!(
        "[providers.codex]\nbinary = \"/nonexistent/codex\"\n{}\n\
         [[channels.telegram.bots]]\nname = \"stuck\"\ntoken = \"{STUCK}\"\n",
        channel_toml(&fake, Mode::Polling, "")
    );
    let server = support::server()
        .toml(&toml)
        .env("TG_TOKEN", Some(TOKEN))
        .start();
    let operator = server.login();
    // The stuck bot is calling (and hanging) ...
    support::wait_until(WAIT, "the stuck bot's first calls", || {
        !fake.calls_of(STUCK, "getMe").is_empty()
    });
    // ... while the gateway answers at once ...
    let started = Instant::now();
    assert_eq!(server.get("/healthz", None).status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    // ... and the other bot works.
    let created = server.post_json(
        "/management/v1/users",
        Some(&operator),
        r#"{"email":"bo@example.com","display_name":"Bo"}"#,
    );
    let user = created.json()["data"]["id"].as_str().unwrap().to_string();
    let token = server.post_json(
        &format!("/management/v1/users/{user}/channels/link-token"),
        Some(&operator),
        r#"{"bot_name":"main"}"#,
    );
    assert_eq!(token.status, 201, "{}", token.text());
    let raw = token.json()["data"]["raw_token"]
        .as_str()
        .unwrap()
        .to_string();
    let asked = Instant::now();
    fake.say(TOKEN, ANN, &format!("/link {raw}"));
    fake.wait_for_text(TOKEN, ANN, "now linked", WAIT);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    // The stuck bot's calls time out after api_timeout_seconds and are retried, reported
    // without its token.
    support::wait_until(WAIT, "the stuck bot's error", || {
        let status = server
            .get("/management/v1/channels", Some(&operator))
            .json();
        status["data"]["telegram"]["bots"][1]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out"))
    });
    let status = server.get("/management/v1/channels", Some(&operator));
    assert!(!status.text().contains(STUCK) && !status.text().contains(TOKEN));
    assert!(!server.stderr().contains(STUCK));
}
