//! PostgreSQL rows to the shared row structs (`crate::rows`) and on to domain types.

use orch_core::{Event, ProjectId, Run, Task, Timestamp};
use tokio_postgres::Row;

use super::Result;
use crate::rows::{EventRow, RunRow, TaskRow};
use crate::Project;

pub(super) fn project_from_row(row: &Row) -> Result<Project> {
    Ok(Project {
        id: ProjectId(row.try_get("id")?),
        name: row.try_get("name")?,
        path: row.try_get("path")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub(super) fn task_from_row(row: &Row) -> Result<Task> {
    Ok(TaskRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        workflow_id: row.try_get("workflow_id")?,
        parent_id: row.try_get("parent_id")?,
        spec: row.try_get("spec")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        attempts_used: row.try_get("attempts_used")?,
        run_count: row.try_get("run_count")?,
        not_before: row.try_get("not_before")?,
        needs: row.try_get("needs")?,
        current_run: row.try_get("current_run")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    }
    .into_task()?)
}

pub(super) fn run_from_row(row: &Row) -> Result<Run> {
    Ok(RunRow {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        attempt: row.try_get("attempt")?,
        owner: row.try_get("owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        state: row.try_get("state")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        outcome: row.try_get("outcome")?,
    }
    .into_run()?)
}

/// An event row; the driver's errors and unreadable values stay apart (for the doctor).
pub(super) fn event_row(row: &Row) -> Result<EventRow> {
    Ok(EventRow {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        run_id: row.try_get("run_id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        kind: row.try_get("kind")?,
        from_status: row.try_get("from_status")?,
        to_status: row.try_get("to_status")?,
        reason: row.try_get("reason")?,
        data: row.try_get("data")?,
    })
}

pub(super) fn event_from_row(row: &Row) -> Result<Event> {
    Ok(event_row(row)?.into_event()?)
}
