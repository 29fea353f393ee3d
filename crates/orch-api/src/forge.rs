//! A task's link to its forge (issue, pull request, pushed branch).

use orch_core::forge::ForgeLink;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What links a task to its forge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ForgeLinkView {
    /// The repository (`owner/repo`).
    pub repo: String,
    /// The issue the task came from or was published as.
    pub issue: Option<u64>,
    /// Its pull request's number.
    pub pr_number: Option<u64>,
    /// Its pull request's address.
    pub pr_url: Option<String>,
    /// The branch pushed as the pull request's head.
    pub head_branch: Option<String>,
    /// The commit last pushed.
    pub pushed_commit: Option<String>,
    /// The marker comment's id.
    pub marker_comment_id: Option<u64>,
}

impl From<ForgeLink> for ForgeLinkView {
    fn from(link: ForgeLink) -> Self {
        ForgeLinkView {
            repo: link.repo,
            issue: link.issue,
            pr_number: link.pr_number,
            pr_url: link.pr_url,
            head_branch: link.head_branch,
            pushed_commit: link.pushed_commit,
            marker_comment_id: link.marker_comment_id,
        }
    }
}

/// What `POST /v1/tasks/{id}/publish` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PublishView {
    /// The task.
    pub task: i64,
    /// The repository the issue is opened in.
    pub repo: String,
    /// The outbox op that opens it.
    pub op: i64,
    /// Its state: `pending`, `done` or `failed`.
    pub state: String,
    /// Whether it was enqueued now (false: an earlier publish did).
    pub enqueued: bool,
}
