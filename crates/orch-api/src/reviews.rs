//! Review verdicts, as workers report them and later claims carry them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A worker's report of its run's review (the worker and its token travel in the headers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewReport {
    /// The verdict.
    pub review: ReviewView,
}

/// One review verdict, as reported and as handed to later claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewView {
    /// Its round (1 for the first review since the last approval or escalation).
    pub round: u32,
    /// `approve` or `reject`.
    pub verdict: String,
    /// The reviewer's reasons.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Whether this rejection sent the task to `needs_review`.
    #[serde(default)]
    pub escalated: bool,
}
