//! The forge side of the store: a project's repository link, each task's [`ForgeLink`] (its
//! issue, pull request, pushed branch and commit, marker comment) and the durable outbox of
//! forge writes ([`OutboxEntry`]): enqueued once per idempotency key, claimed under a lease so
//! two servers never send the same op at once, finished with the forge's result (which updates
//! the task's link in the same transaction) or failed with a retry time.

use std::time::Duration;

use orch_core::forge::{ForgeKind, ForgeLink, ForgeOp, ForgeResult, KeyedOp, RepoSlug};
use orch_core::{ProjectId, TaskId, Timestamp};

use crate::{Result, Store, StoreError};

/// A project's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectForge {
    /// The project.
    pub project: ProjectId,
    /// The forge.
    pub kind: ForgeKind,
    /// The repository.
    pub repo: RepoSlug,
    /// When it was linked.
    pub linked_at: Timestamp,
}

/// Where an outbox entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Not sent yet, or to be tried again.
    Pending,
    /// The forge did it.
    Done,
    /// Given up on (attempts exhausted or refused for good); a human must look.
    Failed,
}

impl OutboxState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Done => "done",
            OutboxState::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<OutboxState> {
        match text {
            "pending" => Ok(OutboxState::Pending),
            "done" => Ok(OutboxState::Done),
            "failed" => Ok(OutboxState::Failed),
            other => Err(StoreError::Corrupt(format!("forge outbox state `{other}`"))),
        }
    }
}

/// An op to enqueue: which project (and task, and event) it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewForgeOp {
    /// The project whose repository it writes to.
    pub project: ProjectId,
    /// The task it is about, if any (a task's ops are sent in order).
    pub task: Option<TaskId>,
    /// The event that caused it, if any (the outbox remembers the last one it covered).
    pub event: Option<i64>,
    /// The op and its idempotency key.
    pub op: KeyedOp,
}

/// One stored forge write.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Its id.
    pub id: i64,
    /// Its idempotency key.
    pub key: String,
    /// The project.
    pub project: ProjectId,
    /// The task, if any.
    pub task: Option<TaskId>,
    /// The event that caused it, if any.
    pub event: Option<i64>,
    /// The write.
    pub op: ForgeOp,
    /// Where it is.
    pub state: OutboxState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not sent before this.
    pub next_attempt_at: Timestamp,
    /// The last failure.
    pub last_error: Option<String>,
    /// What the forge made, once done.
    pub result: Option<ForgeResult>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// Who holds its lease (while a dispatcher sends it).
    pub lease_owner: Option<String>,
}

/// A stored outbox row before its JSON columns are read.
pub(crate) struct OutboxRow {
    pub id: i64,
    pub key: String,
    pub project: i64,
    pub task: Option<i64>,
    pub event: Option<i64>,
    pub op: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub result: Option<String>,
    pub created_at: i64,
    pub lease_owner: Option<String>,
}

impl OutboxRow {
    pub(crate) fn into_entry(self) -> Result<OutboxEntry> {
        let op = parse_op(&self.op, self.id)?;
        let result = self
            .result
            .as_deref()
            .map(|text| {
                serde_json::from_str(text).map_err(|e| {
                    StoreError::Corrupt(format!("the result of forge op {}: {e}", self.id))
                })
            })
            .transpose()?;
        Ok(OutboxEntry {
            id: self.id,
            key: self.key,
            project: ProjectId(self.project),
            task: self.task.map(TaskId),
            event: self.event,
            op,
            state: OutboxState::parse(&self.state)?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_at: Timestamp(self.next_attempt_at),
            last_error: self.last_error,
            result,
            created_at: Timestamp(self.created_at),
            lease_owner: self.lease_owner,
        })
    }
}

pub(crate) fn parse_op(text: &str, id: i64) -> Result<ForgeOp> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("forge op {id} is not an op orch knows: {e}")))
}

pub(crate) fn op_text(op: &ForgeOp) -> Result<String> {
    serde_json::to_string(op).map_err(|e| StoreError::Corrupt(format!("forge op: {e}")))
}

pub(crate) fn result_text(result: &ForgeResult) -> Result<String> {
    serde_json::to_string(result).map_err(|e| StoreError::Corrupt(format!("forge result: {e}")))
}

