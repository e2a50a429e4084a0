//! Agent turns: what a turn is ([`TurnRequest`], [`TurnOutcome`], [`Owner`]), the pipeline that
//! runs one (`engine`), and its steps in their own modules — one CLI attempt (`attempt`), the
//! retry decision (`retry`, pure), the pool account (`pool`), workspace states (`tracker`),
//! storage and crash recovery (`persist`) — plus prompt building and transcript hashing
//! (`prompt`, pure), `response_format` checks (`output`, pure), admission (`admit`) and the
//! session/workspace locks.
//!
//! Must not parse HTTP or render JSON: the fronts in `api/` turn requests into a [`TurnRequest`]
//! and outcomes into their wire formats.

pub mod admit;
mod attempt;
pub mod engine;
pub mod locks;
pub mod output;
mod persist;
mod pool;
pub mod prompt;
mod retry;
mod tracker;

pub use engine::{preflight, refuse_unconfined, run};
pub use persist::recover_interrupted;

use crate::providers::{Action, Provider, Usage};
use prompt::Message;
use std::path::PathBuf;

/// Who a turn runs for: the operator (its own workspaces under `<root>/operator`) or a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The operator (by token or secret).
    Operator,
    /// A provisioned user, by id (`uag_usr_…`).
    User(String),
}

impl Owner {
    /// The id stored with sessions and turns, and the name of the owner's directories.
    pub fn id(&self) -> &str {
        match self {
            Owner::Operator => "operator",
            Owner::User(id) => id,
        }
    }

    /// The user's id, for a user.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Owner::Operator => None,
            Owner::User(id) => Some(id),
        }
    }
}

/// A validated turn request.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    /// Who the turn runs for.
    pub owner: Owner,
    /// The CLI that runs it.
    pub provider: Provider,
    /// The model id.
    pub model: String,
    /// The conversation as the client sent it.
    pub messages: Vec<Message>,
    /// Workspace id (relative to the owner's tree, or to the workspaces root for operators).
    pub workspace_id: String,
    /// The absolute workspace directory.
    pub workspace: PathBuf,
    /// The client's conversation label; `None` makes the turn stateless.
    pub client_session_id: Option<String>,
    /// The caller used a user API key (not the operator): such turns are refused when the
    /// sandbox cannot confine them.
    pub via_user_key: bool,
    /// The shape the reply must have (`response_format`).
    pub output: OutputFormat,
}

impl TurnRequest {
    /// The session key `owner::workspace::client_session_id`; `None` for a stateless turn.
    pub fn session_key(&self) -> Option<String> {
        self.client_session_id
            .as_deref()
            .map(|label| session_key(self.owner.id(), &self.workspace_id, label))
    }
}

/// The session key `user::workspace::client_session_id`.
pub fn session_key(user_id: &str, workspace_id: &str, client_session_id: &str) -> String {
    format!("{user_id}::{workspace_id}::{client_session_id}")
}

/// The shape a reply must have: free text, or JSON (`response_format`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum OutputFormat {
    /// Free text.
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// A JSON value matching `schema`.
    JsonSchema {
        /// The schema's name, as the client gave it.
        name: String,
        /// The JSON Schema.
        schema: serde_json::Value,
    },
}

/// How a turn ended.
#[derive(Debug)]
pub struct TurnOutcome {
    /// `trn_<12hex>`.
    pub turn_id: String,
    /// The session id (`None` for stateless turns).
    pub session_id: Option<String>,
    /// The assistant's text.
    pub reply: String,
    /// Token usage as reported.
    pub usage: Usage,
    /// Normalized actions.
    pub actions: Vec<Action>,
    /// Workspace-relative paths changed by this turn.
    pub modified_files: Vec<String>,
    /// Unified diff of this turn.
    pub diff: String,
    /// The turn ended abnormally after touching files.
    pub dirty: bool,
    /// Whether the CLI session was resumed.
    pub resumed: bool,
    /// The failure, when the turn did not succeed (the outcome is still stored).
    pub error: Option<crate::error::Error>,
}

/// Receives streamed text as the CLI emits it.
pub trait Sink {
    /// Called with each piece of assistant text.
    fn text(&mut self, delta: &str);
}

impl<F: FnMut(&str)> Sink for F {
    fn text(&mut self, delta: &str) {
        self(delta)
    }
}
