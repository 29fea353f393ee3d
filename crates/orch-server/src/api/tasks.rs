//! `/v1/tasks`, `/v1/workflows` and `/v1/status`: what `orch task ...`, `orch run` and
//! `orch status` do, over HTTP.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use orch_app::{ProjectDir, WorkflowText};
use orch_core::{
    CancelReason, CommandDraft, NewTask, RetryDelay, RetryPolicy, Status, StepDraft, TaskDraft,
    TaskId, TaskSpec,
};
use orch_store::TaskFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::json::{ApiJson, ApiJsonOrEmpty};
use super::views::{EventView, RunView, TaskView};
use super::ApiState;

/// The actor named in events caused by API requests.
const ACTOR: &str = "api";

/// A new task: the fields of a single-task file, plus the project it belongs to.
#[derive(Debug, Deserialize, ToSchema)]
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
}

/// One step: `exec` (commands) or `agent`, not both.
#[derive(Debug, Deserialize, ToSchema)]
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
#[derive(Debug, Deserialize, ToSchema)]
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
#[derive(Debug, Deserialize, ToSchema)]
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
#[derive(Debug, Deserialize, IntoParams)]
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
#[derive(Debug, Serialize, ToSchema)]
pub struct BranchView {
    /// The branch's name, `orch/<id>-<slug>`.
    pub name: String,
    /// The commit at its tip.
    pub head: String,
}

/// A task with its runs and events, as `orch task get --json` shows it.
#[derive(Debug, Serialize, ToSchema)]
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
}

/// The tasks a workflow submission created.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    /// The workflow's id.
    pub workflow: Option<i64>,
    /// The project's name.
    pub project: String,
    /// The tasks, in file order.
    pub tasks: Vec<TaskView>,
    /// Fields that looked like secrets and were redacted before the tasks were stored (absent
    /// when none did).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A created task, with warnings about fields that looked like secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTask {
    /// The task.
    #[serde(flatten)]
    pub task: TaskView,
    /// Fields that looked like secrets and were redacted before the task was stored (absent
    /// when none did): secrets belong in `secret_env`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A task's status after an action.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChange {
    /// The task.
    pub id: i64,
    /// Its status now.
    pub status: String,
}

/// Task counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCounts {
    /// All tasks.
    pub total: u64,
    /// Tasks per status (every status, zeros included).
    pub by_status: BTreeMap<String, u64>,
}

/// The `{id}` of a task route.
#[derive(Debug, Clone, Copy)]
pub struct TaskIdPath(pub TaskId);

impl<S: Send + Sync> FromRequestParts<S> for TaskIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<i64>::from_request_parts(parts, state).await?;
        Ok(TaskIdPath(TaskId(id)))
    }
}

/// List tasks.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<TaskView>), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let Query(mut query) = query?;
    let project = match query.project.take() {
        None => None,
        Some(wanted) => {
            let projects = state.store.projects().await?;
            let found = projects
                .iter()
                .find(|p| p.name == wanted || p.path == wanted || p.id.0.to_string() == wanted);
            match found {
                Some(p) => Some(p.id),
                None => {
                    let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
                    return Err(ApiError::Invalid {
                        field: Some("project".to_owned()),
                        message: format!(
                            "project: no project `{wanted}`; registered projects: {}",
                            if names.is_empty() {
                                "none".to_owned()
                            } else {
                                names.join(", ")
                            }
                        ),
                    });
                }
            }
        }
    };
    let mut filter = task_filter(query)?;
    filter.project = project;
    let tasks = state.store.tasks(&filter).await?;
    Ok(Json(tasks.iter().map(TaskView::from).collect()))
}

/// Create one task.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = CreateTask,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedTask), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<CreateTask>,
) -> Result<(StatusCode, Json<CreatedTask>), ApiError> {
    let project = ProjectDir::resolve(&request.project, "project")?;
    let task = new_task(request)?;
    let submitted = state.app.submit(&project, vec![task], ACTOR).await?;
    state.work_ready.notify_waiters();
    let task = submitted
        .tasks
        .first()
        .ok_or_else(|| ApiError::internal(&"submit created no task"))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedTask {
            task: TaskView::from(task),
            warnings: submitted.warnings,
        }),
    ))
}

