//! Moving a whole home between databases (`orch admin export` / `orch admin import`): a
//! backend-neutral model of every stored row, and the archive file that carries them with the
//! home's run bundles.
//!
//! Each backend implements two operations on this model and nothing else:
//! - export: send every row of every table, table by table in [`Table::ALL`] order, each table
//!   in primary-key order, into a channel ([`crate::Store::export_archive`]);
//! - import: into an empty database, insert the rows it receives with their ids preserved, in
//!   one transaction, and commit only when the counts match the manifest's
//!   ([`crate::Store::import_archive`]). A backend with identity sequences moves them past the
//!   largest imported id.
//!
//! JSON columns (task specs, event data, review reasons) travel as JSON values, not text, so a
//! backend that stores them as `jsonb` exports the same archive. The archive file itself is in
//! [`file`].

pub mod file;
mod transfer;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use transfer::{export_home, import_home, ImportReport};

/// What an export or import is doing, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading rows out of the database.
    Export,
    /// Reading and checking the archive before anything is written.
    Check,
    /// Inserting rows into the database.
    Insert,
}

/// Told every [`PROGRESS_EVERY`] rows (and at the end of a stage) how many rows a stage has
/// done, and of how many when that is known. Called from the archive's own threads.
pub type Progress = std::sync::Arc<dyn Fn(Stage, u64, Option<u64>) + Send + Sync>;

/// Rows between two progress reports.
pub const PROGRESS_EVERY: u64 = 1_000;

/// A [`Progress`] that reports nothing.
pub fn no_progress() -> Progress {
    std::sync::Arc::new(|_, _, _| {})
}

/// The archive format this orch writes and reads. Bumped when a row gains, loses or changes a
/// field in a way an older reader cannot take.
pub const FORMAT_VERSION: u32 = 1;

/// The tables an archive holds, in the order they are exported and imported (every table after
/// the ones it references). Runtime-only state (locks, leases of daemons) is not archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `projects`.
    Projects,
    /// `workflows`.
    Workflows,
    /// `tasks`.
    Tasks,
    /// `task_deps`.
    TaskDeps,
    /// `runs` (with their token hashes).
    Runs,
    /// `events` (ids preserved).
    Events,
    /// `agent_usage`.
    AgentUsage,
    /// `task_replies`.
    TaskReplies,
    /// `reviews`.
    Reviews,
    /// `webhook_deliveries`.
    WebhookDeliveries,
}

impl Table {
    /// Every table, in export and import order.
    pub const ALL: [Table; 10] = [
        Table::Projects,
        Table::Workflows,
        Table::Tasks,
        Table::TaskDeps,
        Table::Runs,
        Table::Events,
        Table::AgentUsage,
        Table::TaskReplies,
        Table::Reviews,
        Table::WebhookDeliveries,
    ];

    /// The table's name (also its file's name in the archive, `tables/<name>.jsonl`).
    pub fn name(self) -> &'static str {
        match self {
            Table::Projects => "projects",
            Table::Workflows => "workflows",
            Table::Tasks => "tasks",
            Table::TaskDeps => "task_deps",
            Table::Runs => "runs",
            Table::Events => "events",
            Table::AgentUsage => "agent_usage",
            Table::TaskReplies => "task_replies",
            Table::Reviews => "reviews",
            Table::WebhookDeliveries => "webhook_deliveries",
        }
    }

    /// The table of this name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Parse one JSON Lines line of this table.
    pub fn parse_row(self, line: &str) -> serde_json::Result<Row> {
        Ok(match self {
            Table::Projects => Row::Project(serde_json::from_str(line)?),
            Table::Workflows => Row::Workflow(serde_json::from_str(line)?),
            Table::Tasks => Row::Task(serde_json::from_str(line)?),
            Table::TaskDeps => Row::TaskDep(serde_json::from_str(line)?),
            Table::Runs => Row::Run(serde_json::from_str(line)?),
            Table::Events => Row::Event(serde_json::from_str(line)?),
            Table::AgentUsage => Row::AgentUsage(serde_json::from_str(line)?),
            Table::TaskReplies => Row::TaskReply(serde_json::from_str(line)?),
            Table::Reviews => Row::Review(serde_json::from_str(line)?),
            Table::WebhookDeliveries => Row::WebhookDelivery(serde_json::from_str(line)?),
        })
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Rows per table.
pub type RowCounts = BTreeMap<Table, u64>;

/// A row of `projects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectRow {
    pub id: i64,
    pub name: String,
    pub path: String,
    pub created_at: i64,
}

