//! Database rows to domain types. A value that does not parse is reported as corrupt, never
//! replaced by a default.

use std::str::FromStr;

use orch_core::{
    Event, EventKind, FencingToken, Lease, ProjectId, Run, RunId, RunState, Status, Task, TaskId,
    TaskSpec, Timestamp, WorkflowId,
};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

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

pub(super) fn project_from_row(row: &SqliteRow) -> Result<Project> {
    Ok(Project {
        id: ProjectId(row.try_get("id")?),
        name: row.try_get("name")?,
        path: row.try_get("path")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub(super) fn task_from_row(row: &SqliteRow) -> Result<Task> {
    let id = TaskId(row.try_get("id")?);
    let spec_text: String = row.try_get("spec")?;
    let spec: TaskSpec = serde_json::from_str(&spec_text)
        .map_err(|e| corrupt(format!("task {id} has an unreadable spec: {e}")))?;
    let status: String = row.try_get("status")?;
    let needs_text: Option<String> = row.try_get("needs")?;
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
        project: ProjectId(row.try_get("project_id")?),
        workflow: row
            .try_get::<Option<i64>, _>("workflow_id")?
            .map(WorkflowId),
        parent: row.try_get::<Option<i64>, _>("parent_id")?.map(TaskId),
        spec,
        status: parse(&status)?,
        status_reason: row.try_get("status_reason")?,
        attempts_used: count(row.try_get("attempts_used")?, "attempts_used")?,
        run_count: count(row.try_get("run_count")?, "run_count")?,
        needs,
        not_before: row.try_get::<Option<i64>, _>("not_before")?.map(Timestamp),
        current_run: row.try_get::<Option<i64>, _>("current_run")?.map(RunId),
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

pub(super) fn run_from_row(row: &SqliteRow) -> Result<Run> {
    let state: String = row.try_get("state")?;
    Ok(Run {
        id: RunId(row.try_get("id")?),
        task: TaskId(row.try_get("task_id")?),
        attempt: count(row.try_get("attempt")?, "attempt")?,
        lease: Lease {
            owner: row.try_get("owner")?,
            expires_at: Timestamp(row.try_get("lease_expires_at")?),
            token: FencingToken(row.try_get("token")?),
        },
        state: parse::<RunState>(&state)?,
        started_at: Timestamp(row.try_get("started_at")?),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(Timestamp),
        outcome: row.try_get("outcome")?,
    })
}

pub(super) fn event_from_row(row: &SqliteRow) -> Result<Event> {
    let kind: String = row.try_get("kind")?;
    let from: Option<String> = row.try_get("from_status")?;
    let to: String = row.try_get("to_status")?;
    let data: String = row.try_get("data")?;
    Ok(Event {
        id: row.try_get("id")?,
        task: TaskId(row.try_get("task_id")?),
        run: row.try_get::<Option<i64>, _>("run_id")?.map(RunId),
        at: Timestamp(row.try_get("at")?),
        actor: row.try_get("actor")?,
        kind: parse::<EventKind>(&kind)?,
        from: from.as_deref().map(parse::<Status>).transpose()?,
        to: parse(&to)?,
        reason: row.try_get("reason")?,
        data: serde_json::from_str(&data).map_err(|e| corrupt(format!("event data: {e}")))?,
    })
}