/// A task with its runs and events.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = TaskDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<TaskDetail>, ApiError> {
    let task = state.store.task(id).await?;
    let runs = state.store.runs(id).await?;
    let events = state.store.events(id).await?;
    let bundle = runs
        .last()
        .map(|run| bundle_dir(&state.home, id, run.attempt))
        .filter(|dir| dir.is_dir());
    let branch = crate::landing::branch(&state.store, &state.home, &task)
        .await
        .map(|(name, head)| BranchView { name, head });
    Ok(Json(TaskDetail {
        branch,
        spec: serde_json::to_value(&task.spec).map_err(|e| ApiError::internal(&e))?,
        task: TaskView::from(&task),
        runs: runs.iter().map(RunView::from).collect(),
        events: events.iter().map(EventView::from).collect(),
        result: bundle
            .as_deref()
            .and_then(|dir| read_json(dir, "result.json")),
        route: bundle
            .as_deref()
            .and_then(|dir| read_json(dir, "route.json")),
        review: bundle
            .as_deref()
            .and_then(|dir| read_json(dir, "review.json")),
        start: bundle
            .as_deref()
            .and_then(|dir| read_json(dir, "job.json"))
            .and_then(|job| job.get("start").cloned())
            .filter(|start| !start.is_null()),
        bundle: bundle.map(|dir| dir.display().to_string()),
    }))
}

/// A task's change against where it started, as a patch (`orch task diff`): its branch from its
/// start commit to its head, or for a project that is not a git repository what changed in its
/// copy. Only for tasks that ran on this daemon's machine (embedded workers, or remote workers
/// sharing its home and checkout).
#[utoipa::path(get, path = "/v1/tasks/{id}/diff", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, description = "The patch (`text/x-diff`)", content_type = "text/x-diff", body = String),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn diff(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    match crate::landing::diff(&state.store, &state.home, id).await {
        Ok(patch) => Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "text/x-diff; charset=utf-8",
            )],
            patch,
        )
            .into_response()),
        Err(crate::landing::LandError::Store(e)) => Err(e.into()),
        Err(crate::landing::LandError::Workspace(
            orch_worker::workspace::WorkspaceError::Refused(message),
        )) => Err(ApiError::Conflict(message)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// A task's events, oldest first.
#[utoipa::path(get, path = "/v1/tasks/{id}/events", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = Vec<EventView>), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let events = state.store.events(id).await?;
    Ok(Json(events.iter().map(EventView::from).collect()))
}

/// Why a task is cancelled (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Recorded with the cancellation and shown as the task's reason.
    #[serde(default)]
    pub reason: Option<String>,
}

/// When a retried task may run (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Run no sooner than this many milliseconds from now (the task waits in `retry_wait`);
    /// absent or 0: queued now.
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// Cancel a task (its running steps are stopped).
#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", tag = "tasks",
    request_body(content = Option<CancelRequest>, description = "Optional: `{\"reason\": \"...\"}`"),
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
    ApiJsonOrEmpty(request): ApiJsonOrEmpty<CancelRequest>,
) -> Result<Json<StatusChange>, ApiError> {
    let reason = CancelReason::parse(request.reason)?;
    let status = state.app.cancel(id, reason.as_ref(), ACTOR).await?;
    Ok(status_change(id, status))
}

/// Retry a finished task, with its attempts reset: now, or after `delay_ms`.
#[utoipa::path(post, path = "/v1/tasks/{id}/retry", tag = "tasks",
    request_body(content = Option<RetryRequest>, description = "Optional: `{\"delay_ms\": 30000}`"),
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn retry(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
    ApiJsonOrEmpty(request): ApiJsonOrEmpty<RetryRequest>,
) -> Result<Json<StatusChange>, ApiError> {
    let delay = RetryDelay::parse(request.delay_ms.map(Duration::from_millis))?;
    let status = state.app.retry(id, delay, ACTOR).await?;
    state.work_ready.notify_waiters();
    Ok(status_change(id, status))
}

/// A registered project.
#[derive(Debug, Serialize, ToSchema)]
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

/// The registered projects, oldest first.
#[utoipa::path(get, path = "/v1/projects", tag = "tasks", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProjectView>)))]
pub async fn projects(State(state): State<ApiState>) -> Result<Json<Vec<ProjectView>>, ApiError> {
    let projects = state.store.projects().await?;
    Ok(Json(
        projects
            .into_iter()
            .map(|p| ProjectView {
                id: p.id.0,
                name: p.name,
                path: p.path,
                created_at: super::views::time(p.created_at),
            })
            .collect(),
    ))
}

