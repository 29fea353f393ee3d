//! Persistence for orch: projects, tasks, dependencies, runs with leases, and the append-only
//! event log.
//!
//! Architecture invariant: every SQL statement orch runs lives in this crate, one file per query
//! under `queries/<backend>/`. Callers see one [`Store`] whatever the backend, and no backend's
//! types. The rules are `orch_core::decide`'s: a backend loads the facts a decision needs, gets
//! a plan from the core, and applies it with conditional updates in one transaction, writing an
//! event with every status change.

pub mod archive;
mod claim;
mod doctor;
mod error;
mod fencing;
pub mod home;
pub mod info_requests;
pub mod jobs;
mod limits;
mod postgres;
mod rows;
pub mod secret_box;
mod secrets;
mod sqlite;
mod usage;
mod wakes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use claim::{Claim, DependencyRef, PendingReply, ReviewRecord, ReviewVerdict};
pub use error::StoreError;
pub use fencing::REFUSAL_WINDOW_MS;
pub use info_requests::{AnswerValue, AnsweredKey, InfoRequest, InputValue, NewInfoRequest};
pub use limits::{DailyUsage, UsageToday};
use orch_core::{
    Event, FencingToken, NewTask, Outcome, ProjectId, Run, RunId, Status, Task, TaskId, Timestamp,
    WorkflowId,
};
pub use sqlite::{SqliteOptions, Synchronous, WAL_AUTOCHECKPOINT_PAGES};
pub use usage::{AgentUsage, UsageRecord, UsageSummary, UsageTotal};
pub use wakes::WorkWatch;

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who is acting and when. Every write takes one, so the store itself never reads a clock or a
/// random number generator and tests can move time forward without sleeping.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    /// Recorded as the event's actor (`cli`, `scheduler`, a worker name).
    pub actor: &'a str,
    /// The current time.
    pub now: Timestamp,
    /// A random number in `[0, 1)` for retry jitter.
    pub jitter_unit: f64,
}

impl<'a> Op<'a> {
    /// `actor` acting at the current wall-clock time, with a fresh random jitter. Callers that
    /// want determinism (tests) build an `Op` by hand instead.
    pub fn now(actor: &'a str) -> Op<'a> {
        Op {
            actor,
            now: wall_clock(),
            jitter_unit: rand::random::<f64>(),
        }
    }
}

/// A short public name of a fencing token (the first 8 hex characters of its SHA-256), as
/// events record it: it tells two tokens apart without revealing either.
pub fn token_fingerprint(token: &FencingToken) -> String {
    fencing::fingerprint(token)
}

/// The current time as a `Timestamp` (milliseconds since the Unix epoch).
pub fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(ms)
}

/// The time for calendar decisions (daily usage windows, cron slots): the wall clock, moved by
/// the offset in milliseconds written in the file named by `ORCH_TEST_CLOCK_FILE` when that
/// variable is set. Tests move it across midnight or a cron slot while daemons run; the file is
/// re-read on every call. Leases, heartbeats and backoff always use [`wall_clock`], so moving the
/// calendar never expires a lease.
pub fn calendar_clock() -> Timestamp {
    let now = wall_clock();
    let Some(file) = std::env::var_os("ORCH_TEST_CLOCK_FILE") else {
        return now;
    };
    let offset = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0);
    Timestamp(now.0.saturating_add(offset))
}

/// A registered project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Its id.
    pub id: ProjectId,
    /// A short unique name (the directory's name, made unique).
    pub name: String,
    /// The absolute directory.
    pub path: String,
    /// When it was registered.
    pub created_at: Timestamp,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this project.
    pub project: Option<ProjectId>,
    /// Only this workflow.
    pub workflow: Option<WorkflowId>,
    /// At most this many (default: all).
    pub limit: Option<u32>,
    /// Only tasks with this label.
    pub label: Option<String>,
    /// Newest first (default: oldest first).
    pub newest_first: bool,
}

/// One submission: tasks (and optionally the workflow they came from) for one project.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The project.
    pub project: ProjectId,
    /// The workflow's name and source text, if the tasks came from a workflow file.
    pub workflow: Option<(Option<String>, String)>,
    /// The tasks; `needs_in_batch` indices must point at earlier tasks.
    pub tasks: Vec<NewTask>,
}

