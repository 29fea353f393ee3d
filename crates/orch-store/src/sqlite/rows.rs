//! Database rows to domain types. A value that does not parse is reported as corrupt, never
//! replaced by a default. Mappers return `rusqlite::Result<Result<T>>`: the outer error is the
//! driver's, the inner one a value orch cannot read.

use std::str::FromStr;

use orch_core::{
    Event, EventKind, Lease, ProjectId, Run, RunId, RunState, Status, Task, TaskId, TaskSpec,
    Timestamp, WorkflowId,
};
use rusqlite::Row;

use crate::{Project, Result, StoreError};

/// The parts of a stored spec that store decisions need.
#[derive(serde::Deserialize)]
pub(super) struct SpecPolicy {
    pub retry: orch_core::RetryPolicy,
    #[serde(default)]
    pub requires_approval: bool,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn parse<T: FromStr>(text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    T::from_str(text).map_err(corrupt)
}

fn count(value: i64, column: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("{column} = {value} is out of range")))
}

pub(super) fn project_from_row(row: &Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: ProjectId(row.get("id")?),
        name: row.get("name")?,
        path: row.get("path")?,
        created_at: Timestamp(row.get("created_at")?),
    })
}

pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Task>> {
    let id = TaskId(row.get("id")?);
    let spec_text: String = row.get("spec")?;
    let status: String = row.get("status")?;
    let needs_text: Option<String> = row.get("needs")?;
    let project = ProjectId(row.get("project_id")?);
    let workflow = row.get::<_, Option<i64>>("workflow_id")?.map(WorkflowId);
    let parent = row.get::<_, Option<i64>>("parent_id")?.map(TaskId);
    let status_reason: Option<String> = row.get("status_reason")?;
    let attempts_used: i64 = row.get("attempts_used")?;
    let run_count: i64 = row.get("run_count")?;
    let not_before = row.get::<_, Option<i64>>("not_before")?.map(Timestamp);
    let current_run = row.get::<_, Option<i64>>("current_run")?.map(RunId);
    let created_at = Timestamp(row.get("created_at")?);
    let updated_at = Timestamp(row.get("updated_at")?);
    Ok((|| {
        let spec: TaskSpec = serde_json::from_str(&spec_text)
            .map_err(|e| corrupt(format!("task {id} has an unreadable spec: {e}")))?;
        let mut needs = Vec::new();
        for part in needs_text
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
            project,
            workflow,
            parent,
            spec,
            status: parse(&status)?,
            status_reason,
            attempts_used: count(attempts_used, "attempts_used")?,
            run_count: count(run_count, "run_count")?,
            needs,
            not_before,
            current_run,
            created_at,
            updated_at,
        })
    })())
}

pub(super) fn run_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Run>> {
    let state: String = row.get("state")?;
    let attempt: i64 = row.get("attempt")?;
    let id = RunId(row.get("id")?);
    let task = TaskId(row.get("task_id")?);
    let lease = Lease {
        owner: row.get("owner")?,
        expires_at: Timestamp(row.get("lease_expires_at")?),
    };
    let started_at = Timestamp(row.get("started_at")?);
    let ended_at = row.get::<_, Option<i64>>("ended_at")?.map(Timestamp);
    let outcome: Option<String> = row.get("outcome")?;
    Ok((|| {
        Ok(Run {
            id,
            task,
            attempt: count(attempt, "attempt")?,
            lease,
            state: parse::<RunState>(&state)?,
            started_at,
            ended_at,
            outcome,
        })
    })())
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Event>> {
    let kind: String = row.get("kind")?;
    let from: Option<String> = row.get("from_status")?;
    let to: String = row.get("to_status")?;
    let data: String = row.get("data")?;
    let id: i64 = row.get("id")?;
    let task = TaskId(row.get("task_id")?);
    let run = row.get::<_, Option<i64>>("run_id")?.map(RunId);
    let at = Timestamp(row.get("at")?);
    let actor: String = row.get("actor")?;
    let reason: Option<String> = row.get("reason")?;
    Ok((|| {
        Ok(Event {
            id,
            task,
            run,
            at,
            actor,
            kind: parse::<EventKind>(&kind)?,
            from: from.as_deref().map(parse::<Status>).transpose()?,
            to: parse(&to)?,
            reason,
            data: serde_json::from_str(&data).map_err(|e| corrupt(format!("event data: {e}")))?,
        })
    })())
}
