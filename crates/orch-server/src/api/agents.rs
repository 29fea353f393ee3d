//! Agent sessions over the API: follow-up replies, usage per task and in all, and the
//! worker's usage reports.

use axum::extract::{Path, Query, State};
use axum::Json;
use orch_core::{ReplyMessage, RunId};
use orch_store::{AgentUsage, Op, UsageRecord, UsageSummary, UsageTotal};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use super::tasks::{StatusChange, TaskIdPath};
use super::ApiState;

const ACTOR: &str = "api";

/// A follow-up message for a finished task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    /// What to tell the agent; its last session is resumed with it.
    pub message: String,
}

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

/// One agent session's usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// The run.
    pub run: i64,
    /// The step.
    pub step: String,
    /// The agent.
    pub agent: String,
    /// The model, when known.
    pub model: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// UTC day.
    pub day: String,
}

impl From<AgentUsage> for UsageView {
    fn from(u: AgentUsage) -> Self {
        UsageView {
            run: u.run.0,
            step: u.step,
            agent: u.agent,
            model: u.model,
            session_id: u.session_id,
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cost_usd: u.cost_usd,
            day: u.day,
        }
    }
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
    Ok(Json(rows.into_iter().map(UsageView::from).collect()))
}

/// Usage summed over one agent or one day.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageTotalView {
    /// The agent or the day.
    pub key: String,
    /// Sessions counted.
    pub sessions: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// Usage per agent and per day.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageSummaryView {
    /// Per agent, all time.
    pub by_agent: Vec<UsageTotalView>,
    /// Per day, newest first.
    pub by_day: Vec<UsageTotalView>,
}

fn total(t: UsageTotal) -> UsageTotalView {
    UsageTotalView {
        key: t.key,
        sessions: t.sessions,
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        cost_usd: t.cost_usd,
    }
}

impl From<UsageSummary> for UsageSummaryView {
    fn from(s: UsageSummary) -> Self {
        UsageSummaryView {
            by_agent: s.by_agent.into_iter().map(total).collect(),
            by_day: s.by_day.into_iter().map(total).collect(),
        }
    }
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
    Ok(Json(state.store.usage_summary(days).await?.into()))
}

/// A worker's report of its run's agent sessions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// One record per agent step.
    pub records: Vec<UsageRecordView>,
}

/// One agent step's usage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageRecordView {
    /// The step.
    pub step: String,
    /// The agent.
    pub agent: String,
    /// The model.
    pub model: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
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
