//! Forge actions, for every front end (the CLI, the API, the GitHub webhook and, next, the issue
//! poller): link a project to its repository, make an issue a task exactly once, and publish a
//! local task as an issue (through the store's outbox: the dispatcher opens it, and the task is
//! linked to it when the op completes).

use orch_core::forge::{marker, publish_op, ForgeKind, ForgeLink, ForgeOp, RepoSlug};
use orch_core::{FieldError, NewTask, TaskId};
use orch_store::{Delivery, NewForgeOp, Op, OutboxEntry, Project, ProjectForge};

use crate::{App, AppError, ProjectDir, Result, Submitted};

/// An issue that may become a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRef {
    /// Its repository.
    pub repo: RepoSlug,
    /// Its number.
    pub number: u64,
    /// Its body (a published task's issue carries the task's marker).
    pub body: String,
}

/// What `orch task publish` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The repository the issue is opened in.
    pub repo: RepoSlug,
    /// The outbox entry that opens it.
    pub entry: OutboxEntry,
    /// Whether it was enqueued now (false: an earlier publish of the task did).
    pub enqueued: bool,
}

impl App {
    /// Link a project (registered if new) to its repository; a repeat replaces the link.
    pub async fn link_repo(
        &self,
        project: &ProjectDir,
        repo: &RepoSlug,
        actor: &str,
    ) -> Result<(Project, ProjectForge)> {
        let op = Op::now(actor);
        let project = self.store.ensure_project(project.as_str(), op.now).await?;
        let link = self
            .store
            .link_project_forge(project.id, ForgeKind::Github, repo, op.now)
            .await?;
        Ok((project, link))
    }

    /// A task's forge link, if it has one.
    pub async fn forge_link(&self, task: TaskId) -> Result<Option<ForgeLink>> {
        Ok(self.store.forge_link(task).await?)
    }

    /// Make an issue a task, exactly once whoever asks (a webhook delivery, a replay, the
    /// poller): an issue already linked answers with its task; an issue orch opened for a
    /// published task (its body holds that task's marker, and the task has a publish op) is
    /// linked to that task; otherwise the task is submitted once per issue (its delivery id
    /// `github-issue`/`<repo>#<n>`, with `deliveries`) and linked to it. A crash between the
    /// two is mended by the next delivery or poll of the issue.
    pub async fn submit_issue(
        &self,
        project: &ProjectDir,
        issue: &IssueRef,
        deliveries: &[Delivery],
        task: NewTask,
        actor: &str,
    ) -> Result<Submitted> {
        let op = Op::now(actor);
        let registered = self.store.ensure_project(project.as_str(), op.now).await?;
        let known = self
            .store
            .task_of_issue(registered.id, &issue.repo, issue.number)
            .await?;
        let published = match known {
            Some(_) => None,
            None => self.published_task_of(&registered, &issue.body).await?,
        };
        if let Some(task) = known.or(published) {
            self.store
                .link_task_issue(task, &issue.repo, issue.number, op.now)
                .await?;
            return Ok(Submitted {
                project: registered,
                tasks: vec![self.store.task(task).await?],
                created: false,
                warnings: Vec::new(),
                existing: vec![task],
            });
        }
        let mut ids = deliveries.to_vec();
        let issue_id = Delivery::new("github-issue", format!("{}#{}", issue.repo, issue.number));
        if !ids.contains(&issue_id) {
            ids.push(issue_id);
        }
        let submitted = self.submit_once(project, &ids, task, actor).await?;
        if let Some(task) = submitted.tasks.first() {
            self.store
                .link_task_issue(task.id, &issue.repo, issue.number, op.now)
                .await?;
        }
        Ok(submitted)
    }

    /// The task of this project whose marker the body carries, if that task was published (has
    /// a `create_issue` op): only then is the marker orch's own and not a stranger's copy.
    async fn published_task_of(&self, project: &Project, body: &str) -> Result<Option<TaskId>> {
        let Some(id) = marked_task(body) else {
            return Ok(None);
        };
        let Ok(task) = self.store.task(id).await else {
            return Ok(None);
        };
        if task.project != project.id {
            return Ok(None);
        }
        let ops = self.store.forge_ops(Some(id)).await?;
        let published = ops
            .iter()
            .any(|e| matches!(e.op, ForgeOp::CreateIssue { task, .. } if task == id));
        Ok(published.then_some(id))
    }

    /// Publish a local task as an issue of its project's repository, labelled `trigger_label`:
    /// a `create_issue` op in the outbox (once per task), linked to the task when it completes.
    /// Refused for a project with no repository and a task that has an issue already.
    pub async fn publish(
        &self,
        task: TaskId,
        trigger_label: &str,
        actor: &str,
    ) -> Result<Published> {
        let op = Op::now(actor);
        let stored = self.store.task(task).await?;
        let Some(forge) = self.store.project_forge(stored.project).await? else {
            return Err(AppError::Invalid(FieldError::new(
                "project",
                format!(
                    "task {task}'s project is not linked to a repository; run `orch init --repo \
                     owner/repo` in the project first"
                ),
            )));
        };
        if let Some(issue) = self.store.forge_link(task).await?.and_then(|l| l.issue) {
            return Err(AppError::Invalid(FieldError::new(
                "task",
                format!(
                    "task {task} is issue #{issue} of {} already; there is nothing to publish",
                    forge.repo
                ),
            )));
        }
        let keyed = publish_op(
            task,
            stored.spec.title.as_str(),
            &stored.spec.body,
            trigger_label,
        );
        let key = keyed.key.clone();
        let new = self
            .store
            .enqueue_forge_ops(
                &[NewForgeOp {
                    project: stored.project,
                    task: Some(task),
                    event: None,
                    op: keyed,
                }],
                op.now,
            )
            .await?;
        let entry = self
            .store
            .forge_ops(Some(task))
            .await?
            .into_iter()
            .find(|e| e.key == key)
            .ok_or_else(|| {
                AppError::Store(orch_store::StoreError::Corrupt(format!(
                    "the publish op of task {task} was not stored"
                )))
            })?;
        Ok(Published {
            repo: forge.repo,
            entry,
            enqueued: new > 0,
        })
    }
}

/// The task id of the first `<!-- orch:task <id> -->` marker in `body`.
fn marked_task(body: &str) -> Option<TaskId> {
    let prefix = "<!-- orch:task ";
    let start = body.find(prefix)? + prefix.len();
    let rest = &body[start..];
    let end = rest.find(" -->")?;
    let id: i64 = rest[..end].parse().ok()?;
    (marker(TaskId(id)) == body[start - prefix.len()..start + end + 4]).then_some(TaskId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_read_back_exactly() {
        assert_eq!(marked_task("x\n\n<!-- orch:task 12 -->"), Some(TaskId(12)));
        assert_eq!(marked_task("<!-- orch:task 12x -->"), None);
        assert_eq!(marked_task("<!-- orch:task  12 -->"), None);
        assert_eq!(marked_task("no marker"), None);
    }
}
