//! Cron jobs (`/v1/jobs`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A cron job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The cron expression (five fields, or six with seconds first).
    pub schedule: String,
    /// The IANA time zone of the schedule.
    pub timezone: String,
    /// The missed-firing policy: `skip` or `catch-up`.
    pub missed: String,
    /// What each firing submits: `task` or `workflow`.
    pub target: String,
    /// The project directory its tasks go to.
    pub project: String,
    /// Whether the scheduler fires it.
    pub enabled: bool,
    /// The next slot (milliseconds since the Unix epoch), when enabled.
    pub next_at: Option<i64>,
    /// The next slot as a local time of the job's zone.
    pub next_local: Option<String>,
    /// The newest slot decided (fired or skipped).
    pub last_slot: Option<i64>,
    /// The task's title, or `(workflow)`.
    pub title: String,
    /// The newest firing, if any.
    pub last_firing: Option<FiringView>,
}

/// A new cron job: `task` (a task spec, as `orch task add` builds it) or `workflow` (a
/// workflow file's text), not both.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddJob {
    /// Its unique name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The project's absolute directory.
    pub project: String,
    /// The cron expression (five fields, or six with seconds first).
    pub schedule: String,
    /// The IANA time zone (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// `skip` (default) or `catch-up`.
    #[serde(default)]
    pub missed: Option<String>,
    /// The task each firing submits.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub task: Option<Box<orch_core::TaskSpec>>,
    /// The workflow file's text each firing submits.
    #[serde(default)]
    pub workflow: Option<String>,
}

/// A firing of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FiringView {
    /// The job's name.
    pub job: String,
    /// The slot (milliseconds since the Unix epoch).
    pub slot: i64,
    /// `scheduled`, `catch_up` or `manual`.
    pub kind: String,
    /// The first task submitted.
    pub task: Option<i64>,
    /// Why the submission was refused, if it was.
    pub error: Option<String>,
    /// When it fired (milliseconds since the Unix epoch).
    pub fired_at: i64,
}
