//! Agent usage: what a worker reports per session, and the stored rows and sums read back.

use orch_core::RunId;

/// One agent session's usage, as a worker reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageRecord {
    /// The step.
    pub step: String,
    /// The agent.
    pub agent: String,
    /// The model, when known.
    pub model: Option<String>,
    /// The session id, when known (what `orch task reply` resumes).
    pub session_id: Option<String>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// A stored usage row of one task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentUsage {
    /// The run.
    pub run: RunId,
    /// The step.
    pub step: String,
    /// The agent.
    pub agent: String,
    /// The model, when known.
    pub model: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// UTC day it was recorded.
    pub day: String,
}

/// Usage summed over a key (an agent, or a day).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageTotal {
    /// The agent name or the day (`YYYY-MM-DD`).
    pub key: String,
    /// Agent sessions counted.
    pub sessions: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// Usage per agent and per day.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct UsageSummary {
    /// Per agent.
    pub by_agent: Vec<UsageTotal>,
    /// Per day, newest first.
    pub by_day: Vec<UsageTotal>,
    /// Per project (its name), all time.
    pub by_project: Vec<UsageTotal>,
}
