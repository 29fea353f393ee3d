//! Claim-time gates: concurrency limits (running tasks per project, agent and label) and daily
//! budgets (runs, agent sessions, tokens and cost per project and per agent), and the decision
//! which queued task a claim may take.
//!
//! The store counts what is running and what was spent in the current day window, inside the
//! claim's transaction, and asks [`pick`]; a skipped task keeps the returned reason as its
//! `status_reason`. Pure: the window comes from the caller's calendar clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{Datelike, TimeZone};
use serde::Deserialize;

use crate::model::{StepAction, TaskId, TaskSpec, Timestamp};

/// A time zone (re-exported, so callers need no time zone crate of their own).
pub type Zone = chrono_tz::Tz;

/// Coordinated Universal Time.
pub const UTC: Zone = chrono_tz::UTC;

/// The pseudo-agent an `agent: auto` step counts under when no `agent:<name>` label names the
/// agent the router will take.
pub const AUTO_AGENT: &str = "auto";

/// `[concurrency]` of the home's `config.toml`: at most this many `running` tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyLimits {
    /// In any one project, unless `projects` names it.
    pub project: Option<u32>,
    /// Per project (by name), instead of `project`.
    pub projects: BTreeMap<String, u32>,
    /// Per agent (`claude = 2`; `auto` for auto-routed steps without an `agent:` label).
    pub agents: BTreeMap<String, u32>,
    /// Per label (`deploy = 1`).
    pub labels: BTreeMap<String, u32>,
}

/// The daily limits of one project or one agent; every field is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DailyLimit {
    /// Runs started (a project's daily run quota) or, for an agent, runs that used it.
    pub runs: Option<u64>,
    /// Agent sessions.
    pub sessions: Option<u64>,
    /// Input plus output tokens.
    pub tokens: Option<u64>,
    /// Reported cost in US dollars.
    pub cost_usd: Option<f64>,
}

impl DailyLimit {
    fn is_empty(&self) -> bool {
        self.runs.is_none()
            && self.sessions.is_none()
            && self.tokens.is_none()
            && self.cost_usd.is_none()
    }
}

/// `[budgets]` of the home's `config.toml`: daily limits, in days of `time_zone`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DailyBudgets {
    /// An IANA name (`Europe/Paris`); the day resets at its midnight. Default `UTC`.
    pub time_zone: Option<String>,
    /// For any one project, unless `projects` names it.
    pub project: Option<DailyLimit>,
    /// Per project (by name), instead of `project`.
    pub projects: BTreeMap<String, DailyLimit>,
    /// Per agent.
    pub agents: BTreeMap<String, DailyLimit>,
}

/// Everything a claim is gated by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimLimits {
    /// Concurrency limits.
    pub concurrency: ConcurrencyLimits,
    /// Daily budgets.
    pub budgets: DailyBudgets,
    /// The parsed `budgets.time_zone`.
    pub time_zone: Option<chrono_tz::Tz>,
}

impl ClaimLimits {
    /// Check the config sections and build the limits; the error names the key and the fix.
    pub fn new(
        concurrency: ConcurrencyLimits,
        budgets: DailyBudgets,
    ) -> Result<ClaimLimits, String> {
        let time_zone = match &budgets.time_zone {
            None => None,
            Some(name) => Some(name.parse::<chrono_tz::Tz>().map_err(|_| {
                format!(
                    "budgets.time_zone = \"{name}\" is not a time zone orch knows; use an IANA \
                     name such as \"UTC\" or \"Europe/Paris\""
                )
            })?),
        };
        let limits = budgets
            .project
            .iter()
            .map(|l| ("budgets.project".to_owned(), l))
            .chain(
                budgets
                    .projects
                    .iter()
                    .map(|(n, l)| (format!("budgets.projects.{n}"), l)),
            )
            .chain(
                budgets
                    .agents
                    .iter()
                    .map(|(n, l)| (format!("budgets.agents.{n}"), l)),
            );
        for (key, limit) in limits {
            if let Some(cost) = limit.cost_usd {
                if !cost.is_finite() || cost < 0.0 {
                    return Err(format!(
                        "{key}.cost_usd = {cost} is not an amount; write a number of dollars >= 0"
                    ));
                }
            }
        }
        Ok(ClaimLimits {
            concurrency,
            budgets,
            time_zone,
        })
    }

