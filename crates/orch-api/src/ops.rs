//! Small bodies of the daemon's own routes: health, webhook outcomes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `/health` and `/ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// Always `ok`.
    pub status: String,
}

/// What a webhook delivery did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookOutcome {
    /// `created` (201), `replied` (201: a mention started a follow-up run of its linked task),
    /// `duplicate` (200: an earlier delivery created the task or started the follow-up),
    /// `nudged` (202: a pull request's event; the poller reads it back now), `deferred` (202: a
    /// mention on a task that has not finished; its follow-up starts once it has) or `ignored`
    /// (202: the event creates no task).
    pub outcome: String,
    /// The task created now or earlier.
    pub task: Option<i64>,
    /// Why an event was ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
