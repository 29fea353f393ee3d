//! What every API request passes through: the request log and counters, injected faults,
//! authentication (tokens, installation tokens, App JWTs), ETags with 304 answers, and rate-limit
//! headers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::state::{FaultKind, SeenRequest};
use crate::Shared;

/// Who a request acts as.
#[derive(Debug, Clone)]
pub struct Caller {
    pub login: String,
}

/// A GitHub-shaped error answer.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "message": message.into(), "documentation_url": "https://docs.github.com/rest" })),
    )
        .into_response()
}

fn epoch_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Rounded up, so a client waiting until the header's second is past the fault.
fn epoch_seconds_ceil(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    since.as_secs() + u64::from(since.subsec_nanos() > 0)
}

/// Counts, injects faults, authenticates, then answers GETs with ETags.
pub async fn around(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = format!(
        "{} {}",
        method,
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or(path.as_str(), |matched| matched.as_str())
    );
    let now = SystemTime::now();
    // Recorded before answering, so a request whose client gave up is counted too.
    let index = {
        let mut state = shared.lock();
        state.requests.push(SeenRequest {
            method: method.to_string(),
            route: route.clone(),
            path,
            status: 0,
            at: now,
        });
        state.requests.len() - 1
    };
    let fault = shared.lock().take_fault(&route, now);
    let response = match fault {
        Some(FaultKind::PrimaryRateLimit { reset_at }) => {
            let mut response = error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for installation. (But here's the good news: ...)",
            );
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-used", HeaderValue::from_static("5000"));
            headers.insert(
                "x-ratelimit-reset",
                HeaderValue::from(epoch_seconds_ceil(reset_at)),
            );
            headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
            response
        }
        Some(FaultKind::SecondaryRateLimit {
            retry_after,
            status,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            let mut response = error(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        Some(FaultKind::ServerError { status }) => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Server Error",
        ),
        Some(FaultKind::Delay { delay }) => {
            tokio::time::sleep(delay).await;
            authenticate_and_run(&shared, request, next, &method).await
        }
        Some(FaultKind::GraphQlRateLimit { reset_at }) => {
            let mut response = Json(json!({
                "data": null,
                "errors": [{ "type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1." }],
            }))
            .into_response();
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert(
                "x-ratelimit-reset",
                HeaderValue::from(epoch_seconds_ceil(reset_at)),
            );
            response
        }
        Some(FaultKind::SpendQuota { reset_at }) => {
            let mut response = authenticate_and_run(&shared, request, next, &method).await;
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert(
                "x-ratelimit-reset",
                HeaderValue::from(epoch_seconds_ceil(reset_at)),
            );
            response
        }
        Some(FaultKind::LoseAnswer { status }) => {
            let _ = authenticate_and_run(&shared, request, next, &method).await;
            error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                "Server Error (the answer was lost)",
            )
        }
        None => authenticate_and_run(&shared, request, next, &method).await,
    };
    if let Some(seen) = shared.lock().requests.get_mut(index) {
        seen.status = response.status().as_u16();
    }
    response
}

async fn authenticate_and_run(
    shared: &Arc<Shared>,
    mut request: Request,
    next: Next,
    method: &Method,
) -> Response {
    let path = request.uri().path().to_owned();
    if !path.starts_with("/git/") {
        match authenticate(shared, request.headers(), &path) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
            }
            Err(response) => return *response,
        }
    }
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let response = next.run(request).await;
    if *method != Method::GET || response.status() != StatusCode::OK || path.starts_with("/git/") {
        return with_rate_headers(shared, response);
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the fake could not buffer its answer",
        );
    };
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&bytes)));
    let etag_value = HeaderValue::from_str(&etag).expect("a hex ETag is a valid header");
    parts.headers.insert(header::ETAG, etag_value.clone());
    let response = if if_none_match.as_ref() == Some(&etag_value) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(header::ETAG, etag_value);
        response
    } else {
        Response::from_parts(parts, Body::from(bytes))
    };
    with_rate_headers(shared, response)
}

fn with_rate_headers(shared: &Arc<Shared>, mut response: Response) -> Response {
    let used = shared.lock().requests.len() as u64 + 1;
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(5000u64.saturating_sub(used).max(1)),
    );
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(epoch_seconds(SystemTime::now() + Duration::from_secs(3600))),
    );
    response
}

/// The bearer (or `token`) credential of a request.
fn credential(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    matches!(scheme.to_ascii_lowercase().as_str(), "bearer" | "token")
        .then(|| credential.trim().to_owned())
}

fn unauthorized(message: &str) -> Response {
    error(StatusCode::UNAUTHORIZED, message)
}

/// Who the request is from; App routes need the App's JWT, everything else a token.
fn authenticate(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    path: &str,
) -> Result<Caller, Box<Response>> {
    let Some(credential) = credential(headers) else {
        return Err(Box::new(unauthorized("Requires authentication")));
    };
    let needs_jwt = path == "/app" || path.starts_with("/app/") || path.ends_with("/installation");
    if needs_jwt {
        let app_id = crate::app::verify_jwt(shared, &credential).map_err(|reason| {
            unauthorized(&format!("A JSON web token could not be decoded: {reason}"))
        })?;
        return Ok(Caller {
            login: format!("app-{app_id}[bot]"),
        });
    }
    let state = shared.lock();
    let Some(grant) = state.tokens.get(&credential) else {
        return Err(Box::new(unauthorized("Bad credentials")));
    };
    if grant
        .expires_at
        .is_some_and(|expires| expires <= SystemTime::now())
    {
        return Err(Box::new(unauthorized(
            "Bad credentials (the token expired)",
        )));
    }
    if let Some(installation) = grant.installation {
        // An installation token reaches only the installation's repositories.
        if let Some(rest) = path.strip_prefix("/repos/") {
            let mut parts = rest.splitn(3, '/');
            let full_name = format!(
                "{}/{}",
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("")
            );
            let covered = state
                .installations
                .get(&installation)
                .is_some_and(|found| found.repos.contains(&full_name));
            if !covered {
                return Err(Box::new(error(StatusCode::NOT_FOUND, "Not Found")));
            }
        }
    }
    Ok(Caller {
        login: grant.login.clone(),
    })
}
