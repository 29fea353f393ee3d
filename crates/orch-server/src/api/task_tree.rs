//! Approval with a comment and rejection (`POST /v1/tasks/{id}/approve`, `/reject`): the
//! event carries the comment and the actor (`api`, or `api:<actor>` when the request names
//! one).

use axum::extract::State;
use axum::Json;
pub use orch_api::{ApprovalRequest, ChildrenContext};
use orch_app::ApprovalComment;
use orch_store::ApprovalVerdict;

use super::error::{ApiError, ErrorBody};
use super::json::ApiJsonOrEmpty;
use super::tasks::{status_change, StatusChange, TaskIdPath};
use super::ApiState;

/// The checked comment and the event's actor of an approval or rejection.
pub(super) fn parse_approval(
    request: ApprovalRequest,
) -> Result<(Option<ApprovalComment>, String), ApiError> {
    let comment = request
        .comment
        .as_deref()
        .map(|c| ApprovalComment::parse(c, "comment"))
        .transpose()?;
    let actor = match request.actor {
        None => "api".to_owned(),
        Some(actor) => {
            let ok = !actor.is_empty()
                && actor.len() <= 64
                && actor
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
            if !ok {
                return Err(orch_core::FieldError::new(
                    "actor",
                    "give a short name: letters, digits, `.`, `_`, `-`, `@`, at most 64",
                )
                .into());
            }
            format!("api:{actor}")
        }
    };
    Ok((comment, actor))
}

/// Reject a task that waits for approval: it is cancelled, and the `reject` event carries the
/// comment and the actor.
#[utoipa::path(post, path = "/v1/tasks/{id}/reject", tag = "tasks",
    request_body(content = Option<ApprovalRequest>, description = "Optional: `{\"comment\": \"...\", \"actor\": \"alice\"}`"),
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reject(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
    ApiJsonOrEmpty(request): ApiJsonOrEmpty<ApprovalRequest>,
) -> Result<Json<StatusChange>, ApiError> {
    let (comment, actor) = parse_approval(request)?;
    let status = state
        .app
        .judge_approval(id, ApprovalVerdict::Reject, comment.as_ref(), &actor)
        .await?;
    Ok(status_change(id, status))
}

/// The children of the run's task with their results, for the run's holder only: a remote
/// worker's parent step sees them as an embedded worker's does.
#[utoipa::path(post, path = "/v1/worker/runs/{run}/children", tag = "worker",
    security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), super::workers::RunCallerHeaders),
    responses(
        (status = 200, body = ChildrenContext),
        (status = 403, description = "`not_lease_holder`", body = ErrorBody),
        (status = 409, description = "`lease_lost`", body = ErrorBody),
    ))]
pub async fn children(
    State(state): State<ApiState>,
    axum::extract::Path(run): axum::extract::Path<i64>,
    caller: super::fencing::RunCaller,
) -> Result<Json<ChildrenContext>, ApiError> {
    let stored = state
        .store
        .check_lease(
            orch_core::RunId(run),
            caller.token,
            "children",
            orch_store::Op::now(&caller.worker),
        )
        .await
        .map_err(|e| super::fencing::lease_error(&state, e))?;
    let children = state.store.children(stored.task).await?;
    Ok(Json(ChildrenContext {
        children: orch_worker::task_tree::children_context(&state.home, &children),
    }))
}
