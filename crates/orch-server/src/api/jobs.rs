//! `/v1/jobs`: the cron jobs with their next firing, adding one (`orch job add --server`),
//! removing, enabling and disabling one, and firing one by hand. The CLI drafts a job (its task
//! checked by the same parser as `orch task add`); the daemon checks it again in `orch-app`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
pub use orch_api::{AddJob, FiringView, JobView};
use orch_app::jobs::{firing_view, job_view, JobDraft};
use orch_app::ProjectDir;
use orch_core::cron::MissedPolicy;
use orch_store::jobs::JobTarget;

use super::error::ApiError;
use super::json::ApiJson;
use super::ApiState;

const ACTOR: &str = "api";

/// The cron jobs, by name, with their next firing.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Vec<JobView>)))]
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<JobView>>, ApiError> {
    let now = orch_store::calendar_clock();
    Ok(Json(state.app.job_views(now).await?))
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Invalid {
        field: Some(field.to_owned()),
        message,
    }
}

/// Add a cron job (checked like `orch job add`: schedule, zone, name, and its task or
/// workflow as a submission).
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = AddJob,
    security(("bearer" = [])),
    responses((status = 201, body = JobView), (status = 422, body = super::error::ErrorBody)))]
pub async fn add(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<AddJob>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let target = match (request.task, request.workflow) {
        (Some(spec), None) => JobTarget::Task(spec),
        (None, Some(text)) => JobTarget::Workflow(text),
        _ => {
            return Err(invalid(
                "task",
                "give either `task` (a task spec) or `workflow` (a workflow file's text)".into(),
            ))
        }
    };
    let missed = MissedPolicy::parse(request.missed.as_deref().unwrap_or("skip"))
        .map_err(|e| invalid("missed", e.reason))?;
    let draft = JobDraft {
        name: request.name,
        project: ProjectDir::resolve(&request.project, "project")?,
        schedule: request.schedule,
        timezone: request.timezone.unwrap_or_else(|| "UTC".to_owned()),
        missed,
        target,
    };
    let now = orch_store::calendar_clock();
    let job = state.app.add_job(draft, now).await?;
    Ok((StatusCode::CREATED, Json(job_view(&job, None, now))))
}

/// Remove a job (the tasks it submitted stay).
#[utoipa::path(delete, path = "/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")), security(("bearer" = [])),
    responses((status = 200, body = JobView), (status = 404, body = super::error::ErrorBody)))]
pub async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.app.remove_job(&name).await?;
    Ok(Json(job_view(&job, None, orch_store::calendar_clock())))
}

/// Enable a job; slots that passed while it was disabled are not fired.
#[utoipa::path(post, path = "/v1/jobs/{name}/enable", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")), security(("bearer" = [])),
    responses((status = 200, body = JobView), (status = 404, body = super::error::ErrorBody)))]
pub async fn enable(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let now = orch_store::calendar_clock();
    let job = state.app.set_job_enabled(&name, true, now).await?;
    Ok(Json(job_view(&job, None, now)))
}

/// Disable a job: the scheduler stops firing it.
#[utoipa::path(post, path = "/v1/jobs/{name}/disable", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")), security(("bearer" = [])),
    responses((status = 200, body = JobView), (status = 404, body = super::error::ErrorBody)))]
pub async fn disable(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let now = orch_store::calendar_clock();
    let job = state.app.set_job_enabled(&name, false, now).await?;
    Ok(Json(job_view(&job, None, now)))
}

/// Fire a job now, by hand, whatever its schedule.
#[utoipa::path(post, path = "/v1/jobs/{name}/run", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")), security(("bearer" = [])),
    responses((status = 200, body = FiringView), (status = 422, body = orch_api::ErrorBody)))]
pub async fn run(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<FiringView>, ApiError> {
    let firing = state
        .app
        .run_job(&name, orch_store::calendar_clock(), ACTOR)
        .await?;
    let Some(firing) = firing else {
        return Err(orch_store::StoreError::Invalid {
            field: "job".into(),
            reason: format!("job {name} fired at this very millisecond already; ask again"),
        }
        .into());
    };
    Ok(Json(firing_view(&name, &firing)))
}