    /// No limit at all: claims need not count anything.
    pub fn is_empty(&self) -> bool {
        let c = &self.concurrency;
        let b = &self.budgets;
        c.project.is_none()
            && c.projects.is_empty()
            && c.agents.is_empty()
            && c.labels.is_empty()
            && b.project.is_none_or(|l| l.is_empty())
            && b.projects.values().all(DailyLimit::is_empty)
            && b.agents.values().all(DailyLimit::is_empty)
    }

    /// Whether any daily budget is set (claims then sum the day's usage).
    pub fn has_budgets(&self) -> bool {
        let b = &self.budgets;
        !(b.project.is_none_or(|l| l.is_empty())
            && b.projects.values().all(DailyLimit::is_empty)
            && b.agents.values().all(DailyLimit::is_empty))
    }

    /// The time zone of the daily windows.
    pub fn zone(&self) -> chrono_tz::Tz {
        self.time_zone.unwrap_or(chrono_tz::UTC)
    }

    /// The running limit of a project.
    pub fn project_running(&self, project: &str) -> Option<u32> {
        self.concurrency
            .projects
            .get(project)
            .copied()
            .or(self.concurrency.project)
    }

    /// The daily limit of a project.
    pub fn project_daily(&self, project: &str) -> Option<DailyLimit> {
        self.budgets
            .projects
            .get(project)
            .copied()
            .or(self.budgets.project)
    }
}

/// One calendar day of the limits' time zone, as instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayWindow {
    /// Its first instant (midnight).
    pub start: Timestamp,
    /// The next midnight.
    pub end: Timestamp,
    /// `YYYY-MM-DD`.
    pub day: String,
}

/// The day of `zone` that `now` falls in.
pub fn day_window(now: Timestamp, zone: chrono_tz::Tz) -> DayWindow {
    let local = chrono::DateTime::from_timestamp_millis(now.0)
        .unwrap_or_default()
        .with_timezone(&zone);
    let date = local.date_naive();
    let midnight = |d: chrono::NaiveDate| -> Timestamp {
        let naive = d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists as a naive time");
        // A zone may skip midnight (a DST change at 00:00): take the first instant after it.
        let instant = zone
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map_or(now.0, |t| t.timestamp_millis());
        Timestamp(instant)
    };
    let next = date.succ_opt().unwrap_or(date);
    DayWindow {
        start: midnight(date),
        end: midnight(next),
        day: format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day()),
    }
}

/// What a task is counted under: its project, its agents and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskGates {
    /// The project's name.
    pub project: String,
    /// The agents of its agent steps; an `auto` step counts under the agent its `agent:<name>`
    /// label names (the router's first rule), else under [`AUTO_AGENT`].
    pub agents: BTreeSet<String>,
    /// Its labels.
    pub labels: BTreeSet<String>,
}

impl TaskGates {
    /// The gates of a task in `project` with this spec.
    pub fn of(project: &str, spec: &TaskSpec) -> TaskGates {
        let labelled = spec
            .labels
            .iter()
            .find_map(|l| l.strip_prefix("agent:"))
            .map(str::trim)
            .filter(|a| !a.is_empty());
        let agents = spec
            .steps
            .iter()
            .filter_map(|step| match &step.action {
                StepAction::Agent { agent, .. } if agent == AUTO_AGENT => {
                    Some(labelled.unwrap_or(AUTO_AGENT).to_owned())
                }
                StepAction::Agent { agent, .. } => Some(agent.clone()),
                StepAction::Exec { .. } => None,
            })
            .collect();
        TaskGates {
            project: project.to_owned(),
            agents,
            labels: spec.labels.iter().cloned().collect(),
        }
    }
}