impl Submission {
    /// Refuse a batch whose `needs_in_batch` points at a task that is not an earlier one.
    pub fn check(&self) -> Result<()> {
        for (index, task) in self.tasks.iter().enumerate() {
            if let Some(bad) = task.needs_in_batch.iter().find(|&&d| d >= index) {
                return Err(StoreError::Invalid {
                    field: format!("tasks[{index}].needs"),
                    reason: format!(
                        "points at task {bad} of the batch, which is not an earlier task"
                    ),
                });
            }
            if let Some(bad) = task.parent_in_batch.filter(|&p| p >= index) {
                return Err(StoreError::Invalid {
                    field: format!("tasks[{index}].parent"),
                    reason: format!(
                        "points at task {bad} of the batch, which is not an earlier task"
                    ),
                });
            }
            if task.parent.is_some() && task.parent_in_batch.is_some() {
                return Err(StoreError::Invalid {
                    field: format!("tasks[{index}].parent"),
                    reason: "a task has one parent: an existing task or one of the batch, not both"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// Redact the known token formats and `literal_values` (orch's own tokens) from every task
    /// spec and the workflow source, in place (`orch_core::redact::redact_spec`). Returns where
    /// secrets were found, each field prefixed with its task, for the submitter's warning.
    ///
    /// [`Store::submit`] and [`Store::submit_once`] call this on their own copy (with the values
    /// given to [`Store::add_secret_values`]), so no secret in a spec reaches the database
    /// whoever submits; callers that want the warnings call it first.
    pub fn redact_secrets(
        &mut self,
        literal_values: &[String],
    ) -> Vec<orch_core::redact::Redaction> {
        let redactor = orch_core::redact::Redactor::new(literal_values);
        let mut found = Vec::new();
        for (index, task) in self.tasks.iter_mut().enumerate() {
            let task_name = match &task.spec.key {
                Some(key) => format!("task `{key}`"),
                None => format!("tasks[{index}]"),
            };
            for mut redaction in orch_core::redact::redact_spec(&mut task.spec, &redactor) {
                redaction.field = format!("{task_name} {}", redaction.field);
                found.push(redaction);
            }
        }
        if let Some((_, source)) = &mut self.workflow {
            orch_core::redact::redact_field(&redactor, "the workflow file", source, &mut found);
        }
        found
    }
}

/// Which database a store uses: parsed once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// An SQLite file (the embedded default).
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// How to open it.
        options: SqliteOptions,
    },
    /// A PostgreSQL database, shared by any number of orch processes.
    Postgres {
        /// `postgres://user@host/db`.
        url: String,
    },
}

/// One id under which a webhook delivery is remembered: `source` names the id space (`github`
/// for GitHub's delivery ids, `github-issue` for `<repo>#<number>`, `tasks` for the task webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The id space.
    pub source: String,
    /// The id within it.
    pub id: String,
}

impl Delivery {
    /// `id` in the id space `source`.
    pub fn new(source: impl Into<String>, id: impl Into<String>) -> Delivery {
        Delivery {
            source: source.into(),
            id: id.into(),
        }
    }
}

/// What [`Store::submit_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedOnce {
    /// The tasks created now, or the first task of the earlier delivery.
    pub tasks: Vec<TaskId>,
    /// Whether the tasks were created now (false: a delivery id was known).
    pub created: bool,
    /// Those of `tasks` that existed already: a live task held the unique key a submitted task
    /// carried, and is answered in its place (nothing was created for it).
    pub existing: Vec<TaskId>,
}

/// A human's answer to a task waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalVerdict {
    /// It may run.
    Approve,
    /// It is cancelled.
    Reject,
}

/// What one stale-recovery pass did to one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The lost run.
    pub run: RunId,
    /// Its task.
    pub task: TaskId,
    /// Where the task went (`retry_wait` or `needs_review`).
    pub status: Status,
}

