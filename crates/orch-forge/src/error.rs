//! `ForgeError`: the failures a caller acts on.

use std::time::{Duration, SystemTime};

/// What went wrong talking to the forge.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// 404: the repository, issue, pull or label does not exist (or the credential cannot see
    /// it; GitHub answers 404 for both).
    #[error("not found: {0}")]
    NotFound(String),
    /// 401: the token or App credential was refused.
    #[error(
        "the forge refused the credential (401): {0}; check the token or the App's key and id"
    )]
    Unauthorized(String),
    /// 403 that is not a rate limit: the credential lacks a permission.
    #[error("forbidden (403): {0}; check the token's or the App's permissions")]
    Forbidden(String),
    /// A rate limit that would need a longer wait than allowed (`max_rate_limit_wait`).
    #[error("rate limited until {} (longer than the allowed wait): {message}", humantime::format_rfc3339_seconds(*until))]
    RateLimited { until: SystemTime, message: String },
    /// 409 or 405: the state changed under us (head moved, not mergeable, already merged).
    #[error("conflict ({status}): {message}")]
    Conflict { status: u16, message: String },
    /// 422: the forge refused the request's content.
    #[error("refused as invalid (422): {0}")]
    Validation(String),
    /// No answer in time, after the allowed retries.
    #[error("no answer within {after:?} from {what}")]
    Timeout { after: Duration, what: String },
    /// The connection failed (refused, reset, TLS), after the allowed retries.
    #[error("could not reach the forge: {0}")]
    Transport(String),
    /// 5xx after the allowed retries.
    #[error("the forge failed ({status}): {message}")]
    Server { status: u16, message: String },
    /// Any other status.
    #[error("unexpected answer ({status}): {message}")]
    Unexpected { status: u16, message: String },
    /// The answer was not the JSON expected.
    #[error("could not read the forge's answer to {what}: {reason}")]
    Decode { what: String, reason: String },
    /// The GraphQL answer carried errors.
    #[error("GraphQL error: {0}")]
    GraphQl(String),
    /// The client's own settings are wrong (a key that does not parse, an empty token file...).
    #[error("{0}")]
    Config(String),
}

impl ForgeError {
    /// Whether trying again later may succeed (a timeout, a connection failure, a 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ForgeError::Timeout { .. }
                | ForgeError::Transport(_)
                | ForgeError::Server { .. }
                | ForgeError::RateLimited { .. }
        )
    }

    /// Whether a write may have happened although it failed: the request was sent and no
    /// answer said what became of it.
    pub fn maybe_applied(&self) -> bool {
        matches!(
            self,
            ForgeError::Timeout { .. } | ForgeError::Transport(_) | ForgeError::Server { .. }
        )
    }
}
