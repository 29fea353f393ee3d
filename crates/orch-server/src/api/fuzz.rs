//! Entry points for the fuzz targets in `fuzz/`: the request-body half of every handler that
//! takes one (extract, then convert into core types), and the bundle tar unpacker. Not part of
//! the API: `#[doc(hidden)]`, and nothing in orch calls them.
//!
//! The contract checked here is the one a client relies on: whatever bytes a request body holds,
//! the extractor and the conversions answer with a client error (4xx), never a panic and never
//! a 500.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::response::IntoResponse;
use futures_util::FutureExt;
use orch_core::Outcome;
use serde::de::DeserializeOwned;

use super::agents::{ReplyRequest, UsageReport};
use super::bundles::FilesRequest;
use super::error::ApiError;
use super::json::{from_value, ApiJson, ApiJsonOrEmpty};
use super::tasks::{new_task, CancelRequest, CreateTask, RetryRequest, SubmitWorkflow};
use super::webhooks::{plan_comment, plan_issue, IssueCommentEvent, IssuesEvent, Plan};
use super::workers::{lease, ClaimRequest, CompleteRequest, HeartbeatRequest, RequeueRequest};

/// Every request body the API reads, in the order [`request_body`] numbers them.
pub const ROUTES: [&str; 15] = [
    "POST /v1/tasks",
    "POST /v1/workflows",
    "POST /v1/tasks/{id}/cancel",
    "POST /v1/tasks/{id}/retry",
    "POST /v1/tasks/{id}/reply",
    "POST /v1/webhooks/tasks",
    "POST /v1/webhooks/github (issues)",
    "POST /v1/webhooks/github (issue_comment)",
    "POST /v1/worker/claim",
    "POST /v1/worker/runs/{run}/heartbeat",
    "POST /v1/worker/runs/{run}/complete",
    "POST /v1/worker/runs/{run}/requeue",
    "POST /v1/worker/runs/{run}/usage",
    "POST /v1/worker/runs/{run}/review",
    "POST /v1/worker/runs/{run}/files",
];

/// Feed `body` to the route `ROUTES[route % ROUTES.len()]`: its extractor, then the conversion
/// of the request into core types its handler makes before touching the store. Returns the
/// refusal's status code, or `None` when the body was accepted.
///
/// Panics (that is the finding) when a body is answered with a server error.
pub fn request_body(route: u8, body: &[u8]) -> Option<u16> {
    let refusal = match usize::from(route) % ROUTES.len() {
        0 => extract::<CreateTask>(body).and_then(|r| new_task(r).map(drop)),
        1 => extract::<SubmitWorkflow>(body).and_then(|r| {
            let file = r.file.as_deref().unwrap_or("workflow.yml");
            orch_core::spec::parse_workflow(file, &r.yaml)
                .map(drop)
                .map_err(|e| ApiError::Invalid {
                    field: Some("yaml".to_owned()),
                    message: e.to_string(),
                })
        }),
        2 => extract_or_empty::<CancelRequest>(body).map(drop),
        3 => extract_or_empty::<RetryRequest>(body).map(drop),
        4 => extract::<ReplyRequest>(body).map(drop),
        5 => extract::<serde_json::Value>(body).and_then(|mut value| {
            if let Some(object) = value.as_object_mut() {
                object.remove("delivery_id");
            }
            from_value::<CreateTask>(value).and_then(|r| new_task(r).map(drop))
        }),
        6 => extract::<serde_json::Value>(body)
            .and_then(from_value::<IssuesEvent>)
            .and_then(|event| planned(plan_issue(event, super::webhooks::GITHUB_LABEL))),
        7 => extract::<serde_json::Value>(body)
            .and_then(from_value::<IssueCommentEvent>)
            .and_then(|event| planned(plan_comment(event, "orch"))),
        8 => extract::<ClaimRequest>(body).and_then(|r| lease(r.lease_ms).map(drop)),
        9 => extract::<HeartbeatRequest>(body).and_then(|r| lease(r.lease_ms).map(drop)),
        10 => extract::<CompleteRequest>(body).map(|r| {
            let _: Outcome = r.outcome.into();
        }),
        11 => extract::<RequeueRequest>(body).map(drop),
        12 => extract::<UsageReport>(body).map(drop),
        13 => extract::<orch_api::ReviewReport>(body)
            .and_then(|r| super::reviews::review_record(r.review).map(drop)),
        _ => extract::<FilesRequest>(body).and_then(|r| {
            for piece in r.files {
                orch_worker::bundle::checked_bundle_path(&piece.path).map_err(|message| {
                    ApiError::Invalid {
                        field: Some("files".to_owned()),
                        message,
                    }
                })?;
            }
            Ok(())
        }),
    };
    let status = refusal.err()?.into_response().status();
    assert!(
        status.is_client_error(),
        "a request body was answered {status}, not a client error"
    );
    Some(status.as_u16())
}

/// Unpack an uploaded bundle (a tar) into `staging` as `PUT /v1/worker/runs/{run}/bundle` does
/// before its digest checks; the relative paths of the files written.
pub fn unpack_bundle(tar: &[u8], staging: &Path) -> Result<Vec<PathBuf>, ApiError> {
    super::bundles::unpack(tar, staging)
}

/// A webhook plan turned into the task it would create; an ignored event is fine.
fn planned(plan: Result<Plan, String>) -> Result<(), ApiError> {
    match plan {
        Ok((request, _, _)) => new_task(request).map(drop),
        Err(_ignored) => Ok(()),
    }
}

fn request(body: &[u8]) -> Request {
    Request::builder()
        .method("POST")
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a request with a constant method and header is valid")
}

fn extract<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    ApiJson::<T>::from_request(request(body), &())
        .now_or_never()
        .expect("a body held in memory is read in one poll")
        .map(|ApiJson(value)| value)
}

fn extract_or_empty<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    ApiJsonOrEmpty::<T>::from_request(request(body), &())
        .now_or_never()
        .expect("a body held in memory is read in one poll")
        .map(|ApiJsonOrEmpty(value)| value)
}
