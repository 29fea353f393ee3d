//! `GET /v1/usage/limits`: today's spend and what runs, against the daemon's claim limits
//! (`orch usage`).

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::ApiState;

/// How many days of history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageLimitsQuery {
    /// Days of per-day spend to list, counting today (default 7, at most 366).
    pub days: Option<u32>,
}

/// Today's spend and running tasks per project, agent and label against the daemon's limits
/// (`[concurrency]`, `[budgets]`), and the recent days' spend per project and agent.
#[utoipa::path(get, path = "/v1/usage/limits", tag = "tasks", params(UsageLimitsQuery),
    security(("bearer" = [])), responses((status = 200, body = orch_api::UsageLimitsView)))]
pub async fn usage_limits(
    State(state): State<ApiState>,
    Query(query): Query<UsageLimitsQuery>,
) -> Result<Json<orch_api::UsageLimitsView>, ApiError> {
    let days = query.days.unwrap_or(7).clamp(1, 366);
    let limits = state.store.claim_limits();
    Ok(Json(state.app.usage_report(&limits, days).await?))
}
