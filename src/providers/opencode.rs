//! The opencode CLI: command lines and the pure parser of its JSON-lines output.
//!
//! `opencode run --format json` prints one event per line, each with the session id (see
//! `real-clis.md` §5). There is no start or end event: the turn ends when the process exits, and
//! its last `step_finish` has reason `stop`.
//!
//! | line | events |
//! |---|---|
//! | any line with `sessionID` | `SessionId` first (every time; the caller keeps the first) |
//! | `text` | `Text(part.text)` (a whole part; opencode sends no deltas) |
//! | `tool_use` `write`, completed | `FileChange` (`add`/`update` from `metadata.exists`, else `write`) |
//! | `tool_use` `edit`, completed | `FileChange { kind: "update" }` |
//! | `tool_use` `apply_patch`, completed | one `FileChange` per `metadata.files` entry |
//! | `tool_use` `bash` | `Command { command, exit_code: metadata.exit, ok }` |
//! | `tool_use`, any other tool (or a failed file tool) | `Tool { name, ok }` |
//! | `step_finish` | `Usage`, plus `Completed` when the reason is `stop` |
//! | `error` | `Error(error.data.message, else error.name)` |
//!
//! `ok` is `state.status == "completed"`, and for `bash` also a zero (or absent) exit code:
//! opencode reports a command that exited non-zero as a completed tool call. A file-change path
//! is `metadata.filepath` (absolute) when present, else `input.filePath` as the model wrote it.
//!
//! Usage: opencode splits its counts (`input` excludes cache reads and writes, `output` excludes
//! reasoning), while codex and gemini report inclusive totals. To keep [`Usage`] one meaning
//! across providers, `prompt_tokens = input + cache.read + cache.write`,
//! `completion_tokens = output + reasoning`, `cached_tokens = cache.read`.

use super::{Action, CommandSpec, RunSpec, TurnEvent, Usage};
use serde_json::Value;
use std::path::Path;

/// The global config written into the isolated home: no update checks, no sharing, no snapshots
/// of its own (Codara snapshots every turn; opencode's cost each step a git run), and tools
/// allowed (a headless `run` auto-rejects any permission ask it is not told to allow). Paths
/// outside the workspace are allowed too: Codara's Landlock allow-list is the boundary, and
/// agents need to read system files (headers, manuals) like any developer.
const CONFIG: &str = r#"{"$schema":"https://opencode.ai/config.json","autoupdate":false,"share":"disabled","snapshot":false,"permission":{"edit":"allow","bash":"allow","webfetch":"allow","external_directory":"allow"}}"#;

/// The `run` invocation for `spec`. The prompt goes on stdin, verbatim: opencode quotes any argv
/// word containing a space before sending it. `-m` is passed only for a `provider/model` id (any
/// other name is left to the configured default). `PWD` is the workspace, because opencode takes
/// its project directory from `$PWD`, not from the process's working directory. Images go as
/// `--file=<path>`, one word each; opencode reads them with its `read` tool and sends an
/// `image_url` part, but only for a model whose `modalities.input` lists `image` (otherwise the
/// model sees "this model does not support image input").
pub fn command(spec: &RunSpec) -> CommandSpec {
    let mut args: Vec<String> = vec!["run".into(), "--format".into(), "json".into()];
    if spec.model.contains('/') {
        args.extend(["-m".into(), spec.model.clone()]);
    }
    if let Some(id) = &spec.resume {
        args.extend(["--session".into(), id.clone()]);
    }
    for image in &spec.images {
        args.push(format!("--file={}", image.display()));
    }
    args.extend(spec.extra_args.iter().cloned());
    let home = &spec.home;
    let under = |dir: &str| home.join(dir).display().to_string();
    CommandSpec {
        program: spec.binary.clone(),
        args,
        env: super::child_env(
            spec,
            vec![
                ("HOME", home.display().to_string()),
                ("XDG_CONFIG_HOME", under("config")),
                ("XDG_DATA_HOME", under("data")),
                ("XDG_CACHE_HOME", under("cache")),
                ("XDG_STATE_HOME", under("state")),
                ("OPENCODE_DISABLE_MODELS_FETCH", "1".into()),
                ("OPENCODE_DISABLE_AUTOUPDATE", "1".into()),
            ],
        ),
        cwd: spec.workspace.clone(),
        stdin: Some(spec.prompt.clone()),
        confine: None,
    }
}

