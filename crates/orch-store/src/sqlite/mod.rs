//! The SQLite backend: one database file in WAL mode, driven through rusqlite on one dedicated
//! thread per store handle (`tokio-rusqlite`), written with `BEGIN IMMEDIATE`.
//!
//! Why rusqlite and not sqlx: sqlx's SQLite driver hands every statement to a worker thread and
//! back, and a claim plus a completion is about a dozen statements; the queue benchmark measured
//! about 1,000 claim+complete/s that way (bare SQL through sqlx: 1,100/s). Here one whole
//! operation is one hand-off to the connection's thread, and the statements run back to back on
//! cached prepared statements.
//!
//! Every write transaction takes the write lock before its first read, so two claimers (threads
//! or processes) can never both read the same queued task and then deadlock upgrading their
//! locks; the loser waits on the busy timeout and then sees the winner's commit.

mod migrate;
mod rows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use orch_core::lifecycle::{self, DependencyState, EventKind};
use orch_core::{
    Event, FencingToken, Lease, Outcome, Run, RunId, RunState, Status, Task, TaskId, Timestamp,
    WorkflowId,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    Claim, Delivery, FeedEvent, Op, Problem, Project, Recovered, Result, StoreError, Submission,
    SubmittedOnce, TaskFilter,
};
use rows::{event_from_row, project_from_row, run_from_row, task_from_row};

macro_rules! sql {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/queries/sqlite/",
            $name,
            ".sql"
        ))
    };
}

mod agents;
mod fencing;

use fencing::refuse;
pub use fencing::{fingerprint as token_fingerprint, REFUSAL_WINDOW_MS};

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Commits reach the WAL in the OS page cache: safe against a process crash (the default).
    #[default]
    Normal,
    /// Every commit is fsynced: also safe against power loss, slower.
    Full,
}

/// How to open the SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a writer waits for another process's write lock before giving up.
    pub busy_timeout: Duration,
    /// Durability setting.
    pub synchronous: Synchronous,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(30),
            synchronous: Synchronous::Normal,
        }
    }
}

/// Pages of WAL between automatic checkpoints (SQLite's default is 1,000).
pub const WAL_AUTOCHECKPOINT_PAGES: i64 = 4_000;

/// A store on one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: tokio_rusqlite::Connection,
    path: PathBuf,
    /// Literal secrets (orch's own tokens) redacted from specs with the known formats. A std
    /// lock: held to copy the list, never across an await.
    secret_values: Arc<std::sync::RwLock<Vec<String>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// An `Op` that owns its actor, so it can move to the connection's thread.
#[derive(Debug, Clone)]
struct OwnedOp {
    actor: String,
    now: Timestamp,
    jitter_unit: f64,
}

impl OwnedOp {
    fn from(op: Op<'_>) -> Self {
        OwnedOp {
            actor: op.actor.to_owned(),
            now: op.now,
            jitter_unit: op.jitter_unit,
        }
    }
}

/// WAL mode, durability, foreign keys, checkpoint size, then the schema.
fn configure(conn: &mut Connection, options: &SqliteOptions) -> Result<()> {
    // WAL lets readers work while one writer commits. `synchronous = NORMAL` in WAL mode syncs
    // only at checkpoints: a commit survives a crash of this process (the WAL is in the OS page
    // cache) but not necessarily a power cut.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Invalid {
            field: "database".into(),
            reason: format!(
                "SQLite refused WAL mode (got `{mode}`); is the file on a network file system?"
            ),
        });
    }
    conn.pragma_update(
        None,
        "synchronous",
        match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoint every ~16 MB of WAL instead of 4 MB: each checkpoint fsyncs, and a claim plus a
    // completion writes a dozen pages.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    migrate::run(conn)
}

/// SQLite said another connection holds a lock.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

