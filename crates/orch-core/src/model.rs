//! Domain types: projects, tasks, steps, runs, leases and events.
//!
//! These are what the rest of orch passes around. The spec types (`TaskSpec`, `Step`, ...) are
//! also stored as JSON in the database and written as `job.json`, so they derive serde; their
//! file formats live in [`crate::spec`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifecycle::{EventKind, Status};
use crate::retry::RetryPolicy;

/// Milliseconds since the Unix epoch. Passed in by callers so the domain stays deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The instant `duration` after this one (saturating).
    pub fn after(self, duration: Duration) -> Timestamp {
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A task's number, unique in one orch home.
    TaskId
);
id_type!(
    /// A run's number, unique in one orch home.
    RunId
);
id_type!(
    /// A registered project.
    ProjectId
);
id_type!(
    /// A submitted workflow.
    WorkflowId
);

/// The fencing token of a lease: a random secret of 128 bits made by the store for one claim
/// and handed only to the claiming worker, which must present it with every request about the
/// run. The store keeps only its SHA-256, never the secret. The run's id, not this, is the run's
/// identity and order.
///
/// `Debug` and `Display` never print the secret (it would end up in logs); the worker sends it
/// with [`FencingToken::expose_hex`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FencingToken([u8; 16]);

/// Why a presented fencing token was refused before it was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fencing token is 32 lowercase hexadecimal characters; this one is not")]
pub struct FencingTokenError;

impl FencingToken {
    /// A token from 16 random bytes (the store draws them from the OS; the domain does no
    /// randomness itself).
    pub fn from_bytes(bytes: [u8; 16]) -> FencingToken {
        FencingToken(bytes)
    }

    /// Read a token as a worker presents it: 32 hexadecimal characters.
    pub fn parse(text: &str) -> Result<FencingToken, FencingTokenError> {
        let text = text.trim().as_bytes();
        if text.len() != 32 {
            return Err(FencingTokenError);
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let high = hex_digit(pair[0]).ok_or(FencingTokenError)?;
            let low = hex_digit(pair[1]).ok_or(FencingTokenError)?;
            *byte = (high << 4) | low;
        }
        Ok(FencingToken(bytes))
    }

    /// The secret as 32 lowercase hexadecimal characters, to send to the daemon. Never log it.
    pub fn expose_hex(&self) -> String {
        use std::fmt::Write as _;
        self.0.iter().fold(String::with_capacity(32), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    }

    /// The secret's bytes, for the store to hash.
    pub fn expose_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FencingToken(<secret>)")
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<fencing token>")
    }
}

/// A task title: one line, not empty, at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskTitle(String);

/// Why a title was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    /// Empty or only whitespace.
    #[error("the title is empty; give the task a short one-line title")]
    Empty,
    /// Longer than 200 characters.
    #[error("the title has {0} characters; keep it under 200 and put details in the body")]
    TooLong(usize),
    /// Contains a line break.
    #[error("the title spans several lines; keep it to one line and put details in the body")]
    MultiLine,
}

impl TaskTitle {
    /// Validate a title.
    pub fn parse(raw: impl Into<String>) -> Result<Self, TitleError> {
        let raw: String = raw.into();
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(TitleError::Empty);
        }
        if trimmed.contains(['\n', '\r']) {
            return Err(TitleError::MultiLine);
        }
        let count = trimmed.chars().count();
        if count > 200 {
            return Err(TitleError::TooLong(count));
        }
        Ok(TaskTitle(trimmed.to_owned()))
    }

    /// The title text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskTitle {
    type Error = TitleError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TaskTitle::parse(value)
    }
}

impl From<TaskTitle> for String {
    fn from(title: TaskTitle) -> String {
        title.0
    }
}

impl fmt::Display for TaskTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One command of an exec step: an argv array, never a shell string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment variables for this command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the task's workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The command is killed (with its process group) after this long.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration_ms::option"
    )]
    pub timeout: Option<Duration>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StepAction {
    /// Run commands in order; the step fails at the first command that fails.
    Exec {
        /// The commands.
        commands: Vec<Command>,
    },
    /// Run an AI coding agent with a prompt.
    Agent {
        /// Which agent adapter (`sim`, `claude`, `codex`, ...).
        agent: String,
        /// The prompt.
        prompt: String,
        /// Model name, if not the agent's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Agent profile name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
}

/// One step of a task. Steps run in order in the task's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// A name unique within the task; used for `steps/<name>/` in the bundle.
    pub name: String,
    /// What the step does.
    #[serde(flatten)]
    pub action: StepAction,
    /// The whole step is stopped after this long.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration_ms::option"
    )]
    pub timeout: Option<Duration>,
    /// The step's processes may reach the network. Without it they run in a network namespace
    /// with only a down loopback (not even the host's 127.0.0.1 is reachable).
    #[serde(
        default = "network_default",
        skip_serializing_if = "is_network_default"
    )]
    pub network: bool,
    /// The step is a planner (issue 12's `plan` label, `orch_core::planner`): it writes a plan
    /// of sub-tasks to `$ORCH_PLAN_FILE`, and orch makes each one a child task of this task.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan: bool,
}