/// Spend in one day window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    /// Runs.
    pub runs: u64,
    /// Agent sessions.
    pub sessions: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// What is running now and what was spent in the current day window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Running tasks per project.
    pub running_projects: BTreeMap<String, u32>,
    /// Running tasks per agent.
    pub running_agents: BTreeMap<String, u32>,
    /// Running tasks per label.
    pub running_labels: BTreeMap<String, u32>,
    /// Today's spend per project.
    pub spent_projects: BTreeMap<String, Spend>,
    /// Today's spend per agent.
    pub spent_agents: BTreeMap<String, Spend>,
}

impl Tally {
    /// Count a running task.
    pub fn add_running(&mut self, gates: &TaskGates) {
        *self
            .running_projects
            .entry(gates.project.clone())
            .or_default() += 1;
        for agent in &gates.agents {
            *self.running_agents.entry(agent.clone()).or_default() += 1;
        }
        for label in &gates.labels {
            *self.running_labels.entry(label.clone()).or_default() += 1;
        }
    }
}

/// Why a task may not be claimed now.
#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    /// A concurrency limit is full: `kind` is `project`, `agent` or `label`.
    Running {
        /// `project`, `agent` or `label`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Running now.
        running: u32,
        /// The limit.
        limit: u32,
    },
    /// A daily budget is spent.
    Budget {
        /// `project` or `agent`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// `runs`, `sessions`, `tokens` or `cost`.
        what: &'static str,
        /// Spent today, as shown.
        spent: String,
        /// The limit, as shown.
        limit: String,
        /// The day (`YYYY-MM-DD`) whose budget it is.
        day: String,
    },
}

/// Every reason a gate writes starts with this, so a later claim knows which reasons are its
/// own to clear.
pub const WAIT_PREFIX: &str = "waiting for: ";

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Running {
                kind,
                name,
                running,
                limit,
            } => write!(
                f,
                "{WAIT_PREFIX}{kind} `{name}` concurrency limit {running}/{limit} running"
            ),
            Wait::Budget {
                kind,
                name,
                what,
                spent,
                limit,
                day,
            } => write!(
                f,
                "{WAIT_PREFIX}{kind} `{name}` daily {what} limit {spent}/{limit} spent on {day} \
                 (resets at midnight, or raise the limit)"
            ),
        }
    }
}

fn full(running: Option<&u32>, limit: u32) -> Option<u32> {
    let running = running.copied().unwrap_or(0);
    (running >= limit).then_some(running)
}

fn spent_out(
    kind: &'static str,
    name: &str,
    limit: &DailyLimit,
    spend: Spend,
    day: &str,
) -> Option<Wait> {
    let wait = |what, spent: String, limit: String| Wait::Budget {
        kind,
        name: name.to_owned(),
        what,
        spent,
        limit,
        day: day.to_owned(),
    };
    if let Some(l) = limit.runs.filter(|l| spend.runs >= *l) {
        return Some(wait("runs", spend.runs.to_string(), l.to_string()));
    }
    if let Some(l) = limit.sessions.filter(|l| spend.sessions >= *l) {
        return Some(wait("sessions", spend.sessions.to_string(), l.to_string()));
    }
    if let Some(l) = limit.tokens.filter(|l| spend.tokens >= *l) {
        return Some(wait("tokens", spend.tokens.to_string(), l.to_string()));
    }
    if let Some(l) = limit.cost_usd.filter(|l| spend.cost_usd >= *l) {
        return Some(wait(
            "cost",
            format!("${:.2}", spend.cost_usd),
            format!("${l:.2}"),
        ));
    }
    None
}