/// What the scheduler's periodic pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Runs whose leases had expired.
    pub recovered: Vec<Recovered>,
    /// Tasks whose backoff had elapsed and went back to `queued`.
    pub requeued: Vec<TaskId>,
}

/// An event with its task's workflow, as [`Store::events_after`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// The event.
    pub event: Event,
    /// The workflow of the event's task, if it came from one.
    pub workflow: Option<WorkflowId>,
}

/// A disagreement found by [`Store::check_consistency`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The task concerned.
    pub task: TaskId,
    /// What is wrong.
    pub message: String,
}

/// The store: one closed set of backends, chosen at open time.
#[derive(Debug, Clone)]
pub enum Store {
    /// An SQLite file (the embedded default).
    Sqlite(sqlite::SqliteStore),
    /// A PostgreSQL database (several servers and workers share it).
    Postgres(postgres::PgStore),
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
    /// Open (creating if needed) the configured database and bring its schema up to date.
    pub async fn open(config: &DatabaseConfig) -> Result<Store> {
        match config {
            DatabaseConfig::Sqlite { path, options } => Ok(Store::Sqlite(
                sqlite::SqliteStore::open(path, options.clone()).await?,
            )),
            DatabaseConfig::Postgres { url } => {
                Ok(Store::Postgres(postgres::PgStore::open(url).await?))
            }
        }
    }

    /// [`Store::open`] for an SQLite file.
    pub async fn open_sqlite(path: &Path, options: SqliteOptions) -> Result<Store> {
        Store::open(&DatabaseConfig::Sqlite {
            path: path.to_owned(),
            options,
        })
        .await
    }

    /// Record the review verdict of a run (fenced by its token; a repeat replaces it).
    pub async fn record_review(
        &self,
        run: RunId,
        token: FencingToken,
        review: ReviewRecord,
        op: Op<'_>,
    ) -> Result<()> {
        delegate!(self.record_review(run, token, review, op))
    }

    /// Find the project registered for `path`, registering it if it is new.
    pub async fn ensure_project(&self, path: &str, now: Timestamp) -> Result<Project> {
        delegate!(self.ensure_project(path, now))
    }

    /// Record the usage of a run's agent sessions (fenced by the run's token; a repeated
    /// report of the same step replaces the earlier one).
    pub async fn record_usage(
        &self,
        run: RunId,
        token: FencingToken,
        records: Vec<UsageRecord>,
        op: Op<'_>,
    ) -> Result<()> {
        delegate!(self.record_usage(run, token, records, op))
    }

    /// The usage of every agent session of a task, oldest run first.
    pub async fn task_usage(&self, task: TaskId) -> Result<Vec<AgentUsage>> {
        delegate!(self.task_usage(task))
    }

    /// Usage per agent (all time) and per day (the last `days` days that had any).
    pub async fn usage_summary(&self, days: u32) -> Result<UsageSummary> {
        delegate!(self.usage_summary(days))
    }

    /// Reopen a finished task with a follow-up message: its next run resumes the last agent
    /// session in the same worktree.
    pub async fn reply(&self, task: TaskId, message: &str, op: Op<'_>) -> Result<Status> {
        delegate!(self.reply(task, message.to_owned(), op))
    }

    /// [`Store::reply`] once per delivery id (a GitHub comment's): a known id replies nothing
    /// and answers `None`; otherwise the reply and the id are stored in one transaction.
    pub async fn reply_once(
        &self,
        task: TaskId,
        message: &str,
        delivery: &Delivery,
        op: Op<'_>,
    ) -> Result<Option<Status>> {
        delegate!(self.reply_once(task, message.to_owned(), Some(delivery.clone()), op))
    }

