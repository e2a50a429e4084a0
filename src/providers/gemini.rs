//! The gemini CLI: command lines and the pure parser of its JSON-lines output.
//!
//! `gemini --output-format stream-json` prints one event per line (see `real-clis.md` §4):
//!
//! | line | events |
//! |---|---|
//! | `init` | `SessionId(session_id)` |
//! | `message`, role `assistant` | `Text(content)` (one per streamed chunk) |
//! | `tool_use` `write_file` | `FileChange { path: parameters.file_path, kind: "write" }` |
//! | `tool_use` `replace` | `FileChange { path: parameters.file_path, kind: "update" }` |
//! | `tool_use` `run_shell_command` | `Command { command, exit_code: None, ok: true }` |
//! | `tool_use`, any other tool | `Tool { name, ok: true }` |
//! | `tool_result`, status `error` | `Warning` with the tool's error message |
//! | `error` (either severity) | `Warning(message)` |
//! | `result`, status `success` | `Usage`, then `Completed` |
//! | `result`, status `error` | `Usage`, then `Error(error.message)` |
//!
//! Anything else (user `message`s, successful `tool_result`s, non-JSON lines) yields nothing.
//!
//! The parser is pure, so an action is reported when the tool is *called*: a call that then
//! fails still shows as an action, followed by the `Warning` of its `tool_result`. Gemini's own
//! `error` events are warnings because they are not terminal (a quota notice may be retried, a
//! turn-limit notice is followed by a successful `result`); the `result` event decides. A failed
//! `result` without a message (gemini's "invalid stream" path) still yields one `Error`, with a
//! generic text; the specific message is in the `Warning` just before it.

use super::{Action, CommandSpec, RunSpec, TurnEvent, Usage};
use serde_json::Value;
use std::path::Path;

/// The settings gemini needs to run headless with an API key: the auth type must be chosen, or
/// 0.61 picks `gateway` when `GOOGLE_GEMINI_BASE_URL` is set and then rejects it (exit 41).
const SETTINGS: &str = r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false}}"#;

/// The headless invocation for `spec`. The prompt goes on stdin with an empty `--prompt=`: gemini
/// runs headless and takes a piped stdin as the prompt, verbatim (an argv word would be bounded by
/// the kernel's argument limit). `--yolo` is used in both sandbox modes: without it gemini leaves
/// its write and shell tools out of the headless tool list. Gemini has no image flag: images are
/// named after the prompt ([`with_images`]).
pub fn command(spec: &RunSpec) -> CommandSpec {
    let mut args: Vec<String> = vec![
        "--output-format".into(),
        "stream-json".into(),
        "--yolo".into(),
    ];
    if !spec.model.is_empty() {
        args.extend(["-m".into(), spec.model.clone()]);
    }
    if let Some(id) = &spec.resume {
        args.extend(["--resume".into(), id.clone()]);
    }
    args.extend(spec.extra_args.iter().cloned());
    args.push("--prompt=".into());
    let home = spec.home.display().to_string();
    CommandSpec {
        program: spec.binary.clone(),
        args,
        env: super::child_env(
            spec,
            vec![
                ("GEMINI_CLI_HOME", home.clone()),
                ("HOME", home),
                ("GEMINI_CLI_TRUST_WORKSPACE", "true".into()),
                ("GEMINI_CLI_NO_RELAUNCH", "true".into()),
            ],
        ),
        cwd: spec.workspace.clone(),
        stdin: Some(with_images(&spec.prompt, &spec.images, spec.confined)),
        confine: None,
    }
}

