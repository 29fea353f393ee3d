//! Agent sessions over the API: follow-up replies, usage per task and in all, and the
//! worker's usage reports.

use axum::extract::{Path, Query, State};
use axum::Json;
use orch_core::{ReplyMessage, RunId};
use orch_store::{Op, UsageRecord};
use serde::Deserialize;
use utoipa::IntoParams;

pub use orch_api::{
    ReplyRequest, UsageRecordView, UsageReport, UsageSummaryView, UsageTotalView, UsageView,
};

use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use super::tasks::{StatusChange, TaskIdPath};
use super::ApiState;

const ACTOR: &str = "api";

/// Reopen a finished task with a follow-up: its next run resumes the agent's last session in
/// the same worktree.
#[utoipa::path(post, path = "/v1/tasks/{id}/reply", tag = "tasks", request_body = ReplyRequest,
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = StatusChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reply(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
    ApiJson(request): ApiJson<ReplyRequest>,
) -> Result<Json<StatusChange>, ApiError> {
    let message = ReplyMessage::parse(request.message)?;
    let status = state.app.reply(id, &message, ACTOR).await?;
    Ok(Json(StatusChange {
        id: id.0,
        status: status.as_str().to_owned(),
    }))
}

/// The agent sessions of a task with their usage.
#[utoipa::path(get, path = "/v1/tasks/{id}/usage", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")), security(("bearer" = [])),
    responses((status = 200, body = [UsageView]), (status = 404, body = ErrorBody)))]
pub async fn task_usage(
    State(state): State<ApiState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<Vec<UsageView>>, ApiError> {
    state.store.task(id).await?;
    let rows = state.store.task_usage(id).await?;
    Ok(Json(rows.into_iter().map(super::convert::usage).collect()))
}

/// How many days of per-day usage.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Days with usage to list, newest first (default 14, at most 366).
    pub days: Option<u32>,
}

/// Tokens and cost per agent and per day.
#[utoipa::path(get, path = "/v1/usage", tag = "tasks", params(UsageQuery), security(("bearer" = [])),
    responses((status = 200, body = UsageSummaryView)))]
pub async fn usage(
    State(state): State<ApiState>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageSummaryView>, ApiError> {
    let days = query.days.unwrap_or(14).clamp(1, 366);
    Ok(Json(super::convert::usage_summary(
        state.store.usage_summary(days).await?,
    )))
}

/// Record the usage of a run's agent sessions (fenced; a repeat replaces the earlier report).
#[utoipa::path(post, path = "/v1/worker/runs/{run}/usage", tag = "worker",
    request_body = UsageReport, security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), super::workers::RunCallerHeaders),
    responses(
        (status = 200, description = "Recorded"),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 403, description = "`not_lease_holder`: not the run's owner with its token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the run is no longer active", body = ErrorBody),
    ))]
pub async fn report_usage(
    State(state): State<ApiState>,
    Path(run): Path<i64>,
    caller: super::fencing::RunCaller,
    ApiJson(report): ApiJson<UsageReport>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let records = report
        .records
        .into_iter()
        .map(|r| UsageRecord {
            step: r.step,
            agent: r.agent,
            model: r.model,
            session_id: r.session_id,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
        })
        .collect();
    state
        .store
        .record_usage(RunId(run), caller.token, records, Op::now(&caller.worker))
        .await
        .map_err(|e| super::fencing::lease_error(&state, e))?;
    Ok(Json(serde_json::json!({ "recorded": true })))
}
