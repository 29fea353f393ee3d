//! `orch usage` and `GET /v1/usage/limits`: today's spend and what runs, per project, agent and
//! label, against the claim limits, and the recent days' spend per project and agent.

use std::collections::BTreeSet;

use orch_api::{DailyUsageView, Gauge, LimitView, SpendView, Today, UsageLimitsView};
use orch_core::limits::{ClaimLimits, DailyLimit, Spend};

use crate::{App, Result};

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
    pub async fn usage_report(&self, limits: &ClaimLimits, days: u32) -> Result<UsageLimitsView> {
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
        Ok(UsageLimitsView {
            day: today.day,
            time_zone: today.time_zone,
            resets_at: today.window.1 .0,
            today: Today {
                projects,
                agents,
                labels,
            },
            days: history
                .into_iter()
                .map(|d| DailyUsageView {
                    day: d.day,
                    project: d.project,
                    agent: d.agent,
                    runs: d.runs,
                    sessions: d.sessions,
                    tokens: d.tokens,
                    cost_usd: d.cost_usd,
                })
                .collect(),
        })
    }
}
