//! The API's one error type: a status class, a stable `code`, a human `message` and the
//! offending `field`, sent as `{"error": {...}}`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orch_store::StoreError;

pub use orch_api::{ErrorBody, ErrorDetail};

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// The request could not be read: malformed JSON, a bad path or query (400).
    Malformed {
        /// What was wrong.
        message: String,
    },
    /// No token or a wrong one (401).
    Unauthorized,
    /// A webhook whose signature is missing or does not match the body (401).
    SignatureRefused(String),
    /// A valid token that may not use this route: a worker token outside `/v1/worker` (403).
    Forbidden,
    /// Nothing there (404).
    NotFound(String),
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The operation does not apply in the current state (409).
    Conflict(String),
    /// A worker's fencing token is not the run's current lease (409): stop working on the run.
    LeaseLost(String),
    /// A request about a run from someone who does not hold its lease (403): another worker,
    /// or a token that is not the run's.
    NotLeaseHolder(String),
    /// The body is larger than the configured limit (413).
    TooLarge,
    /// A run's bundle would be larger than the per-run limit (413).
    BundleTooLarge(String),
    /// An uploaded bundle does not match its digests or is not a tar of files (422).
    BundleInvalid(String),
    /// The request was read but a value is wrong (422).
    Invalid {
        /// The offending field, if one is to blame.
        field: Option<String>,
        /// What is wrong and what to do.
        message: String,
    },
    /// Something failed on our side (500); the details are in the log under `request_id`.
    Internal {
        /// Names the log line with the real error.
        request_id: String,
    },
    /// A dependency (the store) does not answer (503).
    Unavailable(String),
    /// The server's disk is full (507): nothing was written; try again once space is freed.
    InsufficientStorage(String),
    /// The client sent more requests than its rate allows (429); it may try again after
    /// `retry_after` seconds.
    RateLimited {
        /// Seconds until the next request would be accepted.
        retry_after: u64,
    },
}

impl ApiError {
    /// An internal failure: log the whole error once, under the request's id (the one in its
    /// `x-request-id` header), and tell the client only the id.
    /// A fault of the machine (a full disk: 507; an I/O error or the database unavailable: 503)
    /// is answered with its cause instead.
    pub fn internal(error: &dyn std::fmt::Display) -> ApiError {
        let text = error.to_string();
        if let Some(fault) = orch_core::fault::MachineFault::classify(&text) {
            return ApiError::machine(fault, &text);
        }
        let request_id = super::ops::current_request_id()
            .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        tracing::error!(request_id, "request failed: {error}");
        ApiError::Internal { request_id }
    }
}

impl ApiError {
    /// A request the machine could not serve: said with its cause and what to do, and logged.
    fn machine(fault: orch_core::fault::MachineFault, error: &str) -> ApiError {
        use orch_core::fault::MachineFault;
        tracing::error!("request failed: {} ({error})", fault.describe());
        let message = format!("{}: {error}; {}", fault.describe(), fault.remedy());
        match fault {
            MachineFault::DiskFull => ApiError::InsufficientStorage(message),
            MachineFault::Io | MachineFault::StoreUnavailable => ApiError::Unavailable(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = match self {
            ApiError::Malformed { message } => {
                (StatusCode::BAD_REQUEST, "malformed", message, None)
            }
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token as `Authorization: Bearer <token>`; it is in the file \
                 `token` in the orch home"
                    .to_owned(),
                None,
            ),
            ApiError::SignatureRefused(message) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", message, None)
            }
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "a worker token may only use the `/v1/worker` routes; use the admin token (the \
                 file `token` in the orch home)"
                    .to_owned(),
                None,
            ),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message, None),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take this method; /openapi.json lists the routes".to_owned(),
                None,
            ),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, "conflict", message, None),
            ApiError::LeaseLost(message) => (StatusCode::CONFLICT, "lease_lost", message, None),
            ApiError::NotLeaseHolder(message) => {
                (StatusCode::FORBIDDEN, "not_lease_holder", message, None)
            }
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is larger than the server's limit".to_owned(),
                None,
            ),
            ApiError::BundleTooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "bundle_too_large",
                message,
                None,
            ),
            ApiError::BundleInvalid(message) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "bundle_invalid",
                message,
                None,
            ),
            ApiError::Invalid { field, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid", message, field)
            }
            ApiError::Internal { request_id } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("internal error (request id {request_id})"),
                None,
            ),
            ApiError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; try again in {retry_after} s"),
                None,
            ),
            ApiError::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                message,
                None,
            ),
            ApiError::InsufficientStorage(message) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                message,
                None,
            ),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                field,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        // A fault of the machine is said as such, with its cause, not as a bare 500.
        if let Some(fault) = error.machine_fault() {
            return ApiError::machine(fault, &error.to_string());
        }
        match error {
            StoreError::TaskNotFound(_) | StoreError::RunNotFound(_) => {
                ApiError::NotFound(error.to_string())
            }
            StoreError::Conflict { .. }
            | StoreError::Transition { .. }
            | StoreError::StaleLease { .. } => ApiError::Conflict(error.to_string()),
            StoreError::NotLeaseHolder { .. } => ApiError::NotLeaseHolder(error.to_string()),
            StoreError::Invalid { field, reason } => ApiError::Invalid {
                message: format!("{field}: {reason}"),
                field: Some(field),
            },
            other => ApiError::internal(&other),
        }
    }
}

impl From<orch_app::AppError> for ApiError {
    fn from(error: orch_app::AppError) -> Self {
        match error {
            orch_app::AppError::Invalid(e) => e.into(),
            // The message names the file, line and column already.
            orch_app::AppError::Workflow(e) => ApiError::Invalid {
                field: Some("yaml".to_owned()),
                message: e.to_string(),
            },
            orch_app::AppError::Store(e) => e.into(),
            e @ orch_app::AppError::NotLive(_) => ApiError::Conflict(e.to_string()),
            e @ orch_app::AppError::Session(_) => ApiError::internal(&e),
        }
    }
}

impl From<orch_core::FieldError> for ApiError {
    fn from(error: orch_core::FieldError) -> Self {
        ApiError::Invalid {
            message: error.to_string(),
            field: Some(error.field),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::Malformed {
            message: rejection.body_text(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Malformed {
            message: rejection.body_text(),
        }
    }
}

/// The fallback for a known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The fallback for paths no route matches.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; /openapi.json lists the routes there are".to_owned())
}
