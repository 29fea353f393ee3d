//! The error body every refused request carries: `{"error": {"code", "message", "field"}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `malformed`, `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `conflict`, `lease_lost`, `not_lease_holder`, `too_large`, `bundle_too_large`, `invalid`, `bundle_invalid`, `internal`, `unavailable`, `insufficient_storage`, `rate_limited`.
    pub code: String,
    /// For humans.
    pub message: String,
    /// The offending field, if one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