impl SqliteStore {
    /// Open the database at `path`, creating it and applying migrations as needed.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                context: format!("create the directory {}", parent.display()),
                source,
            })?;
        }
        let conn = tokio_rusqlite::Connection::open(path).await?;
        let store = SqliteStore {
            conn,
            path: path.to_owned(),
            secret_values: Arc::default(),
        };
        store
            .call(move |conn| {
                conn.busy_timeout(options.busy_timeout)?;
                conn.set_prepared_statement_cache_capacity(128);
                // Switching a new file to WAL takes an exclusive lock, and SQLite answers BUSY
                // at once (without its busy handler) when two processes open a new home at the
                // same moment; those answers are retried here until the busy timeout.
                let deadline = std::time::Instant::now() + options.busy_timeout;
                let mut wait = Duration::from_millis(5);
                loop {
                    match configure(conn, &options) {
                        Err(StoreError::Database(e))
                            if is_busy(&e) && std::time::Instant::now() < deadline =>
                        {
                            std::thread::sleep(wait);
                            wait = (wait * 2).min(Duration::from_millis(200));
                        }
                        other => return other,
                    }
                }
            })
            .await?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `work` on the connection's thread.
    async fn call<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.conn
            .call_raw(work)
            .await
            .map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn close(&self) {
        // Closing consumes the handle; clones of it (other `Store` values) keep theirs.
        let _ = self.conn.clone().close().await;
    }

    pub(crate) async fn ensure_project(&self, path: &str, now: Timestamp) -> Result<Project> {
        let path = path.to_owned();
        self.call(move |conn| {
            let tx = immediate(conn)?;
            if let Some(project) = tx
                .prepare_cached(sql!("select_project_by_path"))?
                .query_row([&path], project_from_row)
                .optional()?
            {
                return Ok(project);
            }
            let base = Path::new(&path)
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty())
                .unwrap_or("project")
                .to_owned();
            let mut name = base.clone();
            let mut suffix = 2;
            while tx
                .prepare_cached(sql!("select_project_by_name"))?
                .query_row([&name], |_| Ok(()))
                .optional()?
                .is_some()
            {
                name = format!("{base}-{suffix}");
                suffix += 1;
            }
            let project = tx
                .prepare_cached(sql!("insert_project"))?
                .query_row(params![name, path, now.0], project_from_row)?;
            tx.commit()?;
            Ok(project)
        })
        .await
    }

    pub(crate) async fn projects(&self) -> Result<Vec<Project>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("select_projects"))?;
            let rows = stmt.query_map([], project_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Add literal secrets to redact from every spec submitted from now on.
    pub(crate) fn add_secret_values(&self, values: &[String]) {
        let mut known = self
            .secret_values
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for value in values {
            if !known.contains(value) {
                known.push(value.clone());
            }
        }
    }

    /// The literal secrets given to [`SqliteStore::add_secret_values`].
    pub(crate) fn secret_values(&self) -> Vec<String> {
        self.secret_values
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) async fn submit(&self, submission: &Submission, op: Op<'_>) -> Result<Vec<TaskId>> {
        for (index, task) in submission.tasks.iter().enumerate() {
            if let Some(bad) = task.needs_in_batch.iter().find(|&&d| d >= index) {
                return Err(StoreError::Invalid {
                    field: format!("tasks[{index}].needs"),
                    reason: format!(
                        "points at task {bad} of the batch, which is not an earlier task"
                    ),
                });
            }
        }
        let mut submission = submission.clone();
        // The choke point: no secret in a spec reaches the database, whoever submits.
        submission.redact_secrets(&self.secret_values());
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let ids = submit(&tx, &submission, &op)?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    pub(crate) async fn submit_once(
        &self,
        deliveries: &[Delivery],
        submission: &Submission,
        op: Op<'_>,
    ) -> Result<SubmittedOnce> {
        if deliveries.is_empty() || submission.tasks.is_empty() {
            return Err(StoreError::Invalid {
                field: "delivery".into(),
                reason: "submit_once needs at least one delivery id and one task".into(),
            });
        }
        let deliveries = deliveries.to_vec();
        let mut submission = submission.clone();
        submission.redact_secrets(&self.secret_values());
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            // One write transaction: two copies of a delivery arriving at once serialize on the
            // write lock, and the second sees the first's record.
            let tx = immediate(conn)?;
            let mut earlier = None;
            for delivery in &deliveries {
                earlier = tx
                    .prepare_cached(sql!("select_webhook_delivery"))?
                    .query_row(params![delivery.source, delivery.id], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()?;
                if earlier.is_some() {
                    break;
                }
            }
            let (tasks, created) = match earlier {
                Some(task) => (vec![TaskId(task)], false),
                None => (submit(&tx, &submission, &op)?, true),
            };
            // Every id is recorded (a new delivery of a known issue too), so each later replay
            // answers with the same task.
            for delivery in &deliveries {
                tx.prepare_cached(sql!("insert_webhook_delivery"))?
                    .execute(params![delivery.source, delivery.id, tasks[0].0, op.now.0])?;
            }
            tx.commit()?;
            Ok(SubmittedOnce { tasks, created })
        })
        .await
    }

    pub(crate) async fn claim_next(
        &self,
        owner: &str,
        lease: Duration,
        op: Op<'_>,
    ) -> Result<Option<Claim>> {
        let owner = owner.to_owned();
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            // Idle workers poll; a read first keeps an empty queue from taking the write lock.
            if !any_row(conn, sql!("any_queued"), 0)? {
                return Ok(None);
            }
            let tx = immediate(conn)?;
            let claim = claim_next(&tx, &owner, lease, &op)?;
            tx.commit()?;
            Ok(claim)
        })
        .await
    }

    pub(crate) async fn heartbeat(
        &self,
        run: RunId,
        token: FencingToken,
        lease: Duration,
        op: Op<'_>,
    ) -> Result<Timestamp> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let expires = op.now.after(lease);
            // The common case is one statement in autocommit mode.
            let extended: Option<i64> = conn
                .prepare_cached(sql!("heartbeat"))?
                .query_row(
                    params![run.0, fencing::token_hash(&token), expires.0, op.actor],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(at) = extended {
                return Ok(Timestamp(at));
            }
            let tx = immediate(conn)?;
            let err = refuse(&tx, run, token, "heartbeat", &op)?;
            tx.commit()?;
            Err(err)
        })
        .await
    }

    pub(crate) async fn check_lease(
        &self,
        run: RunId,
        token: FencingToken,
        what: &str,
        op: Op<'_>,
    ) -> Result<Run> {
        let what = what.to_owned();
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            if fencing::holding(conn, run, &token, &op.actor)? == fencing::Holding::Active {
                return conn
                    .prepare_cached(sql!("select_run"))?
                    .query_row([run.0], run_from_row)?;
            }
            let tx = immediate(conn)?;
            let err = refuse(&tx, run, token, &what, &op)?;
            tx.commit()?;
            Err(err)
        })
        .await
    }

    pub(crate) async fn complete(
        &self,
        run: RunId,
        token: FencingToken,
        outcome: Outcome,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        let reason = reason.map(str::to_owned);
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let result = complete(&tx, run, token, outcome, reason.as_deref(), &op);
            // A refusal is recorded as an event, so it commits too.
            tx.commit()?;
            result
        })
        .await
    }

    pub(crate) async fn requeue(
        &self,
        run: RunId,
        token: FencingToken,
        delay: Duration,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        let reason = reason.map(str::to_owned);
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let Some(task) = end_run(&tx, run, token, RunState::Requeued, reason.as_deref(), &op)?
            else {
                let err = refuse(&tx, run, token, "requeue", &op)?;
                tx.commit()?;
                return Err(err);
            };
            let brief = task_brief(&tx, task)?;
            // A requeue is not the task's fault (a rate limit, a shutdown): the attempt is given back.
            tx.prepare_cached(sql!("set_task_attempts"))?
                .execute(params![
                    task.0,
                    i64::from(brief.attempts_used.saturating_sub(1))
                ])?;
            move_task(
                &tx,
                task,
                brief.status,
                EventKind::Requeue,
                Status::RetryWait,
                reason.as_deref(),
                Some(op.now.after(delay)),
                Some(run),
                &op,
            )?;
            tx.commit()?;
            Ok(Status::RetryWait)
        })
        .await
    }

    pub(crate) async fn recover_expired(&self, op: Op<'_>) -> Result<Vec<Recovered>> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            // A cheap read first: most passes find nothing and should not take the write lock.
            if !any_row(conn, sql!("select_expired_runs"), op.now.0)? {
                return Ok(Vec::new());
            }
            let tx = immediate(conn)?;
            let recovered = recover_expired(&tx, &op)?;
            tx.commit()?;
            Ok(recovered)
        })
        .await
    }

    pub(crate) async fn release_owner(&self, prefix: &str, op: Op<'_>) -> Result<Vec<Recovered>> {
        let prefix = prefix.to_owned();
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let runs: Vec<i64> = {
                let mut stmt = tx.prepare_cached(sql!("select_active_runs_of_owner"))?;
                let ids = stmt
                    .query_map([&prefix], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                ids
            };
            let recovered = lose_runs(&tx, runs, "its worker restarted", &op)?;
            tx.commit()?;
            Ok(recovered)
        })
        .await
    }

    pub(crate) async fn promote_due(&self, op: Op<'_>) -> Result<Vec<TaskId>> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            if !any_row(conn, sql!("select_due_retries"), op.now.0)? {
                return Ok(Vec::new());
            }
            let tx = immediate(conn)?;
            let due: Vec<i64> = query_ids(&tx, sql!("select_due_retries"), op.now.0)?;
            let mut promoted = Vec::with_capacity(due.len());
            for id in due {
                let task = TaskId(id);
                move_task(
                    &tx,
                    task,
                    Status::RetryWait,
                    EventKind::RetryDue,
                    Status::Queued,
                    None,
                    None,
                    None,
                    &op,
                )?;
                promoted.push(task);
            }
            tx.commit()?;
            Ok(promoted)
        })
        .await
    }

    pub(crate) async fn cancel(
        &self,
        task: TaskId,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        let reason = reason.map(str::to_owned);
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let brief = task_brief(&tx, task)?;
            if !lifecycle::can(brief.status, EventKind::Cancel) {
                return Err(StoreError::Conflict {
                    task,
                    status: brief.status,
                    message: "only tasks that have not finished can be cancelled".into(),
                });
            }
            let run: Option<i64> = tx
                .prepare_cached(sql!("end_active_run_of_task"))?
                .query_row(
                    params![
                        task.0,
                        RunState::Cancelled.as_str(),
                        op.now.0,
                        reason.as_deref().unwrap_or("cancelled")
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            move_task(
                &tx,
                task,
                brief.status,
                EventKind::Cancel,
                Status::Cancelled,
                reason.as_deref(),
                None,
                run.map(RunId),
                &op,
            )?;
            reevaluate_dependents(&tx, task, &op)?;
            tx.commit()?;
            Ok(Status::Cancelled)
        })
        .await
    }

    pub(crate) async fn retry(
        &self,
        task: TaskId,
        delay: Option<Duration>,
        op: Op<'_>,
    ) -> Result<Status> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let brief = task_brief(&tx, task)?;
            if !lifecycle::can(brief.status, EventKind::Retry) {
                let hint = match brief.status {
                    Status::Done => "it is done",
                    Status::Blocked => "it is blocked by a dependency; retry that dependency instead",
                    Status::RetryWait => "it already waits for its next attempt",
                    _ => "it has not finished; only failed, needs_review or cancelled tasks can be retried",
                };
                return Err(StoreError::Conflict { task, status: brief.status, message: format!("cannot retry: {hint}") });
            }
            tx.prepare_cached(sql!("set_task_attempts"))?.execute(params![task.0, 0_i64])?;
            let (state, block_reason) = dependency_state(&tx, task)?;
            let resting = state.resting_status();
            let (to, not_before, reason) = match delay {
                Some(delay) if resting == Status::Queued => (Status::RetryWait, Some(op.now.after(delay)), None),
                _ => (resting, None, block_reason),
            };
            move_task(&tx, task, brief.status, EventKind::Retry, to, reason.as_deref(), not_before, None, &op)?;
            if to == Status::Queued {
                gate_for_approval(&tx, task, &op)?;
            }
            reevaluate_dependents(&tx, task, &op)?;
            let status = task_brief(&tx, task)?.status;
            tx.commit()?;
            Ok(status)
        })
        .await
    }

    pub(crate) async fn unblock(&self, task: TaskId, op: Op<'_>) -> Result<Status> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let brief = task_brief(&tx, task)?;
            if brief.status != Status::Blocked {
                return Err(StoreError::Conflict {
                    task,
                    status: brief.status,
                    message: "only blocked tasks can be unblocked".into(),
                });
            }
            // Going ahead without the dependencies that block it: they are waived, not deleted,
            // so `orch task get` still shows them and the event names them.
            let mut stmt = tx.prepare_cached(sql!("waive_blocking_dependencies"))?;
            let waived = stmt
                .query_map([task.0], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            let (state, _) = dependency_state(&tx, task)?;
            let to = state.resting_status();
            let reason = if waived.is_empty() {
                None
            } else {
                let names: Vec<String> = waived.iter().map(ToString::to_string).collect();
                Some(format!(
                    "unblocked by hand; going ahead without dependencies {}",
                    names.join(", ")
                ))
            };
            move_task(
                &tx,
                task,
                Status::Blocked,
                EventKind::Unblock,
                to,
                reason.as_deref(),
                None,
                None,
                &op,
            )?;
            if to == Status::Queued {
                gate_for_approval(&tx, task, &op)?;
            }
            reevaluate_dependents(&tx, task, &op)?;
            let status = task_brief(&tx, task)?.status;
            tx.commit()?;
            Ok(status)
        })
        .await
    }

    pub(crate) async fn approve(&self, task: TaskId, op: Op<'_>) -> Result<Status> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let brief = task_brief(&tx, task)?;
            if brief.status == Status::AwaitingApproval {
                tx.prepare_cached(sql!("set_task_approved"))?
                    .execute([task.0])?;
                move_task(
                    &tx,
                    task,
                    brief.status,
                    EventKind::Approve,
                    Status::Queued,
                    None,
                    None,
                    None,
                    &op,
                )?;
            } else if brief.approved
                || !brief.requires_approval
                || brief.status.is_finished()
                || brief.status == Status::Running
            {
                return Err(StoreError::Conflict {
                    task,
                    status: brief.status,
                    message: "it is not waiting for approval".into(),
                });
            } else {
                // Approving ahead of time: the task runs as soon as its dependencies are done,
                // without stopping for approval again.
                tx.prepare_cached(sql!("set_task_approved"))?
                    .execute([task.0])?;
            }
            let status = task_brief(&tx, task)?.status;
            tx.commit()?;
            Ok(status)
        })
        .await
    }

    pub(crate) async fn task(&self, task: TaskId) -> Result<Task> {
        self.call(move |conn| load_task(conn, task)).await
    }

    pub(crate) async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        let filter = filter.clone();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("list_tasks"))?;
            let rows = stmt.query_map(
                params![
                    filter.status.map(Status::as_str),
                    filter.project.map(|p| p.0),
                    filter.workflow.map(|w| w.0),
                    filter.limit.map_or(-1, i64::from),
                ],
                task_from_row,
            )?;
            let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().collect()
        })
        .await
    }

    pub(crate) async fn run(&self, run: RunId) -> Result<Run> {
        self.call(move |conn| {
            conn.prepare_cached(sql!("select_run"))?
                .query_row([run.0], run_from_row)
                .optional()?
                .ok_or(StoreError::RunNotFound(run))?
        })
        .await
    }

    pub(crate) async fn is_holder(
        &self,
        run: RunId,
        token: FencingToken,
        actor: &str,
    ) -> Result<bool> {
        let actor = actor.to_owned();
        self.call(move |conn| {
            Ok(fencing::holding(conn, run, &token, &actor)? != fencing::Holding::Not)
        })
        .await
    }

    pub(crate) async fn runs(&self, task: TaskId) -> Result<Vec<Run>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_runs_of_task"))?;
            let rows = stmt
                .query_map([task.0], run_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().collect()
        })
        .await
    }

    pub(crate) async fn events(&self, task: TaskId) -> Result<Vec<Event>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_events_of_task"))?;
            let rows = stmt
                .query_map([task.0], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().collect()
        })
        .await
    }

    pub(crate) async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<FeedEvent>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_events_after"))?;
            let rows = stmt
                .query_map(params![after, limit], |row| {
                    let workflow = row.get::<_, Option<i64>>("workflow_id")?.map(WorkflowId);
                    Ok(event_from_row(row)?.map(|event| FeedEvent { event, workflow }))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().collect()
        })
        .await
    }

    pub(crate) async fn last_event_id(&self) -> Result<i64> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("select_last_event_id"))?;
            Ok(stmt.query_row([], |row| row.get::<_, i64>(0))?)
        })
        .await
    }

    pub(crate) async fn status_counts(&self) -> Result<BTreeMap<Status, u64>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("count_by_status"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut counts = BTreeMap::new();
            for (status, n) in rows {
                let status =
                    Status::from_str(&status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                counts.insert(status, u64::try_from(n).unwrap_or(0));
            }
            Ok(counts)
        })
        .await
    }

    pub(crate) async fn check_consistency(&self) -> Result<Vec<Problem>> {
        self.call(|conn| {
            // One read transaction, so events, tasks and runs are one snapshot.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let problems = check_consistency(&tx)?;
            tx.rollback()?;
            Ok(problems)
        })
        .await
    }
}

