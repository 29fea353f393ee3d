//! Today's spend and what runs against the claim limits (`GET /v1/usage/limits`, `orch usage`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Spend in the day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpendView {
    /// Runs (a project's: started; an agent's: that used it).
    pub runs: u64,
    /// Agent sessions.
    pub sessions: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// Daily limits; `None`: no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LimitView {
    /// Runs.
    pub runs: Option<u64>,
    /// Agent sessions.
    pub sessions: Option<u64>,
    /// Tokens.
    pub tokens: Option<u64>,
    /// Cost in US dollars.
    pub cost_usd: Option<f64>,
}

/// One project, agent or label today.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Gauge {
    /// Its name.
    pub name: String,
    /// Tasks running now.
    pub running: u32,
    /// The most that may run at once, if limited.
    pub running_limit: Option<u32>,
    /// Spent today (labels: always zero).
    pub spent: SpendView,
    /// Today's limits.
    pub limit: LimitView,
}

/// Today against the limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Today {
    /// Per project.
    pub projects: Vec<Gauge>,
    /// Per agent.
    pub agents: Vec<Gauge>,
    /// Per limited label.
    pub labels: Vec<Gauge>,
}

/// Agent usage of one (UTC) day, project and agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DailyUsageView {
    /// `YYYY-MM-DD` (UTC, as recorded).
    pub day: String,
    /// The project's name.
    pub project: String,
    /// The agent.
    pub agent: String,
    /// Runs that used the agent.
    pub runs: u64,
    /// Agent sessions.
    pub sessions: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// Today's spend and running tasks against the limits, and the recent days' spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageLimitsView {
    /// Today, `YYYY-MM-DD` in `time_zone`.
    pub day: String,
    /// The time zone of the daily budgets.
    pub time_zone: String,
    /// When today's budgets reset (milliseconds since the Unix epoch).
    pub resets_at: i64,
    /// Today.
    pub today: Today,
    /// Spend per (UTC) day, project and agent, newest first.
    pub days: Vec<DailyUsageView>,
}