/// Waive the dependencies that block a task.
#[utoipa::path(post, path = "/v1/tasks/{id}/unblock", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn unblock(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<StatusChange>, ApiError> {
    let status = state.app.unblock(id, ACTOR).await?;
    state.work_ready.notify_waiters();
    Ok(status_change(id, status))
}

/// Approve a task that waits for approval.
#[utoipa::path(post, path = "/v1/tasks/{id}/approve", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<StatusChange>, ApiError> {
    let status = state.app.approve(id, ACTOR).await?;
    state.work_ready.notify_waiters();
    Ok(status_change(id, status))
}

/// Submit a workflow file's tasks (a DAG) for a project.
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows", request_body = SubmitWorkflow,
    security(("bearer" = [])),
    responses((status = 201, body = WorkflowView), (status = 422, body = ErrorBody)))]
pub async fn submit_workflow(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<SubmitWorkflow>,
) -> Result<(StatusCode, Json<WorkflowView>), ApiError> {
    let project = ProjectDir::resolve(&request.project, "project")?;
    let workflow = WorkflowText {
        file: request.file.as_deref().unwrap_or("workflow.yml"),
        text: &request.yaml,
    };
    let submitted = state.app.submit_workflow(&project, workflow, ACTOR).await?;
    state.work_ready.notify_waiters();
    let tasks = submitted.tasks;
    Ok((
        StatusCode::CREATED,
        Json(WorkflowView {
            workflow: tasks.first().and_then(|t| t.workflow).map(|w| w.0),
            project: submitted.project.name,
            tasks: tasks.iter().map(TaskView::from).collect(),
            warnings: submitted.warnings,
        }),
    ))
}

/// Task counts by status.
#[utoipa::path(get, path = "/v1/status", tag = "tasks", security(("bearer" = [])),
    responses((status = 200, body = StatusCounts)))]
pub async fn status(State(state): State<ApiState>) -> Result<Json<StatusCounts>, ApiError> {
    let counts = state.store.status_counts().await?;
    Ok(Json(StatusCounts {
        total: counts.values().sum(),
        by_status: Status::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), counts.get(s).copied().unwrap_or(0)))
            .collect(),
    }))
}

fn status_change(id: TaskId, status: Status) -> Json<StatusChange> {
    Json(StatusChange {
        id: id.0,
        status: status.as_str().to_owned(),
    })
}

fn task_filter(query: ListQuery) -> Result<TaskFilter, ApiError> {
    let status = query
        .status
        .map(|raw| {
            raw.parse::<Status>().map_err(|e| ApiError::Invalid {
                field: Some("status".to_owned()),
                message: format!("status: {e}"),
            })
        })
        .transpose()?;
    let newest_first = match query.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(ApiError::Invalid {
                field: Some("order".to_owned()),
                message: format!("order: `{other}` is not `newest` or `oldest`"),
            })
        }
    };
    Ok(TaskFilter {
        status,
        limit: query.limit,
        label: query.label,
        newest_first,
        ..TaskFilter::default()
    })
}

/// The domain task for a request, checked once by the core's `TaskSpec::parse`.
pub(super) fn new_task(request: CreateTask) -> Result<NewTask, ApiError> {
    let draft = TaskDraft {
        key: None,
        title: request.title,
        body: request.body,
        labels: request.labels,
        priority: request.priority,
        steps: request
            .steps
            .into_iter()
            .map(|step| StepDraft {
                name: step.name,
                exec: step.exec.map(|commands| {
                    commands
                        .into_iter()
                        .map(|c| CommandDraft {
                            argv: c.argv,
                            env: c.env,
                            cwd: c.cwd,
                            timeout: None,
                        })
                        .collect()
                }),
                agent: step.agent,
                prompt: step.prompt,
                model: step.model,
                profile: step.profile,
                timeout: None,
                network: None,
            })
            .collect(),
        max_attempts: request.max_attempts,
        retry: RetryPolicy::default(),
        timeout: None,
        requires_approval: request.requires_approval,
    };
    Ok(NewTask {
        spec: TaskSpec::parse(draft)?,
        needs_in_batch: Vec::new(),
        needs_existing: request.needs.into_iter().map(TaskId).collect(),
        parent: None,
    })
}

fn bundle_dir(home: &FsPath, task: TaskId, attempt: u32) -> PathBuf {
    home.join("runs")
        .join(task.to_string())
        .join(attempt.to_string())
}

fn read_json(bundle: &FsPath, name: &str) -> Option<serde_json::Value> {
    let bytes = std::fs::read(bundle.join(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
