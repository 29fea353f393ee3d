//! GitHub App endpoints: the App's JWT checked with its public key, the installation of a
//! repository, and installation tokens that expire after the App's configured lifetime.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::middleware::error;
use crate::state::{timestamp, TokenGrant};
use crate::Shared;

#[derive(Debug, Deserialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: Value,
}

/// The app id of a valid JWT, or why it is not one.
pub fn verify_jwt(shared: &Arc<Shared>, token: &str) -> Result<u64, String> {
    // The issuer names the App whose key must verify the signature.
    let payload = token.split('.').nth(1).ok_or("not a JWT")?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "the payload is not base64url")?;
    let claims: Claims =
        serde_json::from_slice(&payload).map_err(|_| "the payload has no iat, exp and iss")?;
    let app_id = match &claims.iss {
        Value::String(text) => text.parse::<u64>().map_err(|_| "iss is not an app id")?,
        Value::Number(number) => number.as_u64().ok_or("iss is not an app id")?,
        _ => return Err("iss is not an app id".into()),
    };
    let public_key = shared
        .lock()
        .apps
        .get(&app_id)
        .map(|app| app.public_key_pem.clone())
        .ok_or("no such app")?;
    let key = DecodingKey::from_rsa_pem(public_key.as_bytes()).map_err(|err| err.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.required_spec_claims = ["exp", "iat", "iss"]
        .iter()
        .map(|claim| (*claim).to_owned())
        .collect();
    jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|err| err.to_string())?;
    // GitHub refuses JWTs that live longer than ten minutes.
    if claims.exp.saturating_sub(claims.iat) > 660 {
        return Err("'Expiration time' claim ('exp') is too far in the future".into());
    }
    Ok(app_id)
}

fn app_of(shared: &Arc<Shared>, headers: &axum::http::HeaderMap) -> Option<u64> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    verify_jwt(shared, value.split_once(' ')?.1.trim()).ok()
}

pub async fn get_app(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(app_id) = app_of(&shared, &headers) else {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    Json(json!({ "id": app_id, "slug": format!("app-{app_id}"), "name": format!("App {app_id}") }))
        .into_response()
}

pub async fn repo_installation(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    let Some(app_id) = app_of(&shared, &headers) else {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    let full_name = format!("{owner}/{repo}");
    let state = shared.lock();
    match state.installations.values().find(|installation| {
        installation.app_id == app_id && installation.repos.contains(&full_name)
    }) {
        Some(installation) => Json(json!({
            "id": installation.id,
            "app_id": installation.app_id,
            "account": { "login": installation.account },
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub async fn access_token(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    Path(installation_id): Path<u64>,
) -> Response {
    let Some(app_id) = app_of(&shared, &headers) else {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    let mut state = shared.lock();
    let Some(installation) = state.installations.get(&installation_id).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if installation.app_id != app_id {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let Some(lifetime) = state.apps.get(&app_id).map(|app| app.token_lifetime) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let token = format!("ghs_{}", crate::control::random_token());
    // Whole seconds, as GitHub reports it: the token expires exactly when it says.
    let expires_at = SystemTime::now() + lifetime;
    let expires_at = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(
            expires_at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        );
    state.tokens.insert(
        token.clone(),
        TokenGrant {
            installation: Some(installation_id),
            expires_at: Some(expires_at),
            login: format!("app-{app_id}[bot]"),
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": timestamp(expires_at),
            "permissions": { "issues": "write", "pull_requests": "write", "contents": "write", "checks": "read" },
            "repository_selection": "selected",
        })),
    )
        .into_response()
}
