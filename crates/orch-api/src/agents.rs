//! Agent sessions: follow-up replies and usage (per task, in all, and the worker's reports).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A follow-up message for a finished task.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    /// What to tell the agent; its last session is resumed with it.
    pub message: String,
}

/// One agent session's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// The run.
    pub run: i64,
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
    /// UTC day.
    pub day: String,
}

/// Usage summed over one agent or one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageTotalView {
    /// The agent or the day.
    pub key: String,
    /// Sessions counted.
    pub sessions: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// Usage per agent and per day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageSummaryView {
    /// Per agent, all time.
    pub by_agent: Vec<UsageTotalView>,
    /// Per day, newest first.
    pub by_day: Vec<UsageTotalView>,
    /// Per project (its name), all time.
    #[serde(default)]
    pub by_project: Vec<UsageTotalView>,
}

/// A worker's report of its run's agent sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// One record per agent step.
    pub records: Vec<UsageRecordView>,
}

/// One agent step's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageRecordView {
    /// The step.
    pub step: String,
    /// The agent.
    pub agent: String,
    /// The model.
    pub model: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}
