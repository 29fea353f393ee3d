//! The tokens: the admin token in `<home>/token` and the worker token in `<home>/worker-token`,
//! both created at first start (mode 0600). Every `/v1` request needs one of them as
//! `Authorization: Bearer <token>`; the worker token is accepted only under `/v1/worker/`.

use std::path::Path;

use axum::extract::{OriginalUri, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::ApiState;
use crate::ServeError;

/// The prefix of the routes a worker token may use.
pub const WORKER_ROUTES: &str = "/v1/worker/";

/// Read the home's admin token, creating it (32 random bytes, hex) if there is none. Refuses a
/// token file that group or others can read.
pub fn load_or_create_token(home: &Path) -> Result<String, ServeError> {
    load_or_create(&home.join("token"))
}

/// Read the home's worker token (`<home>/worker-token`), creating it like the admin token. It is
/// what `orch worker --token` takes: it can claim, heartbeat and report runs, nothing else.
pub fn load_or_create_worker_token(home: &Path) -> Result<String, ServeError> {
    load_or_create(&home.join("worker-token"))
}

fn load_or_create(path: &Path) -> Result<String, ServeError> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let (token, created) = orch_store::home::load_or_create_private(path, &hex::encode(bytes))
        .map_err(|e| match e {
            orch_store::home::PrivateFileError::Exposed { path, mode } => {
                ServeError::TokenExposed { path, mode }
            }
            orch_store::home::PrivateFileError::Io { context, source } => {
                ServeError::Io { context, source }
            }
        })?;
    if created {
        tracing::info!(path = %path.display(), "created a token");
    }
    if token.is_empty() {
        return Err(ServeError::Io {
            context: format!("read {}", path.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the token file is empty; delete it to get a new token",
            ),
        });
    }
    Ok(token)
}

/// Middleware: pass the request on only if it carries the admin token, or the worker token on a
/// worker route (403 on any other route, so a worker's token cannot steer tasks).
pub async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(ApiError::Unauthorized)?;
    // Constant time in the token's content (`subtle`), so response timing does not reveal how
    // many leading characters were right. The length is not secret: every token is 64 hex digits.
    // Both comparisons always run, so timing does not tell which token was close either.
    let admin = bool::from(presented.as_bytes().ct_eq(state.token.as_bytes()));
    let worker = bool::from(presented.as_bytes().ct_eq(state.worker_token.as_bytes()));
    if admin {
        return Ok(next.run(request).await);
    }
    if !worker {
        return Err(ApiError::Unauthorized);
    }
    // Inside the `/v1` router the path has lost its prefix; the original URI still has it.
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().path(), |original| original.path());
    if path.starts_with(WORKER_ROUTES) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::Forbidden)
    }
}
