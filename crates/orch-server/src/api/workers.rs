//! `/v1/worker/...`: what a remote worker (`orch worker`) asks of the daemon: claim a run (long
//! poll), heartbeat it, complete it, or give it back. Every request about a run carries the
//! worker's name and the run's secret fencing token in headers (`fencing.rs`); the holder asking
//! too late gets 409 `lease_lost`, anyone else 403 `not_lease_holder`.
//!
//! These routes take the worker token (`<home>/worker-token`) or the admin token.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use orch_core::{Outcome, RunId, RunState};
use orch_store::{Claim, Op, StoreError};
use tokio::time::Instant;

use super::error::ApiError;
use super::fencing::{lease_error, RunCaller};
use super::json::ApiJson;
use super::ApiState;
use crate::EMBEDDED_PREFIX;
pub use orch_api::{
    ClaimRequest, ClaimedDependency, ClaimedReply, ClaimedRun, ClaimedTask, CompleteRequest,
    ErrorBody, HeartbeatRequest, HeartbeatResponse, OutcomeRequest, RequeueRequest,
    RunStatusResponse,
};

/// The longest a claim waits for work, whatever the worker asks.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// How often a waiting claim looks at the queue again when nothing wakes it. Work made ready
/// wakes waiting claims at once through the store (`Store::wait_for_work`: on PostgreSQL any
/// process's commit, on SQLite this daemon's); tasks submitted by other processes on an SQLite
/// home are only seen by looking, so the claim still looks this often.
const POLL: Duration = Duration::from_millis(50);

/// Leases shorter than this would expire between two heartbeats over a network.
const MIN_LEASE: Duration = Duration::from_secs(1);

/// Leases longer than this would keep a dead worker's task stuck for too long.
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// The worker routes, to be merged into the `/v1` router (behind its token check).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/worker/claim", post(claim))
        .route("/worker/runs/{run}/heartbeat", post(heartbeat))
        .route("/worker/runs/{run}/complete", post(complete))
        .route("/worker/runs/{run}/requeue", post(requeue))
        .route(
            "/worker/runs/{run}/usage",
            post(super::agents::report_usage),
        )
        .route(
            "/worker/runs/{run}/review",
            post(super::reviews::report_review),
        )
        .route("/worker/runs/{run}/files", post(super::bundles::files))
        // The bundle is counted against `max_bundle_bytes` as it streams in, not the body limit.
        .route(
            "/worker/runs/{run}/bundle",
            axum::routing::put(super::bundles::upload).layer(DefaultBodyLimit::disable()),
        )
}

pub(super) fn lease(lease_ms: u64) -> Result<Duration, ApiError> {
    let lease = Duration::from_millis(lease_ms);
    if (MIN_LEASE..=MAX_LEASE).contains(&lease) {
        Ok(lease)
    } else {
        Err(ApiError::Invalid {
            field: Some("lease_ms".to_owned()),
            message: format!("lease_ms: {lease_ms} is outside 1000 ms to 24 h"),
        })
    }
}

/// Claim the next ready task, waiting up to `wait_ms` for one.
#[utoipa::path(post, path = "/v1/worker/claim", tag = "worker", request_body = ClaimRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A run was claimed", body = ClaimedRun),
        (status = 204, description = "Nothing became ready within `wait_ms`"),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 422, description = "A bad worker name or lease", body = ErrorBody),
    ))]
