//! The application layer: what a user can do to orch — submit tasks and workflows (once per
//! webhook delivery when asked), cancel, retry, approve, unblock, reply — in one place, used by
//! every front end (the CLI's offline path, the HTTP handlers, the webhooks; next cron, the
//! dashboard, an MCP server), so none of them is a copy.
//!
//! Architecture invariant: it takes validated core types (`TaskSpec`, `CancelReason`, ...) and
//! an actor, depends on `orch-core` and `orch-store` only (no axum, no clap), and every
//! submission passes through one private function, `App::submit_tasks`, the choke point where
//! a task's spec is made fit to store (secrets redacted, with a warning per field).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod diff_comments;
pub mod jobs;
pub mod live_sessions;

use std::path::Path;
use std::sync::Arc;

use orch_core::approval::ApprovalPolicy;
use orch_core::spec::SpecError;
use orch_core::{
    CancelReason, FieldError, NewTask, ReplyMessage, RetryDelay, Status, Task, TaskId,
};
use orch_store::{ApprovalVerdict, Delivery, Op, Project, Store, StoreError, Submission};

/// Why an action failed: the user's input, a workflow file, or the store (which refuses what
/// does not apply, `StoreError::is_refusal`, and reports the database's failures).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A field of the input is wrong.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// A workflow file is wrong; the error names its line and column.
    #[error(transparent)]
    Workflow(#[from] SpecError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task has no live agent session to kill.
    #[error(
        "task {0} has no live agent session; `orch task live` lists them (cancel other tasks \
         instead)"
    )]
    NotLive(TaskId),
    /// A live session could not be looked at or ended.
    #[error("the live session could not be reached: {0}")]
    Session(String),
}

impl AppError {
    /// Whether the user asked for something wrong or not applicable (as opposed to a failure).
    pub fn is_refusal(&self) -> bool {
        match self {
            AppError::Invalid(_) | AppError::Workflow(_) | AppError::NotLive(_) => true,
            AppError::Store(e) => e.is_refusal(),
            AppError::Session(_) => false,
        }
    }
}

/// Results of the application layer.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// What a submission is checked against besides its own fields: the settings it will run
/// under (the daemon's `config.toml`, the project's `.orch.toml`), e.g. which agents exist. A
/// front end plugs in the daemon's; `Err` names the file or field and the fix, and the
/// submission is refused before anything is stored.
pub trait SubmitCheck: std::fmt::Debug + Send + Sync {
    /// Check the tasks about to be submitted for `project`.
    fn check(&self, project: &ProjectDir, tasks: &[NewTask]) -> Result<(), FieldError>;

    /// The approval policy (`[approval]`) tasks of `project` are submitted under: a task whose
    /// labels or commands match a rule waits in `awaiting_approval`. None by default.
    fn approval_policy(&self, _project: &ProjectDir) -> Result<ApprovalPolicy, FieldError> {
        Ok(ApprovalPolicy::default())
    }

    /// The agent the project's config names for tasks given only a title and body
    /// (`default_agent`), if any: it replaces their implicit `auto` step's agent.
    fn default_agent(&self, _project: &ProjectDir) -> Result<Option<String>, FieldError> {
        Ok(None)
    }
}

/// The application: a store and the operations on it.
#[derive(Debug, Clone)]
pub struct App {
    store: Store,
    check: Option<Arc<dyn SubmitCheck>>,
    /// The home's key for secrets kept at rest (info-request answers).
    secret_box: Option<orch_store::secret_box::SecretBox>,
}

/// A project directory that exists: absolute and canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectDir(String);

