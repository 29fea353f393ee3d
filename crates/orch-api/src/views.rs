//! The JSON views of tasks, runs and events, shared by the API and the CLI's `--json` output,
//! so both show the same field names.

use std::time::{Duration, UNIX_EPOCH};

use orch_core::{Event, Run, Task, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Format a timestamp as RFC 3339 (UTC, milliseconds).
pub fn time(at: Timestamp) -> String {
    let ms = u64::try_from(at.0).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A task as `--json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The per-run agent budget `{tokens, cost_usd}`, if the task has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub budget: Option<orch_core::TaskBudget>,
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
            budget: task.spec.budget,
        }
    }
}

/// A run as `--json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    pub attempt: u32,
    pub owner: String,
    pub state: String,
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
            lease_expires_at: time(run.lease.expires_at),
            started_at: time(run.started_at),
            ended_at: run.ended_at.map(time),
            outcome: run.outcome.clone(),
        }
    }
}

/// An event as `--json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub from: Option<String>,
    pub to: String,
    pub run: Option<i64>,
    pub reason: Option<String>,
    #[schema(value_type = Object)]
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