/// Whether a one-parameter query finds anything (a read, without the write lock).
fn any_row(conn: &Connection, sql: &str, arg: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([arg], |_| Ok(()))
        .optional()?
        .is_some())
}

fn query_ids(conn: &Connection, sql: &str, arg: i64) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let ids = stmt
        .query_map([arg], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

fn submit(conn: &Connection, submission: &Submission, op: &OwnedOp) -> Result<Vec<TaskId>> {
    let workflow_id: Option<i64> = match &submission.workflow {
        Some((name, source)) => Some(
            conn.prepare_cached(sql!("insert_workflow"))?
                .query_row(params![submission.project.0, name, source, op.now.0], |r| {
                    r.get(0)
                })?,
        ),
        None => None,
    };
    let mut ids: Vec<TaskId> = Vec::with_capacity(submission.tasks.len());
    for task in &submission.tasks {
        let mut deps: Vec<TaskId> = task.needs_in_batch.iter().map(|&i| ids[i]).collect();
        for existing in &task.needs_existing {
            if !deps.contains(existing) {
                deps.push(*existing);
            }
        }
        let spec_json = serde_json::to_string(&task.spec)
            .map_err(|e| StoreError::Corrupt(format!("task spec does not serialize: {e}")))?;
        let id: i64 = conn.prepare_cached(sql!("insert_task"))?.query_row(
            params![
                submission.project.0,
                workflow_id,
                task.parent.map(|p| p.0),
                task.spec.key.as_deref(),
                task.spec.title.as_str(),
                task.spec.priority,
                spec_json,
                // Inserted as waiting; the create event below records where it really starts.
                Status::Waiting.as_str(),
                Option::<&str>::None,
                i64::from(task.spec.retry.max_attempts),
                op.now.0,
            ],
            |r| r.get(0),
        )?;
        let id = TaskId(id);
        for dep in &deps {
            conn.prepare_cached(sql!("insert_task_dep"))?
                .execute(params![id.0, dep.0])
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                    {
                        StoreError::Invalid {
                            field: "needs".into(),
                            reason: format!("task {dep} does not exist"),
                        }
                    }
                    other => other.into(),
                })?;
        }
        let (state, reason) = dependency_state(conn, id)?;
        let start = state.resting_status();
        lifecycle::transition(None, EventKind::Create, start)
            .map_err(|source| StoreError::Transition { task: id, source })?;
        set_status(
            conn,
            id,
            Status::Waiting,
            start,
            reason.as_deref(),
            None,
            op.now,
        )?;
        insert_event(
            conn,
            id,
            None,
            op,
            EventKind::Create,
            None,
            start,
            reason.as_deref(),
            None,
        )?;
        if start == Status::Queued {
            gate_for_approval(conn, id, op)?;
        }
        ids.push(id);
    }
    Ok(ids)
}

