//! Info requests over the API: what a task asks (`GET /v1/tasks/{id}/info-requests`), the open
//! ones of every task (`GET /v1/info-requests`, the inbox), answering
//! (`POST /v1/tasks/{id}/answers`), and the worker's fenced side: parking a run with its request
//! and reading the values its task was given.
//!
//! A secret value is never shown again: the views carry `secret: true` and no value. Only the
//! worker holding the run (its name and fencing token) reads the values, opened.

use axum::extract::{Path, State};
use axum::Json;
pub use orch_api::{AnswerRequest, InfoRequestList, InputValues, ParkRequest, ParkedView};
use orch_core::info_request::AskFile;
use orch_core::RunId;
use orch_store::NewInfoRequest;

use super::error::{ApiError, ErrorBody};
use super::fencing::{lease_error, RunCaller};
use super::json::ApiJson;
use super::tasks::{StatusChange, TaskIdPath};
use super::ApiState;

const ACTOR: &str = "api";

/// What a task asked and what was answered (secret values never shown).
#[utoipa::path(get, path = "/v1/tasks/{id}/info-requests", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = InfoRequestList), (status = 404, body = ErrorBody)))]
pub async fn of_task(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<InfoRequestList>, ApiError> {
    state.store.task(id).await?;
    Ok(Json(InfoRequestList {
        requests: super::convert::info_requests(state.store.info_requests(id).await?),
    }))
}

/// Every open info request of a task awaiting input, oldest first (the inbox).
#[utoipa::path(get, path = "/v1/info-requests", tag = "tasks", security(("bearer" = [])),
    responses((status = 200, body = InfoRequestList)))]
pub async fn open(State(state): State<ApiState>) -> Result<Json<InfoRequestList>, ApiError> {
    Ok(Json(InfoRequestList {
        requests: super::convert::info_requests(state.store.open_info_requests().await?),
    }))
}

/// Answer a task's open info request: the task is queued again and its next run gets the
/// values (the step that asked runs again with them in its environment).
#[utoipa::path(post, path = "/v1/tasks/{id}/answers", tag = "tasks", request_body = AnswerRequest,
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "Answered; the task is queued", body = StatusChange),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The task has no open info request", body = ErrorBody),
        (status = 422, description = "A key not asked for, a required key missing, a value too long", body = ErrorBody),
    ))]
pub async fn answer(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
    ApiJson(request): ApiJson<AnswerRequest>,
) -> Result<Json<StatusChange>, ApiError> {
    let values = request
        .values
        .into_iter()
        .map(|(key, value)| orch_app::AnswerInput {
            secret: request.secret.contains(&key),
            key,
            value,
        })
        .collect();
    let status = state.app.answer_input(id, values, ACTOR).await?;
    Ok(Json(StatusChange {
        id: id.0,
        status: status.as_str().to_owned(),
    }))
}

/// Park a run whose step asked for values: the run ends (its attempt given back) and its task
/// waits in `awaiting_input`.
#[utoipa::path(post, path = "/v1/worker/runs/{run}/info-request", tag = "worker",
    request_body = ParkRequest, security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), super::workers::RunCallerHeaders),
    responses(
        (status = 200, description = "Parked", body = ParkedView),
        (status = 403, description = "`not_lease_holder`", body = ErrorBody),
        (status = 409, description = "`lease_lost`", body = ErrorBody),
        (status = 422, description = "Not a valid request", body = ErrorBody),
    ))]
pub async fn park(
    State(state): State<ApiState>,
    Path(run): Path<i64>,
    caller: RunCaller,
    ApiJson(request): ApiJson<ParkRequest>,
) -> Result<Json<ParkedView>, ApiError> {
    // Checked again here: the names and sizes are the store's business, not the worker's word.
    let ask = AskFile {
        keys: request.ask.keys,
        hint: None,
        reason: request.ask.reason,
    }
    .resolve()
    .map_err(|message| ApiError::Invalid {
        field: Some("ask".to_owned()),
        message,
    })?;
    let request = NewInfoRequest {
        step: request.step,
        ask: orch_core::info_request::Ask {
            hint: request.ask.hint,
            ..ask
        },
        expires_at: request.expires_at.map(orch_core::Timestamp),
    };
    let id = state
        .store
        .request_input(
            RunId(run),
            caller.token,
            request,
            orch_store::Op::now(&caller.worker),
        )
        .await
        .map_err(|e| lease_error(&state, e))?;
    Ok(Json(ParkedView { id }))
}

/// The values the run's task was given, secret ones opened, for the run's holder only.
#[utoipa::path(post, path = "/v1/worker/runs/{run}/inputs", tag = "worker",
    security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), super::workers::RunCallerHeaders),
    responses(
        (status = 200, body = InputValues),
        (status = 403, description = "`not_lease_holder`", body = ErrorBody),
        (status = 409, description = "`lease_lost`", body = ErrorBody),
    ))]
pub async fn inputs(
    State(state): State<ApiState>,
    Path(run): Path<i64>,
    caller: RunCaller,
) -> Result<Json<InputValues>, ApiError> {
    let values = state
        .app
        .run_input_values(RunId(run), caller.token, &caller.worker)
        .await
        .map_err(|e| match e {
            orch_app::AppError::Store(e) => lease_error(&state, e),
            other => other.into(),
        })?;
    Ok(Json(InputValues {
        values: values
            .into_iter()
            .map(super::convert::input_value)
            .collect(),
    }))
}
