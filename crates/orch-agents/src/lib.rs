//! Agent adapters: one interface over every AI coding CLI orch can drive.
//!
//! An adapter turns an [`AgentRequest`] into a process (or, for `sim`, into in-process work),
//! and turns what the agent prints into the normalized [`AgentEvent`] stream. The worker writes
//! those events to `events.jsonl`, shows them live, and keeps the final [`AgentOutcome`].
//!
//! Architecture invariant: adapters know nothing about the store, leases or bundles; they get a
//! working directory, a prompt and a cancellation token, and report events through a channel.

pub mod answer;
pub mod profile;
pub mod prompt;
pub mod review;
pub mod router;
pub mod sim;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One normalized event of an agent session, the same shape for every agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The session started.
    Init {
        /// Session id, usable to resume the session later.
        session_id: String,
        /// The model in use, if known.
        model: Option<String>,
    },
    /// Text from the assistant (or a user turn the agent echoes).
    Message {
        /// `assistant` or `user`.
        role: String,
        /// The text.
        text: String,
    },
    /// The agent called a tool.
    ToolCall {
        /// Call id, matching the result.
        id: String,
        /// Tool name (`write_file`, `bash`, ...).
        name: String,
        /// Tool input as the agent gave it.
        input: serde_json::Value,
    },
    /// A tool returned.
    ToolResult {
        /// The call id.
        id: String,
        /// Output text.
        output: String,
        /// Whether the tool failed.
        is_error: bool,
    },
    /// Token usage so far (cumulative for the session).
    Usage {
        /// Input tokens.
        input_tokens: u64,
        /// Output tokens.
        output_tokens: u64,
        /// Cost in US dollars, when known.
        cost_usd: Option<f64>,
    },
    /// The final answer of the session.
    Result {
        /// The answer text.
        text: String,
        /// Whether the agent reported failure.
        is_error: bool,
    },
    /// The agent reported an error.
    Error {
        /// What went wrong.
        message: String,
    },
    /// An event this adapter does not know, kept as it came.
    Unknown {
        /// The raw event.
        raw: serde_json::Value,
    },
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRequest {
    /// The prompt.
    pub prompt: String,
    /// Model, if not the agent's default.
    pub model: Option<String>,
    /// The working directory (the task's worktree). The agent must not write outside it.
    pub workdir: PathBuf,
    /// A session to resume, if any.
    pub resume_session: Option<String>,
    /// Environment for the agent process (already filtered by the allowlist).
    pub env: BTreeMap<String, String>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentOutcome {
    /// The session id.
    pub session_id: Option<String>,
    /// The final answer.
    pub result_text: String,
    /// Input tokens in all.
    pub input_tokens: u64,
    /// Output tokens in all.
    pub output_tokens: u64,
    /// Cost in US dollars (0 for `sim`).
    pub cost_usd: f64,
    /// Files the agent changed, relative to the workdir, when the adapter knows.
    pub changed_files: Vec<String>,
}

/// Why an agent session failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No adapter of that name.
    #[error("unknown agent `{0}`; known agents: {known}", known = known_agents().join(", "))]
    Unknown(String),
    /// The agent reported failure or could not do what was asked.
    #[error("the agent failed: {0}")]
    Failed(String),
    /// The session was cancelled (lease lost, shutdown, timeout).
    #[error("the agent was stopped: {0}")]
    Cancelled(String),
    /// Reading or writing files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The names [`Agent::by_name`] accepts, for listings (`orch agents`) and error messages.
pub fn known_agents() -> &'static [&'static str] {
    &["sim"]
}

/// The closed set of agents orch can run.
#[derive(Debug, Clone)]
pub enum Agent {
    /// The deterministic offline agent.
    Sim(sim::SimAgent),
}

impl Agent {
    /// The adapter for `name`.
    pub fn by_name(name: &str) -> Result<Agent, AgentError> {
        match name {
            "sim" => Ok(Agent::Sim(sim::SimAgent::default())),
            other => Err(AgentError::Unknown(other.to_owned())),
        }
    }

    /// The adapter's name.
    pub fn name(&self) -> &'static str {
        match self {
            Agent::Sim(_) => "sim",
        }
    }

    /// Run one session. Events are sent as they happen; the outcome is returned at the end.
    /// When `cancel` fires the session stops promptly with [`AgentError::Cancelled`].
    pub async fn run(
        &self,
        request: &AgentRequest,
        events: mpsc::UnboundedSender<AgentEvent>,
        cancel: CancellationToken,
    ) -> Result<AgentOutcome, AgentError> {
        match self {
            Agent::Sim(sim) => sim.run(request, events, cancel).await,
        }
    }
}