fn claim_next(
    conn: &Connection,
    owner: &str,
    lease: Duration,
    op: &OwnedOp,
) -> Result<Option<Claim>> {
    let Some((task_id, attempt)) = conn
        .prepare_cached(sql!("claim_next"))?
        .query_row([op.now.0], |r| Ok((TaskId(r.get(0)?), r.get::<_, i64>(1)?)))
        .optional()?
    else {
        return Ok(None);
    };
    let expires = op.now.after(lease);
    // A fresh secret per claim; only its hash is stored, only the claim answer carries it.
    let token = fencing::new_token();
    let run_id = conn.prepare_cached(sql!("insert_run"))?.query_row(
        params![
            task_id.0,
            attempt,
            owner,
            expires.0,
            op.now.0,
            fencing::token_hash(&token)
        ],
        |r| Ok(RunId(r.get(0)?)),
    )?;
    lifecycle::transition(Some(Status::Queued), EventKind::Claim, Status::Running).map_err(
        |source| StoreError::Transition {
            task: task_id,
            source,
        },
    )?;
    // A fingerprint, never the secret: it tells this claim's token apart in refusals.
    let data = serde_json::json!({
        "owner": owner, "attempt": attempt, "token": fencing::fingerprint(&token),
    });
    insert_event(
        conn,
        task_id,
        Some(run_id),
        op,
        EventKind::Claim,
        Some(Status::Queued),
        Status::Running,
        None,
        Some(&data),
    )?;
    let task = load_task(conn, task_id)?;
    let run = Run {
        id: run_id,
        task: task_id,
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        lease: Lease {
            owner: owner.to_owned(),
            expires_at: expires,
        },
        state: RunState::Active,
        started_at: op.now,
        ended_at: None,
        outcome: None,
    };
    let reply = agents::pending_reply(conn, task.id)?;
    Ok(Some(Claim {
        task,
        run,
        token,
        reply,
    }))
}

