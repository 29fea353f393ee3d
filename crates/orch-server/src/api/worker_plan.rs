//! `POST /v1/worker/runs/{run}/plan`: a remote worker's planner step hands the daemon its plan
//! (issue 12's `plan` label, `orch_core::planner`), and the daemon creates the children of the
//! run's task, as an embedded worker does through the store.
//!
//! Fenced like every request about a run (the owner's name and the run's token; a stale token
//! is `lease_lost`, anyone else's `not_lease_holder`). The body is only the plan: the parent is
//! the run's task and the project its project, whatever the worker says, and the plan is
//! checked again here with the daemon's configuration (`orch_core::planner::plan_children`,
//! the one check; `max_plan_children` of the daemon's `config.toml`). Only a task with a
//! planner step may plan. Idempotent: the children are created in one transaction under the
//! parent's delivery id, so the same request repeated (a lost answer, a retry, a duplicate)
//! answers the same children with `created: false` and makes nothing new.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use orch_core::planner::{children_delivery, plan_children};
use orch_core::RunId;
use orch_store::{Delivery, Op, Submission};

use super::error::{ApiError, ErrorBody};
use super::fencing::{lease_error, RunCaller};
use super::ApiState;
pub use orch_api::PlannedChildren;

/// Create the children of the run's task from its planner's plan, once.
#[utoipa::path(post, path = "/v1/worker/runs/{run}/plan", tag = "worker",
    request_body(content = Object, description = "The plan: `{\"tasks\": [{\"title\": \"...\", \"body\": \"...\"}]}` (no other key)"),
    security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), super::workers::RunCallerHeaders),
    responses(
        (status = 200, description = "The children (made now, or by an earlier request)", body = PlannedChildren),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 403, description = "`not_lease_holder`", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "`lease_lost`, or the task has no planner step", body = ErrorBody),
        (status = 422, description = "The plan is not usable (the reason says why)", body = ErrorBody),
    ))]
pub async fn plan(
    State(state): State<ApiState>,
    Path(run): Path<i64>,
    caller: RunCaller,
    body: Bytes,
) -> Result<Json<PlannedChildren>, ApiError> {
    let stored = state
        .store
        .check_lease(RunId(run), caller.token, "plan", Op::now(&caller.worker))
        .await
        .map_err(|e| lease_error(&state, e))?;
    let task = state.store.task(stored.task).await?;
    if !task.spec.steps.iter().any(|step| step.plan) {
        return Err(ApiError::Conflict(format!(
            "task {} has no planner step; only a planner's run creates children",
            task.id
        )));
    }
    let project = state
        .store
        .projects()
        .await?
        .into_iter()
        .find(|project| project.id == task.project)
        .ok_or_else(|| ApiError::NotFound(format!("the project of task {}", task.id)))?;
    let config = orch_worker::project::ProjectConfig::load_merged(
        &state.home,
        std::path::Path::new(&project.path),
    )
    .map_err(|e| ApiError::Conflict(format!("the project's configuration: {e}")))?;
    let plan_label = config.plan_label();
    let rules = config.plan_rules(&plan_label);
    let (_, children) = plan_children(task.id, &task.spec.labels, rules, &body).map_err(|why| {
        ApiError::Invalid {
            field: None,
            message: format!("the planner's plan is not usable: {why}"),
        }
    })?;
    let (source, id) = children_delivery(task.id);
    let submitted = state
        .store
        .submit_once(
            &[Delivery::new(source, id)],
            &Submission {
                project: task.project,
                workflow: None,
                tasks: children,
            },
            Op::now(&caller.worker),
        )
        .await?;
    let children = if submitted.created {
        submitted.tasks.iter().map(|id| id.0).collect()
    } else {
        // A repeat: the children an earlier request made (the delivery names only the first).
        let mut ids: Vec<i64> = state
            .store
            .children(task.id)
            .await?
            .iter()
            .map(|child| child.id.0)
            .collect();
        ids.sort_unstable();
        ids
    };
    Ok(Json(PlannedChildren {
        children,
        created: submitted.created,
    }))
}