/// A row of `workflows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRow {
    pub id: i64,
    pub project_id: i64,
    pub name: Option<String>,
    /// The workflow file's text (YAML), as submitted.
    pub source: Option<String>,
    pub created_at: i64,
}

/// A row of `tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRow {
    pub id: i64,
    pub project_id: i64,
    pub workflow_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub key: Option<String>,
    pub title: String,
    pub priority: i64,
    /// The task's `TaskSpec` as JSON.
    pub spec: Value,
    pub status: String,
    pub status_reason: Option<String>,
    pub approved: bool,
    pub attempts_used: i64,
    pub max_attempts: i64,
    pub run_count: i64,
    pub not_before: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A row of `task_deps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDepRow {
    pub task_id: i64,
    pub dep_id: i64,
    pub waived: bool,
}

/// A row of `runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRow {
    pub id: i64,
    pub task_id: i64,
    pub attempt: i64,
    pub owner: String,
    pub lease_expires_at: i64,
    pub state: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    /// SHA-256 of the run's fencing token, lowercase hex (none for runs from before tokens).
    pub token_sha256: Option<String>,
    pub refusal_recorded_at: Option<i64>,
    pub refusals_unrecorded: i64,
}

/// A row of `events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRow {
    pub id: i64,
    pub task_id: i64,
    pub run_id: Option<i64>,
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub data: Value,
}

/// A row of `agent_usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentUsageRow {
    pub run_id: i64,
    pub step: String,
    pub task_id: i64,
    pub agent: String,
    pub model: Option<String>,
    pub session_id: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub day: String,
    pub recorded_at: i64,
}

/// A row of `task_replies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskReplyRow {
    pub id: i64,
    pub task_id: i64,
    pub message: String,
    pub agent: String,
    pub step: String,
    pub session_id: String,
    pub created_at: i64,
    pub answered_run: Option<i64>,
}

/// A row of `reviews`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRow {
    pub run_id: i64,
    pub task_id: i64,
    pub round: i64,
    pub verdict: String,
    /// A JSON array of strings.
    pub reasons: Value,
    pub escalated: bool,
    pub recorded_at: i64,
}

/// A row of `webhook_deliveries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDeliveryRow {
    pub source: String,
    pub delivery_id: String,
    pub task_id: i64,
    pub received_at: i64,
}

/// One row of any table, as it travels between a backend and the archive file.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Project(ProjectRow),
    Workflow(WorkflowRow),
    Task(TaskRow),
    TaskDep(TaskDepRow),
    Run(RunRow),
    Event(EventRow),
    AgentUsage(AgentUsageRow),
    TaskReply(TaskReplyRow),
    Review(ReviewRow),
    WebhookDelivery(WebhookDeliveryRow),
}

impl Row {
    /// The row's table.
    pub fn table(&self) -> Table {
        match self {
            Row::Project(_) => Table::Projects,
            Row::Workflow(_) => Table::Workflows,
            Row::Task(_) => Table::Tasks,
            Row::TaskDep(_) => Table::TaskDeps,
            Row::Run(_) => Table::Runs,
            Row::Event(_) => Table::Events,
            Row::AgentUsage(_) => Table::AgentUsage,
            Row::TaskReply(_) => Table::TaskReplies,
            Row::Review(_) => Table::Reviews,
            Row::WebhookDelivery(_) => Table::WebhookDeliveries,
        }
    }

    /// The row as one JSON Lines line (without the newline).
    pub fn to_json_line(&self) -> serde_json::Result<String> {
        match self {
            Row::Project(r) => serde_json::to_string(r),
            Row::Workflow(r) => serde_json::to_string(r),
            Row::Task(r) => serde_json::to_string(r),
            Row::TaskDep(r) => serde_json::to_string(r),
            Row::Run(r) => serde_json::to_string(r),
            Row::Event(r) => serde_json::to_string(r),
            Row::AgentUsage(r) => serde_json::to_string(r),
            Row::TaskReply(r) => serde_json::to_string(r),
            Row::Review(r) => serde_json::to_string(r),
            Row::WebhookDelivery(r) => serde_json::to_string(r),
        }
    }
}

/// `manifest.json`, the first entry of an archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The orch that wrote it.
    pub orch_version: String,
    /// The backend exported (`sqlite`, `postgres`).
    pub source_backend: String,
    /// When it was written (milliseconds since the Unix epoch).
    pub created_at: i64,
    /// Rows per table.
    pub rows: RowCounts,
    /// Bundle files (under `runs/` of the home) in the archive.
    pub bundle_files: u64,
}