fn network_default() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_network_default(network: &bool) -> bool {
    *network
}

/// Everything about a task that its submitter chose: the normalized spec (`job.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The id given in the workflow file, if any (unique within its workflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// One-line title.
    pub title: TaskTitle,
    /// Longer description; the default prompt for agent steps.
    #[serde(default)]
    pub body: String,
    /// Free-form labels (`agent:claude`, `complexity:high`, ...).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The whole run is stopped after this long.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration_ms::option"
    )]
    pub timeout: Option<Duration>,
    /// Wait for a human's approval before running.
    #[serde(default)]
    pub requires_approval: bool,
    /// Land the task's change in the project's checkout once it is done (`merge:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergePolicy>,
    /// What the task's worktree starts from: its dependencies' results (the default) or the
    /// base branch.
    #[serde(
        default,
        rename = "from",
        skip_serializing_if = "StartFrom::is_default"
    )]
    pub start_from: StartFrom,
    /// A key unique among the project's live (unfinished) tasks: submitting another task with
    /// the same key while this one lives returns this one (`--key`, `unique_key:`). Not the
    /// workflow-local id in [`TaskSpec::key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Tools the task needs on the worker, checked before its worktree is made (`tools:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<crate::tools::ToolRecipe>,
    /// The most one run may spend on agents; passing it stops the agent mid-session and sends
    /// the task to `needs_review` (`budget:` in a task or workflow file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<TaskBudget>,
}

/// A run's agent budget (`budget: {tokens: N, cost_usd: X}`); each limit is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBudget {
    /// Input plus output tokens of all the run's agent sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Cost in US dollars the agents report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

// `cost_usd` is never NaN: `TaskBudget::check` refuses it before a spec is built.
impl Eq for TaskBudget {}

impl TaskBudget {
    /// Refuse a budget that limits nothing or a cost that is not a number of dollars >= 0.
    pub fn check(&self) -> Result<(), String> {
        if self.tokens.is_none() && self.cost_usd.is_none() {
            return Err("a budget needs `tokens`, `cost_usd` or both".to_owned());
        }
        match self.cost_usd {
            Some(cost) if !cost.is_finite() || cost < 0.0 => Err(format!(
                "budget.cost_usd = {cost} is not an amount; write a number of dollars >= 0"
            )),
            _ => Ok(()),
        }
    }

    /// Whether `tokens` and `cost_usd` spent pass the budget, and how, in words.
    pub fn exceeded_by(&self, tokens: u64, cost_usd: f64) -> Option<String> {
        if let Some(limit) = self.tokens.filter(|limit| tokens > *limit) {
            return Some(format!(
                "the task's budget of {limit} tokens was passed ({tokens} tokens used)"
            ));
        }
        if let Some(limit) = self.cost_usd.filter(|limit| cost_usd > *limit) {
            return Some(format!(
                "the task's budget of ${limit:.2} was passed (${cost_usd:.2} spent)"
            ));
        }
        None
    }
}

/// How a done task's change is landed in the project's checkout by the daemon (`merge:` on a
/// task or a workflow in a workflow file), as `orch task merge` would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergePolicy {
    /// The branch to land in; `None`: the branch the checkout has checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// How.
    #[serde(default)]
    pub mode: MergeMode,
}

/// How a task's branch is landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// A merge commit of the branch into the target.
    #[default]
    Merge,
    /// One new commit on the target with the branch's change and the task's title.
    Squash,
    /// The branch's commits replayed one by one onto the target.
    Rebase,
}

impl MergeMode {
    /// `merge`, `squash` or `rebase`.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMode::Merge => "merge",
            MergeMode::Squash => "squash",
            MergeMode::Rebase => "rebase",
        }
    }
}

/// What a task's worktree starts from (`from:` in a workflow or task file).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The results of the task's dependencies: one dependency's branch as is, several merged
    /// in `needs` order; the base branch when it has none.
    #[default]
    Dependencies,
    /// The project's base branch, whatever the dependencies changed.
    Base,
}

impl StartFrom {
    /// Whether this is the default ([`StartFrom::Dependencies`]).
    #[must_use]
    pub fn is_default(&self) -> bool {
        *self == StartFrom::Dependencies
    }