fn complete(
    conn: &Connection,
    run: RunId,
    token: FencingToken,
    outcome: Outcome,
    reason: Option<&str>,
    op: &OwnedOp,
) -> Result<Status> {
    let run_state = match outcome {
        Outcome::Succeeded => RunState::Succeeded,
        Outcome::Failed | Outcome::FailedPermanently => RunState::Failed,
        Outcome::NeedsReview => RunState::Escalated,
    };
    let Some(task) = end_run(conn, run, token, run_state, reason, op)? else {
        return Err(refuse(conn, run, token, "completion", op)?);
    };
    let brief = task_brief(conn, task)?;
    let (kind, to, not_before) = match outcome {
        Outcome::Succeeded => (EventKind::Complete, Status::Done, None),
        Outcome::NeedsReview => (EventKind::Escalate, Status::NeedsReview, None),
        Outcome::FailedPermanently => (EventKind::Fail, Status::Failed, None),
        Outcome::Failed => {
            let to = lifecycle::decide_after_failure(brief.attempts_used, brief.max_attempts);
            let not_before = (to == Status::RetryWait).then(|| {
                op.now
                    .after(brief.retry.backoff(brief.attempts_used, op.jitter_unit))
            });
            (EventKind::Fail, to, not_before)
        }
    };
    move_task(
        conn,
        task,
        brief.status,
        kind,
        to,
        reason,
        not_before,
        Some(run),
        op,
    )?;
    if to == Status::Done {
        agents::answer_replies(conn, task, run)?;
    }
    reevaluate_dependents(conn, task, op)?;
    Ok(to)
}