/// `gemini --acp --yolo` for `spec` (the same environment as a `-p` run): the Agent Client
/// Protocol on stdio, tools approved (approvals are off; Landlock confines), `-m` the model
/// new sessions start on.
pub fn warm_command(spec: &RunSpec) -> CommandSpec {
    let mut args: Vec<String> = vec!["--acp".into(), "--yolo".into()];
    if !spec.model.is_empty() {
        args.extend(["-m".into(), spec.model.clone()]);
    }
    args.extend(spec.extra_args.iter().cloned());
    let home = spec.home.display().to_string();
    CommandSpec {
        program: spec.binary.clone(),
        args,
        env: super::child_env(
            spec,
            vec![
                ("GEMINI_CLI_HOME", home.clone()),
                ("HOME", home),
                ("GEMINI_CLI_TRUST_WORKSPACE", "true".into()),
                ("GEMINI_CLI_NO_RELAUNCH", "true".into()),
            ],
        ),
        cwd: spec.workspace.clone(),
        stdin: None,
        confine: None,
    }
}

/// `prompt` followed by the images. Unconfined: one `@<path>` reference each (workspace-relative,
/// spaces escaped as gemini's `@` syntax wants); gemini inlines each as an `inlineData` part, but
/// skips a git-ignored file. Confined: gemini 0.61 cannot resolve any `@` reference under
/// Landlock (its `read_many_files` globs the absolute path case-insensitively from `/`, which
/// the allow-list does not let it list, and reports "No files matching the criteria"), so the
/// model is told where the images are instead and reads them with its `read_file` tool, whose
/// result carries the image as `inlineData`.
pub fn with_images(prompt: &str, images: &[std::path::PathBuf], confined: bool) -> String {
    if images.is_empty() {
        return prompt.to_string();
    }
    let paths: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    if confined {
        return format!(
            "{prompt}\n\nAttached image(s), saved in the workspace: {}. Open each with your \
             read_file tool to see it.",
            paths.join(", ")
        );
    }
    let references: Vec<String> = paths
        .iter()
        .map(|p| format!("@{}", p.replace(' ', "\\ ")))
        .collect();
    format!("{prompt}\n\n{}", references.join(" "))
}

/// Creates the isolated `GEMINI_CLI_HOME` (0700) with `settings.json` both in `.gemini/` (read by
/// everything) and at the top (read by the early relaunch memory check); existing files are kept.
pub fn prepare_home(home: &Path) -> std::io::Result<()> {
    super::private_dir(home)?;
    super::private_dir(&home.join(".gemini"))?;
    super::write_if_absent(&home.join(".gemini").join("settings.json"), SETTINGS)?;
    super::write_if_absent(&home.join("settings.json"), SETTINGS)
}

/// One stdout line of `gemini --output-format stream-json` → its events (see the module table).
/// Never panics.
pub fn parse_line(line: &str) -> Vec<TurnEvent> {
    let Ok(event) = serde_json::from_str::<Value>(line.trim()) else {
        return Vec::new();
    };
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    match text("/type").unwrap_or_default() {
        "init" => text("/session_id")
            .map(|id| vec![TurnEvent::SessionId(id.to_string())])
            .unwrap_or_default(),
        "message" if text("/role") == Some("assistant") => match text("/content") {
            Some(content) if !content.is_empty() => vec![TurnEvent::Text(content.to_string())],
            _ => Vec::new(),
        },
        "tool_use" => {
            let Some(name) = text("/tool_name") else {
                return Vec::new();
            };
            let action = match (name, text("/parameters/file_path")) {
                ("write_file", Some(path)) => Action::FileChange {
                    path: path.to_string(),
                    kind: "write".to_string(),
                },
                ("replace", Some(path)) => Action::FileChange {
                    path: path.to_string(),
                    kind: "update".to_string(),
                },
                ("run_shell_command", _) => Action::Command {
                    command: text("/parameters/command").unwrap_or_default().to_string(),
                    exit_code: None,
                    ok: true,
                },
                _ => Action::Tool {
                    name: name.to_string(),
                    ok: true,
                },
            };
            vec![TurnEvent::Action(action)]
        }
        "tool_result" if text("/status") == Some("error") => {
            // Tool ids look like `<tool>__<tool>_<millis>_<n>`; name the tool when we can.
            let id = text("/tool_id").unwrap_or("a tool");
            let tool = id.split("__").next().unwrap_or(id);
            let message = text("/error/message")
                .or(text("/output"))
                .filter(|m| !m.is_empty())
                .unwrap_or("no details");
            vec![TurnEvent::Warning(format!(
                "gemini tool {tool} failed: {message}"
            ))]
        }
        "error" => vec![TurnEvent::Warning(
            text("/message")
                .unwrap_or("gemini reported an error")
                .to_string(),
        )],
        "result" => {
            let mut events = Vec::new();
            if let Some(stats) = event.get("stats") {
                let count = |key: &str| stats.get(key).and_then(Value::as_u64).unwrap_or(0);
                events.push(TurnEvent::Usage(Usage {
                    prompt_tokens: count("input_tokens"),
                    completion_tokens: count("output_tokens"),
                    cached_tokens: count("cached"),
                }));
            }
            if text("/status") == Some("success") {
                events.push(TurnEvent::Completed);
            } else {
                let message =
                    text("/error/message").unwrap_or("the gemini turn ended with an error");
                events.push(TurnEvent::Error(message.to_string()));
            }
            events
        }
        _ => Vec::new(),
    }
}

