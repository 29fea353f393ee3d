//! Claim-time limits: the limits a store handle claims under (set by the daemon from its
//! `config.toml`), the day window they count in, and today's usage against them (`orch usage`).
//!
//! A handle with limits claims through the gated path of each backend's `claim.rs`: in the
//! claim's transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: under one advisory lock) it counts
//! what runs and what was spent today, asks `orch_core::limits::pick` and claims the chosen task,
//! writing why the ones before it wait into their `status_reason`.

use std::sync::{Arc, RwLock};

use orch_core::limits::{day_window, ClaimLimits, DayWindow, Spend, Tally, TaskGates};
use orch_core::{TaskSpec, Timestamp};

use crate::Store;

/// How many queued tasks, best first, a gated claim looks at. Past them it claims nothing even
/// if a later task would pass every gate (bounded work per claim; see docs/decisions.md).
pub(crate) const CANDIDATES: i64 = 200;

/// The PostgreSQL advisory lock key gated claims take turns under (`orch` in ASCII, then 1).
pub(crate) const LOCK_KEY: i64 = 0x6f72_6368_0001;

/// The limits of one handle, shared by its clones. A std lock: held to copy an `Arc`, never
/// across an await.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitsCell(Arc<RwLock<Option<Arc<ClaimLimits>>>>);

impl LimitsCell {
    pub(crate) fn set(&self, limits: ClaimLimits) {
        let limits = (!limits.is_empty()).then(|| Arc::new(limits));
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// The limits, if any are set.
    pub(crate) fn get(&self) -> Option<Arc<ClaimLimits>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The current day of the limits' time zone, by the calendar clock. Runs and usage rows are
/// stamped with the wall clock and compared with it as they are: in production the two clocks
/// are one; a test that moves the calendar past midnight leaves every earlier record in the day
/// it was made.
#[derive(Debug, Clone)]
pub(crate) struct GateWindow {
    pub(crate) day: DayWindow,
    pub(crate) wall_start: i64,
    pub(crate) wall_end: i64,
}

pub(crate) fn window(limits: &ClaimLimits) -> GateWindow {
    let day = day_window(crate::calendar_clock(), limits.zone());
    GateWindow {
        wall_start: day.start.0,
        wall_end: day.end.0,
        day,
    }
}

/// What a stored task counts under. A spec that does not parse counts under its project only
/// (the claim then reports it corrupt).
pub(crate) fn gates_of(project: &str, spec: &str) -> TaskGates {
    match serde_json::from_str::<TaskSpec>(spec) {
        Ok(spec) => TaskGates::of(project, &spec),
        Err(_) => TaskGates {
            project: project.to_owned(),
            agents: Default::default(),
            labels: Default::default(),
        },
    }
}

/// One row of usage (`sessions, tokens, cost`) as a spend; `runs` is set by the caller (a
/// project's runs are those started in the window, an agent's those that used it).
pub(crate) fn add_usage(spend: &mut Spend, sessions: i64, tokens: i64, cost: f64) {
    spend.sessions += u64::try_from(sessions).unwrap_or(0);
    spend.tokens += u64::try_from(tokens).unwrap_or(0);
    spend.cost_usd += cost;
}

/// Today's counts against the limits, as `orch usage` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageToday {
    /// The day (`YYYY-MM-DD`, in the limits' time zone).
    pub day: String,
    /// The time zone's name.
    pub time_zone: String,
    /// When the day began and ends (milliseconds since the Unix epoch, calendar clock).
    pub window: (Timestamp, Timestamp),
    /// What runs now and what was spent today.
    pub tally: Tally,
}

/// Agent usage of one (UTC) day, project and agent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DailyUsage {
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

pub(crate) fn daily_usage(
    day: String,
    project: String,
    agent: String,
    runs: i64,
    sessions: i64,
    tokens: Option<i64>,
    cost_usd: Option<f64>,
) -> DailyUsage {
    DailyUsage {
        day,
        project,
        agent,
        runs: u64::try_from(runs).unwrap_or(0),
        sessions: u64::try_from(sessions).unwrap_or(0),
        tokens: u64::try_from(tokens.unwrap_or(0)).unwrap_or(0),
        cost_usd: cost_usd.unwrap_or(0.0),
    }
}

impl Store {
    /// Agent usage per (UTC) day, project and agent, from the day `since` (`YYYY-MM-DD`) on,
    /// newest first.
    pub async fn usage_by_day(&self, since: &str) -> crate::Result<Vec<DailyUsage>> {
        match self {
            Store::Sqlite(store) => store.usage_by_day(since.to_owned()).await,
            Store::Postgres(store) => store.usage_by_day(since.to_owned()).await,
        }
    }

    /// The limits claims through this handle (and its clones) obey from now on; empty limits
    /// claim ungated (`claim_next`'s one statement).
    pub fn set_claim_limits(&self, limits: ClaimLimits) {
        match self {
            Store::Sqlite(store) => store.limits.set(limits),
            Store::Postgres(store) => store.limits.set(limits),
        }
    }

    /// The limits claims through this handle obey (empty when none are set).
    pub fn claim_limits(&self) -> ClaimLimits {
        let cell = match self {
            Store::Sqlite(store) => &store.limits,
            Store::Postgres(store) => &store.limits,
        };
        cell.get().map(|l| (*l).clone()).unwrap_or_default()
    }

    /// What runs now and what was spent in the current day of `limits`' time zone.
    pub async fn usage_today(&self, limits: &ClaimLimits) -> crate::Result<UsageToday> {
        let window = window(limits);
        let tally = match self {
            Store::Sqlite(store) => store.tally(window.clone()).await?,
            Store::Postgres(store) => store.tally(window.clone()).await?,
        };
        Ok(UsageToday {
            day: window.day.day.clone(),
            time_zone: limits.zone().name().to_owned(),
            window: (window.day.start, window.day.end),
            tally,
        })
    }
}
