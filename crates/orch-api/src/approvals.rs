//! Approval and rejection bodies, and what a parent's next step sees of its children.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A human's approval or rejection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Why (kept as the event's reason).
    #[serde(default)]
    pub comment: Option<String>,
    /// Who decided, recorded as the event's actor `api:<actor>` (default `api`). Letters,
    /// digits, `.`, `_`, `-`, `@`; at most 64.
    #[serde(default)]
    pub actor: Option<String>,
}

/// What a parent's next step sees of its children.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChildrenContext {
    /// Each child's `{id, title, key, status, reason}` and its last run's `result` (summary,
    /// status, commit, changed files) when its bundle is in the daemon's home.
    #[schema(value_type = Vec<Object>)]
    pub children: Vec<serde_json::Value>,
}
