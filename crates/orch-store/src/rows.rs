//! Stored rows to domain types, for every backend: each backend reads the columns with its
//! driver into these plain structs, and the conversion (and what counts as corrupt) is here.
//! A value that does not parse is reported as corrupt, never replaced by a default.

use std::str::FromStr;

use orch_core::{
    Event, EventKind, Lease, Run, RunId, RunState, Status, Task, TaskId, TaskSpec, Timestamp,
    WorkflowId,
};

use crate::{ProjectId, Result, StoreError};

/// The parts of a stored spec that store decisions need.
#[derive(serde::Deserialize)]
pub(crate) struct SpecPolicy {
    pub retry: orch_core::RetryPolicy,
    #[serde(default)]
    pub requires_approval: bool,
}

impl SpecPolicy {
    /// Read the policy of task `task` from its stored spec.
    pub(crate) fn of(task: TaskId, spec: &str) -> Result<SpecPolicy> {
        serde_json::from_str(spec)
            .map_err(|e| StoreError::Corrupt(format!("task {task} spec: {e}")))
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn parse<T: FromStr>(text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    T::from_str(text).map_err(corrupt)
}

pub(crate) fn count(value: i64, column: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("{column} = {value} is out of range")))
}

/// The columns of `select_task`.
pub(crate) struct TaskRow {
    pub id: i64,
    pub project_id: i64,
    pub workflow_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub spec: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub attempts_used: i64,
    pub run_count: i64,
    pub not_before: Option<i64>,
    /// Comma-separated dependency ids.
    pub needs: Option<String>,
    pub current_run: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TaskRow {
    pub(crate) fn into_task(self) -> Result<Task> {
        let id = TaskId(self.id);
        let spec: TaskSpec = serde_json::from_str(&self.spec)
            .map_err(|e| corrupt(format!("task {id} has an unreadable spec: {e}")))?;
        let mut needs = Vec::new();
        for part in self
            .needs
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|p| !p.is_empty())
        {
            needs.push(TaskId(parse::<i64>(part)?));
        }
        needs.sort();
        Ok(Task {
            id,
            project: ProjectId(self.project_id),
            workflow: self.workflow_id.map(WorkflowId),
            parent: self.parent_id.map(TaskId),
            spec,
            status: parse(&self.status)?,
            status_reason: self.status_reason,
            attempts_used: count(self.attempts_used, "attempts_used")?,
            run_count: count(self.run_count, "run_count")?,
            needs,
            not_before: self.not_before.map(Timestamp),
            current_run: self.current_run.map(RunId),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

/// The columns of `select_run`.
pub(crate) struct RunRow {
    pub id: i64,
    pub task_id: i64,
    pub attempt: i64,
    pub owner: String,
    pub lease_expires_at: i64,
    pub state: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
}

impl RunRow {
    pub(crate) fn into_run(self) -> Result<Run> {
        Ok(Run {
            id: RunId(self.id),
            task: TaskId(self.task_id),
            attempt: count(self.attempt, "attempt")?,
            lease: Lease {
                owner: self.owner,
                expires_at: Timestamp(self.lease_expires_at),
            },
            state: parse::<RunState>(&self.state)?,
            started_at: Timestamp(self.started_at),
            ended_at: self.ended_at.map(Timestamp),
            outcome: self.outcome,
        })
    }
}

/// The columns of `select_events_of_task`.
pub(crate) struct EventRow {
    pub id: i64,
    pub task_id: i64,
    pub run_id: Option<i64>,
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub data: String,
}

impl EventRow {
    pub(crate) fn into_event(self) -> Result<Event> {
        Ok(Event {
            id: self.id,
            task: TaskId(self.task_id),
            run: self.run_id.map(RunId),
            at: Timestamp(self.at),
            actor: self.actor,
            kind: parse::<EventKind>(&self.kind)?,
            from: self
                .from_status
                .as_deref()
                .map(parse::<Status>)
                .transpose()?,
            to: parse(&self.to_status)?,
            reason: self.reason,
            data: serde_json::from_str(&self.data)
                .map_err(|e| corrupt(format!("event data: {e}")))?,
        })
    }
}

/// The columns of `select_reviews_of_task`.
pub(crate) struct ReviewRow {
    pub run_id: i64,
    pub round: i64,
    pub verdict: String,
    pub reasons: String,
    pub escalated: bool,
}

impl ReviewRow {
    pub(crate) fn into_review(self) -> Result<crate::ReviewRecord> {
        let run = self.run_id;
        let corrupt = |what: String| StoreError::Corrupt(format!("review of run {run}: {what}"));
        Ok(crate::ReviewRecord {
            round: u32::try_from(self.round).map_err(|e| corrupt(e.to_string()))?,
            verdict: self.verdict.parse().map_err(corrupt)?,
            reasons: serde_json::from_str(&self.reasons).map_err(|e| corrupt(e.to_string()))?,
            escalated: self.escalated,
        })
    }
}

/// The run a claim just opened.
pub(crate) fn claimed_run(
    id: RunId,
    task: TaskId,
    attempt: i64,
    owner: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Run {
    Run {
        id,
        task,
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        lease: Lease {
            owner: owner.to_owned(),
            expires_at,
        },
        state: RunState::Active,
        started_at: now,
        ended_at: None,
        outcome: None,
    }
}

/// Refuse a database whose schema has a migration this orch does not know (a newer orch wrote
/// it).
pub(crate) fn check_migrations(
    applied: &std::collections::BTreeSet<i64>,
    known: &[(i64, &str, &str)],
) -> Result<()> {
    let known: std::collections::BTreeSet<i64> = known.iter().map(|(v, _, _)| *v).collect();
    match applied.difference(&known).next() {
        Some(unknown) => Err(StoreError::Invalid {
            field: "database".into(),
            reason: format!("its schema has migration {unknown}, which this orch does not know; it was written by a newer orch, so upgrade orch"),
        }),
        None => Ok(()),
    }
}