fn recover_expired(conn: &Connection, op: &OwnedOp) -> Result<Vec<Recovered>> {
    let expired = query_ids(conn, sql!("select_expired_runs"), op.now.0)?;
    lose_runs(conn, expired, "its lease expired without a heartbeat", op)
}

/// Mark these active runs lost and send their tasks to `retry_wait` (or `needs_review`).
fn lose_runs(conn: &Connection, runs: Vec<i64>, why: &str, op: &OwnedOp) -> Result<Vec<Recovered>> {
    let mut recovered = Vec::with_capacity(runs.len());
    for run_id in runs {
        let run = RunId(run_id);
        let Some(task) = conn
            .prepare_cached(sql!("end_active_run_of_task_by_run"))?
            .query_row(
                params![run.0, RunState::Lost.as_str(), op.now.0, why],
                |r| r.get(0),
            )
            .optional()?
            .map(TaskId)
        else {
            continue;
        };
        let brief = task_brief(conn, task)?;
        let to = lifecycle::decide_after_lost_lease(brief.attempts_used, brief.max_attempts);
        let not_before = (to == Status::RetryWait).then(|| {
            op.now
                .after(brief.retry.backoff(brief.attempts_used, op.jitter_unit))
        });
        let reason = if to == Status::NeedsReview {
            format!(
                "run {run} was lost ({why}) on attempt {} of {}; no attempts are left",
                brief.attempts_used, brief.max_attempts
            )
        } else {
            format!("run {run} was lost: {why}")
        };
        move_task(
            conn,
            task,
            brief.status,
            EventKind::Lose,
            to,
            Some(&reason),
            not_before,
            Some(run),
            op,
        )?;
        reevaluate_dependents(conn, task, op)?;
        recovered.push(Recovered {
            run,
            task,
            status: to,
        });
    }
    Ok(recovered)
}