/// The first limit a task with these gates would pass if it were claimed now; `None`: it may
/// be claimed.
pub fn holds_back(
    limits: &ClaimLimits,
    tally: &Tally,
    gates: &TaskGates,
    day: &str,
) -> Option<Wait> {
    let running = |kind, name: &str, count: Option<&u32>, limit: u32| {
        full(count, limit).map(|running| Wait::Running {
            kind,
            name: name.to_owned(),
            running,
            limit,
        })
    };
    if let Some(limit) = limits.project_running(&gates.project) {
        if let Some(wait) = running(
            "project",
            &gates.project,
            tally.running_projects.get(&gates.project),
            limit,
        ) {
            return Some(wait);
        }
    }
    for agent in &gates.agents {
        if let Some(limit) = limits.concurrency.agents.get(agent) {
            if let Some(wait) = running("agent", agent, tally.running_agents.get(agent), *limit) {
                return Some(wait);
            }
        }
    }
    for label in &gates.labels {
        if let Some(limit) = limits.concurrency.labels.get(label) {
            if let Some(wait) = running("label", label, tally.running_labels.get(label), *limit) {
                return Some(wait);
            }
        }
    }
    if let Some(limit) = limits.project_daily(&gates.project) {
        let spend = tally
            .spent_projects
            .get(&gates.project)
            .copied()
            .unwrap_or_default();
        if let Some(wait) = spent_out("project", &gates.project, &limit, spend, day) {
            return Some(wait);
        }
    }
    for agent in &gates.agents {
        if let Some(limit) = limits.budgets.agents.get(agent) {
            let spend = tally.spent_agents.get(agent).copied().unwrap_or_default();
            if let Some(wait) = spent_out("agent", agent, limit, spend, day) {
                return Some(wait);
            }
        }
    }
    None
}

/// The decision of one gated claim over the queued candidates, best first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pick {
    /// The task to claim: the first candidate no limit holds back.
    pub chosen: Option<TaskId>,
    /// The candidates before it that wait, with why (their new `status_reason`).
    pub waiting: Vec<(TaskId, String)>,
}

