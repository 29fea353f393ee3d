//! Agent adapters: one interface over every AI coding CLI orch can drive.
//!
//! An adapter turns an [`AgentRequest`] into a process (or, for `sim`, into in-process work),
//! and turns what the agent prints into the normalized [`AgentEvent`] stream. The worker writes
//! those events to `events.jsonl`, shows them live, and keeps the final [`AgentOutcome`].
//!
//! Architecture invariant: adapters know nothing about the store, leases or bundles; they get a
//! working directory, a prompt and a cancellation token, and report events through a channel.

pub mod answer;
pub mod cli;
pub mod config;
pub mod preflight;
pub mod pricing;
pub mod profile;
pub mod prompt;
pub mod review;
pub mod router;
pub mod sim;
pub mod tmux;

pub use config::{AgentSettings, AgentsConfig, CommandAgent, OutputFormat};

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
#[derive(Debug, Clone, Default)]
pub struct AgentRequest {
    /// The prompt.
    pub prompt: String,
    /// Model, if not the agent's default.
    pub model: Option<String>,
    /// The working directory (the task's worktree). The agent must not write outside it.
    pub workdir: PathBuf,
    /// A session to resume, if any.
    pub resume_session: Option<String>,
    /// Environment for the agent process (already filtered by the allowlist). Adapters of real
    /// CLIs add the variables their settings pass through by name (API keys, base URLs).
    pub env: BTreeMap<String, String>,
    /// Most agent turns, when the CLI supports a limit.
    pub max_turns: Option<u32>,
    /// Tools the agent may use (empty: the adapter's default).
    pub allowed_tools: Vec<String>,
    /// Tools the agent must not use.
    pub disallowed_tools: Vec<String>,
    /// Text appended to the agent's system prompt (the rendered profile).
    pub system_prompt: Option<String>,
    /// A directory kept across the runs of one task, for a CLI's own state (sessions, config)
    /// when its settings ask for isolation. Created on demand.
    pub state_dir: Option<PathBuf>,
    /// Where to record the process group of a spawned CLI, so that a daemon restarting after a
    /// crash can stop what it left running (see `orch-worker`'s `kill_orphaned_groups`).
    pub process_registry: Option<PathBuf>,
    /// How the CLI is confined (built by the worker: the worktree and the task's scratch area
    /// writable, the home hidden). A live session's relay runs unconfined and starts the CLI
    /// under it.
    pub sandbox: orch_process::Sandbox,
    /// Raw output of a spawned CLI, line by line, for the bundle's `stdout.log` / `stderr.log`.
    pub raw_output: Option<mpsc::UnboundedSender<RawOutput>>,
    /// Where to run the agent when its settings say `session = "tmux"`; without it the agent
    /// runs directly.
    pub live_session: Option<tmux::LiveSession>,
}

/// One line a CLI printed, as it came (the worker redacts it before storing it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawOutput {
    /// A line of standard output, without its newline.
    Stdout(String),
    /// A line of standard error, without its newline.
    Stderr(String),
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
    /// The model that answered, when known.
    pub model: Option<String>,
    /// The command line that ran (empty for in-process agents).
    pub argv: Vec<String>,
}

/// The kinds of agent failure, each with a fixed retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The agent is not known, not enabled in config, not installed or too old.
    NotInstalled,
    /// The model provider refused the credentials.
    AuthRefused,
    /// The provider rate limited the agent.
    RateLimited,
    /// The provider answered with an error (5xx, overloaded, bad response).
    ModelError,
    /// The CLI printed nothing for the stall period and was killed.
    Stalled,
    /// The step or task ran past its time limit.
    Timeout,
    /// The CLI exited abnormally without a result.
    Crashed,
    /// The agent finished but reported failure (or an empty result).
    Failed,
    /// The session was stopped from outside.
    Cancelled,
    /// The run passed its task's token or cost budget and was stopped (a person decides).
    BudgetExceeded,
}

impl FailureClass {
    /// Whether another attempt can help.
    pub fn retryable(self) -> bool {
        match self {
            FailureClass::NotInstalled
            | FailureClass::AuthRefused
            | FailureClass::BudgetExceeded => false,
            FailureClass::RateLimited
            | FailureClass::ModelError
            | FailureClass::Stalled
            | FailureClass::Timeout
            | FailureClass::Crashed
            | FailureClass::Failed
            | FailureClass::Cancelled => true,
        }
    }