fn check_consistency(conn: &Connection) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let stored: Vec<(i64, String)> = conn
        .prepare_cached(sql!("select_task_statuses"))?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut by_task: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached(sql!("select_all_events"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let task: i64 = row.get("task_id")?;
            match event_from_row(row)? {
                Ok(event) => by_task.entry(task).or_default().push(event),
                Err(e) => problems.push(Problem {
                    task: TaskId(task),
                    message: format!("unreadable event: {e}"),
                }),
            }
        }
    }
    let mut active_by_task: BTreeMap<i64, usize> = BTreeMap::new();
    for task in query_ids(conn, sql!("select_active_run_tasks"), 0)? {
        *active_by_task.entry(task).or_default() += 1;
    }
    for (id, status_text) in stored {
        let task = TaskId(id);
        let Ok(status) = Status::from_str(&status_text) else {
            problems.push(Problem {
                task,
                message: format!("stored status `{status_text}` is not a status"),
            });
            continue;
        };
        let events = by_task.remove(&id).unwrap_or_default();
        match orch_core::replay::replay(&events) {
            Ok(replayed) if replayed == status => {}
            Ok(replayed) => problems.push(Problem {
                task,
                message: format!("the task is {status} but its events replay to {replayed}"),
            }),
            Err(e) => problems.push(Problem {
                task,
                message: format!("its events do not replay: {e}"),
            }),
        }
        let runs = active_by_task.get(&id).copied().unwrap_or(0);
        let holds_a_run = matches!(status, Status::Running | Status::AwaitingInput);
        if holds_a_run && runs != 1 {
            problems.push(Problem {
                task,
                message: format!("the task is {status} but has {runs} active runs (expected 1)"),
            });
        } else if !holds_a_run && runs > 0 {
            problems.push(Problem {
                task,
                message: format!("the task is {status} but still has {runs} active run(s)"),
            });
        }
        if matches!(status, Status::Waiting | Status::Blocked | Status::Queued) {
            let (deps, _) = dependency_state(conn, task)?;
            let expected = deps.resting_status();
            if expected != status {
                problems.push(Problem {
                    task,
                    message: format!(
                        "the task is {status} but its dependencies ({} of {} done, {} blocking) say it should be {expected}",
                        deps.done, deps.total, deps.blocking
                    ),
                });
            }
        }
    }
    for (task, _) in by_task {
        problems.push(Problem {
            task: TaskId(task),
            message: "events exist for a task that does not".into(),
        });
    }
    Ok(problems)
}

/// The few columns decisions need.
struct Brief {
    status: Status,
    attempts_used: u32,
    max_attempts: u32,
    approved: bool,
    requires_approval: bool,
    retry: orch_core::RetryPolicy,
}

fn task_brief(conn: &Connection, task: TaskId) -> Result<Brief> {
    let row = conn
        .prepare_cached(sql!("select_task_retry"))?
        .query_row([task.0], |r| {
            Ok((
                r.get::<_, String>("status")?,
                r.get::<_, i64>("attempts_used")?,
                r.get::<_, i64>("max_attempts")?,
                r.get::<_, i64>("approved")?,
                r.get::<_, String>("spec")?,
            ))
        })
        .optional()?
        .ok_or(StoreError::TaskNotFound(task))?;
    let (status, attempts_used, max_attempts, approved, spec) = row;
    let policy = serde_json::from_str::<rows::SpecPolicy>(&spec)
        .map_err(|e| StoreError::Corrupt(format!("task {task} spec: {e}")))?;
    Ok(Brief {
        status: Status::from_str(&status).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts_used: u32::try_from(attempts_used).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(1),
        approved: approved != 0,
        requires_approval: policy.requires_approval,
        retry: policy.retry,
    })
}

fn load_task(conn: &Connection, task: TaskId) -> Result<Task> {
    conn.prepare_cached(sql!("select_task"))?
        .query_row([task.0], task_from_row)
        .optional()?
        .ok_or(StoreError::TaskNotFound(task))?
}

#[allow(clippy::too_many_arguments)]
fn insert_event(
    conn: &Connection,
    task: TaskId,
    run: Option<RunId>,
    op: &OwnedOp,
    kind: EventKind,
    from: Option<Status>,
    to: Status,
    reason: Option<&str>,
    data: Option<&serde_json::Value>,
) -> Result<()> {
    let data = data.map_or_else(|| "{}".to_owned(), ToString::to_string);
    conn.prepare_cached(sql!("insert_event"))?.execute(params![
        task.0,
        run.map(|r| r.0),
        op.now.0,
        op.actor,
        kind.as_str(),
        from.map(Status::as_str),
        to.as_str(),
        reason,
        data,
    ])?;
    Ok(())
}

