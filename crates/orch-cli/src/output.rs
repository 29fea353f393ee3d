//! What commands print: JSON views (stable field names) and human tables.

use std::time::{Duration, UNIX_EPOCH};

use comfy_table::{presets, Table};
use orch_core::{Event, Run, Task, Timestamp};
use serde::Serialize;

/// Format a timestamp as RFC 3339 (UTC, milliseconds).
pub fn time(at: Timestamp) -> String {
    let ms = u64::try_from(at.0).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A task as `--json` shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: i64,
    pub key: Option<String>,
    pub title: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub priority: i32,
    pub labels: Vec<String>,
    pub project: i64,
    pub workflow: Option<i64>,
    pub parent: Option<i64>,
    pub needs: Vec<i64>,
    pub attempts_used: u32,
    pub max_attempts: u32,
    pub run_count: u32,
    pub current_run: Option<i64>,
    pub not_before: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Task> for TaskView {
    fn from(task: &Task) -> Self {
        TaskView {
            id: task.id.0,
            key: task.spec.key.clone(),
            title: task.spec.title.to_string(),
            status: task.status.to_string(),
            status_reason: task.status_reason.clone(),
            priority: task.spec.priority,
            labels: task.spec.labels.clone(),
            project: task.project.0,
            workflow: task.workflow.map(|w| w.0),
            parent: task.parent.map(|p| p.0),
            needs: task.needs.iter().map(|n| n.0).collect(),
            attempts_used: task.attempts_used,
            max_attempts: task.spec.retry.max_attempts,
            run_count: task.run_count,
            current_run: task.current_run.map(|r| r.0),
            not_before: task.not_before.map(time),
            created_at: time(task.created_at),
            updated_at: time(task.updated_at),
        }
    }
}

/// A run as `--json` shows it.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub id: i64,
    pub attempt: u32,
    pub owner: String,
    pub state: String,
    pub token: i64,
    pub lease_expires_at: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: Option<String>,
}

impl From<&Run> for RunView {
    fn from(run: &Run) -> Self {
        RunView {
            id: run.id.0,
            attempt: run.attempt,
            owner: run.lease.owner.clone(),
            state: run.state.to_string(),
            token: run.lease.token.0,
            lease_expires_at: time(run.lease.expires_at),
            started_at: time(run.started_at),
            ended_at: run.ended_at.map(time),
            outcome: run.outcome.clone(),
        }
    }
}

/// An event as `--json` shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub from: Option<String>,
    pub to: String,
    pub run: Option<i64>,
    pub reason: Option<String>,
    pub data: serde_json::Value,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        EventView {
            id: event.id,
            at: time(event.at),
            actor: event.actor.clone(),
            kind: event.kind.to_string(),
            from: event.from.map(|s| s.to_string()),
            to: event.to.to_string(),
            run: event.run.map(|r| r.0),
            reason: event.reason.clone(),
            data: event.data.clone(),
        }
    }
}

/// A table with orch's look.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().map(|h| h.to_uppercase()));
    table
}

/// Print a value as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Tasks as a table.
pub fn task_table(tasks: &[Task]) -> Table {
    let mut t = table(&["id", "status", "pri", "tries", "needs", "title"]);
    for task in tasks {
        let needs: Vec<String> = task.needs.iter().map(|n| n.to_string()).collect();
        let mut title = task.spec.title.to_string();
        if let Some(reason) = &task.status_reason {
            title.push_str(&format!("  ({reason})"));
        }
        t.add_row(vec![
            task.id.to_string(),
            task.status.to_string(),
            task.spec.priority.to_string(),
            format!("{}/{}", task.attempts_used, task.spec.retry.max_attempts),
            needs.join(","),
            title,
        ]);
    }
    t
}
