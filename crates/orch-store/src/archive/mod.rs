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
/// the ones it references). Runtime-only state (locks, leases of daemons, the dashboard's
/// sessions and sign-in links) is not archived.
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
    /// `info_requests`.
    InfoRequests,
    /// `info_values` (secret values as sealed as they are stored: an import needs the same
    /// `secret.key` or `ORCH_SECRET_KEY` to open them).
    InfoValues,
    /// `jobs` (cron jobs).
    Jobs,
    /// `job_firings`.
    JobFirings,
    /// `project_forges`.
    ProjectForges,
    /// `task_forge_links`.
    TaskForgeLinks,
    /// `forge_outbox` (ids preserved; leases are runtime state and are not carried).
    ForgeOutbox,
    /// `forge_reactions` (the feedback loop's handled causes and rounds).
    ForgeReactions,
}

impl Table {
    /// Every table, in export and import order.
    pub const ALL: [Table; 18] = [
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
        Table::InfoRequests,
        Table::InfoValues,
        Table::Jobs,
        Table::JobFirings,
        Table::ProjectForges,
        Table::TaskForgeLinks,
        Table::ForgeOutbox,
        Table::ForgeReactions,
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
            Table::InfoRequests => "info_requests",
            Table::InfoValues => "info_values",
            Table::Jobs => "jobs",
            Table::JobFirings => "job_firings",
            Table::ProjectForges => "project_forges",
            Table::TaskForgeLinks => "task_forge_links",
            Table::ForgeOutbox => "forge_outbox",
            Table::ForgeReactions => "forge_reactions",
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
            Table::InfoRequests => Row::InfoRequest(serde_json::from_str(line)?),
            Table::InfoValues => Row::InfoValue(serde_json::from_str(line)?),
            Table::Jobs => Row::Job(serde_json::from_str(line)?),
            Table::JobFirings => Row::JobFiring(serde_json::from_str(line)?),
            Table::ProjectForges => Row::ProjectForge(serde_json::from_str(line)?),
            Table::TaskForgeLinks => Row::TaskForgeLink(serde_json::from_str(line)?),
            Table::ForgeOutbox => Row::ForgeOutbox(serde_json::from_str(line)?),
            Table::ForgeReactions => Row::ForgeReaction(serde_json::from_str(line)?),
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
    /// Unique among the project's live tasks (absent from archives made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
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

/// A row of `info_requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoRequestRow {
    pub id: i64,
    pub task_id: i64,
    pub run_id: i64,
    pub step: String,
    /// A JSON array of the keys asked for.
    pub keys: Value,
    pub hint: Option<String>,
    pub reason: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
}

/// A row of `info_values`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoValueRow {
    pub request_id: i64,
    pub task_id: i64,
    pub key: String,
    pub secret: bool,
    /// The value, sealed (`enc:v1:...`) when secret.
    pub value: String,
}

/// A row of `jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRow {
    pub id: i64,
    pub name: String,
    pub project_id: i64,
    pub schedule: String,
    pub timezone: String,
    pub missed: String,
    pub target: String,
    /// The task spec (JSON text) or the workflow file (YAML), as stored.
    pub source: String,
    pub enabled: bool,
    pub last_slot: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A row of `job_firings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFiringRow {
    pub job_id: i64,
    pub slot_at: i64,
    pub kind: String,
    pub task_id: Option<i64>,
    pub error: Option<String>,
    pub fired_at: i64,
}

/// A row of `project_forges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectForgeRow {
    pub project_id: i64,
    pub kind: String,
    pub repo: String,
    pub linked_at: i64,
}

/// A row of `task_forge_links`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskForgeLinkRow {
    pub task_id: i64,
    pub project_id: i64,
    pub repo: String,
    pub issue_number: Option<i64>,
    pub pr_number: Option<i64>,
    pub pr_url: Option<String>,
    pub head_branch: Option<String>,
    pub pushed_commit: Option<String>,
    pub marker_comment_id: Option<i64>,
    pub updated_at: i64,
}

/// A row of `forge_outbox`. A leased op is carried without its lease: the importing home's
/// dispatcher sends it again (ops are safe to send twice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgeOutboxRow {
    pub id: i64,
    pub idempotency_key: String,
    pub project_id: i64,
    pub task_id: Option<i64>,
    pub event_id: Option<i64>,
    /// The `ForgeOp` as JSON.
    pub op: Value,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    /// The `ForgeResult` as JSON, once done.
    pub result: Option<Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A row of `forge_reactions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgeReactionRow {
    pub task_id: i64,
    pub cause: String,
    pub reaction: String,
    pub round_kind: Option<String>,
    pub created_at: i64,
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
    InfoRequest(InfoRequestRow),
    InfoValue(InfoValueRow),
    Job(JobRow),
    JobFiring(JobFiringRow),
    ProjectForge(ProjectForgeRow),
    TaskForgeLink(TaskForgeLinkRow),
    ForgeOutbox(ForgeOutboxRow),
    ForgeReaction(ForgeReactionRow),
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
            Row::InfoRequest(_) => Table::InfoRequests,
            Row::InfoValue(_) => Table::InfoValues,
            Row::Job(_) => Table::Jobs,
            Row::JobFiring(_) => Table::JobFirings,
            Row::ProjectForge(_) => Table::ProjectForges,
            Row::TaskForgeLink(_) => Table::TaskForgeLinks,
            Row::ForgeOutbox(_) => Table::ForgeOutbox,
            Row::ForgeReaction(_) => Table::ForgeReactions,
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
            Row::InfoRequest(r) => serde_json::to_string(r),
            Row::InfoValue(r) => serde_json::to_string(r),
            Row::Job(r) => serde_json::to_string(r),
            Row::JobFiring(r) => serde_json::to_string(r),
            Row::ProjectForge(r) => serde_json::to_string(r),
            Row::TaskForgeLink(r) => serde_json::to_string(r),
            Row::ForgeOutbox(r) => serde_json::to_string(r),
            Row::ForgeReaction(r) => serde_json::to_string(r),
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
