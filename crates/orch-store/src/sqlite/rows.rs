//! SQLite rows to the shared row structs (`crate::rows`). Mappers return
//! `rusqlite::Result<Result<T>>`: the outer error is the driver's, the inner one a value orch
//! cannot read.

use orch_core::{Event, ProjectId, Run, Task, Timestamp};
use rusqlite::Row;

use crate::rows::{EventRow, RunRow, TaskRow};
use crate::{Project, Result};

pub(super) fn project_from_row(row: &Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: ProjectId(row.get("id")?),
        name: row.get("name")?,
        path: row.get("path")?,
        created_at: Timestamp(row.get("created_at")?),
    })
}

pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Task>> {
    Ok(TaskRow {
        id: row.get("id")?,
        project_id: row.get("project_id")?,
        workflow_id: row.get("workflow_id")?,
        parent_id: row.get("parent_id")?,
        spec: row.get("spec")?,
        status: row.get("status")?,
        status_reason: row.get("status_reason")?,
        attempts_used: row.get("attempts_used")?,
        run_count: row.get("run_count")?,
        not_before: row.get("not_before")?,
        needs: row.get("needs")?,
        current_run: row.get("current_run")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    }
    .into_task())
}

pub(super) fn run_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Run>> {
    Ok(RunRow {
        id: row.get("id")?,
        task_id: row.get("task_id")?,
        attempt: row.get("attempt")?,
        owner: row.get("owner")?,
        lease_expires_at: row.get("lease_expires_at")?,
        state: row.get("state")?,
        started_at: row.get("started_at")?,
        ended_at: row.get("ended_at")?,
        outcome: row.get("outcome")?,
    }
    .into_run())
}

/// An event row (its values unread: the doctor reports unreadable ones).
pub(super) fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: row.get("id")?,
        task_id: row.get("task_id")?,
        run_id: row.get("run_id")?,
        at: row.get("at")?,
        actor: row.get("actor")?,
        kind: row.get("kind")?,
        from_status: row.get("from_status")?,
        to_status: row.get("to_status")?,
        reason: row.get("reason")?,
        data: row.get("data")?,
    })
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Event>> {
    Ok(event_row(row)?.into_event())
}
