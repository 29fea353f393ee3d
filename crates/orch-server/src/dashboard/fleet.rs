//! `GET /agents`, `/workers` and `/usage`: the agents this daemon can run (installed version,
//! readiness, rate-limit pauses), the workers doing the work (remote workers with their slots,
//! current runs and last heartbeat; the embedded ones), and tokens and cost per day, agent and
//! project as charts.
//!
//! A remote worker is known from its requests: [`Fleet`] remembers, per slot, the last claim or
//! heartbeat this daemon answered (in memory: a daemon that restarts, or another daemon on the
//! same database, starts from what it sees). Rate-limit pauses are the embedded workers' own
//! (a remote worker pauses its agents in its own process).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use orch_api::UsageTotalView;
use orch_core::{RunState, Status};
use orch_store::TaskFilter;

use super::auth::Session;
use super::render::charts::{self, Bar, Chart, Unit};
use super::{render, Nav, PageContext, PageError};
use crate::api::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/agents", get(agents_page))
        .route("/workers", get(workers_page))
        .route("/usage", get(usage_page))
}

/// Slots not heard from for this long are left off the workers page.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Slots not heard from for this long are shown as silent.
const SILENT_AFTER: Duration = Duration::from_secs(120);
/// Most slots remembered (a flood of made-up worker names cannot grow memory without bound).
const MAX_SLOTS: usize = 1_000;

/// What the daemon knows of the workers beyond the store: remote slots' last requests and the
/// embedded workers' agent pauses.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Agents paused by a rate limit, until when: the embedded workers' own map.
    pub agent_pauses: Arc<Mutex<BTreeMap<String, Instant>>>,
    /// Per remote slot name: when it was last heard from (wall clock) and its last run.
    // A std mutex: held for one map operation, never across an await.
    slots: Mutex<BTreeMap<String, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    at: SystemTime,
    run: Option<i64>,
}

