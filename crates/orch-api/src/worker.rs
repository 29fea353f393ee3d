//! `/v1/worker/...`: what a remote worker (`orch worker`) sends and gets: claims, heartbeats,
//! completions and requeues.

use orch_core::Outcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A claim: who asks, for how long a lease, and how long to wait for work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The worker's name: the lease owner and the actor of its events. Names starting with
    /// `embedded-` belong to the daemon's own workers and are refused.
    pub worker: String,
    /// The lease length in milliseconds (1 s to 24 h).
    pub lease_ms: u64,
    /// Wait up to this long for a task to become ready (capped at 30 s); 0 answers at once.
    #[serde(default)]
    pub wait_ms: u64,
}

/// A claimed run: the task to run, its run with the lease, and where the project is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimedRun {
    /// The task (now `running`).
    pub task: ClaimedTask,
    /// The run's id.
    pub run: i64,
    /// 1 for the task's first run, 2 for the second, ...
    pub attempt: u32,
    /// The fencing token, a secret of 32 hex characters: every later request about the run must
    /// carry it in `X-Orch-Fencing-Token`, with the worker's name in `X-Orch-Worker`. This answer
    /// is the only place it appears; the daemon keeps only its hash.
    pub token: String,
    /// The lease's owner (the worker's name).
    pub owner: String,
    /// The lease expires at this instant (milliseconds since the Unix epoch) unless heartbeated.
    pub lease_expires_at: i64,
    /// When the run was claimed (milliseconds since the Unix epoch).
    pub started_at: i64,
    /// The project's absolute directory on the daemon's machine. A remote worker uses its own
    /// checkout: the one given for `project_name` (`orch worker --project NAME=PATH`), else
    /// this same path.
    pub project_dir: String,
    /// The project's name.
    pub project_name: String,
    /// A follow-up (`orch task reply`) the run answers by resuming an agent session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ClaimedReply>,
    /// The review verdicts of the task's earlier runs, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<crate::reviews::ReviewView>,
    /// The tasks this one needs, in `needs` order: the worker starts the task's worktree from
    /// the branches of those that are `done`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<ClaimedDependency>,
}

/// A dependency of the claimed task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimedDependency {
    /// Its id.
    pub id: i64,
    /// Its project's id.
    pub project: i64,
    /// When it was created (milliseconds since the Unix epoch): with the id, what its branch is
    /// recorded under in the repository.
    pub created_at: i64,
    /// Its status now.
    pub status: String,
}

/// A follow-up the claimed run must answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimedReply {
    /// Its number.
    pub id: i64,
    /// What the user said.
    pub message: String,
    /// The agent whose session it resumes.
    pub agent: String,
    /// The step that session belongs to.
    pub step: String,
    /// The session to resume.
    pub session_id: String,
}

/// The task of a claimed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimedTask {
    /// Its id.
    pub id: i64,
    /// Its project's id.
    pub project: i64,
    /// Its workflow, if any.
    pub workflow: Option<i64>,
    /// Its parent task, if any.
    pub parent: Option<i64>,
    /// The normalized spec (`job.json`'s `spec`).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// Its status (`running`).
    pub status: String,
    /// Attempts used, this run included.
    pub attempts_used: u32,
    /// Runs created over the task's life.
    pub run_count: u32,
    /// The tasks it needed.
    pub needs: Vec<i64>,
    /// When it was submitted (milliseconds since the Unix epoch).
    pub created_at: i64,
    /// When its status last changed (milliseconds since the Unix epoch).
    pub updated_at: i64,
}

/// A heartbeat: the new lease length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Extend the lease to now plus this many milliseconds.
    pub lease_ms: u64,
}

/// The extended lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// The lease now expires at this instant (milliseconds since the Unix epoch).
    pub lease_expires_at: i64,
}

/// How a run ended, as a worker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeRequest {
    /// The task is `done`.
    Succeeded,
    /// Retried if attempts are left, else `failed`.
    Failed,
    /// `failed` now, whatever attempts are left.
    FailedPermanently,
    /// A human must look: `needs_review`.
    NeedsReview,
}

impl From<OutcomeRequest> for Outcome {
    fn from(outcome: OutcomeRequest) -> Outcome {
        match outcome {
            OutcomeRequest::Succeeded => Outcome::Succeeded,
            OutcomeRequest::Failed => Outcome::Failed,
            OutcomeRequest::FailedPermanently => Outcome::FailedPermanently,
            OutcomeRequest::NeedsReview => Outcome::NeedsReview,
        }
    }
}

/// A completion: how the run ended and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// How the run ended.
    pub outcome: OutcomeRequest,
    /// Why, in words.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A run given back: when it may run again and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequeueRequest {
    /// Run again no sooner than this many milliseconds from now.
    #[serde(default)]
    pub delay_ms: u64,
    /// Why, in words.
    pub reason: String,
}

/// The task's status after a completion or a requeue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunStatusResponse {
    /// The task's status.
    pub status: String,
}

/// The children a planner's run made (`POST /v1/worker/runs/{run}/plan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlannedChildren {
    /// The child tasks' ids, in plan order.
    pub children: Vec<i64>,
    /// Whether this request created them (`false`: an earlier request for the task did, and
    /// nothing new was made).
    pub created: bool,
}
