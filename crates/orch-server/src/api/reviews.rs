//! The workers' fenced review reports: a run's reviewer verdict, stored so that later claims of
//! the task (on any worker) carry the rounds used and the feedback.

use axum::extract::{Path, State};
use axum::Json;
use orch_core::RunId;
use orch_store::{Op, ReviewRecord, ReviewVerdict};

use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use super::ApiState;
pub use orch_api::{ReviewReport, ReviewView};

/// A stored verdict as the API shows it (to later claims).
pub(super) fn review_view(record: &ReviewRecord) -> ReviewView {
    ReviewView {
        round: record.round,
        verdict: record.verdict.as_str().to_owned(),
        reasons: record.reasons.clone(),
        escalated: record.escalated,
    }
}

/// Record the review verdict of a run (fenced; a repeat replaces the earlier report).
#[utoipa::path(post, path = "/v1/worker/runs/{run}/review", tag = "worker",
    request_body = ReviewReport, security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), super::workers::RunCallerHeaders),
    responses(
        (status = 200, description = "Recorded"),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 403, description = "`not_lease_holder`: not the run's owner with its token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the run is no longer active", body = ErrorBody),
        (status = 422, description = "Not a verdict", body = ErrorBody),
    ))]
pub async fn report_review(
    State(state): State<ApiState>,
    Path(run): Path<i64>,
    caller: super::fencing::RunCaller,
    ApiJson(report): ApiJson<ReviewReport>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = review_record(report.review)?;
    state
        .store
        .record_review(RunId(run), caller.token, record, Op::now(&caller.worker))
        .await
        .map_err(|e| super::fencing::lease_error(&state, e))?;
    Ok(Json(serde_json::json!({ "recorded": true })))
}

/// The stored verdict for a reported one: `approve` or `reject`, rounds counted from 1.
pub(super) fn review_record(view: ReviewView) -> Result<ReviewRecord, ApiError> {
    let verdict: ReviewVerdict = view
        .verdict
        .parse()
        .map_err(|e: String| ApiError::Invalid {
            field: Some("review.verdict".to_owned()),
            message: format!("review.verdict: {e}; give `approve` or `reject`"),
        })?;
    if view.round == 0 {
        return Err(ApiError::Invalid {
            field: Some("review.round".to_owned()),
            message: "review.round: rounds count from 1".to_owned(),
        });
    }
    Ok(ReviewRecord {
        round: view.round,
        verdict,
        reasons: view.reasons,
        escalated: view.escalated,
    })
}
