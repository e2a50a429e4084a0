//! The codex CLI: command lines and the pure parser of its JSON-lines output.
//!
//! `codex exec --json` prints one event per line (see `real-clis.md` §3):
//!
//! | line | events |
//! |---|---|
//! | `thread.started` | `SessionId(thread_id)` |
//! | `item.completed` `agent_message` | `Text(text)` |
//! | `item.completed` `file_change`, status `completed` | one `FileChange` per change |
//! | `item.completed` `file_change`, status `failed` | `Warning` naming the paths |
//! | `item.completed` `command_execution` (completed/failed/declined) | `Command` |
//! | `item.completed` `mcp_tool_call`, `web_search`, `collab_tool_call` | `Tool` |
//! | `item.completed` `error` | `Warning(message)`: codex's non-fatal notices |
//! | top-level `error` | `Warning(message)` (see below) |
//! | `turn.failed` | `Error(error.message)` |
//! | `turn.completed` | `Usage`, then `Completed` |
//!
//! Everything else (`turn.started`, `item.started`/`item.updated`, reasoning, todo lists,
//! non-JSON lines) yields nothing; actions are taken from `item.completed` only, so a started and
//! a completed item never count twice.
//!
//! Why a top-level `error` is only a warning: codex prints one for every stream error, including
//! the transient "Reconnecting… n/5" ones after which the turn still completes, and it always
//! follows a fatal one with `turn.failed` carrying the same message. So `turn.failed` is the one
//! `Error` of a failed turn, and a recovered turn reports no `Error` at all.

use super::{Action, CommandSpec, RunSpec, TurnEvent, Usage};
use crate::config::Sandbox;
use serde_json::Value;
use std::path::Path;

/// Variables codex's shell tool must not pass on to the commands the agent runs: the account's
/// API key reaches codex itself (its provider's `env_key`), never the agent's shell.
const SHELL_EXCLUDES: &str = r#"shell_environment_policy.exclude=["*KEY*","*TOKEN*","*SECRET*","*PASSWORD*","*CREDENTIAL*"]"#;

