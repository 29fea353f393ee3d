//! `/health` (the process answers) and `/ready` (the store answers too); both open.

use axum::extract::State;
use axum::Json;
pub use orch_api::HealthView;

use super::error::ApiError;
use super::ApiState;

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = HealthView)))]
pub async fn health() -> Json<HealthView> {
    Json(HealthView {
        status: "ok".to_owned(),
    })
}

/// The process is up and the store answers a query.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = HealthView), (status = 503, body = orch_api::ErrorBody)))]
pub async fn ready(State(state): State<ApiState>) -> Result<Json<HealthView>, ApiError> {
    match state.store.status_counts().await {
        Ok(_) => Ok(Json(HealthView {
            status: "ok".to_owned(),
        })),
        Err(e) => {
            tracing::warn!("not ready: {e}");
            Err(ApiError::Unavailable(format!(
                "the store does not answer: {e}"
            )))
        }
    }
}