    /// Every registered project.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        delegate!(self.projects())
    }

    /// Redact these literal secrets (orch's own tokens) from every spec and reply submitted from
    /// now on, besides the known token formats (in memory, for this handle and its clones).
    pub fn add_secret_values(&self, values: &[String]) {
        match self {
            Store::Sqlite(store) => store.add_secret_values(values),
            Store::Postgres(store) => store.add_secret_values(values),
        }
    }

    /// The literal secrets given to [`Store::add_secret_values`].
    pub fn secret_values(&self) -> Vec<String> {
        match self {
            Store::Sqlite(store) => store.secret_values(),
            Store::Postgres(store) => store.secret_values(),
        }
    }

    /// Create tasks atomically: all of them with their dependencies and `create` events, or none.
    ///
    /// A task whose unique key a live task of the project holds is not created: that task's id
    /// stands in its place (see [`Store::submit_reporting`] to tell which).
    pub async fn submit(&self, submission: &Submission, op: Op<'_>) -> Result<Vec<TaskId>> {
        Ok(self.submit_reporting(submission, op).await?.tasks)
    }

    /// [`Store::submit`], saying which tasks existed already (their unique key was live).
    pub async fn submit_reporting(
        &self,
        submission: &Submission,
        op: Op<'_>,
    ) -> Result<SubmittedOnce> {
        delegate!(self.submit(submission, op))
    }

    /// Submit unless one of `deliveries` was recorded before, in one transaction: a known id
    /// answers with the task it created and creates nothing; otherwise the tasks are created and
    /// every id is recorded with the first one.
    pub async fn submit_once(
        &self,
        deliveries: &[Delivery],
        submission: &Submission,
        op: Op<'_>,
    ) -> Result<SubmittedOnce> {
        delegate!(self.submit_once(deliveries, submission, op))
    }

    /// Claim the highest-priority, oldest `queued` task, if any, with a lease of `lease`.
    pub async fn claim_next(
        &self,
        owner: &str,
        lease: Duration,
        op: Op<'_>,
    ) -> Result<Option<Claim>> {
        delegate!(self.claim_next(owner, lease, op))
    }

    /// Extend a run's lease to `now + lease`. Refused (and recorded) unless the run is still the
    /// task's active run and `token` is its token.
    pub async fn heartbeat(
        &self,
        run: RunId,
        token: FencingToken,
        lease: Duration,
        op: Op<'_>,
    ) -> Result<Timestamp> {
        delegate!(self.heartbeat(run, token, lease, op))
    }

    /// The run, if it is active and `token` is its token; otherwise the request (`what`, e.g.
    /// `bundle upload`) is refused and the refusal recorded, like a stale heartbeat. For requests
    /// that change no state of their own (log chunks, bundle uploads) but must be fenced.
    pub async fn check_lease(
        &self,
        run: RunId,
        token: FencingToken,
        what: &str,
        op: Op<'_>,
    ) -> Result<Run> {
        delegate!(self.check_lease(run, token, what, op))
    }

    /// Whether `actor` presenting `token` is (or was, if the run has ended) the holder of `run`'s
    /// lease: its owner with its token. Records nothing; for answering a repeated request.
    pub async fn is_holder(&self, run: RunId, token: FencingToken, actor: &str) -> Result<bool> {
        delegate!(self.is_holder(run, token, actor))
    }

    /// End a run with its outcome. Refused (and recorded) with a stale token.
    pub async fn complete(
        &self,
        run: RunId,
        token: FencingToken,
        outcome: Outcome,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        delegate!(self.complete(run, token, outcome, reason, op))
    }

    /// Give a running task back to be run again after `delay`, without using up an attempt.
    pub async fn requeue(
        &self,
        run: RunId,
        token: FencingToken,
        delay: Duration,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        delegate!(self.requeue(run, token, delay, reason, op))
    }

    /// Stale recovery: every active run whose lease expired before `now` is lost; its task goes
    /// to `retry_wait`, or to `needs_review` at max attempts.
    pub async fn recover_expired(&self, op: Op<'_>) -> Result<Vec<Recovered>> {
        delegate!(self.recover_expired(op))
    }

    /// Treat every active run whose owner starts with `prefix` as lost now, without waiting for
    /// its lease: for a daemon restarting after a crash, whose embedded workers held them.
    pub async fn release_owner(&self, prefix: &str, op: Op<'_>) -> Result<Vec<Recovered>> {
        delegate!(self.release_owner(prefix, op))
    }

    /// Take, take over (if it expired: `expires_at <= now`) or renew (if `holder` holds it) the
    /// named lease until `now + ttl`, in one statement. Answers whether `holder` holds it now.
    /// Singleton duties (lease `scheduler`) run only while their holder's lease is valid; the
    /// holders' clocks must agree to well within `ttl`.
    pub async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        op: Op<'_>,
    ) -> Result<bool> {
        delegate!(self.hold_lease(name, holder, ttl, op))
    }

    /// Give the named lease up if `holder` holds it (a clean shutdown), so another process can
    /// take it at once instead of after its expiry. Answers whether it was held.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        delegate!(self.release_lease(name, holder))
    }

    /// Move `retry_wait` tasks whose backoff has elapsed back to `queued`.
    pub async fn promote_due(&self, op: Op<'_>) -> Result<Vec<TaskId>> {
        delegate!(self.promote_due(op))
    }

    /// One scheduler pass: stale recovery, then due retries.
    pub async fn tick(&self, op: Op<'_>) -> Result<TickReport> {
        let recovered = self.recover_expired(op).await?;
        let requeued = self.promote_due(op).await?;
        Ok(TickReport {
            recovered,
            requeued,
        })
    }

    /// Cancel a task that has not finished; a running task's run is ended and its lease void.
    pub async fn cancel(&self, task: TaskId, reason: Option<&str>, op: Op<'_>) -> Result<Status> {
        delegate!(self.cancel(task, reason, op))
    }

    /// Give a `failed`, `needs_review` or `cancelled` task a fresh set of attempts, now or after
    /// `delay`. Dependents it was blocking are re-evaluated.
    pub async fn retry(&self, task: TaskId, delay: Option<Duration>, op: Op<'_>) -> Result<Status> {
        delegate!(self.retry(task, delay, op))
    }

    /// Move a `blocked` task back to `waiting`/`queued` once nothing blocks it any more.
    pub async fn unblock(&self, task: TaskId, op: Op<'_>) -> Result<Status> {
        delegate!(self.unblock(task, op))
    }

    /// Approve a task that waits for approval.
    pub async fn approve(&self, task: TaskId, op: Op<'_>) -> Result<Status> {
        delegate!(self.approve(task, op))
    }

    /// Approve or reject a task waiting for approval, with the human's comment: the `approve`
    /// (to `queued`) or `reject` (to `cancelled`) event carries it as its reason and `op`'s actor
    /// as its actor. An approval ahead of time is only marked (no event, as with `approve`).
    pub async fn judge_approval(
        &self,
        task: TaskId,
        verdict: ApprovalVerdict,
        comment: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        delegate!(self.judge_approval(task, verdict, comment, op))
    }

    /// Record a note on a task (an event that changes nothing, e.g. `merged`): one transaction,
    /// `from == to ==` the task's status. Refused with `Invalid` for a kind that is not a note.
    pub async fn record_note(
        &self,
        task: TaskId,
        kind: orch_core::EventKind,
        reason: &str,
        data: serde_json::Value,
        op: Op<'_>,
    ) -> Result<Status> {
        delegate!(self.record_note(task, kind, reason.to_owned(), data, op))
    }

    /// One task.
    pub async fn task(&self, task: TaskId) -> Result<Task> {
        delegate!(self.task(task))
    }

    /// Tasks matching a filter, oldest first.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        delegate!(self.tasks(filter))
    }

    /// One run.
    pub async fn run(&self, run: RunId) -> Result<Run> {
        delegate!(self.run(run))
    }

    /// The runs of a task, first attempt first.
    pub async fn runs(&self, task: TaskId) -> Result<Vec<Run>> {
        delegate!(self.runs(task))
    }

    /// The children of a task (tasks whose parent it is), oldest first.
    pub async fn children(&self, task: TaskId) -> Result<Vec<Task>> {
        delegate!(self.children(task))
    }

    /// The events of a task, oldest first.
    pub async fn events(&self, task: TaskId) -> Result<Vec<Event>> {
        delegate!(self.events(task))
    }

    /// Events of every task with an id above `after`, oldest first, at most `limit`, each with
    /// its task's workflow: what the live event stream polls.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<FeedEvent>> {
        delegate!(self.events_after(after, limit))
    }

    /// The id of the newest event (0 when there is none).
    pub async fn last_event_id(&self) -> Result<i64> {
        delegate!(self.last_event_id())
    }

    /// How many tasks are in each status (statuses with none are left out).
    pub async fn status_counts(&self) -> Result<BTreeMap<Status, u64>> {
        delegate!(self.status_counts())
    }

    /// Replay every task's events and check the invariants the store keeps; an empty list means
    /// the database is consistent.
    pub async fn check_consistency(&self) -> Result<Vec<Problem>> {
        delegate!(self.check_consistency())
    }

    /// The backend's name (`sqlite`, `postgres`), as an archive's manifest records it.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Whether no table an archive holds has a row (what [`Store::import_archive`] needs).
    pub async fn is_empty(&self) -> Result<bool> {
        delegate!(self.is_empty())
    }

    /// Send every row of every table into `rows`: table by table in [`archive::Table::ALL`]
    /// order, each in primary-key order, all from one snapshot. Rows are sent as they are read
    /// (the channel's bound is all that is held in memory). Returns the rows sent per table.
    pub async fn export_archive(
        &self,
        rows: tokio::sync::mpsc::Sender<archive::Row>,
    ) -> Result<archive::RowCounts> {
        delegate!(self.export_archive(rows))
    }

    /// Insert the rows received from `rows` (in [`archive::Table::ALL`] order), ids preserved,
    /// into this empty database in one transaction; commits only when the channel closes with
    /// exactly `expected` rows per table, else nothing is imported. Refused (`Invalid`) when the
    /// database holds any row.
    pub async fn import_archive(
        &self,
        rows: tokio::sync::mpsc::Receiver<archive::Row>,
        expected: archive::RowCounts,
    ) -> Result<archive::RowCounts> {
        delegate!(self.import_archive(rows, expected))
    }

    /// A claimer's watch on the wake-ups of this handle, taken before its first claim and
    /// passed to every [`Store::wait_for_work`] after a claim that found nothing:
    ///
    /// ```no_run
    /// # async fn run(store: orch_store::Store) -> orch_store::Result<()> {
    /// # use std::time::Duration;
    /// let mut watch = store.watch_work();
    /// loop {
    ///     match store.claim_next("w", Duration::from_secs(60), orch_store::Op::now("w")).await? {
    ///         Some(_claim) => { /* run it */ }
    ///         None => store.wait_for_work(&mut watch, Duration::from_secs(1)).await,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn watch_work(&self) -> WorkWatch {
        match self {
            Store::Sqlite(store) => store.watch_work(),
            Store::Postgres(store) => store.watch_work(),
        }
    }

    /// Wait until work may be ready to claim, at most `timeout`: returns early when a task
    /// becomes `queued` (or, under limits, a run ends), and at once when that happened since
    /// `watch` last started to look. On PostgreSQL that is any process's commit
    /// (LISTEN/NOTIFY on `orch_work`, one listening connection per store handle, shared by its
    /// clones); on SQLite it is a commit through this store handle or a clone of it (other
    /// processes are seen only at the timeout). Callers check for work after it returns,
    /// whatever the reason.
    pub async fn wait_for_work(&self, watch: &mut WorkWatch, timeout: Duration) {
        delegate!(self.wait_for_work(watch, timeout))
    }

    /// Park a run whose step asked for values (fenced by its token): the run ends `requeued`
    /// (its attempt given back), the request is stored (closing an earlier open one of the task)
    /// and the task goes `awaiting_input`, holding no run. Returns the request's id.
    pub async fn request_input(
        &self,
        run: RunId,
        token: FencingToken,
        request: NewInfoRequest,
        op: Op<'_>,
    ) -> Result<i64> {
        delegate!(self.request_input(run, token, request, op))
    }

    /// Answer a task's open info request and queue the task. Every value must answer a key the
    /// request asks for, every required key must be answered, and a secret value (the request
    /// marks it so, or `secret` says it) must come sealed by [`secret_box`]: anything else is
    /// `Invalid` and nothing is stored. `Conflict` when the task has no open request.
    pub async fn answer_input(
        &self,
        task: TaskId,
        values: Vec<AnswerValue>,
        op: Op<'_>,
    ) -> Result<Status> {
        delegate!(self.answer_input(task, values, op))
    }

    /// A task's info requests, oldest first, with their answers (secret values left out).
    pub async fn info_requests(&self, task: TaskId) -> Result<Vec<InfoRequest>> {
        delegate!(self.info_requests(task))
    }

    /// Every open info request of a task that is `awaiting_input`, oldest first: the inbox.
    pub async fn open_info_requests(&self) -> Result<Vec<InfoRequest>> {
        delegate!(self.open_info_requests())
    }

    /// The answered values the run's task has (newest per step and key), for its holder only
    /// (fenced by its token; anyone else is refused and recorded). Secret values come sealed.
    pub async fn input_values(
        &self,
        run: RunId,
        token: FencingToken,
        op: Op<'_>,
    ) -> Result<Vec<InputValue>> {
        delegate!(self.input_values(run, token, op))
    }

    /// Expire every open info request past its deadline: its task goes to `needs_review`.
    /// Requests whose task left `awaiting_input` otherwise (cancelled) are closed. Returns the
    /// tasks sent to review.
    pub async fn expire_info_requests(&self, op: Op<'_>) -> Result<Vec<TaskId>> {
        delegate!(self.expire_info_requests(op))
    }

    /// Add a cron job (its target redacted like a submission). Refused (`Invalid`) when the
    /// name is taken.
    pub async fn add_job(&self, job: &jobs::NewJob, now: Timestamp) -> Result<jobs::Job> {
        delegate!(self.add_job(job, now))
    }

    /// Every cron job, by name.
    pub async fn jobs(&self) -> Result<Vec<jobs::Job>> {
        delegate!(self.jobs())
    }

    /// The cron job of this name (`Invalid` when there is none).
    pub async fn job(&self, name: &str) -> Result<jobs::Job> {
        delegate!(self.job(name))
    }

    /// Remove a cron job and its firings (the tasks it submitted stay). Answers the job removed.
    pub async fn remove_job(&self, name: &str) -> Result<jobs::Job> {
        delegate!(self.remove_job(name))
    }

    /// Enable or disable a cron job. Enabling a disabled job counts the slots that passed
    /// meanwhile as decided (up to `now`), so they are not missed ones.
    pub async fn set_job_enabled(
        &self,
        name: &str,
        enabled: bool,
        now: Timestamp,
    ) -> Result<jobs::Job> {
        delegate!(self.set_job_enabled(name, enabled, now))
    }

    /// Count a job's slots up to `up_to` as decided without firing them (skipped); never moves
    /// back.
    pub async fn advance_job(&self, job: i64, up_to: Timestamp) -> Result<()> {
        delegate!(self.advance_job(job, up_to))
    }

    /// Fire a job's slot once: in one transaction, record the firing (job, slot) and submit
    /// `submission` (or record `Err`'s reason when the submission was refused), and count the
    /// slot as decided (not for a manual firing). `None`: the slot had fired already (another
    /// scheduler), and nothing was submitted.
    pub async fn fire_job(
        &self,
        job: i64,
        slot: Timestamp,
        kind: orch_core::cron::FiringKind,
        submission: std::result::Result<&Submission, &str>,
        op: Op<'_>,
    ) -> Result<Option<jobs::Firing>> {
        delegate!(self.fire_job(job, slot, kind, submission, op))
    }

    /// A job's firings, newest slot first, at most `limit`.
    pub async fn job_firings(&self, job: i64, limit: u32) -> Result<Vec<jobs::Firing>> {
        delegate!(self.job_firings(job, limit))
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(store) => store.close().await,
            Store::Postgres(store) => store.close().await,
        }
    }
}
mod forge;
pub use forge::{NewForgeOp, OutboxEntry, OutboxState, ProjectForge};
mod forge_feedback;
pub use forge_feedback::{FeedbackState, NewReaction, ReactionEffect};

pub mod dashboard;
pub use dashboard::{BoardPage, BoardQuery, DashboardGrant};
