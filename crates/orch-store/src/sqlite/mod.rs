//! The SQLite backend: one database file in WAL mode, written with `BEGIN IMMEDIATE`.
//!
//! Every write transaction takes the write lock before its first read, so two claimers can
//! never both read the same queued task and then deadlock upgrading their locks; the loser waits
//! on the busy timeout and then sees the winner's commit.

mod rows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use orch_core::lifecycle::{self, DependencyState, EventKind};
use orch_core::{
    Event, FencingToken, Lease, Outcome, Run, RunId, RunState, Status, Task, TaskId, Timestamp,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::{Claim, Op, Problem, Project, Recovered, Result, StoreError, Submission, TaskFilter};
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
    /// How long a writer waits for the lock before giving up.
    pub busy_timeout: Duration,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// Durability setting.
    pub synchronous: Synchronous,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(30),
            max_connections: 4,
            synchronous: Synchronous::Normal,
        }
    }
}

/// A store on one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

impl SqliteStore {
    /// Open the database at `path`, creating it and applying migrations as needed.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                context: format!("create the directory {}", parent.display()),
                source,
            })?;
        }
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.synchronous {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.busy_timeout + Duration::from_secs(5))
            .connect_with(connect)
            .await?;
        migrate(&pool, path).await?;
        Ok(SqliteStore {
            pool,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn ensure_project(&self, path: &str, now: Timestamp) -> Result<Project> {
        if let Some(row) = sqlx::query(sql!("select_project_by_path"))
            .bind(path)
            .fetch_optional(&self.pool)
            .await?
        {
            return project_from_row(&row);
        }
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        if let Some(row) = sqlx::query(sql!("select_project_by_path"))
            .bind(path)
            .fetch_optional(&mut *tx)
            .await?
        {
            return project_from_row(&row);
        }
        let base = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .unwrap_or("project")
            .to_owned();
        let mut name = base.clone();
        let mut suffix = 2;
        while sqlx::query(sql!("select_project_by_name"))
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            name = format!("{base}-{suffix}");
            suffix += 1;
        }
        let row = sqlx::query(sql!("insert_project"))
            .bind(&name)
            .bind(path)
            .bind(now.0)
            .fetch_one(&mut *tx)
            .await?;
        let project = project_from_row(&row)?;
        tx.commit().await?;
        Ok(project)
    }

    pub(crate) async fn projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(sql!("select_projects"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(project_from_row).collect()
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
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let workflow_id: Option<i64> = match &submission.workflow {
            Some((name, source)) => Some(
                sqlx::query(sql!("insert_workflow"))
                    .bind(submission.project.0)
                    .bind(name)
                    .bind(source)
                    .bind(op.now.0)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?,
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
            let id: i64 = sqlx::query(sql!("insert_task"))
                .bind(submission.project.0)
                .bind(workflow_id)
                .bind(task.parent.map(|p| p.0))
                .bind(task.spec.key.as_deref())
                .bind(task.spec.title.as_str())
                .bind(task.spec.priority)
                .bind(&spec_json)
                // Inserted as waiting; the create event below records where it really starts.
                .bind(Status::Waiting.as_str())
                .bind(Option::<&str>::None)
                .bind(i64::from(task.spec.retry.max_attempts))
                .bind(op.now.0)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            let id = TaskId(id);
            for dep in &deps {
                sqlx::query(sql!("insert_task_dep"))
                    .bind(id.0)
                    .bind(dep.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                            StoreError::Invalid {
                                field: "needs".into(),
                                reason: format!("task {dep} does not exist"),
                            }
                        }
                        other => other.into(),
                    })?;
            }
            let (state, reason) = dependency_state(&mut tx, id).await?;
            let start = state.resting_status();
            set_status(
                &mut tx,
                id,
                Status::Waiting,
                start,
                reason.as_deref(),
                None,
                op.now,
            )
            .await?;
            insert_event(
                &mut tx,
                id,
                None,
                op,
                EventKind::Create,
                None,
                start,
                reason.as_deref(),
                None,
            )
            .await?;
            if start == Status::Queued {
                gate_for_approval(&mut tx, id, op).await?;
            }
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    pub(crate) async fn claim_next(
        &self,
        owner: &str,
        lease: Duration,
        op: Op<'_>,
    ) -> Result<Option<Claim>> {
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let Some(row) = sqlx::query(sql!("claim_next"))
            .bind(op.now.0)
            .fetch_optional(&mut *tx)
            .await?
        else {
            // Nothing to claim; ending the read-only transaction either way is fine.
            tx.rollback().await?;
            return Ok(None);
        };
        let task_id = TaskId(row.try_get(0)?);
        let attempt: i64 = row.try_get(1)?;
        let expires = op.now.after(lease);
        let run_row = sqlx::query(sql!("insert_run"))
            .bind(task_id.0)
            .bind(attempt)
            .bind(owner)
            .bind(expires.0)
            .bind(op.now.0)
            .fetch_one(&mut *tx)
            .await?;
        let run_id = RunId(run_row.try_get(0)?);
        let token = FencingToken(run_row.try_get(1)?);
        lifecycle::transition(Some(Status::Queued), EventKind::Claim, Status::Running).map_err(
            |source| StoreError::Transition {
                task: task_id,
                source,
            },
        )?;
        let data = serde_json::json!({ "owner": owner, "attempt": attempt, "token": token.0 });
        insert_event(
            &mut tx,
            task_id,
            Some(run_id),
            op,
            EventKind::Claim,
            Some(Status::Queued),
            Status::Running,
            None,
            Some(&data),
        )
        .await?;
        let task = load_task(&mut tx, task_id).await?;
        tx.commit().await?;
        let run = Run {
            id: run_id,
            task: task_id,
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            lease: Lease {
                owner: owner.to_owned(),
                expires_at: expires,
                token,
            },
            state: RunState::Active,
            started_at: op.now,
            ended_at: None,
            outcome: None,
        };
        Ok(Some(Claim { task, run }))
    }

    pub(crate) async fn heartbeat(
        &self,
        run: RunId,
        token: FencingToken,
        lease: Duration,
        op: Op<'_>,
    ) -> Result<Timestamp> {
        let expires = op.now.after(lease);
        // The common case is one statement in autocommit mode: no transaction round trips.
        if let Some(row) = sqlx::query(sql!("heartbeat"))
            .bind(run.0)
            .bind(token.0)
            .bind(expires.0)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(Timestamp(row.try_get(0)?));
        }
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let err = refuse(&mut tx, run, token, "heartbeat", op).await?;
        tx.commit().await?;
        Err(err)
    }

    pub(crate) async fn complete(
        &self,
        run: RunId,
        token: FencingToken,
        outcome: Outcome,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        let run_state = match outcome {
            Outcome::Succeeded => RunState::Succeeded,
            Outcome::Failed => RunState::Failed,
            Outcome::NeedsReview => RunState::Escalated,
        };
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let Some(task) = end_run(&mut tx, run, token, run_state, reason, op).await? else {
            let err = refuse(&mut tx, run, token, "completion", op).await?;
            tx.commit().await?;
            return Err(err);
        };
        let brief = task_brief(&mut tx, task).await?;
        let (kind, to, not_before) = match outcome {
            Outcome::Succeeded => (EventKind::Complete, Status::Done, None),
            Outcome::NeedsReview => (EventKind::Escalate, Status::NeedsReview, None),
            Outcome::Failed => {
                let to = lifecycle::decide_after_failure(brief.attempts_used, brief.max_attempts);
                let not_before = (to == Status::RetryWait).then(|| {
                    let spec_policy = brief.retry;
                    op.now
                        .after(spec_policy.backoff(brief.attempts_used, op.jitter_unit))
                });
                (EventKind::Fail, to, not_before)
            }
        };
        move_task(
            &mut tx,
            task,
            brief.status,
            kind,
            to,
            reason,
            not_before,
            Some(run),
            op,
        )
        .await?;
        reevaluate_dependents(&mut tx, task, op).await?;
        tx.commit().await?;
        Ok(to)
    }

    pub(crate) async fn requeue(
        &self,
        run: RunId,
        token: FencingToken,
        delay: Duration,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let Some(task) = end_run(&mut tx, run, token, RunState::Requeued, reason, op).await? else {
            let err = refuse(&mut tx, run, token, "requeue", op).await?;
            tx.commit().await?;
            return Err(err);
        };
        let brief = task_brief(&mut tx, task).await?;
        // A requeue is not the task's fault (a rate limit, a shutdown): the attempt is given back.
        sqlx::query(sql!("set_task_attempts"))
            .bind(task.0)
            .bind(i64::from(brief.attempts_used.saturating_sub(1)))
            .execute(&mut *tx)
            .await?;
        move_task(
            &mut tx,
            task,
            brief.status,
            EventKind::Requeue,
            Status::RetryWait,
            reason,
            Some(op.now.after(delay)),
            Some(run),
            op,
        )
        .await?;
        tx.commit().await?;
        Ok(Status::RetryWait)
    }

    pub(crate) async fn recover_expired(&self, op: Op<'_>) -> Result<Vec<Recovered>> {
        // A cheap read first: most passes find nothing and should not take the write lock.
        let any = sqlx::query(sql!("select_expired_runs"))
            .bind(op.now.0)
            .fetch_optional(&self.pool)
            .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let expired: Vec<i64> = sqlx::query_scalar(sql!("select_expired_runs"))
            .bind(op.now.0)
            .fetch_all(&mut *tx)
            .await?;
        let mut recovered = Vec::with_capacity(expired.len());
        for run_id in expired {
            let run = RunId(run_id);
            let Some(row) = sqlx::query(sql!("end_active_run_of_task_by_run"))
                .bind(run.0)
                .bind(RunState::Lost.as_str())
                .bind(op.now.0)
                .bind("lease expired without a heartbeat")
                .fetch_optional(&mut *tx)
                .await?
            else {
                continue;
            };
            let task = TaskId(row.try_get(0)?);
            let brief = task_brief(&mut tx, task).await?;
            let to = lifecycle::decide_after_lost_lease(brief.attempts_used, brief.max_attempts);
            let not_before = (to == Status::RetryWait).then(|| {
                op.now
                    .after(brief.retry.backoff(brief.attempts_used, op.jitter_unit))
            });
            let reason = if to == Status::NeedsReview {
                format!(
                    "the lease of run {run} expired on attempt {} of {}; no attempts are left",
                    brief.attempts_used, brief.max_attempts
                )
            } else {
                format!("the lease of run {run} expired without a heartbeat")
            };
            move_task(
                &mut tx,
                task,
                brief.status,
                EventKind::Lose,
                to,
                Some(&reason),
                not_before,
                Some(run),
                op,
            )
            .await?;
            reevaluate_dependents(&mut tx, task, op).await?;
            recovered.push(Recovered {
                run,
                task,
                status: to,
            });
        }
        tx.commit().await?;
        Ok(recovered)
    }

    pub(crate) async fn promote_due(&self, op: Op<'_>) -> Result<Vec<TaskId>> {
        let any = sqlx::query(sql!("select_due_retries"))
            .bind(op.now.0)
            .fetch_optional(&self.pool)
            .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let due: Vec<i64> = sqlx::query_scalar(sql!("select_due_retries"))
            .bind(op.now.0)
            .fetch_all(&mut *tx)
            .await?;
        let mut promoted = Vec::with_capacity(due.len());
        for id in due {
            let task = TaskId(id);
            move_task(
                &mut tx,
                task,
                Status::RetryWait,
                EventKind::RetryDue,
                Status::Queued,
                None,
                None,
                None,
                op,
            )
            .await?;
            promoted.push(task);
        }
        tx.commit().await?;
        Ok(promoted)
    }

    pub(crate) async fn cancel(
        &self,
        task: TaskId,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> Result<Status> {
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let brief = task_brief(&mut tx, task).await?;
        if !lifecycle::can(brief.status, EventKind::Cancel) {
            return Err(StoreError::Conflict {
                task,
                status: brief.status,
                message: "only tasks that have not finished can be cancelled".into(),
            });
        }
        let run: Option<i64> = sqlx::query_scalar(sql!("end_active_run_of_task"))
            .bind(task.0)
            .bind(RunState::Cancelled.as_str())
            .bind(op.now.0)
            .bind(reason.unwrap_or("cancelled"))
            .fetch_optional(&mut *tx)
            .await?;
        move_task(
            &mut tx,
            task,
            brief.status,
            EventKind::Cancel,
            Status::Cancelled,
            reason,
            None,
            run.map(RunId),
            op,
        )
        .await?;
        reevaluate_dependents(&mut tx, task, op).await?;
        tx.commit().await?;
        Ok(Status::Cancelled)
    }

    pub(crate) async fn retry(
        &self,
        task: TaskId,
        delay: Option<Duration>,
        op: Op<'_>,
    ) -> Result<Status> {
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let brief = task_brief(&mut tx, task).await?;
        if !lifecycle::can(brief.status, EventKind::Retry) {
            let hint = match brief.status {
                Status::Done => "it is done",
                Status::Blocked => "it is blocked by a dependency; retry that dependency instead",
                Status::RetryWait => "it already waits for its next attempt",
                _ => "it has not finished; only failed, needs_review or cancelled tasks can be retried",
            };
            return Err(StoreError::Conflict {
                task,
                status: brief.status,
                message: format!("cannot retry: {hint}"),
            });
        }
        sqlx::query(sql!("set_task_attempts"))
            .bind(task.0)
            .bind(0_i64)
            .execute(&mut *tx)
            .await?;
        let (state, block_reason) = dependency_state(&mut tx, task).await?;
        let resting = state.resting_status();
        let (to, not_before, reason) = match delay {
            Some(delay) if resting == Status::Queued => {
                (Status::RetryWait, Some(op.now.after(delay)), None)
            }
            _ => (resting, None, block_reason),
        };
        move_task(
            &mut tx,
            task,
            brief.status,
            EventKind::Retry,
            to,
            reason.as_deref(),
            not_before,
            None,
            op,
        )
        .await?;
        if to == Status::Queued {
            gate_for_approval(&mut tx, task, op).await?;
        }
        reevaluate_dependents(&mut tx, task, op).await?;
        let status = current_status(&mut tx, task).await?;
        tx.commit().await?;
        Ok(status)
    }

    pub(crate) async fn unblock(&self, task: TaskId, op: Op<'_>) -> Result<Status> {
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let brief = task_brief(&mut tx, task).await?;
        if brief.status != Status::Blocked {
            return Err(StoreError::Conflict {
                task,
                status: brief.status,
                message: "only blocked tasks can be unblocked".into(),
            });
        }
        let (state, reason) = dependency_state(&mut tx, task).await?;
        let to = state.resting_status();
        if to == Status::Blocked {
            return Err(StoreError::Conflict {
                task,
                status: brief.status,
                message: format!(
                    "{}; retry or cancel that dependency first",
                    reason.unwrap_or_else(|| "a dependency still blocks it".into())
                ),
            });
        }
        move_task(
            &mut tx,
            task,
            Status::Blocked,
            EventKind::Unblock,
            to,
            None,
            None,
            None,
            op,
        )
        .await?;
        if to == Status::Queued {
            gate_for_approval(&mut tx, task, op).await?;
        }
        reevaluate_dependents(&mut tx, task, op).await?;
        let status = current_status(&mut tx, task).await?;
        tx.commit().await?;
        Ok(status)
    }

    pub(crate) async fn approve(&self, task: TaskId, op: Op<'_>) -> Result<Status> {
        let mut tx = self.pool.begin_with(BEGIN_IMMEDIATE).await?;
        let brief = task_brief(&mut tx, task).await?;
        sqlx::query(sql!("set_task_approved"))
            .bind(task.0)
            .execute(&mut *tx)
            .await?;
        if brief.status == Status::AwaitingApproval {
            move_task(
                &mut tx,
                task,
                brief.status,
                EventKind::Approve,
                Status::Queued,
                None,
                None,
                None,
                op,
            )
            .await?;
        } else if brief.approved || brief.status.is_finished() || brief.status == Status::Running {
            return Err(StoreError::Conflict {
                task,
                status: brief.status,
                message: "it is not waiting for approval".into(),
            });
        }
        // Approving a task that is still waiting on dependencies is allowed: it runs as soon as
        // they are done, without stopping for approval again.
        let status = current_status(&mut tx, task).await?;
        tx.commit().await?;
        Ok(status)
    }

    pub(crate) async fn task(&self, task: TaskId) -> Result<Task> {
        let mut conn = self.pool.acquire().await?;
        load_task(&mut conn, task).await
    }

    pub(crate) async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        let rows = sqlx::query(sql!("list_tasks"))
            .bind(filter.status.map(Status::as_str))
            .bind(filter.project.map(|p| p.0))
            .bind(filter.workflow.map(|w| w.0))
            .bind(filter.limit.map_or(-1, i64::from))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    pub(crate) async fn run(&self, run: RunId) -> Result<Run> {
        let row = sqlx::query(sql!("select_run"))
            .bind(run.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::RunNotFound(run))?;
        run_from_row(&row)
    }

    pub(crate) async fn runs(&self, task: TaskId) -> Result<Vec<Run>> {
        let rows = sqlx::query(sql!("select_runs_of_task"))
            .bind(task.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    pub(crate) async fn events(&self, task: TaskId) -> Result<Vec<Event>> {
        let rows = sqlx::query(sql!("select_events_of_task"))
            .bind(task.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn status_counts(&self) -> Result<BTreeMap<Status, u64>> {
        let rows = sqlx::query(sql!("count_by_status"))
            .fetch_all(&self.pool)
            .await?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let status: String = row.try_get(0)?;
            let n: i64 = row.try_get(1)?;
            let status =
                Status::from_str(&status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            counts.insert(status, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    pub(crate) async fn check_consistency(&self) -> Result<Vec<Problem>> {
        // One read transaction so the events, tasks and runs are one snapshot.
        let mut tx = self.pool.begin().await?;
        let mut problems = Vec::new();
        let statuses = sqlx::query(sql!("select_task_statuses"))
            .fetch_all(&mut *tx)
            .await?;
        let mut stored: BTreeMap<i64, String> = BTreeMap::new();
        for row in &statuses {
            stored.insert(row.try_get(0)?, row.try_get(1)?);
        }
        let event_rows = sqlx::query(sql!("select_all_events"))
            .fetch_all(&mut *tx)
            .await?;
        let mut by_task: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for row in &event_rows {
            match event_from_row(row) {
                Ok(event) => by_task.entry(event.task.0).or_default().push(event),
                Err(e) => {
                    let task: i64 = row.try_get(1)?;
                    problems.push(Problem {
                        task: TaskId(task),
                        message: format!("unreadable event: {e}"),
                    });
                }
            }
        }
        let active = sqlx::query(sql!("select_active_runs"))
            .fetch_all(&mut *tx)
            .await?;
        let mut active_by_task: BTreeMap<i64, usize> = BTreeMap::new();
        for row in &active {
            let task: i64 = row.try_get(1)?;
            *active_by_task.entry(task).or_default() += 1;
        }
        for (&id, status_text) in &stored {
            let task = TaskId(id);
            let Ok(status) = Status::from_str(status_text) else {
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
            match (status, runs) {
                (Status::Running | Status::AwaitingInput, 1) => {}
                (Status::Running | Status::AwaitingInput, n) => problems.push(Problem {
                    task,
                    message: format!("the task is {status} but has {n} active runs (expected 1)"),
                }),
                (_, 0) => {}
                (_, n) => problems.push(Problem {
                    task,
                    message: format!("the task is {status} but still has {n} active run(s)"),
                }),
            }
            if matches!(status, Status::Waiting | Status::Blocked | Status::Queued) {
                let (deps, _) = dependency_state(&mut tx, task).await?;
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
        tx.rollback().await?;
        Ok(problems)
    }
}

/// Apply migrations, serialized across processes by a lock file next to the database: sqlx's
/// migrator takes no lock on SQLite, and two `orch` processes may open a new home at once.
async fn migrate(pool: &SqlitePool, path: &Path) -> Result<()> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".migrate-lock");
    let lock_path = PathBuf::from(lock_path);
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| StoreError::Io {
        context: "lock the database for migration".into(),
        source: std::io::Error::other(e),
    })?
    .map_err(|source| StoreError::Io {
        context: format!("lock {}.migrate-lock", path.display()),
        source,
    })?;
    let result = sqlx::migrate!("./migrations/sqlite").run(pool).await;
    drop(lock);
    result?;
    Ok(())
}

async fn current_status(conn: &mut SqliteConnection, task: TaskId) -> Result<Status> {
    Ok(task_brief(conn, task).await?.status)
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

async fn task_brief(conn: &mut SqliteConnection, task: TaskId) -> Result<Brief> {
    let row = sqlx::query(sql!("select_task_retry"))
        .bind(task.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::TaskNotFound(task))?;
    let status: String = row.try_get("status")?;
    let spec: String = row.try_get("spec")?;
    let policy = serde_json::from_str::<rows::SpecPolicy>(&spec)
        .map_err(|e| StoreError::Corrupt(format!("task {task} spec: {e}")))?;
    Ok(Brief {
        status: Status::from_str(&status).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts_used: u32::try_from(row.try_get::<i64, _>("attempts_used")?).unwrap_or(0),
        max_attempts: u32::try_from(row.try_get::<i64, _>("max_attempts")?).unwrap_or(1),
        approved: row.try_get::<i64, _>("approved")? != 0,
        requires_approval: policy.requires_approval,
        retry: policy.retry,
    })
}

async fn load_task(conn: &mut SqliteConnection, task: TaskId) -> Result<Task> {
    let row = sqlx::query(sql!("select_task"))
        .bind(task.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::TaskNotFound(task))?;
    task_from_row(&row)
}

#[allow(clippy::too_many_arguments)]
async fn insert_event(
    conn: &mut SqliteConnection,
    task: TaskId,
    run: Option<RunId>,
    op: Op<'_>,
    kind: EventKind,
    from: Option<Status>,
    to: Status,
    reason: Option<&str>,
    data: Option<&serde_json::Value>,
) -> Result<()> {
    let data = data.map_or_else(|| "{}".to_owned(), ToString::to_string);
    sqlx::query(sql!("insert_event"))
        .bind(task.0)
        .bind(run.map(|r| r.0))
        .bind(op.now.0)
        .bind(op.actor)
        .bind(kind.as_str())
        .bind(from.map(Status::as_str))
        .bind(to.as_str())
        .bind(reason)
        .bind(data)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn set_status(
    conn: &mut SqliteConnection,
    task: TaskId,
    from: Status,
    to: Status,
    reason: Option<&str>,
    not_before: Option<Timestamp>,
    now: Timestamp,
) -> Result<()> {
    let done = sqlx::query(sql!("set_task_status"))
        .bind(task.0)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(reason)
        .bind(not_before.map(|t| t.0))
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        let status = current_status(conn, task).await?;
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
async fn move_task(
    conn: &mut SqliteConnection,
    task: TaskId,
    from: Status,
    kind: EventKind,
    to: Status,
    reason: Option<&str>,
    not_before: Option<Timestamp>,
    run: Option<RunId>,
    op: Op<'_>,
) -> Result<()> {
    lifecycle::transition(Some(from), kind, to)
        .map_err(|source| StoreError::Transition { task, source })?;
    set_status(conn, task, from, to, reason, not_before, op.now).await?;
    insert_event(conn, task, run, op, kind, Some(from), to, reason, None).await
}

/// A task that just became `queued` stops for approval if it needs one it does not have.
async fn gate_for_approval(conn: &mut SqliteConnection, task: TaskId, op: Op<'_>) -> Result<()> {
    let brief = task_brief(conn, task).await?;
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
        )
        .await?;
    }
    Ok(())
}

/// Summarize a task's dependencies, with a sentence naming the first blocking one.
async fn dependency_state(
    conn: &mut SqliteConnection,
    task: TaskId,
) -> Result<(DependencyState, Option<String>)> {
    let rows = sqlx::query(sql!("select_dependencies"))
        .bind(task.0)
        .fetch_all(&mut *conn)
        .await?;
    let mut state = DependencyState {
        total: rows.len(),
        ..DependencyState::default()
    };
    let mut reason = None;
    for row in &rows {
        let status: String = row.try_get("status")?;
        let status = Status::from_str(&status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if status == Status::Done {
            state.done += 1;
        } else if status.blocks_dependents() {
            state.blocking += 1;
            if reason.is_none() {
                let id: i64 = row.try_get("id")?;
                let key: Option<String> = row.try_get("key")?;
                let title: String = row.try_get("title")?;
                let name = key.unwrap_or(title);
                reason = Some(format!("dependency {id} (`{name}`) is {status}"));
            }
        }
    }
    Ok((state, reason))
}

/// After a task's status changed, move its `waiting`/`blocked` dependents to where their
/// dependencies now put them, and so on down the graph.
async fn reevaluate_dependents(
    conn: &mut SqliteConnection,
    changed: TaskId,
    op: Op<'_>,
) -> Result<()> {
    let mut work = vec![changed];
    while let Some(task) = work.pop() {
        let dependents: Vec<i64> = sqlx::query_scalar(sql!("select_dependents"))
            .bind(task.0)
            .fetch_all(&mut *conn)
            .await?;
        for id in dependents {
            let dependent = TaskId(id);
            let brief = task_brief(conn, dependent).await?;
            if !matches!(brief.status, Status::Waiting | Status::Blocked) {
                continue;
            }
            let (state, reason) = dependency_state(conn, dependent).await?;
            let to = state.resting_status();
            if to == brief.status {
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
            )
            .await?;
            if to == Status::Queued {
                gate_for_approval(conn, dependent, op).await?;
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
async fn end_run(
    conn: &mut SqliteConnection,
    run: RunId,
    token: FencingToken,
    state: RunState,
    reason: Option<&str>,
    op: Op<'_>,
) -> Result<Option<TaskId>> {
    let task: Option<i64> = sqlx::query_scalar(sql!("end_run"))
        .bind(run.0)
        .bind(token.0)
        .bind(state.as_str())
        .bind(op.now.0)
        .bind(reason)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(task.map(TaskId))
}

/// Record a refused request about a run and build the error that explains it.
async fn refuse(
    conn: &mut SqliteConnection,
    run: RunId,
    token: FencingToken,
    what: &str,
    op: Op<'_>,
) -> Result<StoreError> {
    let row = sqlx::query(sql!("select_run"))
        .bind(run.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::RunNotFound(run))?;
    let stored = run_from_row(&row)?;
    let reason = if stored.lease.token != token {
        format!("{what} refused: fencing token {token} is not the run's token")
    } else {
        format!(
            "{what} refused: the run is {} (no longer active)",
            stored.state
        )
    };
    let status = current_status(conn, stored.task).await?;
    let data = serde_json::json!({ "request": what, "token": token.0, "owner": op.actor, "run_state": stored.state.as_str() });
    insert_event(
        conn,
        stored.task,
        Some(run),
        op,
        EventKind::Refused,
        Some(status),
        status,
        Some(&reason),
        Some(&data),
    )
    .await?;
    Ok(StoreError::StaleLease {
        run,
        task: stored.task,
        reason,
    })
}