impl ProjectDir {
    /// Check a directory given by a user (`field` names where it came from).
    pub fn resolve(raw: &str, field: &str) -> Result<ProjectDir, FieldError> {
        let path = Path::new(raw);
        if !path.is_absolute() {
            return Err(FieldError::new(
                field,
                format!("`{raw}` is not an absolute path; give the project's full directory"),
            ));
        }
        let path = path
            .canonicalize()
            .map_err(|e| FieldError::new(field, format!("cannot use `{raw}`: {e}")))?;
        if !path.is_dir() {
            return Err(FieldError::new(
                field,
                format!("`{raw}` is a file, not a directory; give the project's directory"),
            ));
        }
        Ok(ProjectDir(path.to_string_lossy().into_owned()))
    }

    /// The directory.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a submission created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The project (registered now if it was new).
    pub project: Project,
    /// The tasks, in the order given; for a replayed delivery, the task the first one created.
    pub tasks: Vec<Task>,
    /// Whether the tasks were created now (false: a delivery id was known).
    pub created: bool,
    /// Those of `tasks` that existed already: a live task of the project held the unique key
    /// the submitted task carried, so it is answered instead and nothing was created for it.
    pub existing: Vec<TaskId>,
    /// One warning per field that looked like a secret (redacted before it was stored), and
    /// one per task the approval policy stops.
    pub warnings: Vec<String>,
}

/// A workflow file's text and the name it is reported under (`<file>:<line>:<col>: ...`).
#[derive(Debug, Clone, Copy)]
pub struct WorkflowText<'a> {
    /// The file name for messages.
    pub file: &'a str,
    /// The YAML.
    pub text: &'a str,
}

impl App {
    /// The application over `store`.
    pub fn new(store: Store) -> App {
        App {
            store,
            check: None,
            secret_box: None,
        }
    }

