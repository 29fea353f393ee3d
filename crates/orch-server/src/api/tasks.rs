//! `/v1/tasks`, `/v1/workflows` and `/v1/status`: what `orch task ...`, `orch run` and
//! `orch status` do, over HTTP.

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

use super::error::ApiError;
use super::json::{ApiJson, ApiJsonOrEmpty};
use super::ApiState;
pub use orch_api::{
    BranchView, CancelRequest, CreateTask, CreatedTask, ErrorBody, EventView, ListQuery,
    ProjectView, RetryRequest, RunView, StatusChange, StatusCounts, SubmitWorkflow, TaskDetail,
    TaskView, WorkflowView,
};

/// The actor named in events caused by API requests.
const ACTOR: &str = "api";

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
    responses((status = 201, body = CreatedTask), (status = 200, description = "A live task held the `unique_key`: that task", body = CreatedTask), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<CreateTask>,
) -> Result<(StatusCode, Json<CreatedTask>), ApiError> {
    let project = ProjectDir::resolve(&request.project, "project")?;
    let task = new_task(request)?;
    let submitted = state.app.submit(&project, vec![task], ACTOR).await?;
    let task = submitted
        .tasks
        .first()
        .ok_or_else(|| ApiError::internal(&"submit created no task"))?;
    let existing = submitted.existing.contains(&task.id);
    Ok((
        if existing {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(CreatedTask {
            task: TaskView::from(task),
            warnings: submitted.warnings,
            existing,
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
        forge: super::forge::link_view(&state, id).await?,
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
    Ok(status_change(id, status))
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
                created_at: orch_api::time(p.created_at),
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
    Ok(status_change(id, status))
}

/// Approve a task that waits for approval (optionally with `{"comment", "actor"}`; the
/// `approve` event carries both).
#[utoipa::path(post, path = "/v1/tasks/{id}/approve", tag = "tasks",
    request_body(content = Option<super::task_tree::ApprovalRequest>, description = "Optional: `{\"comment\": \"...\", \"actor\": \"alice\"}`"),
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
    ApiJsonOrEmpty(request): ApiJsonOrEmpty<super::task_tree::ApprovalRequest>,
) -> Result<Json<StatusChange>, ApiError> {
    let (comment, actor) = super::task_tree::parse_approval(request)?;
    let status = state
        .app
        .judge_approval(
            id,
            orch_store::ApprovalVerdict::Approve,
            comment.as_ref(),
            &actor,
        )
        .await?;
    Ok(status_change(id, status))
}

/// Kill a task's live agent session (tmux, on the daemon's machine): the task is cancelled and
/// the session ended. Refused (409) when the task has no live session.
#[utoipa::path(post, path = "/v1/tasks/{id}/kill", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = orch_api::KilledSession), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn kill(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<orch_api::KilledSession>, ApiError> {
    use orch_app::live_sessions::LiveSessions;
    // A task that does not exist is 404, not "nothing live".
    state.store.task(id).await?;
    let sessions = crate::live_sessions::TmuxSessions::of_home(&state.home);
    let reason = CancelReason::parse(Some(
        "its live session was ended through the API".to_owned(),
    ))?;
    let status = state
        .app
        .kill_live_session(
            id,
            std::sync::Arc::new(sessions.clone()),
            reason.as_ref(),
            ACTOR,
        )
        .await?;
    Ok(Json(orch_api::KilledSession {
        id: id.0,
        session: sessions.name(id),
        killed: true,
        status: status.as_str().to_owned(),
    }))
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

pub(super) fn status_change(id: TaskId, status: Status) -> Json<StatusChange> {
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
pub(crate) fn new_task(request: CreateTask) -> Result<NewTask, ApiError> {
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
        unique_key: request.unique_key,
        tools: request.tools,
        budget: request.budget,
    };
    Ok(NewTask {
        spec: TaskSpec::parse(draft)?,
        needs_in_batch: Vec::new(),
        needs_existing: request.needs.into_iter().map(TaskId).collect(),
        parent: request.parent.map(TaskId),
        parent_in_batch: None,
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