pub async fn claim(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<ClaimRequest>,
) -> Result<Response, ApiError> {
    let worker = request.worker.trim();
    if worker.is_empty() || worker.starts_with(&format!("{EMBEDDED_PREFIX}-")) {
        return Err(ApiError::Invalid {
            field: Some("worker".to_owned()),
            message: format!(
                "worker: `{worker}` is not a usable worker name; give a non-empty name that does \
                 not start with `{EMBEDDED_PREFIX}-` (the daemon's own workers)"
            ),
        });
    }
    let lease = lease(request.lease_ms)?;
    state.fleet.saw(worker, None);
    let deadline = Instant::now() + Duration::from_millis(request.wait_ms).min(MAX_WAIT);
    // Taken before the first look, so work made ready between a look and the wait after it
    // still wakes this claim.
    let mut watch = state.store.watch_work();
    loop {
        if let Some(claim) = state
            .store
            .claim_next(worker, lease, Op::now(worker))
            .await?
        {
            state.fleet.saw(worker, Some(claim.run.id.0));
            let view = claimed_run(&state, claim).await?;
            return Ok((StatusCode::OK, Json(view)).into_response());
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // On PostgreSQL any server's NOTIFY wakes it, so a task submitted through another
        // server is claimed in milliseconds.
        state
            .store
            .wait_for_work(&mut watch, POLL.min(deadline - now))
            .await;
    }
}

async fn claimed_run(state: &ApiState, claim: Claim) -> Result<ClaimedRun, ApiError> {
    let Claim {
        task,
        run,
        token,
        reply,
        reviews,
        dependencies,
    } = claim;
    let (project_dir, project_name) = state
        .store
        .projects()
        .await?
        .into_iter()
        .find(|project| project.id == task.project)
        .map(|project| (project.path, project.name))
        .ok_or_else(|| {
            ApiError::internal(&format!(
                "task {} names project {}, which does not exist",
                task.id, task.project
            ))
        })?;
    let spec = serde_json::to_value(&task.spec).map_err(|e| ApiError::internal(&e))?;
    Ok(ClaimedRun {
        task: ClaimedTask {
            id: task.id.0,
            project: task.project.0,
            workflow: task.workflow.map(|w| w.0),
            parent: task.parent.map(|p| p.0),
            spec,
            status: task.status.to_string(),
            attempts_used: task.attempts_used,
            run_count: task.run_count,
            needs: task.needs.iter().map(|n| n.0).collect(),
            created_at: task.created_at.0,
            updated_at: task.updated_at.0,
        },
        run: run.id.0,
        attempt: run.attempt,
        token: token.expose_hex(),
        owner: run.lease.owner,
        lease_expires_at: run.lease.expires_at.0,
        started_at: run.started_at.0,
        project_dir,
        reply: reply.map(|r| ClaimedReply {
            id: r.id,
            message: r.message,
            agent: r.agent,
            step: r.step,
            session_id: r.session_id,
        }),
        reviews: reviews.iter().map(super::reviews::review_view).collect(),
        dependencies: dependencies
            .into_iter()
            .map(|dependency| ClaimedDependency {
                id: dependency.id.0,
                project: dependency.project.0,
                created_at: dependency.created_at.0,
                status: dependency.status.to_string(),
            })
            .collect(),
        project_name,
    })
}

/// Extend a run's lease.
#[utoipa::path(post, path = "/v1/worker/runs/{run}/heartbeat", tag = "worker",
    request_body = HeartbeatRequest, security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), RunCallerHeaders),
    responses(
        (status = 200, description = "The lease was extended", body = HeartbeatResponse),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 403, description = "`not_lease_holder`: not the run's owner with its token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the run is no longer active; stop", body = ErrorBody),
    ))]
pub async fn heartbeat(
    State(state): State<ApiState>,
    Path(run): Path<i64>,
    caller: RunCaller,
    ApiJson(request): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let lease = lease(request.lease_ms)?;
    let expires = state
        .store
        .heartbeat(RunId(run), caller.token, lease, Op::now(&caller.worker))
        .await
        .map_err(|e| lease_error(&state, e))?;
    state.fleet.saw(&caller.worker, Some(run));
    Ok(Json(HeartbeatResponse {
        lease_expires_at: expires.0,
    }))
}

/// The two headers of every request about a run, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Only read by the OpenAPI derive.
pub struct RunCallerHeaders {
    /// The run's fencing token from the claim answer (32 hex characters).
    #[param(rename = "x-orch-fencing-token")]
    token: String,
    /// The worker's name, the one it claimed the run with.
    #[param(rename = "x-orch-worker")]
    worker: String,
}

