//! The typed requests and answers of the forge operations (GitHub's field names; unknown
//! fields ignored, unknown enum values kept as `Other`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ForgeError;

/// `owner/name`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    /// Parses `owner/name` (letters, digits, `-`, `_`, `.`; no `..`).
    pub fn parse(text: &str) -> Result<RepoRef, ForgeError> {
        let invalid = |why: &str| {
            ForgeError::Config(format!(
                "the repository `{text}` is not owner/name ({why}); write it as on GitHub, e.g. octo-org/hello"
            ))
        };
        let (owner, name) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid("no `/`"))?;
        for part in [owner, name] {
            if part.is_empty() {
                return Err(invalid("an empty part"));
            }
            if part == "." || part == ".." || part.contains("..") {
                return Err(invalid("`..`"));
            }
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(invalid(
                    "only letters, digits, `-`, `_` and `.` are allowed",
                ));
            }
        }
        Ok(RepoRef {
            owner: owner.to_owned(),
            name: name.trim_end_matches(".git").to_owned(),
        })
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub login: String,
}

/// A repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    pub full_name: String,
    pub default_branch: String,
    pub clone_url: String,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub private: bool,
}

/// Open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueState {
    Open,
    Closed,
}

/// Which issues or pulls a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateFilter {
    #[default]
    Open,
    Closed,
    All,
}

impl StateFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Open => "open",
            StateFilter::Closed => "closed",
            StateFilter::All => "all",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    #[serde(default)]
    pub color: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// An issue (pull requests are issues too: [`Issue::is_pull_request`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub state: IssueState,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub assignees: Vec<User>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

impl Issue {
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }

    pub fn has_label(&self, name: &str) -> bool {
        self.labels.iter().any(|label| label.name == name)
    }
}

/// Which issues to list.
#[derive(Debug, Clone, Default)]
pub struct IssueQuery {
    /// Issues carrying all of these labels.
    pub labels: Vec<String>,
    pub state: StateFilter,
    /// Issues updated at or after this instant.
    pub since: Option<std::time::SystemTime>,
}

/// A new issue.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewIssue {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assignees: Vec<String>,
}

/// Changes to an issue; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IssueUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<IssueState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub user: Option<User>,
    /// How the author relates to the repository (`OWNER`, `MEMBER`, `COLLABORATOR`, ...).
    #[serde(default)]
    pub author_association: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// One side of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullBranch {
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    pub id: u64,
    pub number: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub state: IssueState,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub merged: bool,
    /// `None` while GitHub computes it.
    #[serde(default)]
    pub mergeable: Option<bool>,
    /// `clean`, `dirty`, `blocked`, `unstable`, `behind`, `draft`, `unknown`...
    #[serde(default)]
    pub mergeable_state: Option<String>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    pub head: PullBranch,
    pub base: PullBranch,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// A new pull request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewPull {
    pub title: String,
    /// The branch with the change (`branch`, or `owner:branch`).
    pub head: String,
    /// The branch to merge into.
    pub base: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub draft: bool,
}

/// Changes to a pull request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<IssueState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// How a pull request is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

impl std::str::FromStr for MergeMethod {
    type Err = ForgeError;

    fn from_str(text: &str) -> Result<MergeMethod, ForgeError> {
        match text {
            "merge" => Ok(MergeMethod::Merge),
            "squash" => Ok(MergeMethod::Squash),
            "rebase" => Ok(MergeMethod::Rebase),
            other => Err(ForgeError::Config(format!(
                "the merge method `{other}` is not one of merge, squash, rebase"
            ))),
        }
    }
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MergeOutcome {
    /// The merge commit (or the new tip of the base).
    #[serde(default)]
    pub sha: Option<String>,
    pub merged: bool,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
    Dismissed,
    Pending,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Review {
    pub id: u64,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub body: Option<String>,
    pub state: ReviewState,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub submitted_at: Option<String>,
}

/// A comment on a line of a pull request's diff.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReviewComment {
    pub id: u64,
    #[serde(default)]
    pub pull_request_review_id: Option<u64>,
    #[serde(default)]
    pub user: Option<User>,
    pub path: String,
    /// The line in the file (`None` for an outdated comment).
    #[serde(default)]
    pub line: Option<u64>,
    pub body: String,
    #[serde(default)]
    pub commit_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Queued,
    InProgress,
    Completed,
    Waiting,
    Requested,
    Pending,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckConclusion {
    Success,
    Failure,
    Neutral,
    Cancelled,
    Skipped,
    TimedOut,
    ActionRequired,
    Stale,
    StartupFailure,
    #[serde(other)]
    Other,
}

impl CheckConclusion {
    /// Whether it blocks a merge (failure, timed out, cancelled, action required...).
    pub fn is_failing(&self) -> bool {
        !matches!(
            self,
            CheckConclusion::Success | CheckConclusion::Neutral | CheckConclusion::Skipped
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CheckOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    /// The details (often a log excerpt).
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub head_sha: String,
    pub status: CheckStatus,
    #[serde(default)]
    pub conclusion: Option<CheckConclusion>,
    #[serde(default)]
    pub output: CheckOutput,
    #[serde(default)]
    pub details_url: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommitStatus {
    pub context: String,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

/// The combined commit status of a ref (statuses only; check runs are separate).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CombinedStatus {
    /// `failure`, `pending` or `success`.
    pub state: String,
    pub sha: String,
    #[serde(default)]
    pub statuses: Vec<CommitStatus>,
}

/// A pull request's state in GraphQL terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PullState {
    Open,
    Closed,
    Merged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mergeable {
    Mergeable,
    Conflicting,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewDecision {
    Approved,
    ChangesRequested,
    ReviewRequired,
}

/// The combined state of every check and status on the head commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RollupState {
    Success,
    Failure,
    Error,
    Pending,
    Expected,
}

/// A pull request's overall state in one GraphQL query: what the feedback loop decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOverview {
    pub number: u64,
    pub state: PullState,
    pub is_draft: bool,
    pub mergeable: Mergeable,
    /// `CLEAN`, `DIRTY`, `BLOCKED`, `UNSTABLE`, `BEHIND`, `DRAFT`, `UNKNOWN`...
    pub merge_state_status: String,
    /// `None` when the repository requires no review and none was given.
    pub review_decision: Option<ReviewDecision>,
    pub head_ref_name: String,
    pub head_sha: String,
    pub base_ref_name: String,
    /// `None` when the head commit has no checks or statuses.
    pub checks: Option<RollupState>,
}
