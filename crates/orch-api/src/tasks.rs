//! `/v1/tasks`, `/v1/workflows`, `/v1/status` and `/v1/projects`: requests and answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::views::{EventView, RunView, TaskView};

/// A new task: the fields of a single-task file, plus the project it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// The project's absolute directory (registered on first use).
    pub project: String,
    /// One-line title.
    pub title: String,
    /// Longer description; agent steps without a prompt get it as their prompt.
    #[serde(default)]
    pub body: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Ids of existing tasks that must be `done` first.
    #[serde(default)]
    pub needs: Vec<i64>,
    /// The steps, run in order.
    #[serde(default)]
    pub steps: Vec<StepRequest>,
    /// Runs the task may have in all (default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Wait for an approval before running.
    #[serde(default)]
    pub requires_approval: bool,
    /// A key unique among the project's live tasks: while a task with it lives, this request
    /// answers that task with 200 (and `"existing": true`) instead of creating another (201).
    #[serde(default)]
    pub unique_key: Option<String>,
    /// The parent task's id: the parent rests `blocked` until all its children are done.
    #[serde(default)]
    pub parent: Option<i64>,
    /// Tools the task needs: `[{"name": "git", "version": ">=2.30", "sha256": "...", "env":
    /// {...}, "network": true}]`, checked before its worktree is made.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<orch_core::tools::ToolRecipe>,
    /// The most one run may spend on agents: `{"tokens": 50000, "cost_usd": 2.5}` (either or
    /// both); passing it stops the agent mid-session and sends the task to `needs_review`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub budget: Option<orch_core::TaskBudget>,
}

/// One step: `exec` (commands) or `agent`, not both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// Unique within the task; default `step-<n>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Commands to run in order.
    #[serde(default)]
    pub exec: Option<Vec<CommandRequest>>,
    /// The agent to run (`sim`, `claude`, ...).
    #[serde(default)]
    pub agent: Option<String>,
    /// The agent's prompt; default the task's body, or its title.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Model for the agent.
    #[serde(default)]
    pub model: Option<String>,
    /// Agent profile.
    #[serde(default)]
    pub profile: Option<String>,
}

/// One command of an exec step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// Program and arguments (never a shell string).
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the workspace.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// A workflow file's text, submitted for a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitWorkflow {
    /// The project's absolute directory (registered on first use).
    pub project: String,
    /// The workflow file's text (YAML).
    pub yaml: String,
    /// The name used in error messages (`<file>:<line>:<col>: ...`); default `workflow.yml`.
    #[serde(default)]
    pub file: Option<String>,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this status (`queued`, `running`, `done`, ...).
    pub status: Option<String>,
    /// Only tasks of this project: its id, its name or its absolute directory.
    pub project: Option<String>,
    /// At most this many.
    pub limit: Option<u32>,
    /// Only tasks with this label.
    pub label: Option<String>,
    /// `newest` lists newest first; default (`oldest`) oldest first.
    pub order: Option<String>,
}

/// A task's branch (git projects, when this daemon's home made it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BranchView {
    /// The branch's name, `orch/<id>-<slug>`.
    pub name: String,
    /// The commit at its tip.
    pub head: String,
}

/// A task with its runs and events, as `orch task get --json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    /// The task.
    pub task: TaskView,
    /// Its branch and head, when this home made one.
    pub branch: Option<BranchView>,
    /// Its normalized spec.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// Its runs, oldest first.
    pub runs: Vec<RunView>,
    /// Its events, oldest first.
    pub events: Vec<EventView>,
    /// The latest run's bundle directory, if one was written.
    pub bundle: Option<String>,
    /// The latest run's `result.json`, if there is one.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The latest run's routing decision (`route.json`), for tasks with `agent: auto` steps.
    #[schema(value_type = Option<Object>)]
    pub route: Option<serde_json::Value>,
    /// The latest run's review (`review.json`), for projects with `[review]`.
    #[schema(value_type = Option<Object>)]
    pub review: Option<serde_json::Value>,
    /// Where the task's worktree started (`job.json`'s `start`): `{"commit": "<sha>", "from":
    /// "base" | "dependencies", "branches": ["orch/..."]}`; absent before a run prepared it
    /// and for copies.
    #[schema(value_type = Option<Object>)]
    pub start: Option<serde_json::Value>,
    /// Its issue, pull request and pushed branch, when it is linked to a forge.
    pub forge: Option<crate::forge::ForgeLinkView>,
}

/// The tasks a workflow submission created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowView {
    /// The workflow's id.
    pub workflow: Option<i64>,
    /// The project's name.
    pub project: String,
    /// The tasks, in file order.
    pub tasks: Vec<TaskView>,
    /// Fields that looked like secrets and were redacted before the tasks were stored (absent
    /// when none did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A created task, with warnings about fields that looked like secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedTask {
    /// The task.
    #[serde(flatten)]
    pub task: TaskView,
    /// Fields that looked like secrets and were redacted before the task was stored (absent
    /// when none did): secrets belong in `secret_env`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The task existed already: a live task held the request's `unique_key` (status 200).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
}

/// A task's status after an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    /// The task.
    pub id: i64,
    /// Its status now.
    pub status: String,
}

/// Task counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusCounts {
    /// All tasks.
    pub total: u64,
    /// Tasks per status (every status, zeros included).
    pub by_status: BTreeMap<String, u64>,
}

/// Why a task is cancelled (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Recorded with the cancellation and shown as the task's reason.
    #[serde(default)]
    pub reason: Option<String>,
}

/// When a retried task may run (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Run no sooner than this many milliseconds from now (the task waits in `retry_wait`);
    /// absent or 0: queued now.
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// A registered project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectView {
    /// Its id.
    pub id: i64,
    /// Its short unique name.
    pub name: String,
    /// Its absolute directory on the daemon's machine.
    pub path: String,
    /// When it was registered (RFC 3339).
    pub created_at: String,
}

/// A task whose live agent session was killed (`POST /v1/tasks/{id}/kill`, `orch task kill
/// --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KilledSession {
    /// The task.
    pub id: i64,
    /// The session that was ended (`orch-task-<id>`).
    pub session: String,
    /// Always true: the session was ended.
    pub killed: bool,
    /// The task's status now (`cancelled`, or what it had finished as).
    pub status: String,
}