/// Take the first candidate that passes every gate (no head-of-line blocking: a held-back task
/// is passed over, not waited for), and say why each one before it waits.
pub fn pick(
    limits: &ClaimLimits,
    tally: &Tally,
    candidates: &[(TaskId, TaskGates)],
    day: &str,
) -> Pick {
    let mut decision = Pick::default();
    for (id, gates) in candidates {
        match holds_back(limits, tally, gates, day) {
            None => {
                decision.chosen = Some(*id);
                break;
            }
            Some(wait) => decision.waiting.push((*id, wait.to_string())),
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(project: &str, agents: &[&str], labels: &[&str]) -> TaskGates {
        TaskGates {
            project: project.into(),
            agents: agents.iter().map(|s| s.to_string()).collect(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn limits(toml_concurrency: ConcurrencyLimits, budgets: DailyBudgets) -> ClaimLimits {
        ClaimLimits::new(toml_concurrency, budgets).unwrap()
    }

    #[test]
    fn a_full_agent_limit_passes_over_its_task_and_takes_the_next_one() {
        let limits = limits(
            ConcurrencyLimits {
                agents: [("claude".to_owned(), 2)].into(),
                ..Default::default()
            },
            DailyBudgets::default(),
        );
        let mut tally = Tally::default();
        tally.add_running(&gates("web", &["claude"], &[]));
        tally.add_running(&gates("api", &["claude"], &[]));
        let candidates = vec![
            (TaskId(7), gates("web", &["claude"], &[])),
            (TaskId(8), gates("web", &["codex"], &[])),
        ];
        let decision = pick(&limits, &tally, &candidates, "2026-12-03");
        assert_eq!(decision.chosen, Some(TaskId(8)));
        assert_eq!(
            decision.waiting,
            vec![(
                TaskId(7),
                "waiting for: agent `claude` concurrency limit 2/2 running".to_owned()
            )]
        );
    }

    #[test]
    fn labels_projects_and_daily_budgets_each_hold_a_task_back() {
        let limits = limits(
            ConcurrencyLimits {
                project: Some(1),
                projects: [("big".to_owned(), 3)].into(),
                labels: [("deploy".to_owned(), 1)].into(),
                ..Default::default()
            },
            DailyBudgets {
                projects: [(
                    "big".to_owned(),
                    DailyLimit {
                        cost_usd: Some(5.0),
                        ..Default::default()
                    },
                )]
                .into(),
                agents: [(
                    "codex".to_owned(),
                    DailyLimit {
                        tokens: Some(100),
                        ..Default::default()
                    },
                )]
                .into(),
                ..Default::default()
            },
        );
        let mut tally = Tally::default();
        tally.add_running(&gates("small", &[], &["deploy"]));
        tally.spent_projects.insert(
            "big".into(),
            Spend {
                cost_usd: 5.5,
                ..Default::default()
            },
        );
        tally.spent_agents.insert(
            "codex".into(),
            Spend {
                tokens: 100,
                ..Default::default()
            },
        );
        let day = "2026-12-03";
        let reason = |g: TaskGates| match holds_back(&limits, &tally, &g, day) {
            Some(wait) => Err(wait.to_string()),
            None => Ok(()),
        };
        assert_eq!(
            reason(gates("small", &[], &[])),
            Err("waiting for: project `small` concurrency limit 1/1 running".into())
        );
        assert_eq!(
            reason(gates("other", &[], &["deploy"])),
            Err("waiting for: label `deploy` concurrency limit 1/1 running".into())
        );
        assert_eq!(
            reason(gates("big", &[], &[])),
            Err(
                "waiting for: project `big` daily cost limit $5.50/$5.00 spent on 2026-12-03 \
                 (resets at midnight, or raise the limit)"
                    .into()
            )
        );
        assert_eq!(
            reason(gates("other", &["codex"], &[])),
            Err(
                "waiting for: agent `codex` daily tokens limit 100/100 spent on 2026-12-03 \
                 (resets at midnight, or raise the limit)"
                    .into()
            )
        );
        assert_eq!(reason(gates("other", &["claude"], &["x"])), Ok(()));
    }

    #[test]
    fn an_auto_step_counts_under_its_agent_label_else_under_auto() {
        let spec = |labels: &[&str]| -> TaskSpec {
            serde_json::from_value(serde_json::json!({
                "title": "t", "labels": labels, "retry": {"max_attempts": 1, "backoff_base": 1, "backoff_max": 1, "jitter": 0},
                "steps": [
                    {"name": "a", "kind": "agent", "agent": "auto", "prompt": "p"},
                    {"name": "b", "kind": "exec", "commands": [{"argv": ["true"]}]},
                    {"name": "c", "kind": "agent", "agent": "codex", "prompt": "p"},
                ],
            }))
            .unwrap()
        };
        assert_eq!(
            TaskGates::of("p", &spec(&["agent:claude"])).agents,
            ["claude".to_owned(), "codex".to_owned()].into()
        );
        assert_eq!(
            TaskGates::of("p", &spec(&[])).agents,
            ["auto".to_owned(), "codex".to_owned()].into()
        );
    }

    #[test]
    fn the_day_window_is_midnight_to_midnight_in_the_configured_zone() {
        // 2026-12-03T23:30:00Z is already 2026-12-04 00:30 in Paris (UTC+1 in winter).
        let now = Timestamp(1_796_340_600_000);
        let utc = day_window(now, chrono_tz::UTC);
        assert_eq!(utc.day, "2026-12-03");
        assert_eq!(utc.end.0 - utc.start.0, 86_400_000);
        assert!(utc.start <= now && now < utc.end);
        let paris = day_window(now, chrono_tz::Europe::Paris);
        assert_eq!(paris.day, "2026-12-04");
        assert_eq!(paris.start.0, utc.end.0 - 3_600_000);
    }

    #[test]
    fn a_bad_time_zone_or_a_negative_cost_is_refused_with_the_key() {
        let err = ClaimLimits::new(
            ConcurrencyLimits::default(),
            DailyBudgets {
                time_zone: Some("Mars/Olympus".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("budgets.time_zone"), "{err}");
        let err = ClaimLimits::new(
            ConcurrencyLimits::default(),
            DailyBudgets {
                agents: [(
                    "claude".to_owned(),
                    DailyLimit {
                        cost_usd: Some(-1.0),
                        ..Default::default()
                    },
                )]
                .into(),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("budgets.agents.claude.cost_usd"), "{err}");
    }
}