fn set_status(
    conn: &Connection,
    task: TaskId,
    from: Status,
    to: Status,
    reason: Option<&str>,
    not_before: Option<Timestamp>,
    now: Timestamp,
) -> Result<()> {
    let changed = conn
        .prepare_cached(sql!("set_task_status"))?
        .execute(params![
            task.0,
            from.as_str(),
            to.as_str(),
            reason,
            not_before.map(|t| t.0),
            now.0,
        ])?;
    if changed == 0 {
        let status = task_brief(conn, task)?.status;
        return Err(StoreError::Conflict {
            task,
            status,
            message: format!("expected it to be {from}; it changed underneath this operation"),
        });
    }
    Ok(())
}

/// Check a transition against the table, store it conditionally, and log it.
#[allow(clippy::too_many_arguments)]
fn move_task(
    conn: &Connection,
    task: TaskId,
    from: Status,
    kind: EventKind,
    to: Status,
    reason: Option<&str>,
    not_before: Option<Timestamp>,
    run: Option<RunId>,
    op: &OwnedOp,
) -> Result<()> {
    lifecycle::transition(Some(from), kind, to)
        .map_err(|source| StoreError::Transition { task, source })?;
    set_status(conn, task, from, to, reason, not_before, op.now)?;
    insert_event(conn, task, run, op, kind, Some(from), to, reason, None)
}

/// A task that just became `queued` stops for approval if it needs one it does not have.
fn gate_for_approval(conn: &Connection, task: TaskId, op: &OwnedOp) -> Result<()> {
    let brief = task_brief(conn, task)?;
    if brief.status == Status::Queued && brief.requires_approval && !brief.approved {
        move_task(
            conn,
            task,
            Status::Queued,
            EventKind::RequestApproval,
            Status::AwaitingApproval,
            Some("waits for `orch task approve`"),
            None,
            None,
            op,
        )?;
    }
    Ok(())
}

/// Summarize a task's dependencies, with a sentence naming the first blocking one.
fn dependency_state(conn: &Connection, task: TaskId) -> Result<(DependencyState, Option<String>)> {
    let mut stmt = conn.prepare_cached(sql!("select_dependencies"))?;
    let rows = stmt
        .query_map([task.0], |r| {
            Ok((
                r.get::<_, i64>("id")?,
                r.get::<_, Option<String>>("key")?,
                r.get::<_, String>("title")?,
                r.get::<_, String>("status")?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut state = DependencyState {
        total: rows.len(),
        ..DependencyState::default()
    };
    let mut reason = None;
    for (id, key, title, status) in rows {
        let status = Status::from_str(&status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if status == Status::Done {
            state.done += 1;
        } else if status.blocks_dependents() {
            state.blocking += 1;
            if reason.is_none() {
                let name = key.unwrap_or(title);
                reason = Some(format!("dependency {id} (`{name}`) is {status}"));
            }
        }
    }
    Ok((state, reason))
}

/// After a task's status changed, move its `waiting`/`blocked` dependents to where their
/// dependencies now put them, and so on down the graph.
fn reevaluate_dependents(conn: &Connection, changed: TaskId, op: &OwnedOp) -> Result<()> {
    let mut work = vec![changed];
    while let Some(task) = work.pop() {
        for id in query_ids(conn, sql!("select_dependents"), task.0)? {
            let dependent = TaskId(id);
            let brief = task_brief(conn, dependent)?;
            if !matches!(brief.status, Status::Waiting | Status::Blocked) {
                continue;
            }
            let (state, reason) = dependency_state(conn, dependent)?;
            let to = state.resting_status();
            if to == brief.status {
                // Still blocked, perhaps by another dependency or for another reason: keep the
                // reason true. (Not a transition, so no event.)
                if to == Status::Blocked {
                    conn.prepare_cached(sql!("set_task_reason"))?
                        .execute(params![dependent.0, reason])?;
                }
                continue;
            }
            let kind = match (brief.status, to) {
                (_, Status::Queued) => EventKind::Promote,
                (Status::Waiting, Status::Blocked) => EventKind::Block,
                (Status::Blocked, Status::Waiting) => EventKind::DepWait,
                _ => continue,
            };
            move_task(
                conn,
                dependent,
                brief.status,
                kind,
                to,
                reason.as_deref(),
                None,
                None,
                op,
            )?;
            if to == Status::Queued {
                gate_for_approval(conn, dependent, op)?;
            }
            // Blocking is transitive; so is its end.
            if to == Status::Blocked || brief.status == Status::Blocked {
                work.push(dependent);
            }
        }
    }
    Ok(())
}

/// End the run if `token` still holds its lease; returns its task, or `None` if refused.
fn end_run(
    conn: &Connection,
    run: RunId,
    token: FencingToken,
    state: RunState,
    reason: Option<&str>,
    op: &OwnedOp,
) -> Result<Option<TaskId>> {
    let task: Option<i64> = conn
        .prepare_cached(sql!("end_run"))?
        .query_row(
            params![
                run.0,
                fencing::token_hash(&token),
                state.as_str(),
                op.now.0,
                reason,
                op.actor
            ],
            |r| r.get(0),
        )
        .optional()?;
    Ok(task.map(TaskId))
}