/// A short explanation of a gemini exit code (its documented fatal codes, plus 144 which 0.61
/// returns for an API error). `None` for 0 and for unknown codes.
pub fn exit_error(code: Option<i32>) -> Option<&'static str> {
    match code? {
        1 => Some("the gemini turn failed"),
        41 => Some("gemini authentication failed (check the API key or login and settings.json)"),
        42 => Some("gemini rejected its input"),
        44 => Some("gemini could not set up its sandbox"),
        52 => Some("gemini's configuration is invalid"),
        53 => Some("gemini reached its session turn limit"),
        54 => Some("a gemini tool failed fatally"),
        55 => Some("gemini does not trust the workspace folder"),
        130 => Some("the gemini turn was cancelled"),
        144 => Some("the model API returned an error"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sandbox;
    use crate::providers::testing::{strings, text, usage};
    use std::path::PathBuf;

    fn check(input: &str, expected: &[TurnEvent]) {
        let events: Vec<TurnEvent> = input.lines().flat_map(parse_line).collect();
        assert_eq!(events, expected, "input:\n{input}");
    }

    fn session() -> TurnEvent {
        TurnEvent::SessionId("8d828a71-1f2d-48ed-aafd-a6b4a4be7283".into())
    }

    fn done_after_one_tool() -> [TurnEvent; 3] {
        [text("MOCK_DONE "), text("after 1 to"), text("ol call(s)")]
    }

    #[test]
    fn first_turn_sample_streams_deltas_and_skips_the_user_echo() {
        check(
            include_str!("../../tests/fixtures/cli-samples/gemini-1-first.jsonl"),
            &[
                session(),
                text("MOCK_REPLY n"),
                text("=1: Say hell"),
                text("o (turn one)"),
                usage(181, 10, 0),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn write_sample() {
        let mut expected = vec![
            session(),
            TurnEvent::Action(Action::FileChange {
                path: "hello.txt".into(),
                kind: "write".into(),
            }),
        ];
        expected.extend(done_after_one_tool());
        expected.extend([usage(594, 20, 0), TurnEvent::Completed]);
        check(
            include_str!("../../tests/fixtures/cli-samples/gemini-2-resume-write.jsonl"),
            &expected,
        );
    }

    #[test]
    fn shell_sample() {
        let mut expected = vec![
            session(),
            TurnEvent::Action(Action::Command {
                command: "echo appended-by-shell >> hello.txt".into(),
                exit_code: None,
                ok: true,
            }),
        ];
        expected.extend(done_after_one_tool());
        expected.extend([usage(1048, 20, 0), TurnEvent::Completed]);
        check(
            include_str!("../../tests/fixtures/cli-samples/gemini-3-resume-shell.jsonl"),
            &expected,
        );
    }

    #[test]
    fn api_error_sample() {
        check(
            include_str!("../../tests/fixtures/cli-samples/gemini-4-resume-error400.jsonl"),
            &[
                session(),
                usage(0, 0, 0),
                TurnEvent::Error(
                    r#"[API Error: {"error":{"code":400,"message":"scripted failure","status":"INVALID_ARGUMENT"}}]"#
                        .into(),
                ),
            ],
        );
    }

    #[test]
    fn the_json_output_format_is_not_parsed_as_events() {
        // `--output-format json` prints one pretty object; we always ask for stream-json.
        check(
            include_str!("../../tests/fixtures/cli-samples/gemini-output-format-json.json"),
            &[],
        );
    }

    #[test]
    fn replace_other_tools_failures_and_warnings() {
        check(
            concat!(
                r#"{"type":"tool_use","tool_name":"replace","tool_id":"replace__replace_1_0","parameters":{"file_path":"/ws/a.rs","old_string":"a","new_string":"b"}}"#,
                "\n",
                r#"{"type":"tool_result","tool_id":"replace__replace_1_0","status":"error","output":"","error":{"type":"EDIT_NO_OCCURRENCE_FOUND","message":"0 occurrences found"}}"#,
                "\n",
                r#"{"type":"tool_use","tool_name":"read_file","tool_id":"read_file__read_file_2_0","parameters":{"file_path":"a.rs"}}"#,
                "\n",
                r#"{"type":"tool_use","tool_name":"write_file","tool_id":"w","parameters":{}}"#,
                "\n",
                r#"{"type":"tool_result","tool_id":"w","status":"error"}"#,
                "\n",
                r#"{"type":"error","severity":"warning","message":"Agent execution blocked: policy"}"#,
                "\n",
                r#"{"type":"message","role":"assistant","content":""}"#,
                "\n",
                r#"{"type":"result","status":"error","stats":{"input_tokens":5,"output_tokens":1,"cached":2}}"#,
            ),
            &[
                TurnEvent::Action(Action::FileChange {
                    path: "/ws/a.rs".into(),
                    kind: "update".into(),
                }),
                TurnEvent::Warning("gemini tool replace failed: 0 occurrences found".into()),
                TurnEvent::Action(Action::Tool {
                    name: "read_file".into(),
                    ok: true,
                }),
                TurnEvent::Action(Action::Tool {
                    name: "write_file".into(),
                    ok: true,
                }),
                TurnEvent::Warning("gemini tool w failed: no details".into()),
                TurnEvent::Warning("Agent execution blocked: policy".into()),
                usage(5, 1, 2),
                TurnEvent::Error("the gemini turn ended with an error".into()),
            ],
        );
    }

    #[test]
    fn garbage_and_unknown_lines_yield_nothing() {
        for line in [
            "",
            "YOLO mode is enabled. All tool calls will be automatically approved.",
            "{",
            "null",
            r#"{"type":"message","role":"user","content":"hi"}"#,
            r#"{"type":"tool_result","tool_id":"x","status":"success","output":""}"#,
            r#"{"type":"tool_use","parameters":{}}"#,
            r#"{"type":"init","session_id":null}"#,
            r#"{"type":"something_new"}"#,
        ] {
            assert_eq!(parse_line(line), Vec::new(), "{line:?}");
        }
    }

    fn spec() -> RunSpec {
        RunSpec {
            binary: PathBuf::from("/opt/bin/gemini"),
            model: "gemini-2.5-flash".into(),
            prompt: "-x \"quoted\" word".into(),
            resume: None,
            workspace: PathBuf::from("/data/ws/u1"),
            home: PathBuf::from("/data/homes/gemini/default"),
            extra_args: vec!["--skip-trust".into()],
            extra_env: vec![("GEMINI_API_KEY".into(), "dummy".into())],
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
        assert_eq!(command.program, PathBuf::from("/opt/bin/gemini"));
        assert_eq!(
            command.args,
            strings(&[
                "--output-format",
                "stream-json",
                "--yolo",
                "-m",
                "gemini-2.5-flash",
                "--skip-trust",
                "--prompt=",
            ])
        );
        assert_eq!(command.cwd, PathBuf::from("/data/ws/u1"));
        assert_eq!(command.stdin.as_deref(), Some("-x \"quoted\" word"));
        let env: Vec<(&str, &str)> = command
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("PATH", "/usr/bin:/bin"),
                ("GEMINI_CLI_HOME", "/data/homes/gemini/default"),
                ("HOME", "/data/homes/gemini/default"),
                ("GEMINI_CLI_TRUST_WORKSPACE", "true"),
                ("GEMINI_CLI_NO_RELAUNCH", "true"),
                ("PWD", "/data/ws/u1"),
                ("GEMINI_API_KEY", "dummy"),
            ]
        );
    }

    fn command_stdin(spec: &RunSpec) -> String {
        command(spec).stdin.unwrap_or_default()
    }

    #[test]
    fn images_are_at_references_after_the_prompt() {
        let mut spec = spec();
        spec.prompt = "what is this?".into();
        spec.images = vec![
            PathBuf::from(".codara/attachments/0123456789abcdef.png"),
            PathBuf::from("odd dir/a b.gif"),
        ];
        let command = command(&spec);
        assert_eq!(
            command.stdin.as_deref(),
            Some("what is this?\n\n@.codara/attachments/0123456789abcdef.png @odd\\ dir/a\\ b.gif")
        );
        assert_eq!(command.args.last().map(String::as_str), Some("--prompt="));
        assert_eq!(with_images("plain", &spec.images[..0], true), "plain");
        // Confined, gemini cannot resolve `@` references: the model is told to read the files.
        spec.confined = true;
        spec.images.truncate(1);
        assert_eq!(
            command_stdin(&spec),
            "what is this?\n\nAttached image(s), saved in the workspace: \
             .codara/attachments/0123456789abcdef.png. Open each with your read_file tool to see it."
        );
    }

    #[test]
    fn resume_command_and_full_access_still_use_yolo() {
        let mut spec = spec();
        spec.resume = Some("8d828a71-1f2d-48ed-aafd-a6b4a4be7283".into());
        spec.sandbox = Sandbox::FullAccess;
        spec.extra_args.clear();
        spec.model = String::new();
        spec.prompt = "next".into();
        assert_eq!(
            command(&spec).args,
            strings(&[
                "--output-format",
                "stream-json",
                "--yolo",
                "--resume",
                "8d828a71-1f2d-48ed-aafd-a6b4a4be7283",
                "--prompt=",
            ])
        );
    }

    #[test]
    fn configured_env_overrides_the_defaults() {
        let mut spec = spec();
        spec.extra_env = vec![("GEMINI_CLI_NO_RELAUNCH".into(), "false".into())];
        let env = command(&spec).env;
        let relaunch: Vec<&str> = env
            .iter()
            .filter(|(k, _)| k == "GEMINI_CLI_NO_RELAUNCH")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(relaunch, ["false"]);
        assert_eq!(env.len(), 6);
    }

    #[test]
    fn prepare_home_writes_both_settings_files_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-gemini-home-"));
        let home = dir.join("default");
        prepare_home(&home).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&home), 0o700);
        assert_eq!(mode(&home.join(".gemini")), 0o700);
        for file in [
            home.join(".gemini/settings.json"),
            home.join("settings.json"),
        ] {
            assert_eq!(mode(&file), 0o600);
            let settings: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            assert_eq!(
                settings.pointer("/security/auth/selectedType"),
                Some(&Value::from("gemini-api-key"))
            );
            assert_eq!(
                settings.pointer("/privacy/usageStatisticsEnabled"),
                Some(&Value::from(false))
            );
        }
        std::fs::write(home.join("settings.json"), "{}").unwrap();
        prepare_home(&home).unwrap();
        assert_eq!(
            std::fs::read_to_string(home.join("settings.json")).unwrap(),
            "{}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_error(Some(0)), None);
        assert_eq!(exit_error(None), None);
        for code in [41, 55, 144] {
            assert!(exit_error(Some(code)).is_some(), "{code}");
        }
        assert!(exit_error(Some(41)).unwrap().contains("auth"));
        assert!(exit_error(Some(55)).unwrap().contains("trust"));
        assert!(exit_error(Some(144)).unwrap().contains("API"));
        assert_eq!(exit_error(Some(7)), None);
    }
}