impl Fleet {
    /// Remember that the slot `worker` made a request (a claim, with the run it got, or a
    /// heartbeat of `run`).
    pub fn saw(&self, worker: &str, run: Option<i64>) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let now = SystemTime::now();
        if slots.len() >= MAX_SLOTS && !slots.contains_key(worker) {
            let oldest = slots
                .iter()
                .min_by_key(|(_, seen)| seen.at)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                slots.remove(&oldest);
            }
        }
        let entry = slots
            .entry(worker.to_owned())
            .or_insert(Seen { at: now, run });
        entry.at = now;
        if run.is_some() {
            entry.run = run;
        }
    }

    fn slots(&self) -> Vec<(String, Seen)> {
        let now = SystemTime::now();
        self.slots
            .lock()
            .map(|slots| {
                slots
                    .iter()
                    .filter(|(_, seen)| {
                        now.duration_since(seen.at).unwrap_or_default() < FORGET_AFTER
                    })
                    .map(|(name, seen)| (name.clone(), *seen))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The agents paused now, with the time left.
    pub fn paused(&self) -> BTreeMap<String, Duration> {
        let now = Instant::now();
        self.agent_pauses
            .lock()
            .map(|pauses| {
                pauses
                    .iter()
                    .filter_map(|(agent, until)| {
                        until
                            .checked_duration_since(now)
                            .filter(|d| !d.is_zero())
                            .map(|d| (agent.clone(), d))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The worker a slot belongs to: `<name>-<n>` → `<name>` (a name without a number is its own).
pub fn worker_of(slot: &str) -> &str {
    match slot.rsplit_once('-') {
        Some((name, n))
            if !name.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        _ => slot,
    }
}

fn ago(at: SystemTime) -> String {
    let elapsed = SystemTime::now().duration_since(at).unwrap_or_default();
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
    )
}

/// One agent's row.
#[derive(Debug)]
pub struct AgentRow {
    name: String,
    installed: String,
    version: String,
    minimum: String,
    enabled: bool,
    ready: bool,
    problem: String,
    paused: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    page: PageContext,
    agents: Vec<AgentRow>,
    config_error: Option<String>,
}

async fn agents_page(session: Session, State(state): State<ApiState>) -> Response {
    let (config, config_error) = match orch_worker::project::ProjectConfig::load_global(&state.home)
    {
        Ok(config) => (config, None),
        Err(e) => (
            orch_worker::project::ProjectConfig::default(),
            Some(format!(
                "config.toml does not parse, so the defaults are shown: {e}"
            )),
        ),
    };
    let path = std::env::var("PATH").ok();
    let cache = state.home.join("agent-versions.json");
    let infos =
        orch_agents::preflight::check_all_cached(&config.agents, path.as_deref(), &cache).await;
    let paused = state.fleet.paused();
    let agents = infos
        .into_iter()
        .map(|info| AgentRow {
            installed: match &info.path {
                Some(path) => path.display().to_string(),
                None if info.name == "sim" => "built in".to_owned(),
                None => "no".to_owned(),
            },
            version: info.version.clone().unwrap_or_else(|| "-".to_owned()),
            minimum: info.min_version.clone().unwrap_or_else(|| "-".to_owned()),
            enabled: info.enabled,
            ready: info.ready,
            problem: info.problem.clone().unwrap_or_default(),
            paused: paused
                .get(&info.name)
                .map(|left| {
                    format!(
                        "paused by a rate limit for {}",
                        humantime::format_duration(Duration::from_secs(left.as_secs().max(1)))
                    )
                })
                .unwrap_or_default(),
            name: info.name,
        })
        .collect();
    let page = AgentsPage {
        page: PageContext::new(&session, "Agents", Nav::Agents),
        agents,
        config_error,
    };
    render(&page, &page.page)
}

/// One run in progress.
#[derive(Debug)]
pub struct CurrentRun {
    task: i64,
    title: String,
    attempt: u32,
    slot: String,
    lease_expires: String,
}

/// One worker: its slots and runs.
#[derive(Debug)]
pub struct WorkerRow {
    name: String,
    kind: &'static str,
    slots: usize,
    busy: usize,
    last_heard: String,
    silent: bool,
    runs: Vec<CurrentRun>,
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    page: PageContext,
    workers: Vec<WorkerRow>,
}

async fn workers_page(session: Session, State(state): State<ApiState>) -> Response {
    match load_workers(&state).await {
        Ok(workers) => {
            let page = WorkersPage {
                page: PageContext::new(&session, "Workers", Nav::Workers),
                workers,
            };
            render(&page, &page.page)
        }
        Err(e) => e.into_response(),
    }
}

async fn load_workers(state: &ApiState) -> Result<Vec<WorkerRow>, PageError> {
    let running = state
        .store
        .tasks(&TaskFilter {
            status: Some(Status::Running),
            ..TaskFilter::default()
        })
        .await?;
    let mut runs: Vec<CurrentRun> = Vec::new();
    for task in &running {
        let task_runs = state.store.runs(task.id).await?;
        if let Some(run) = task_runs.iter().rev().find(|r| r.state == RunState::Active) {
            runs.push(CurrentRun {
                task: task.id.0,
                title: task.spec.title.to_string(),
                attempt: run.attempt,
                slot: run.lease.owner.clone(),
                lease_expires: super::format_time(run.lease.expires_at),
            });
        }
    }
    let mut workers: BTreeMap<String, WorkerRow> = BTreeMap::new();
    let slots = state.fleet.slots();
    for (slot, seen) in &slots {
        let name = worker_of(slot).to_owned();
        let row = workers.entry(name.clone()).or_insert_with(|| WorkerRow {
            name,
            kind: "remote",
            slots: 0,
            busy: 0,
            last_heard: String::new(),
            silent: true,
            runs: Vec::new(),
        });
        row.slots += 1;
        let _ = seen.run;
        let newest = slots
            .iter()
            .filter(|(other, _)| worker_of(other) == row.name)
            .map(|(_, s)| s.at)
            .max()
            .unwrap_or(seen.at);
        row.last_heard = ago(newest);
        row.silent = SystemTime::now().duration_since(newest).unwrap_or_default() > SILENT_AFTER;
    }
    for run in runs {
        let embedded = run.slot.starts_with("embedded-");
        let name = worker_of(&run.slot).to_owned();
        let row = workers.entry(name.clone()).or_insert_with(|| WorkerRow {
            name,
            kind: if embedded { "embedded" } else { "remote" },
            slots: 0,
            busy: 0,
            last_heard: if embedded {
                "in this daemon".to_owned()
            } else {
                "not since this daemon started".to_owned()
            },
            silent: false,
            runs: Vec::new(),
        });
        row.busy += 1;
        row.slots = row.slots.max(row.busy);
        row.runs.push(run);
    }
    Ok(workers.into_values().collect())
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    page: PageContext,
    charts: Vec<String>,
    totals: Vec<(String, u64, String, String)>,
    /// Today against the limits: kind, name, running, runs, sessions, tokens, cost (each
    /// `spent / limit`, or just spent when unlimited).
    limits: Vec<[String; 7]>,
    /// Today (`YYYY-MM-DD time zone`) for the limits' heading.
    day: String,
}

fn of<T: std::fmt::Display>(spent: T, limit: Option<T>) -> String {
    match limit {
        Some(limit) => format!("{spent} / {limit}"),
        None => spent.to_string(),
    }
}

fn limit_rows(report: &orch_api::UsageLimitsView) -> Vec<[String; 7]> {
    let today = &report.today;
    let kinds = [
        ("project", &today.projects),
        ("agent", &today.agents),
        ("label", &today.labels),
    ];
    let mut rows = Vec::new();
    for (kind, gauges) in kinds {
        for g in gauges.iter() {
            let cost = |c: f64| format!("${c:.2}");
            rows.push([
                kind.to_owned(),
                g.name.clone(),
                of(g.running, g.running_limit),
                of(g.spent.runs, g.limit.runs),
                of(g.spent.sessions, g.limit.sessions),
                of(g.spent.tokens, g.limit.tokens),
                match g.limit.cost_usd {
                    Some(limit) => format!("{} / {}", cost(g.spent.cost_usd), cost(limit)),
                    None => cost(g.spent.cost_usd),
                },
            ]);
        }
    }
    rows
}

fn chart(title: &str, rows: &[UsageTotalView], tokens: bool) -> String {
    let bars = rows
        .iter()
        .map(|r| Bar {
            label: r.key.clone(),
            values: if tokens {
                vec![r.input_tokens as f64, r.output_tokens as f64]
            } else {
                vec![r.cost_usd]
            },
        })
        .collect();
    charts::render(&Chart {
        title: title.to_owned(),
        series: if tokens {
            vec!["input".to_owned(), "output".to_owned()]
        } else {
            vec!["cost".to_owned()]
        },
        bars,
        unit: if tokens { Unit::Tokens } else { Unit::Dollars },
    })
}

async fn usage_page(session: Session, State(state): State<ApiState>) -> Response {
    // The same view `GET /v1/usage` answers.
    let summary = match state.store.usage_summary(30).await {
        Ok(summary) => crate::api::convert::usage_summary(summary),
        Err(e) => return PageError::from(e).into_response(),
    };
    // Oldest day at the top, like a calendar.
    let mut days = summary.by_day.clone();
    days.reverse();
    let charts = vec![
        chart("Tokens per day (last 30 days with usage)", &days, true),
        chart("Cost per day (US dollars)", &days, false),
        chart("Tokens per agent", &summary.by_agent, true),
        chart("Cost per agent (US dollars)", &summary.by_agent, false),
        chart("Tokens per project", &summary.by_project, true),
        chart("Cost per project (US dollars)", &summary.by_project, false),
    ];
    let totals = summary
        .by_agent
        .iter()
        .map(|t| {
            (
                t.key.clone(),
                t.sessions,
                format!(
                    "{} in, {} out",
                    Unit::Tokens.format(t.input_tokens as f64),
                    Unit::Tokens.format(t.output_tokens as f64)
                ),
                Unit::Dollars.format(t.cost_usd),
            )
        })
        .collect();
    let report = match state.app.usage_report(&state.store.claim_limits(), 1).await {
        Ok(report) => report,
        Err(e) => return PageError::internal(&e).into_response(),
    };
    let page = UsagePage {
        page: PageContext::new(&session, "Usage", Nav::Usage),
        charts,
        totals,
        limits: limit_rows(&report),
        day: format!("{} ({})", report.day, report.time_zone),
    };
    render(&page, &page.page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_belong_to_their_worker() {
        assert_eq!(worker_of("gpu-box-2"), "gpu-box");
        assert_eq!(worker_of("embedded-abc-1"), "embedded-abc");
        assert_eq!(worker_of("solo"), "solo");
        assert_eq!(worker_of("-3"), "-3");
        assert_eq!(worker_of("a-b"), "a-b");
    }

    #[test]
    fn the_fleet_remembers_slots_and_their_runs_within_a_bound() {
        let fleet = Fleet::default();
        fleet.saw("w-1", None);
        fleet.saw("w-1", Some(7));
        fleet.saw("w-1", None);
        fleet.saw("w-2", None);
        let slots = fleet.slots();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].1.run, Some(7));
        for i in 0..(MAX_SLOTS + 10) {
            fleet.saw(&format!("flood-{i}"), None);
        }
        assert_eq!(fleet.slots().len(), MAX_SLOTS);
    }

    #[test]
    fn pauses_in_the_past_are_not_shown() {
        let fleet = Fleet::default();
        if let Ok(mut pauses) = fleet.agent_pauses.lock() {
            pauses.insert(
                "claude".to_owned(),
                Instant::now() + Duration::from_secs(60),
            );
            pauses.insert("codex".to_owned(), Instant::now());
        }
        let paused = fleet.paused();
        assert!(paused.contains_key("claude"));
        assert!(!paused.contains_key("codex"));
    }
}