/// `opencode acp` for `spec` (the same environment as `opencode run`): the Agent Client
/// Protocol on stdio; the model is set per session.
pub fn warm_command(spec: &RunSpec) -> CommandSpec {
    let mut command = command(spec);
    command.args = vec!["acp".into()];
    command.args.extend(spec.extra_args.iter().cloned());
    command.stdin = None;
    command
}

/// Creates the isolated home (0700) with its four XDG directories and
/// `config/opencode/opencode.json`; an existing config file is kept.
pub fn prepare_home(home: &Path) -> std::io::Result<()> {
    super::private_dir(home)?;
    for dir in ["config", "config/opencode", "data", "cache", "state"] {
        super::private_dir(&home.join(dir))?;
    }
    super::write_if_absent(&home.join("config/opencode/opencode.json"), CONFIG)
}

/// One stdout line of `opencode run --format json` → its events (see the module table). Never
/// panics.
pub fn parse_line(line: &str) -> Vec<TurnEvent> {
    let Ok(event) = serde_json::from_str::<Value>(line.trim()) else {
        return Vec::new();
    };
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    let mut events = Vec::new();
    if let Some(id) = text("/sessionID").or(text("/part/sessionID")) {
        events.push(TurnEvent::SessionId(id.to_string()));
    }
    match text("/type").unwrap_or_default() {
        "text" => {
            if let Some(t) = text("/part/text").filter(|t| !t.is_empty()) {
                events.push(TurnEvent::Text(t.to_string()));
            }
        }
        "tool_use" => {
            if let Some(part) = event.get("part") {
                events.extend(tool_use(part));
            }
        }
        "step_finish" => {
            let count = |key: &str| {
                event
                    .pointer(&format!("/part/tokens/{key}"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            events.push(TurnEvent::Usage(Usage {
                prompt_tokens: count("input") + count("cache/read") + count("cache/write"),
                completion_tokens: count("output") + count("reasoning"),
                cached_tokens: count("cache/read"),
            }));
            if text("/part/reason") == Some("stop") {
                events.push(TurnEvent::Completed);
            }
        }
        "error" => {
            let message = text("/error/data/message")
                .filter(|m| !m.is_empty())
                .or(text("/error/name"))
                .unwrap_or("opencode reported an error");
            events.push(TurnEvent::Error(message.to_string()));
        }
        _ => {}
    }
    events
}

fn tool_use(part: &Value) -> Vec<TurnEvent> {
    let text = |pointer: &str| part.pointer(pointer).and_then(Value::as_str);
    let Some(name) = text("/tool") else {
        return Vec::new();
    };
    let status = text("/state/status").unwrap_or_default();
    if !matches!(status, "completed" | "error") {
        return Vec::new(); // `run` prints finished calls only; ignore anything still running.
    }
    let completed = status == "completed";
    let path = text("/state/metadata/filepath").or(text("/state/input/filePath"));
    let change = |path: &str, kind: &str| {
        TurnEvent::Action(Action::FileChange {
            path: path.to_string(),
            kind: kind.to_string(),
        })
    };
    match (name, path) {
        ("write", Some(path)) if completed => {
            let kind = match part
                .pointer("/state/metadata/exists")
                .and_then(Value::as_bool)
            {
                Some(true) => "update",
                Some(false) => "add",
                None => "write",
            };
            vec![change(path, kind)]
        }
        ("edit", Some(path)) if completed => vec![change(path, "update")],
        ("apply_patch" | "patch", _) if completed => {
            let files = part
                .pointer("/state/metadata/files")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let changes: Vec<TurnEvent> = files
                .iter()
                .filter_map(|file| {
                    let path = file.get("filePath").and_then(Value::as_str)?;
                    let kind = match file.get("type").and_then(Value::as_str) {
                        Some("add") => "add",
                        Some("delete") => "delete",
                        _ => "update",
                    };
                    Some(change(path, kind))
                })
                .collect();
            if changes.is_empty() {
                vec![tool(name, true)]
            } else {
                changes
            }
        }
        ("bash", _) => {
            let exit_code = part
                .pointer("/state/metadata/exit")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok());
            vec![TurnEvent::Action(Action::Command {
                command: text("/state/input/command").unwrap_or_default().to_string(),
                exit_code,
                ok: completed && exit_code.is_none_or(|c| c == 0),
            })]
        }
        _ => vec![tool(name, completed)],
    }
}

fn tool(name: &str, ok: bool) -> TurnEvent {
    TurnEvent::Action(Action::Tool {
        name: name.to_string(),
        ok,
    })
}

/// A short explanation of an opencode exit code: 1 means the turn failed (the reason is in the
/// `error` event or on stderr). `None` for 0 and for other codes.
pub fn exit_error(code: Option<i32>) -> Option<&'static str> {
    match code? {
        1 => Some("the opencode turn failed"),
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
        TurnEvent::SessionId("ses_df2a7115affes53mLDcuFZ66hD".into())
    }

    #[test]
    fn first_turn_sample() {
        check(
            include_str!("../../tests/fixtures/cli-samples/opencode-1-first.jsonl"),
            &[
                session(),
                session(),
                text("MOCK_REPLY n=1: Say hello (turn one)"),
                session(),
                usage(2450, 10, 0),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn write_sample_is_an_add_with_the_absolute_path() {
        check(
            include_str!("../../tests/fixtures/cli-samples/opencode-2-resume-write.jsonl"),
            &[
                session(),
                session(),
                TurnEvent::Action(Action::FileChange {
                    path: "/tmp/e2e-opencode-d_au7jv7/ws/hello.txt".into(),
                    kind: "add".into(),
                }),
                session(),
                usage(2500, 10, 0),
                session(),
                session(),
                text("MOCK_DONE after 1 tool call(s)"),
                session(),
                usage(2578, 10, 0),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn shell_sample() {
        check(
            include_str!("../../tests/fixtures/cli-samples/opencode-3-resume-shell.jsonl"),
            &[
                session(),
                session(),
                TurnEvent::Action(Action::Command {
                    command: "echo appended-by-shell >> hello.txt".into(),
                    exit_code: Some(0),
                    ok: true,
                }),
                session(),
                usage(2620, 10, 0),
                session(),
                session(),
                text("MOCK_DONE after 1 tool call(s)"),
                session(),
                usage(2700, 10, 0),
                TurnEvent::Completed,
            ],
        );
    }

    #[test]
    fn api_error_sample() {
        check(
            include_str!("../../tests/fixtures/cli-samples/opencode-4-resume-error400.jsonl"),
            &[session(), TurnEvent::Error("scripted failure".into())],
        );
    }

    #[test]
    fn other_tools_failures_edits_patches_and_split_usage() {
        check(
            concat!(
                r#"{"type":"tool_use","part":{"type":"tool","tool":"edit","state":{"status":"completed","input":{"filePath":"src/a.rs","oldString":"a","newString":"b"},"metadata":{}}}}"#,
                "\n",
                r#"{"type":"tool_use","part":{"type":"tool","tool":"write","state":{"status":"completed","input":{"filePath":"b.txt","content":"x"},"metadata":{"filepath":"/ws/b.txt","exists":true}}}}"#,
                "\n",
                r#"{"type":"tool_use","part":{"type":"tool","tool":"write","state":{"status":"error","input":{"filePath":"c.txt"},"error":"denied"}}}"#,
                "\n",
                r#"{"type":"tool_use","part":{"type":"tool","tool":"apply_patch","state":{"status":"completed","input":{},"metadata":{"files":[{"filePath":"/ws/n.rs","type":"add"},{"filePath":"/ws/o.rs","type":"move"},{"filePath":"/ws/p.rs","type":"delete"}]}}}}"#,
                "\n",
                r#"{"type":"tool_use","part":{"type":"tool","tool":"bash","state":{"status":"completed","input":{"command":"false"},"metadata":{"exit":1}}}}"#,
                "\n",
                r#"{"type":"tool_use","part":{"type":"tool","tool":"bash","state":{"status":"error","input":{"command":"sleep 999"},"error":"aborted"}}}"#,
                "\n",
                r#"{"type":"tool_use","part":{"type":"tool","tool":"grep","state":{"status":"completed","input":{"pattern":"x"}}}}"#,
                "\n",
                r#"{"type":"tool_use","part":{"type":"tool","tool":"webfetch","state":{"status":"running","input":{}}}}"#,
                "\n",
                r#"{"type":"reasoning","part":{"type":"reasoning","text":"hmm"}}"#,
                "\n",
                r#"{"type":"step_finish","part":{"reason":"length","tokens":{"input":100,"output":20,"reasoning":5,"cache":{"read":40,"write":3}}}}"#,
                "\n",
                r#"{"type":"error","error":{"name":"ProviderAuthError","data":{"providerID":"mock"}}}"#,
            ),
            &[
                TurnEvent::Action(Action::FileChange {
                    path: "src/a.rs".into(),
                    kind: "update".into(),
                }),
                TurnEvent::Action(Action::FileChange {
                    path: "/ws/b.txt".into(),
                    kind: "update".into(),
                }),
                TurnEvent::Action(Action::Tool {
                    name: "write".into(),
                    ok: false,
                }),
                TurnEvent::Action(Action::FileChange {
                    path: "/ws/n.rs".into(),
                    kind: "add".into(),
                }),
                TurnEvent::Action(Action::FileChange {
                    path: "/ws/o.rs".into(),
                    kind: "update".into(),
                }),
                TurnEvent::Action(Action::FileChange {
                    path: "/ws/p.rs".into(),
                    kind: "delete".into(),
                }),
                TurnEvent::Action(Action::Command {
                    command: "false".into(),
                    exit_code: Some(1),
                    ok: false,
                }),
                TurnEvent::Action(Action::Command {
                    command: "sleep 999".into(),
                    exit_code: None,
                    ok: false,
                }),
                TurnEvent::Action(Action::Tool {
                    name: "grep".into(),
                    ok: true,
                }),
                usage(143, 25, 40),
                TurnEvent::Error("ProviderAuthError".into()),
            ],
        );
    }

    #[test]
    fn garbage_and_unknown_lines_yield_nothing() {
        for line in [
            "",
            "Error: something on stdout",
            "{",
            "\"text\"",
            r#"{"type":"step_start","part":{"type":"step-start"}}"#,
            r#"{"type":"text","part":{"type":"text","text":""}}"#,
            r#"{"type":"tool_use","part":{"type":"tool","state":{"status":"completed"}}}"#,
            r#"{"type":"tool_use"}"#,
            r#"{"type":"brand_new"}"#,
            r#"{"sessionID":42}"#,
        ] {
            assert_eq!(parse_line(line), Vec::new(), "{line:?}");
        }
    }

    fn spec() -> RunSpec {
        RunSpec {
            binary: PathBuf::from("/opt/bin/opencode"),
            model: "mock/mock-model".into(),
            prompt: "Say \"hello\" -- now".into(),
            resume: None,
            workspace: PathBuf::from("/data/ws/u1"),
            home: PathBuf::from("/data/homes/opencode/default"),
            extra_args: vec!["--agent".into(), "build".into()],
            extra_env: vec![("OPENCODE_CONFIG".into(), "/etc/codara/opencode.json".into())],
            sandbox: Sandbox::WorkspaceWrite,
            path_env: "/usr/bin:/bin".into(),
            images: Vec::new(),
            confined: false,
            output_schema: None,
        }
    }

    #[test]
    fn first_turn_command_sends_the_prompt_on_stdin() {
        let command = command(&spec());
        assert_eq!(command.program, PathBuf::from("/opt/bin/opencode"));
        assert_eq!(
            command.args,
            strings(&[
                "run",
                "--format",
                "json",
                "-m",
                "mock/mock-model",
                "--agent",
                "build"
            ])
        );
        assert_eq!(command.stdin.as_deref(), Some("Say \"hello\" -- now"));
        assert_eq!(command.cwd, PathBuf::from("/data/ws/u1"));
        let env: Vec<(&str, &str)> = command
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("PATH", "/usr/bin:/bin"),
                ("HOME", "/data/homes/opencode/default"),
                ("XDG_CONFIG_HOME", "/data/homes/opencode/default/config"),
                ("XDG_DATA_HOME", "/data/homes/opencode/default/data"),
                ("XDG_CACHE_HOME", "/data/homes/opencode/default/cache"),
                ("XDG_STATE_HOME", "/data/homes/opencode/default/state"),
                ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
                ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
                ("PWD", "/data/ws/u1"),
                ("OPENCODE_CONFIG", "/etc/codara/opencode.json"),
            ]
        );
    }

    #[test]
    fn images_are_file_attachments_one_word_each() {
        let mut spec = spec();
        spec.resume = Some("ses_1".into());
        spec.images = vec![PathBuf::from(".codara/attachments/0123456789abcdef.webp")];
        let command = command(&spec);
        assert_eq!(
            command.args,
            strings(&[
                "run",
                "--format",
                "json",
                "-m",
                "mock/mock-model",
                "--session",
                "ses_1",
                "--file=.codara/attachments/0123456789abcdef.webp",
                "--agent",
                "build"
            ])
        );
        assert_eq!(command.stdin.as_deref(), Some("Say \"hello\" -- now"));
    }

    #[test]
    fn resume_command_and_a_bare_model_name() {
        let mut spec = spec();
        spec.resume = Some("ses_df2a7115affes53mLDcuFZ66hD".into());
        spec.model = "mock-model".into();
        spec.extra_args.clear();
        let command = command(&spec);
        assert_eq!(
            command.args,
            strings(&[
                "run",
                "--format",
                "json",
                "--session",
                "ses_df2a7115affes53mLDcuFZ66hD"
            ])
        );
        assert_eq!(command.stdin.as_deref(), Some("Say \"hello\" -- now"));
    }

    #[test]
    fn configured_env_overrides_the_defaults() {
        let mut spec = spec();
        spec.extra_env = vec![("XDG_CACHE_HOME".into(), "/var/cache/shared".into())];
        let env = command(&spec).env;
        let cache: Vec<&str> = env
            .iter()
            .filter(|(k, _)| k == "XDG_CACHE_HOME")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cache, ["/var/cache/shared"]);
        assert_eq!(env.len(), 9);
    }

    #[test]
    fn prepare_home_creates_the_xdg_dirs_and_config_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-opencode-home-"));
        let home = dir.join("default");
        prepare_home(&home).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for sub in ["", "config", "config/opencode", "data", "cache", "state"] {
            assert_eq!(mode(&home.join(sub)), 0o700, "{sub}");
        }
        let file = home.join("config/opencode/opencode.json");
        assert_eq!(mode(&file), 0o600);
        let config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(config["autoupdate"], Value::from(false));
        assert_eq!(config["share"], Value::from("disabled"));
        for tool in ["edit", "bash", "webfetch"] {
            assert_eq!(config["permission"][tool], Value::from("allow"), "{tool}");
        }
        std::fs::write(&file, "{}").unwrap();
        prepare_home(&home).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_error(Some(0)), None);
        assert_eq!(exit_error(None), None);
        assert!(exit_error(Some(1)).is_some());
    }
}
