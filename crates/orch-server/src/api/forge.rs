//! The forge side of the API: a task's link to its issue and pull request (in `GET
//! /v1/tasks/{id}`), `POST /v1/tasks/{id}/publish`, and the GitHub webhook's issues made tasks
//! exactly once (`orch_app::App::submit_issue`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use orch_app::forge::IssueRef;
use orch_app::ProjectDir;
use orch_core::forge::RepoSlug;
use orch_core::{NewTask, Task};
use orch_store::Delivery;

use super::error::{ApiError, ErrorBody};
use super::tasks::TaskIdPath;
use super::ApiState;
pub use orch_api::{ForgeLinkView, PublishView};

/// The actor of API actions.
const ACTOR: &str = "api";

/// The view of what a publish did.
pub fn publish_view(published: orch_app::forge::Published) -> PublishView {
    PublishView {
        task: published.entry.task.map_or(0, |t| t.0),
        repo: published.repo.to_string(),
        op: published.entry.id,
        state: published.entry.state.as_str().to_owned(),
        enqueued: published.enqueued,
    }
}

/// Publish a local task as an issue of its project's repository (once; the task is linked to
/// the issue when the forge has opened it).
#[utoipa::path(post, path = "/v1/tasks/{id}/publish", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 202, body = PublishView, description = "Enqueued (or enqueued before)"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn publish(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<(StatusCode, Json<PublishView>), ApiError> {
    let published = crate::forge::publish(&state.app, &state.home, id, ACTOR).await?;
    Ok((StatusCode::ACCEPTED, Json(publish_view(published))))
}

/// A task's link, for its detail view.
pub(super) async fn link_view(
    state: &ApiState,
    task: orch_core::TaskId,
) -> Result<Option<ForgeLinkView>, ApiError> {
    Ok(state.store.forge_link(task).await?.map(ForgeLinkView::from))
}

/// The issue of an `issues` event, when its repository and number read as GitHub's.
pub(super) fn issue_ref(payload: &serde_json::Value) -> Option<IssueRef> {
    let repo = RepoSlug::parse(payload["repository"]["full_name"].as_str()?).ok()?;
    let number = payload["issue"]["number"].as_u64().filter(|n| *n > 0)?;
    let body = payload["issue"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Some(IssueRef { repo, number, body })
}

/// Make the issue a task exactly once, through the application layer.
pub(super) async fn submit_issue(
    state: &ApiState,
    project: &ProjectDir,
    issue: &IssueRef,
    deliveries: &[Delivery],
    task: NewTask,
) -> Result<(Task, bool), ApiError> {
    let submitted = state
        .app
        .submit_issue(project, issue, deliveries, task, "webhook")
        .await?;
    let task = submitted
        .tasks
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal(&"submit created no task"))?;
    Ok((task, submitted.created))
}

/// Make an issue's task planned first when it carries the project's plan label
/// (`[forge] plan_label`, default `plan`).
pub(super) fn plan_if_labelled(state: &ApiState, project: &ProjectDir, task: &mut NewTask) {
    let label = orch_worker::project::ProjectConfig::load_merged(
        &state.home,
        std::path::Path::new(project.as_str()),
    )
    .ok()
    .and_then(|config| config.forge)
    .and_then(|forge| forge.plan_label)
    .unwrap_or_else(|| orch_core::planner::DEFAULT_PLAN_LABEL.to_owned());
    orch_core::planner::plan_if_labelled(&mut task.spec, &label);
}

/// The trigger label of GitHub's project (`[forge] trigger_label`, default `orch`): only an
/// issue carrying it becomes a task, by webhook as by polling.
pub(super) fn trigger_label(state: &ApiState) -> String {
    state
        .github
        .project
        .as_deref()
        .and_then(|project| {
            orch_worker::project::ProjectConfig::load_merged(&state.home, project).ok()
        })
        .and_then(|config| config.forge)
        .and_then(|forge| forge.trigger_label)
        .filter(|label| !label.is_empty())
        .unwrap_or_else(|| orch_core::forge::DEFAULT_TRIGGER_LABEL.to_owned())
}
