//! `orch usage` and `GET /v1/usage/limits`: today's spend and what runs, per project, agent and
//! label, against the claim limits, and the recent days' spend per project and agent.

use std::collections::BTreeSet;

use orch_core::limits::{ClaimLimits, DailyLimit, Spend};
use serde::{Deserialize, Serialize};

use crate::{App, Result};

/// Spend in the day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Today {
    /// Per project.
    pub projects: Vec<Gauge>,
    /// Per agent.
    pub agents: Vec<Gauge>,
    /// Per limited label.
    pub labels: Vec<Gauge>,
}

/// The whole view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Today, `YYYY-MM-DD` in `time_zone`.
    pub day: String,
    /// The time zone of the daily budgets.
    pub time_zone: String,
    /// When today's budgets reset (milliseconds since the Unix epoch).
    pub resets_at: i64,
    /// Today.
    pub today: Today,
    /// Spend per (UTC) day, project and agent, newest first.
    pub days: Vec<orch_store::DailyUsage>,
}

fn spend(s: Option<&Spend>) -> SpendView {
    let s = s.copied().unwrap_or_default();
    SpendView {
        runs: s.runs,
        sessions: s.sessions,
        tokens: s.tokens,
        cost_usd: s.cost_usd,
    }
}

fn limit(l: Option<DailyLimit>) -> LimitView {
    let l = l.unwrap_or_default();
    LimitView {
        runs: l.runs,
        sessions: l.sessions,
        tokens: l.tokens,
        cost_usd: l.cost_usd,
    }
}

impl App {
    /// Today's usage against `limits` (the daemon's), and `days` days of history.
    pub async fn usage_report(&self, limits: &ClaimLimits, days: u32) -> Result<UsageReport> {
        let today = self.store().usage_today(limits).await?;
        let tally = &today.tally;
        let since = orch_core::limits::day_window(
            orch_core::Timestamp(
                today.window.0 .0 - i64::from(days.saturating_sub(1)) * 86_400_000,
            ),
            // Usage rows are dated in UTC (`agent_usage.day`).
            orch_core::limits::UTC,
        )
        .day;
        let history = self.store().usage_by_day(&since).await?;
        let project_names: BTreeSet<&String> = limits
            .concurrency
            .projects
            .keys()
            .chain(limits.budgets.projects.keys())
            .chain(tally.running_projects.keys())
            .chain(tally.spent_projects.keys())
            .collect();
        let projects = project_names
            .into_iter()
            .map(|name| Gauge {
                name: name.clone(),
                running: tally.running_projects.get(name).copied().unwrap_or(0),
                running_limit: limits.project_running(name),
                spent: spend(tally.spent_projects.get(name)),
                limit: limit(limits.project_daily(name)),
            })
            .collect();
        let agent_names: BTreeSet<&String> = limits
            .concurrency
            .agents
            .keys()
            .chain(limits.budgets.agents.keys())
            .chain(tally.running_agents.keys())
            .chain(tally.spent_agents.keys())
            .collect();
        let agents = agent_names
            .into_iter()
            .map(|name| Gauge {
                name: name.clone(),
                running: tally.running_agents.get(name).copied().unwrap_or(0),
                running_limit: limits.concurrency.agents.get(name).copied(),
                spent: spend(tally.spent_agents.get(name)),
                limit: limit(limits.budgets.agents.get(name).copied()),
            })
            .collect();
        let labels = limits
            .concurrency
            .labels
            .iter()
            .map(|(name, max)| Gauge {
                name: name.clone(),
                running: tally.running_labels.get(name).copied().unwrap_or(0),
                running_limit: Some(*max),
                spent: SpendView::default(),
                limit: LimitView::default(),
            })
            .collect();
        Ok(UsageReport {
            day: today.day,
            time_zone: today.time_zone,
            resets_at: today.window.1 .0,
            today: Today {
                projects,
                agents,
                labels,
            },
            days: history,
        })
    }
}