    /// The name used in files and `job.json`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StartFrom::Dependencies => "dependencies",
            StartFrom::Base => "base",
        }
    }
}

/// A task to create, with its dependencies given as indices into the same batch or as ids of
/// tasks that already exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The spec.
    pub spec: TaskSpec,
    /// Indices into the batch of tasks this one needs.
    pub needs_in_batch: Vec<usize>,
    /// Existing tasks this one needs.
    pub needs_existing: Vec<TaskId>,
    /// Parent task, if any.
    pub parent: Option<TaskId>,
    /// Parent in the same batch (an index to an earlier task), if any.
    pub parent_in_batch: Option<usize>,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Its number.
    pub id: TaskId,
    /// Its project.
    pub project: ProjectId,
    /// The workflow it was submitted with, if any.
    pub workflow: Option<WorkflowId>,
    /// Parent task, if any.
    pub parent: Option<TaskId>,
    /// The spec.
    pub spec: TaskSpec,
    /// Current status.
    pub status: Status,
    /// Why it is in that status (for `blocked`, `failed`, `needs_review`, ...).
    pub status_reason: Option<String>,
    /// Attempts used since the task was created or last retried by hand.
    pub attempts_used: u32,
    /// Runs created over the task's whole life; the next run's number is this plus one.
    pub run_count: u32,
    /// Tasks this one needs.
    pub needs: Vec<TaskId>,
    /// For `retry_wait`: not before this instant.
    pub not_before: Option<Timestamp>,
    /// The active run, if one is running.
    pub current_run: Option<RunId>,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When its status last changed.
    pub updated_at: Timestamp,
}

/// How a run ended, or that it has not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// A worker holds its lease.
    Active,
    /// It succeeded.
    Succeeded,
    /// It failed.
    Failed,
    /// It ended asking for a human.
    Escalated,
    /// Its lease expired.
    Lost,
    /// Its task was cancelled while it ran.
    Cancelled,
    /// The worker gave it back to be run again later.
    Requeued,
}

impl RunState {
    /// Stable name for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Active => "active",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Escalated => "escalated",
            RunState::Lost => "lost",
            RunState::Cancelled => "cancelled",
            RunState::Requeued => "requeued",
        }
    }
}

impl std::str::FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RunState::Active,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Escalated,
            RunState::Lost,
            RunState::Cancelled,
            RunState::Requeued,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| format!("unknown run state `{s}`"))
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right of `owner` to work on a run until `expires_at`. The proof, the run's
/// [`FencingToken`], is not part of it: only the claim answer carries the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it (a worker name). Requests about the run must come from this name.
    pub owner: String,
    /// It is void after this instant unless heartbeated.
    pub expires_at: Timestamp,
}

/// One attempt at a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Its number.
    pub id: RunId,
    /// Its task.
    pub task: TaskId,
    /// 1 for the first run of the task, 2 for the second, ...
    pub attempt: u32,
    /// The lease (its expiry is meaningful only while the run is active).
    pub lease: Lease,
    /// How it ended.
    pub state: RunState,
    /// When it was claimed.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// A short description of how it ended.
    pub outcome: Option<String>,
}

/// How a worker says a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded: the task is `done`.
    Succeeded,
    /// It failed: retry if attempts are left, else `failed`.
    Failed,
    /// It failed in a way another attempt cannot fix (a refused command, a bad config):
    /// `failed` now, whatever attempts are left.
    FailedPermanently,
    /// A human must look: `needs_review`.
    NeedsReview,
}

/// One record of the append-only event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its number; events of one task are ordered by it.
    pub id: i64,
    /// The task.
    pub task: TaskId,
    /// The run, if the event concerns one.
    pub run: Option<RunId>,
    /// When.
    pub at: Timestamp,
    /// Who (`cli`, `scheduler`, a worker name, ...).
    pub actor: String,
    /// What.
    pub kind: EventKind,
    /// Status before (`None` for `create`).
    pub from: Option<Status>,
    /// Status after.
    pub to: Status,
    /// Why, in words.
    pub reason: Option<String>,
    /// Anything else, as JSON.
    pub data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::FencingToken;

    #[test]
    fn a_fencing_token_reads_back_its_own_hex_and_never_prints_the_secret() {
        let token = FencingToken::from_bytes([0xab; 16]);
        let hex = token.expose_hex();
        assert_eq!(hex, "ab".repeat(16));
        assert_eq!(FencingToken::parse(&hex), Ok(token));
        assert!(!format!("{token:?} {token}").contains("ab"));
        assert!(FencingToken::parse("12").is_err());
        assert!(FencingToken::parse(&"zz".repeat(16)).is_err());
    }
}
