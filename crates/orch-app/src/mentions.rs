//! `@orch` mentions (issue 12, `orch_core::forge::mention`): a comment mentioning orch on an
//! issue or pull request linked to a task starts a follow-up run of that task (a reply, like
//! the dashboard's diff comments) with the comment as its prompt, once per comment id however
//! often the comment is delivered (webhook redelivery, polling): the id is recorded with the
//! reply in one transaction.

use orch_core::forge::RepoSlug;
use orch_core::{ReplyMessage, Status, TaskId};
use orch_store::{Delivery, Op};

use crate::{App, ProjectDir, Result};

/// What a mention did to its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mentioned {
    /// The task the issue or pull request is linked to.
    pub task: TaskId,
    /// Its status after the reply; `None`: the comment was acted on before.
    pub status: Option<Status>,
}

impl App {
    /// A comment (`comment_id`) mentioning orch on issue or pull request `number` of `repo`:
    /// a follow-up run of the linked task with `message`, once per comment. `None` when
    /// neither an issue nor a pull request of a task of the project has that number.
    pub async fn mention(
        &self,
        project: &ProjectDir,
        repo: &RepoSlug,
        (number, comment_id): (u64, u64),
        message: &ReplyMessage,
        actor: &str,
    ) -> Result<Option<Mentioned>> {
        let op = Op::now(actor);
        let registered = self.store.ensure_project(project.as_str(), op.now).await?;
        let task = match self
            .store
            .task_of_issue(registered.id, repo, number)
            .await?
        {
            Some(task) => Some(task),
            None => self.store.task_of_pull(registered.id, repo, number).await?,
        };
        let Some(task) = task else {
            return Ok(None);
        };
        let delivery = Delivery::new(
            "github-comment",
            format!("{repo}#{number}/comment-{comment_id}"),
        );
        let status = self
            .store
            .reply_once(task, message.as_str(), &delivery, op)
            .await?;
        Ok(Some(Mentioned { task, status }))
    }
}
