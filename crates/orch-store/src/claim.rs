//! What a claim hands its worker: the task and its run, and what the task needs from earlier
//! work (its dependencies, a pending reply, the reviews of its earlier runs).

use orch_core::{FencingToken, Run, Status, Task, TaskId, Timestamp};

use crate::ProjectId;

/// A successful claim: the task (now `running`) and its new run with the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The task.
    pub task: Task,
    /// The run.
    pub run: Run,
    /// The run's fencing token, a secret: every later request about the run must carry it and
    /// come from `run.lease.owner`. The store keeps only its hash, so this is the only copy.
    pub token: FencingToken,
    /// A follow-up (`orch task reply`) this run must answer by resuming the agent's session
    /// instead of running the task's steps.
    pub reply: Option<PendingReply>,
    /// The review verdicts recorded for earlier runs of the task, oldest first (for the review
    /// round count and the feedback).
    pub reviews: Vec<ReviewRecord>,
    /// The tasks this one needs, in `needs` order: what its worktree starts from.
    pub dependencies: Vec<DependencyRef>,
}

/// A dependency of a claimed task, as much as a worker needs to find its result: a task's
/// branch is recorded in the repository under its id and creation time, which together name
/// one task of one orch database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyRef {
    /// The dependency's id.
    pub id: TaskId,
    /// Its project (a dependency in another project has no branch in this one).
    pub project: ProjectId,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_at: Timestamp,
    /// Its status now (only a `done` dependency's result is built on).
    pub status: Status,
}

/// A reviewer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    /// The work is accepted.
    Approve,
    /// The work must be redone.
    Reject,
}

impl ReviewVerdict {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewVerdict::Approve => "approve",
            ReviewVerdict::Reject => "reject",
        }
    }
}

impl std::str::FromStr for ReviewVerdict {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "approve" => Ok(ReviewVerdict::Approve),
            "reject" => Ok(ReviewVerdict::Reject),
            other => Err(format!("unknown verdict `{other}`")),
        }
    }
}

/// A run's review with a valid verdict, as the worker records it and later claims receive it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReviewRecord {
    /// Its round.
    pub round: u32,
    /// The verdict.
    pub verdict: ReviewVerdict,
    /// The reviewer's reasons.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Whether this rejection sent the task to `needs_review`.
    #[serde(default)]
    pub escalated: bool,
}

/// A follow-up message waiting for a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingReply {
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