/// Report how a run ended. Repeating a completion the daemon already accepted (same run, token
/// and outcome) answers 200 again, so a worker that lost the answer can safely send it again.
#[utoipa::path(post, path = "/v1/worker/runs/{run}/complete", tag = "worker",
    request_body = CompleteRequest, security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), RunCallerHeaders),
    responses(
        (status = 200, description = "The run ended; the task's status", body = RunStatusResponse),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 403, description = "`not_lease_holder`: not the run's owner with its token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the run is no longer active", body = ErrorBody),
    ))]
pub async fn complete(
    State(state): State<ApiState>,
    Path(run): Path<i64>,
    caller: RunCaller,
    ApiJson(request): ApiJson<CompleteRequest>,
) -> Result<Json<RunStatusResponse>, ApiError> {
    let (run, outcome) = (RunId(run), Outcome::from(request.outcome));
    // A repeat is answered before the store sees it, so it is not recorded as a refusal.
    if let Some(status) = already_completed(&state, run, &caller, outcome).await? {
        return Ok(Json(RunStatusResponse { status }));
    }
    match state
        .store
        .complete(
            run,
            caller.token,
            outcome,
            request.reason.as_deref(),
            Op::now(&caller.worker),
        )
        .await
    {
        Ok(status) => {
            super::bundles::scan_stored_run(&state, run).await;
            Ok(Json(RunStatusResponse {
                status: status.to_string(),
            }))
        }
        // Two copies of one completion racing: the second lost to the first, which is fine.
        Err(error @ StoreError::StaleLease { .. }) => {
            match already_completed(&state, run, &caller, outcome).await? {
                Some(status) => Ok(Json(RunStatusResponse { status })),
                None => Err(lease_error(&state, error)),
            }
        }
        Err(error) => Err(lease_error(&state, error)),
    }
}

/// The task's status if `run` already ended, by this caller's lease, the way `outcome` ends a run.
async fn already_completed(
    state: &ApiState,
    run: RunId,
    caller: &RunCaller,
    outcome: Outcome,
) -> Result<Option<String>, ApiError> {
    let stored = state.store.run(run).await?;
    let ended_so = match outcome {
        Outcome::Succeeded => stored.state == RunState::Succeeded,
        Outcome::Failed | Outcome::FailedPermanently => stored.state == RunState::Failed,
        Outcome::NeedsReview => stored.state == RunState::Escalated,
    };
    if !ended_so
        || !state
            .store
            .is_holder(run, caller.token, &caller.worker)
            .await?
    {
        return Ok(None);
    }
    let task = state.store.task(stored.task).await?;
    Ok(Some(task.status.to_string()))
}

/// Give a run back to be run again later, without using up an attempt (a worker shutting down,
/// or rate limited).
#[utoipa::path(post, path = "/v1/worker/runs/{run}/requeue", tag = "worker",
    request_body = RequeueRequest, security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), RunCallerHeaders),
    responses(
        (status = 200, description = "The task is queued again; its status", body = RunStatusResponse),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 403, description = "`not_lease_holder`: not the run's owner with its token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the run is no longer active", body = ErrorBody),
    ))]
pub async fn requeue(
    State(state): State<ApiState>,
    Path(run): Path<i64>,
    caller: RunCaller,
    ApiJson(request): ApiJson<RequeueRequest>,
) -> Result<Json<RunStatusResponse>, ApiError> {
    let status = state
        .store
        .requeue(
            RunId(run),
            caller.token,
            Duration::from_millis(request.delay_ms),
            Some(&request.reason),
            Op::now(&caller.worker),
        )
        .await
        .map_err(|e| lease_error(&state, e))?;
    Ok(Json(RunStatusResponse {
        status: status.to_string(),
    }))
}