    /// The class's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::NotInstalled => "not_installed",
            FailureClass::AuthRefused => "auth_refused",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::ModelError => "model_error",
            FailureClass::Stalled => "stalled",
            FailureClass::Timeout => "timeout",
            FailureClass::Crashed => "crashed",
            FailureClass::Failed => "failed",
            FailureClass::Cancelled => "cancelled",
            FailureClass::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// Why an agent session failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No adapter of that name.
    #[error("unknown agent `{0}`; known agents: {known}", known = known_agents().join(", "))]
    Unknown(String),
    /// The agent cannot run here: not enabled in config, not installed, or too old.
    #[error("agent `{agent}` is not available: {reason}")]
    Unavailable {
        /// The agent.
        agent: String,
        /// Why, with what to do.
        reason: String,
    },
    /// The provider refused the credentials.
    #[error("agent `{agent}`: the model provider refused the credentials ({detail}); check the API key the agent's settings pass through")]
    AuthRefused {
        /// The agent.
        agent: String,
        /// What the CLI said.
        detail: String,
    },
    /// The provider rate limited the agent.
    #[error("agent `{agent}` was rate limited ({detail}){}", reset_note(*.reset_at))]
    RateLimited {
        /// The agent.
        agent: String,
        /// What the CLI said.
        detail: String,
        /// When the limit resets, as Unix seconds, when the CLI said.
        reset_at: Option<i64>,
    },
    /// The provider answered with an error.
    #[error("agent `{agent}`: the model provider failed ({detail})")]
    ModelError {
        /// The agent.
        agent: String,
        /// What the CLI said.
        detail: String,
    },
    /// The CLI printed nothing for too long.
    #[error("agent `{agent}` printed nothing for {} and was stopped (stalled); raise `stall_timeout` in the agent settings if it needs longer", humantime::format_duration(*.after))]
    Stalled {
        /// The agent.
        agent: String,
        /// The stall period.
        after: std::time::Duration,
    },
    /// The CLI exited without a result.
    #[error("agent `{agent}` exited without a result ({status}){}", tail_note(.stderr_tail))]
    Crashed {
        /// The agent.
        agent: String,
        /// Exit status in words.
        status: String,
        /// The end of what it printed on stderr.
        stderr_tail: String,
    },
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

fn reset_note(reset_at: Option<i64>) -> String {
    match reset_at {
        Some(at) => format!("; the limit resets at Unix time {at}"),
        None => String::new(),
    }
}

fn tail_note(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", tail.trim())
    }
}

impl AgentError {
    /// The failure class, which fixes whether a retry can help.
    pub fn class(&self) -> FailureClass {
        match self {
            AgentError::Unknown(_) | AgentError::Unavailable { .. } => FailureClass::NotInstalled,
            AgentError::AuthRefused { .. } => FailureClass::AuthRefused,
            AgentError::RateLimited { .. } => FailureClass::RateLimited,
            AgentError::ModelError { .. } => FailureClass::ModelError,
            AgentError::Stalled { .. } => FailureClass::Stalled,
            AgentError::Crashed { .. } | AgentError::Io { .. } => FailureClass::Crashed,
            AgentError::Failed(_) => FailureClass::Failed,
            AgentError::Cancelled(_) => FailureClass::Cancelled,
        }
    }

    /// When a rate limit resets (Unix seconds), if known.
    pub fn reset_at(&self) -> Option<i64> {
        match self {
            AgentError::RateLimited { reset_at, .. } => *reset_at,
            _ => None,
        }
    }
}

/// The built-in agent names, for listings (`orch agents`) and error messages. User-defined
/// `command` agents come on top, from config.
pub fn known_agents() -> &'static [&'static str] {
    &["sim", "claude", "codex", "opencode", "gemini"]
}

/// The closed set of agents orch can run.
#[derive(Debug, Clone)]
pub enum Agent {
    /// The deterministic offline agent.
    Sim(sim::SimAgent),
    /// A real CLI (Claude Code, Codex, OpenCode, Gemini, or a user-defined command).
    Cli(Box<cli::CliAgent>),
}

impl Agent {
    /// The adapter for `name` with default settings: `sim` works; real CLIs are refused,
    /// because default settings do not enable them.
    pub fn by_name(name: &str) -> Result<Agent, AgentError> {
        Agent::resolve(name, &AgentsConfig::default())
    }

    /// The adapter for `name` under `config`. Refuses agents that config does not enable; does
    /// not look for the binary (see [`preflight::check`]).
    pub fn resolve(name: &str, config: &AgentsConfig) -> Result<Agent, AgentError> {
        if name == "sim" {
            if config.session == config::SessionMode::Tmux {
                // In a live session sim runs as a process (`orch agent-sim`) printing orch's
                // own event lines, so it can be watched like any CLI.
                return Ok(Agent::Cli(Box::new(cli::CliAgent::sim_process(config))));
            }
            return Ok(Agent::Sim(sim::SimAgent::default()));
        }
        let kind = match name {
            "claude" => cli::CliKind::Claude,
            "codex" => cli::CliKind::Codex,
            "opencode" => cli::CliKind::OpenCode,
            "gemini" => cli::CliKind::Gemini,
            other => match config.commands.get(other) {
                Some(command) => cli::CliKind::Command(command.clone()),
                None => return Err(AgentError::Unknown(other.to_owned())),
            },
        };
        config.check_enabled(name)?;
        Ok(Agent::Cli(Box::new(cli::CliAgent::new(name, kind, config))))
    }

    /// The adapter's name.
    pub fn name(&self) -> &str {
        match self {
            Agent::Sim(_) => "sim",
            Agent::Cli(cli) => cli.name(),
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
            // Confined, sim runs as a process (`orch agent-sim`) inside the sandbox like any CLI,
            // so its file edits are held to the same walls. Only the `orch` binary has that
            // subcommand: a library test binary runs sim in process (its writes are checked
            // against the workdir by path, not by the kernel).
            Agent::Sim(_)
                if matches!(request.sandbox, orch_process::Sandbox::Enforced(_))
                    && cli::CliAgent::current_exe_is_orch() =>
            {
                let process = cli::CliAgent::sim_process_direct(&AgentsConfig::default());
                process.run(request, events, cancel).await
            }
            Agent::Sim(sim) => sim.run(request, events, cancel).await,
            Agent::Cli(cli) => cli.run(request, events, cancel).await,
        }
    }
}
