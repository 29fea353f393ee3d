//! The admin token: created at first start in `<home>/token` (mode 0600) and required, as
//! `Authorization: Bearer <token>`, on every `/v1` request.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::ApiState;
use crate::ServeError;

/// Read the home's admin token, creating it (32 random bytes, hex) if there is none. Refuses a
/// token file that group or others can read.
pub fn load_or_create_token(home: &Path) -> Result<String, ServeError> {
    let path = home.join("token");
    let io = |context: &str| {
        let context = format!("{context} {}", path.display());
        move |source| ServeError::Io { context, source }
    };
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let fresh = hex::encode(bytes);
    // `create_new` makes the check and the creation one step, so two starts cannot race.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(format!("{fresh}\n").as_bytes())
                .map_err(io("write"))?;
            tracing::info!(path = %path.display(), "created the admin token");
            return Ok(fresh);
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create")(e)),
    }
    let mut file = std::fs::File::open(&path).map_err(io("open"))?;
    let mode = file.metadata().map_err(io("stat"))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ServeError::TokenExposed {
            path: path.display().to_string(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io("read"))?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(io("read")(std::io::Error::new(
            ErrorKind::InvalidData,
            "the token file is empty; delete it to get a new token",
        )));
    }
    Ok(token)
}

/// Middleware: pass the request on only if it carries the admin token.
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
    if bool::from(presented.as_bytes().ct_eq(state.token.as_bytes())) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}