/// A stored link row.
pub(crate) struct LinkRow {
    pub repo: String,
    pub issue: Option<i64>,
    pub pr_number: Option<i64>,
    pub pr_url: Option<String>,
    pub head_branch: Option<String>,
    pub pushed_commit: Option<String>,
    pub marker_comment_id: Option<i64>,
}

impl LinkRow {
    pub(crate) fn into_link(self) -> ForgeLink {
        let number = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        ForgeLink {
            repo: self.repo,
            issue: number(self.issue),
            pr_number: number(self.pr_number),
            pr_url: self.pr_url,
            head_branch: self.head_branch,
            pushed_commit: self.pushed_commit,
            marker_comment_id: number(self.marker_comment_id),
        }
    }
}

pub(crate) fn project_forge(
    project: i64,
    kind: &str,
    repo: &str,
    linked_at: i64,
) -> Result<ProjectForge> {
    Ok(ProjectForge {
        project: ProjectId(project),
        kind: ForgeKind::parse(kind).map_err(StoreError::Corrupt)?,
        repo: RepoSlug::parse(repo).map_err(StoreError::Corrupt)?,
        linked_at: Timestamp(linked_at),
    })
}

/// A number the forge gave, as the database stores it.
pub(crate) fn db_number(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Invalid {
        field: what.to_owned(),
        reason: format!("{n} is too large"),
    })
}

pub(crate) fn issue_taken(repo: &str, issue: u64, holder: Option<i64>) -> StoreError {
    StoreError::Invalid {
        field: "issue".into(),
        reason: match holder {
            Some(task) => format!(
                "issue #{issue} of {repo} is already task {task}'s; an issue becomes one task"
            ),
            None => format!("the task is already linked to another issue than #{issue} of {repo}"),
        },
    }
}

pub(crate) fn lease_lost(id: i64, state: Option<(String, Option<String>)>) -> StoreError {
    StoreError::Invalid {
        field: format!("forge op {id}"),
        reason: match state {
            None => "no such op".to_owned(),
            Some((state, owner)) => format!(
                "it is `{state}`{}, so this dispatcher's lease on it ended; another one sends it",
                owner.map_or_else(String::new, |o| format!(" and leased to `{o}`"))
            ),
        },
    }
}

macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(store) => store.$method($($arg),*).await,
            Store::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Link a project to its repository (a repeat replaces the link).
    pub async fn link_project_forge(
        &self,
        project: ProjectId,
        kind: ForgeKind,
        repo: &RepoSlug,
        now: Timestamp,
    ) -> Result<ProjectForge> {
        delegate!(self.link_project_forge(project, kind, repo.to_string(), now))
    }

    /// Every project's repository link.
    pub async fn project_forges(&self) -> Result<Vec<ProjectForge>> {
        delegate!(self.project_forges())
    }

    /// A project's repository link, if it has one.
    pub async fn project_forge(&self, project: ProjectId) -> Result<Option<ProjectForge>> {
        Ok(self
            .project_forges()
            .await?
            .into_iter()
            .find(|f| f.project == project))
    }

    /// A task's forge link, if it has one.
    pub async fn forge_link(&self, task: TaskId) -> Result<Option<ForgeLink>> {
        delegate!(self.forge_link(task))
    }

    /// The task an issue became, if it became one.
    pub async fn task_of_issue(
        &self,
        project: ProjectId,
        repo: &RepoSlug,
        issue: u64,
    ) -> Result<Option<TaskId>> {
        delegate!(self.task_of_issue(project, repo.to_string(), issue))
    }

    /// The task whose pull request `pull` of `repo` is, if any.
    pub async fn task_of_pull(
        &self,
        project: ProjectId,
        repo: &RepoSlug,
        pull: u64,
    ) -> Result<Option<TaskId>> {
        delegate!(self.task_of_pull(project, repo.to_string(), pull))
    }

    /// The tasks of `project` linked to an issue or a pull request, with those numbers (for
    /// polling their comments), oldest task first.
    pub async fn linked_numbers(
        &self,
        project: ProjectId,
    ) -> Result<Vec<(TaskId, Option<u64>, Option<u64>)>> {
        delegate!(self.linked_numbers(project))
    }

    /// Record that `task` is issue `issue` of `repo` (idempotent). Refused (`Invalid`) when the
    /// issue is another task's or the task is another issue's: an issue becomes one task.
    pub async fn link_task_issue(
        &self,
        task: TaskId,
        repo: &RepoSlug,
        issue: u64,
        now: Timestamp,
    ) -> Result<()> {
        delegate!(self.link_task_issue(task, repo.to_string(), issue, now))
    }

    /// Record the branch of `task` pushed to `repo` and the commit it is at.
    pub async fn record_forge_push(
        &self,
        task: TaskId,
        repo: &RepoSlug,
        branch: &str,
        commit: &str,
        now: Timestamp,
    ) -> Result<()> {
        delegate!(self.record_forge_push(
            task,
            repo.to_string(),
            branch.to_owned(),
            commit.to_owned(),
            now
        ))
    }

    /// Store ops in the outbox, all in one transaction; an op whose key is stored already is
    /// left as it is. Returns how many were new.
    pub async fn enqueue_forge_ops(&self, ops: &[NewForgeOp], now: Timestamp) -> Result<u64> {
        delegate!(self.enqueue_forge_ops(ops.to_vec(), now))
    }

    /// Lease up to `limit` due pending ops to `owner` for `lease`, oldest first; of each task
    /// only its oldest pending op (a task's writes reach the forge in order). An op whose lease
    /// expired (its dispatcher died) is due again, and so is one `owner` holds itself: a
    /// dispatcher's name is stable across restarts, so a restarted daemon takes back at once
    /// what its killed predecessor held (one dispatcher per name, sending one pass at a time).
    pub async fn claim_forge_ops(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<OutboxEntry>> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        delegate!(self.claim_forge_ops(owner.to_owned(), lease_ms, limit, now))
    }

    /// The forge did op `id`: store its result and, in the same transaction, what it means for
    /// the task's link (a created issue, pull request or marker comment). Refused (`Invalid`)
    /// unless `owner` still holds the op's lease.
    pub async fn finish_forge_op(
        &self,
        id: i64,
        owner: &str,
        result: &ForgeResult,
        now: Timestamp,
    ) -> Result<()> {
        self.finish_forge_op_with(id, owner, result, &[], now).await
    }

    /// [`Store::finish_forge_op`], and the writes what the forge made calls for (`follow_ups`,
    /// enqueued as by [`Store::enqueue_forge_ops`]) stored in the same transaction: either the
    /// op is done and its follow-ups are queued, or (the lease is lost, the store failed)
    /// neither.
    pub async fn finish_forge_op_with(
        &self,
        id: i64,
        owner: &str,
        result: &ForgeResult,
        follow_ups: &[NewForgeOp],
        now: Timestamp,
    ) -> Result<()> {
        delegate!(self.finish_forge_op(
            id,
            owner.to_owned(),
            result.clone(),
            follow_ups.to_vec(),
            now
        ))
    }

    /// `owner` is still sending: the ops it holds (unexpired leases only) are held for `lease`
    /// more from `now`. Returns how many. A dispatcher renews while it sends, so its lease can be short
    /// (a dead dispatcher's ops are taken over soon) and a slow send is never taken over.
    pub async fn renew_forge_leases(
        &self,
        owner: &str,
        lease: Duration,
        now: Timestamp,
    ) -> Result<u64> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        delegate!(self.renew_forge_leases(owner.to_owned(), lease_ms, now))
    }

    /// An attempt at op `id` failed with `error`: try again at `retry_at`, or (`None`) give up
    /// (`failed`). Refused (`Invalid`) unless `owner` still holds the op's lease.
    pub async fn fail_forge_op(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<()> {
        delegate!(self.fail_forge_op(id, owner.to_owned(), error.to_owned(), retry_at, now))
    }

    /// The outbox, or one task's part of it, oldest first.
    pub async fn forge_ops(&self, task: Option<TaskId>) -> Result<Vec<OutboxEntry>> {
        delegate!(self.forge_ops(task))
    }

    /// The newest event an enqueued op was caused by (0: none): where a scan of the event log
    /// for forge changes resumes after a restart.
    pub async fn last_forge_event(&self) -> Result<i64> {
        delegate!(self.last_forge_event())
    }
}
