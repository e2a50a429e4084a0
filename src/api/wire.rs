//! Response shapes built from domain types: what clients see, declared once. Renaming a field
//! here changes the API and nothing else (audit entries keep their own snapshot types).

use crate::providers::Action;
use serde::Serialize;

/// One action of a turn as clients see it (`actions[]`).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionView<'a> {
    /// A file the agent's file tool changed; `path` workspace-relative.
    FileChange {
        /// The path.
        path: &'a str,
        /// add | update | delete | write.
        kind: &'a str,
    },
    /// A shell command.
    Command {
        /// The command line.
        command: &'a str,
        /// Its exit code, when known.
        exit_code: Option<i32>,
        /// Whether it succeeded.
        ok: bool,
    },
    /// Another tool call.
    Tool {
        /// The tool's name.
        name: &'a str,
        /// Whether it succeeded.
        ok: bool,
    },
}

impl<'a> From<&'a Action> for ActionView<'a> {
    fn from(action: &'a Action) -> Self {
        match action {
            Action::FileChange { path, kind } => ActionView::FileChange { path, kind },
            Action::Command {
                command,
                exit_code,
                ok,
            } => ActionView::Command {
                command,
                exit_code: *exit_code,
                ok: *ok,
            },
            Action::Tool { name, ok } => ActionView::Tool { name, ok: *ok },
        }
    }
}

/// The `actions` array of a turn.
pub fn actions(actions: &[Action]) -> Vec<ActionView<'_>> {
    actions.iter().map(ActionView::from).collect()
}