/// The `exec` invocation for `spec`: the prompt goes on stdin (the argument `-` after `--` tells
/// codex to read it there), so it reaches the model verbatim whatever its size or leading dashes.
/// Options come before `resume <id>`; codex applies them to the resumed session. Images go as
/// `--image=<path>`, one word each: `-i` takes several values and would swallow `resume`. Codex
/// sends each as an `input_image` (a data URL) in the turn's user message.
pub fn command(spec: &RunSpec) -> CommandSpec {
    let sandbox = sandbox_name(spec.sandbox);
    let mut args: Vec<String> = vec![
        "exec".into(),
        "--json".into(),
        "--skip-git-repo-check".into(),
        "-c".into(),
        r#"approval_policy="never""#.into(),
        "-c".into(),
        format!(r#"sandbox_mode="{sandbox}""#),
        "-c".into(),
        SHELL_EXCLUDES.into(),
    ];
    if !spec.model.is_empty() {
        args.extend(["-m".into(), spec.model.clone()]);
    }
    for image in &spec.images {
        args.push(format!("--image={}", image.display()));
    }
    if let Some(schema) = &spec.output_schema {
        args.push(format!("--output-schema={}", schema.display()));
    }
    args.extend(spec.extra_args.iter().cloned());
    if let Some(id) = &spec.resume {
        args.extend(["resume".into(), id.clone()]);
    }
    args.extend(["--".into(), "-".into()]);
    let home = spec.home.display().to_string();
    CommandSpec {
        program: spec.binary.clone(),
        args,
        env: super::child_env(spec, vec![("CODEX_HOME", home.clone()), ("HOME", home)]),
        cwd: spec.workspace.clone(),
        stdin: Some(spec.prompt.clone()),
        confine: None,
    }
}

/// `codex app-server` for `spec`: the same `-c` policy and environment as `exec`, JSON-RPC on
/// stdio. The model, sandbox and working directory are set per thread and turn.
pub fn warm_command(spec: &RunSpec) -> CommandSpec {
    let sandbox = sandbox_name(spec.sandbox);
    let mut args: Vec<String> = vec![
        "app-server".into(),
        "-c".into(),
        r#"approval_policy="never""#.into(),
        "-c".into(),
        format!(r#"sandbox_mode="{sandbox}""#),
        "-c".into(),
        SHELL_EXCLUDES.into(),
    ];
    args.extend(spec.extra_args.iter().cloned());
    let home = spec.home.display().to_string();
    CommandSpec {
        program: spec.binary.clone(),
        args,
        env: super::child_env(spec, vec![("CODEX_HOME", home.clone()), ("HOME", home)]),
        cwd: spec.workspace.clone(),
        stdin: None,
        confine: None,
    }
}

/// codex's own sandbox, by the name its config and app-server use.
pub fn sandbox_name(sandbox: Sandbox) -> &'static str {
    match sandbox {
        Sandbox::WorkspaceWrite => "workspace-write",
        Sandbox::FullAccess => "danger-full-access",
    }
}

/// Creates the isolated `CODEX_HOME` (0700) with a `config.toml` that turns off the update check
/// and analytics; an existing `config.toml` is kept. The model provider comes from the operator's
/// `extra_args`/`env`, not from here.
pub fn prepare_home(home: &Path) -> std::io::Result<()> {
    super::private_dir(home)?;
    super::write_if_absent(
        &home.join("config.toml"),
        "check_for_update_on_startup = false\n\n[analytics]\nenabled = false\n",
    )
}

/// One stdout line of `codex exec --json` → its events (see the module table). Never panics.
pub fn parse_line(line: &str) -> Vec<TurnEvent> {
    let Ok(event) = serde_json::from_str::<Value>(line.trim()) else {
        return Vec::new();
    };
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    match text("/type").unwrap_or_default() {
        "thread.started" => text("/thread_id")
            .map(|id| vec![TurnEvent::SessionId(id.to_string())])
            .unwrap_or_default(),
        "item.completed" => event.get("item").map(completed_item).unwrap_or_default(),
        "error" => vec![TurnEvent::Warning(
            text("/message")
                .unwrap_or("codex reported an error")
                .to_string(),
        )],
        "turn.failed" => vec![TurnEvent::Error(
            text("/error/message")
                .unwrap_or("the codex turn failed")
                .to_string(),
        )],
        "turn.completed" => {
            let count = |key: &str| {
                event
                    .pointer(&format!("/usage/{key}"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            vec![
                TurnEvent::Usage(Usage {
                    prompt_tokens: count("input_tokens"),
                    completion_tokens: count("output_tokens"),
                    cached_tokens: count("cached_input_tokens"),
                }),
                TurnEvent::Completed,
            ]
        }
        _ => Vec::new(),
    }
}

fn completed_item(item: &Value) -> Vec<TurnEvent> {
    let text = |key: &str| item.get(key).and_then(Value::as_str);
    let status = text("status").unwrap_or_default();
    match text("type").unwrap_or_default() {
        "agent_message" => match text("text") {
            Some(t) if !t.is_empty() => vec![TurnEvent::Text(t.to_string())],
            _ => Vec::new(),
        },
        "file_change" => {
            let changes = item
                .get("changes")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let paths = changes.iter().filter_map(|c| {
                let kind = c.get("kind").and_then(Value::as_str);
                Some((c.get("path")?.as_str()?, kind.unwrap_or("write")))
            });
            file_change_events(status, paths)
        }
        "command_execution" if matches!(status, "completed" | "failed" | "declined") => {
            vec![command_event(
                status,
                text("command"),
                item.get("exit_code"),
            )]
        }
        "mcp_tool_call" => vec![TurnEvent::Action(Action::Tool {
            name: mcp_tool_name(text("server"), text("tool")),
            ok: status == "completed",
        })],
        "collab_tool_call" => vec![TurnEvent::Action(Action::Tool {
            name: text("tool").unwrap_or("collab_tool_call").to_string(),
            ok: status == "completed",
        })],
        "web_search" => vec![TurnEvent::Action(Action::Tool {
            name: "web_search".to_string(),
            ok: true,
        })],
        "error" => vec![TurnEvent::Warning(
            text("message")
                .unwrap_or("codex reported a problem")
                .to_string(),
        )],
        _ => Vec::new(),
    }
}

/// A finished patch's events: each changed file, or one warning naming them when the patch
/// failed. Shared by `codex exec --json` and the app-server, which name the fields apart.
pub fn file_change_events<'a>(
    status: &str,
    paths: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<TurnEvent> {
    match status {
        "completed" => paths
            .map(|(path, kind)| {
                TurnEvent::Action(Action::FileChange {
                    path: path.to_string(),
                    kind: kind.to_string(),
                })
            })
            .collect(),
        "failed" => {
            let names: Vec<&str> = paths.map(|(path, _)| path).collect();
            vec![TurnEvent::Warning(format!(
                "codex could not apply a patch to {}",
                names.join(", ")
            ))]
        }
        _ => Vec::new(),
    }
}

/// A finished shell command: ok only when it completed with exit code 0 (or none reported).
pub fn command_event(status: &str, command: Option<&str>, exit_code: Option<&Value>) -> TurnEvent {
    let exit_code = exit_code
        .and_then(Value::as_i64)
        .and_then(|c| i32::try_from(c).ok());
    TurnEvent::Action(Action::Command {
        command: command.unwrap_or_default().to_string(),
        exit_code,
        ok: status == "completed" && exit_code.is_none_or(|c| c == 0),
    })
}

/// The name an MCP tool call is reported under: `server.tool` when both are known.
pub fn mcp_tool_name(server: Option<&str>, tool: Option<&str>) -> String {
    match (server, tool) {
        (Some(server), Some(tool)) => format!("{server}.{tool}"),
        (None, Some(tool)) => tool.to_string(),
        _ => "mcp_tool_call".to_string(),
    }
}

/// A short explanation of a codex exit code: 1 means the turn failed (the reason is in the
/// `turn.failed` event or on stderr). `None` for 0 and for codes codex does not document.
pub fn exit_error(code: Option<i32>) -> Option<&'static str> {
    match code? {
        1 => Some("the codex turn failed"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{strings, text, usage};
    use std::path::PathBuf;

    fn check(input: &str, expected: &[TurnEvent]) {
        let events: Vec<TurnEvent> = input.lines().flat_map(parse_line).collect();
        assert_eq!(events, expected, "input:\n{input}");
    }

    fn session() -> TurnEvent {
        TurnEvent::SessionId("01a20d58-d578-72b2-81a3-53e737a22f78".into())
    }

    #[test]
    fn first_turn_sample() {
        check(
            include_str!("../../tests/fixtures/cli-samples/codex-1-first.jsonl"),
            &[
                session(),
                text("MOCK_REPLY n=1: Say hello (turn one)"),
                usage(9643, 10, 0),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn file_change_sample_counts_the_completed_item_once() {
        check(
            include_str!("../../tests/fixtures/cli-samples/codex-2-resume-write.jsonl"),
            &[
                session(),
                TurnEvent::Action(Action::FileChange {
                    path: "/tmp/e2e-codex-qqz7nkjm/ws/hello.txt".into(),
                    kind: "add".into(),
                }),
                text("MOCK_DONE after 1 tool call(s)"),
                usage(29258, 30, 0),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn shell_sample() {
        check(
            include_str!("../../tests/fixtures/cli-samples/codex-3-resume-shell.jsonl"),
            &[
                session(),
                TurnEvent::Action(Action::Command {
                    command: "/bin/bash -lc 'echo appended-by-shell >> hello.txt'".into(),
                    exit_code: Some(0),
                    ok: true,
                }),
                text("MOCK_DONE after 1 tool call(s)"),
                usage(49294, 50, 0),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn api_error_sample_yields_exactly_one_error() {
        let body = r#"{"error": {"message": "scripted failure", "type": "mock_error", "param": null, "code": "400"}}"#;
        check(
            include_str!("../../tests/fixtures/cli-samples/codex-4-resume-error400.jsonl"),
            &[
                session(),
                TurnEvent::Warning(body.into()),
                TurnEvent::Error(body.into()),
            ],
        );
    }

    #[test]
    fn unknown_model_notice_is_a_warning_not_a_failure() {
        check(
            include_str!("../../tests/fixtures/cli-samples/codex-unknown-model-slug.jsonl"),
            &[
                TurnEvent::SessionId("01a20d5a-42bd-7773-9b0b-454b3fd0bb38".into()),
                TurnEvent::Warning(
                    "Model metadata for `mock-model` not found. Defaulting to fallback metadata; \
                     this can degrade performance and cause issues."
                        .into(),
                ),
                text("MOCK_REPLY n=1: unknown model slug"),
                usage(10066, 10, 0),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn a_reconnect_error_before_a_completed_turn_is_not_fatal() {
        check(
            concat!(
                r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
                "\n",
                r#"{"type":"turn.completed","usage":{"input_tokens":7,"cached_input_tokens":3,"output_tokens":2}}"#,
            ),
            &[
                TurnEvent::Warning("Reconnecting... 1/5".into()),
                usage(7, 2, 3),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn failed_commands_patches_and_other_tools() {
        check(
            concat!(
                r#"{"type":"item.completed","item":{"id":"i","type":"command_execution","command":"false","aggregated_output":"","exit_code":1,"status":"failed"}}"#,
                "\n",
                r#"{"type":"item.completed","item":{"id":"i","type":"command_execution","command":"rm x","aggregated_output":"","exit_code":null,"status":"declined"}}"#,
                "\n",
                r#"{"type":"item.completed","item":{"id":"i","type":"file_change","changes":[{"path":"a","kind":"update"},{"path":"b","kind":"delete"}],"status":"completed"}}"#,
                "\n",
                r#"{"type":"item.completed","item":{"id":"i","type":"file_change","changes":[{"path":"c","kind":"add"}],"status":"failed"}}"#,
                "\n",
                r#"{"type":"item.completed","item":{"id":"i","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{},"status":"failed"}}"#,
                "\n",
                r#"{"type":"item.completed","item":{"id":"i","type":"web_search","query":"rust"}}"#,
                "\n",
                r#"{"type":"item.completed","item":{"id":"i","type":"reasoning","text":"thinking"}}"#,
                "\n",
                r#"{"type":"turn.failed","error":{}}"#,
            ),
            &[
                TurnEvent::Action(Action::Command {
                    command: "false".into(),
                    exit_code: Some(1),
                    ok: false,
                }),
                TurnEvent::Action(Action::Command {
                    command: "rm x".into(),
                    exit_code: None,
                    ok: false,
                }),
                TurnEvent::Action(Action::FileChange {
                    path: "a".into(),
                    kind: "update".into(),
                }),
                TurnEvent::Action(Action::FileChange {
                    path: "b".into(),
                    kind: "delete".into(),
                }),
                TurnEvent::Warning("codex could not apply a patch to c".into()),
                TurnEvent::Action(Action::Tool {
                    name: "docs.search".into(),
                    ok: false,
                }),
                TurnEvent::Action(Action::Tool {
                    name: "web_search".into(),
                    ok: true,
                }),
                TurnEvent::Error("the codex turn failed".into()),
            ],
        );
    }

    #[test]
    fn garbage_and_unknown_lines_yield_nothing() {
        for line in [
            "",
            "   ",
            "Reading additional input from stdin...",
            "{",
            "[1,2]",
            "42",
            r#"{"type":"turn.started"}"#,
            r#"{"type":"item.started","item":{"type":"command_execution","command":"ls","status":"in_progress"}}"#,
            r#"{"type":"item.completed"}"#,
            r#"{"type":"item.completed","item":7}"#,
            r#"{"type":"thread.started","thread_id":5}"#,
            r#"{"type":"future.event","x":1}"#,
            r#"{"no_type":true}"#,
        ] {
            assert_eq!(parse_line(line), Vec::new(), "{line:?}");
        }
    }

    fn spec() -> RunSpec {
        RunSpec {
            binary: PathBuf::from("/opt/bin/codex"),
            model: "gpt-5.5".into(),
            prompt: "Say hello".into(),
            resume: None,
            workspace: PathBuf::from("/data/ws/u1"),
            home: PathBuf::from("/data/homes/codex/default"),
            extra_args: vec!["-c".into(), "model_provider=mock".into()],
            extra_env: vec![("MOCK_API_KEY".into(), "dummy".into())],
            sandbox: Sandbox::WorkspaceWrite,
            path_env: "/usr/bin:/bin".into(),
            images: Vec::new(),
            confined: false,
            output_schema: None,
        }
    }

    #[test]
    fn first_turn_command() {
        let command = command(&spec());
        assert_eq!(command.program, PathBuf::from("/opt/bin/codex"));
        assert_eq!(
            command.args,
            strings(&[
                "exec",
                "--json",
                "--skip-git-repo-check",
                "-c",
                r#"approval_policy="never""#,
                "-c",
                r#"sandbox_mode="workspace-write""#,
                "-c",
                SHELL_EXCLUDES,
                "-m",
                "gpt-5.5",
                "-c",
                "model_provider=mock",
                "--",
                "-",
            ])
        );
        assert_eq!(command.cwd, PathBuf::from("/data/ws/u1"));
        assert_eq!(command.stdin.as_deref(), Some("Say hello"));
        let env: Vec<(&str, &str)> = command
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("PATH", "/usr/bin:/bin"),
                ("CODEX_HOME", "/data/homes/codex/default"),
                ("HOME", "/data/homes/codex/default"),
                ("PWD", "/data/ws/u1"),
                ("MOCK_API_KEY", "dummy"),
            ]
        );
    }

    #[test]
    fn images_and_the_output_schema_come_before_resume_one_word_each() {
        let mut spec = spec();
        spec.resume = Some("01a20d58".into());
        spec.extra_args.clear();
        spec.images = vec![
            PathBuf::from(".codara/attachments/0123456789abcdef.png"),
            PathBuf::from(".codara/attachments/fedcba9876543210.jpg"),
        ];
        spec.output_schema = Some(PathBuf::from("/data/run/tmp/run_1/output-schema.json"));
        let args = command(&spec).args;
        let tail: Vec<&str> = args.iter().skip(9).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "-m",
                "gpt-5.5",
                "--image=.codara/attachments/0123456789abcdef.png",
                "--image=.codara/attachments/fedcba9876543210.jpg",
                "--output-schema=/data/run/tmp/run_1/output-schema.json",
                "resume",
                "01a20d58",
                "--",
                "-",
            ]
        );
    }

    #[test]
    fn resume_command_puts_options_before_resume_and_the_prompt_last() {
        let mut spec = spec();
        spec.resume = Some("01a20d58-d578-72b2-81a3-53e737a22f78".into());
        spec.sandbox = Sandbox::FullAccess;
        spec.model = String::new();
        spec.prompt = "resume".into();
        assert_eq!(
            command(&spec).args,
            strings(&[
                "exec",
                "--json",
                "--skip-git-repo-check",
                "-c",
                r#"approval_policy="never""#,
                "-c",
                r#"sandbox_mode="danger-full-access""#,
                "-c",
                SHELL_EXCLUDES,
                "-c",
                "model_provider=mock",
                "resume",
                "01a20d58-d578-72b2-81a3-53e737a22f78",
                "--",
                "-",
            ])
        );
    }

    #[test]
    fn any_prompt_goes_through_stdin_never_argv() {
        let mut spec = spec();
        for prompt in ["-", "--help", &"x".repeat(300_000)] {
            spec.prompt = prompt.to_string();
            let command = command(&spec);
            assert!(command.args.iter().all(|a| a.len() < 200), "{prompt:.20}");
            assert_eq!(command.stdin.as_deref(), Some(prompt));
        }
    }

    #[test]
    fn configured_env_overrides_the_defaults() {
        let mut spec = spec();
        spec.extra_env = vec![
            ("HOME".into(), "/elsewhere".into()),
            ("PWD".into(), "/other".into()),
        ];
        let env = command(&spec).env;
        let get = |key: &str| {
            let values: Vec<&str> = env
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect();
            values
        };
        assert_eq!(get("HOME"), ["/elsewhere"]);
        assert_eq!(get("PWD"), ["/other"]);
        assert_eq!(get("CODEX_HOME"), ["/data/homes/codex/default"]);
        assert_eq!(env.len(), 4);
    }

    #[test]
    fn prepare_home_writes_config_once_and_keeps_edits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-codex-home-"));
        let _ = std::fs::remove_dir_all(&dir);
        let home = dir.join("homes/codex/default");
        prepare_home(&home).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&home), 0o700);
        assert_eq!(mode(&home.join("config.toml")), 0o600);
        let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
        let parsed: toml::Table = config.parse().unwrap();
        assert_eq!(parsed["check_for_update_on_startup"].as_bool(), Some(false));
        assert_eq!(parsed["analytics"]["enabled"].as_bool(), Some(false));
        std::fs::write(home.join("config.toml"), "model = \"x\"\n").unwrap();
        prepare_home(&home).unwrap();
        assert_eq!(
            std::fs::read_to_string(home.join("config.toml")).unwrap(),
            "model = \"x\"\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_error(Some(0)), None);
        assert_eq!(exit_error(None), None);
        assert!(exit_error(Some(1)).is_some());
        assert_eq!(exit_error(Some(2)), None);
    }
}