    /// Check every submission with `check` too (see [`SubmitCheck`]).
    pub fn with_check(mut self, check: Arc<dyn SubmitCheck>) -> App {
        self.check = Some(check);
        self
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Submit tasks for a project (registering it if new).
    pub async fn submit(
        &self,
        project: &ProjectDir,
        tasks: Vec<NewTask>,
        actor: &str,
    ) -> Result<Submitted> {
        self.submit_tasks(project, None, tasks, &[], actor).await
    }

    /// Submit the tasks of a workflow file (a DAG); the file is parsed here, and its errors
    /// name the file's line and column.
    pub async fn submit_workflow(
        &self,
        project: &ProjectDir,
        workflow: WorkflowText<'_>,
        actor: &str,
    ) -> Result<Submitted> {
        let parsed = orch_core::spec::parse_workflow(workflow.file, workflow.text)?;
        let source = Some((parsed.name, workflow.text.to_owned()));
        self.submit_tasks(project, source, parsed.tasks, &[], actor)
            .await
    }

    /// Submit one task unless one of `deliveries` was seen before (webhooks): a replay creates
    /// nothing and answers with the task the first delivery created. No delivery ids: an
    /// ordinary submission.
    pub async fn submit_once(
        &self,
        project: &ProjectDir,
        deliveries: &[Delivery],
        task: NewTask,
        actor: &str,
    ) -> Result<Submitted> {
        self.submit_tasks(project, None, vec![task], deliveries, actor)
            .await
    }

    /// The one submission path: secrets in the specs are redacted here, for the warnings the
    /// submitter sees (the store redacts its own copy again, so a caller of the store cannot
    /// skip it).
    async fn submit_tasks(
        &self,
        project: &ProjectDir,
        workflow: Option<(Option<String>, String)>,
        tasks: Vec<NewTask>,
        deliveries: &[Delivery],
        actor: &str,
    ) -> Result<Submitted> {
        let mut tasks = tasks;
        let mut gated = Vec::new();
        if let Some(check) = &self.check {
            if let Some(agent) = check.default_agent(project)? {
                for task in &mut tasks {
                    task.spec.apply_default_agent(&agent);
                }
            }
            check.check(project, &tasks)?;
            let policy = check.approval_policy(project)?;
            for task in &mut tasks {
                if let Some(why) = policy.matches(&task.spec) {
                    if !task.spec.requires_approval {
                        gated.push(format!(
                            "task `{}` waits for `orch task approve`: {why}",
                            task.spec.title
                        ));
                    }
                    task.spec.requires_approval = true;
                }
            }
        }
        let op = Op::now(actor);
        let project = self.store.ensure_project(project.as_str(), op.now).await?;
        let mut submission = Submission {
            project: project.id,
            workflow,
            tasks,
        };
        let mut warnings: Vec<String> = submission
            .redact_secrets(&self.store.secret_values())
            .iter()
            .map(|redaction| redaction.warning())
            .collect();
        warnings.extend(gated);
        let done = if deliveries.is_empty() {
            self.store.submit_reporting(&submission, op).await?
        } else {
            self.store.submit_once(deliveries, &submission, op).await?
        };
        let (ids, created, existing) = (done.tasks, done.created, done.existing);
        let mut tasks = Vec::with_capacity(ids.len());
        for id in ids {
            tasks.push(self.store.task(id).await?);
        }
        Ok(Submitted {
            project,
            tasks,
            created,
            existing,
            warnings,
        })
    }

    /// Cancel a task that has not finished.
    pub async fn cancel(
        &self,
        task: TaskId,
        reason: Option<&CancelReason>,
        actor: &str,
    ) -> Result<Status> {
        Ok(self
            .store
            .cancel(task, reason.map(CancelReason::as_str), Op::now(actor))
            .await?)
    }

    /// Retry a finished task with fresh attempts, now or after `delay`.
    pub async fn retry(
        &self,
        task: TaskId,
        delay: Option<RetryDelay>,
        actor: &str,
    ) -> Result<Status> {
        Ok(self
            .store
            .retry(task, delay.map(RetryDelay::get), Op::now(actor))
            .await?)
    }

    /// Approve a task waiting for approval (or ahead of time).
    pub async fn approve(&self, task: TaskId, actor: &str) -> Result<Status> {
        Ok(self.store.approve(task, Op::now(actor)).await?)
    }

    /// Approve (to `queued`) or reject (to `cancelled`) a task waiting for approval; the event
    /// carries the comment and `actor`.
    pub async fn judge_approval(
        &self,
        task: TaskId,
        verdict: ApprovalVerdict,
        comment: Option<&ApprovalComment>,
        actor: &str,
    ) -> Result<Status> {
        // A secret pasted into a comment is redacted like one in a spec.
        let redactor = orch_core::redact::Redactor::new(&self.store.secret_values());
        let comment = comment.map(|c| redactor.redact_text(c.as_str()).0);
        Ok(self
            .store
            .judge_approval(task, verdict, comment.as_deref(), Op::now(actor))
            .await?)
    }

    /// Let a blocked task go ahead without the dependencies that block it.
    pub async fn unblock(&self, task: TaskId, actor: &str) -> Result<Status> {
        Ok(self.store.unblock(task, Op::now(actor)).await?)
    }

    /// Reopen a finished task with a follow-up for its agent's last session.
    pub async fn reply(&self, task: TaskId, message: &ReplyMessage, actor: &str) -> Result<Status> {
        Ok(self
            .store
            .reply(task, message.as_str(), Op::now(actor))
            .await?)
    }
}

/// A comment on an approval or a rejection: one to 2,000 characters, kept as the event's
/// reason (secrets in it are not expected; it is shown to everyone who reads the task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalComment(String);

impl ApprovalComment {
    /// Check a comment given by a user (`field` names where it came from).
    pub fn parse(raw: &str, field: &str) -> Result<ApprovalComment, FieldError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(FieldError::new(
                field,
                "the comment is empty; say why, or leave the comment out",
            ));
        }
        let count = text.chars().count();
        if count > 2000 {
            return Err(FieldError::new(
                field,
                format!("the comment has {count} characters; keep it under 2000"),
            ));
        }
        Ok(ApprovalComment(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
mod info_requests;
pub mod usage;
pub use info_requests::AnswerInput;
pub mod forge;
pub mod mentions;
pub mod pull_feedback;

#[cfg(test)]
mod tests;
