//! Who is asking about a run: the `X-Orch-Worker` and `X-Orch-Fencing-Token` headers every
//! `/v1/worker/runs/{run}/...` request carries, and how a refusal is answered and counted.
//!
//! The fencing token is a header, never part of a URL (URLs end up in proxy and access logs).
//! The store accepts a request only from the run's owner presenting its token while the run is
//! active. Refusals:
//! - the holder, too late (the run is no longer active): 409 `lease_lost`, recorded as a
//!   `refused` event every time;
//! - anyone else (another worker name, a made-up token): 403 `not_lease_holder`, recorded at
//!   most once per run per minute (the event counts the rest).
//!
//! Both are counted in `orch_refused_requests_total{reason="stale_lease"|"not_holder"}`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use orch_core::FencingToken;
use orch_store::StoreError;

use super::error::ApiError;
use super::ApiState;

/// The header that carries a run's fencing token (32 hex characters from the claim answer).
pub const X_ORCH_FENCING_TOKEN: HeaderName = HeaderName::from_static("x-orch-fencing-token");
/// The header that names the worker sending a request about a run (the name it claimed with).
pub const X_ORCH_WORKER: HeaderName = HeaderName::from_static("x-orch-worker");

/// The sender of a request about a run: its worker name and the run's token.
#[derive(Debug, Clone)]
pub struct RunCaller {
    /// The worker's name; must be the run's lease owner.
    pub worker: String,
    /// The token its claim returned.
    pub token: FencingToken,
}

/// A header's text, or a refusal naming it.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Invalid {
            field: Some(name.as_str().to_owned()),
            message: format!("the header `{name}` is missing or not text"),
        })
}

impl<S: Send + Sync> FromRequestParts<S> for RunCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let worker = header(&parts.headers, &X_ORCH_WORKER)?.trim().to_owned();
        let token =
            FencingToken::parse(header(&parts.headers, &X_ORCH_FENCING_TOKEN)?).map_err(|e| {
                ApiError::Invalid {
                    field: Some(X_ORCH_FENCING_TOKEN.as_str().to_owned()),
                    message: format!("{X_ORCH_FENCING_TOKEN}: {e}"),
                }
            })?;
        Ok(RunCaller { worker, token })
    }
}

/// The answer to a refused request about a run, counted in the metrics: `lease_lost` tells the
/// holder to stop; `not_lease_holder` tells anyone else the run is not theirs.
pub(crate) fn lease_error(state: &ApiState, error: StoreError) -> ApiError {
    match error {
        StoreError::StaleLease { .. } => {
            state.metrics.refused("stale_lease");
            ApiError::LeaseLost(error.to_string())
        }
        StoreError::NotLeaseHolder { .. } => {
            state.metrics.refused("not_holder");
            ApiError::NotLeaseHolder(error.to_string())
        }
        other => other.into(),
    }
}
