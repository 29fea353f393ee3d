//! Loading the facts decisions need, and applying their plans: every effect of an
//! `orch_core::plan::Plan` as a conditional statement in the caller's transaction.

use std::str::FromStr;

use orch_core::decide::{self, PlanTarget};
use orch_core::plan::{DependencyFacts, DependentFacts, Effect, Move, Plan, TaskFacts};
use orch_core::{EventKind, FencingToken, RunId, RunState, Status, Task, TaskId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

pub(super) use super::fencing::refuse;
use super::rows::{run_from_row, task_from_row};
use super::{fencing, query_ids, Error, OwnedOp, Result};
use crate::rows::SpecPolicy;
use crate::StoreError;

/// The few columns decisions need.
pub(super) fn task_facts(conn: &Connection, task: TaskId) -> Result<TaskFacts> {
    let row = conn
        .prepare_cached(sql!("select_task_facts"))?
        .query_row([task.0], |r| {
            Ok((
                r.get::<_, String>("status")?,
                r.get::<_, i64>("attempts_used")?,
                r.get::<_, i64>("max_attempts")?,
                r.get::<_, i64>("approved")?,
                r.get::<_, String>("spec")?,
                r.get::<_, Option<i64>>("current_run")?,
            ))
        })
        .optional()?
        .ok_or(StoreError::TaskNotFound(task))?;
    let (status, attempts_used, max_attempts, approved, spec, current_run) = row;
    let policy = SpecPolicy::of(task, &spec)?;
    Ok(TaskFacts {
        id: task,
        status: parse_status(&status)?,
        attempts_used: u32::try_from(attempts_used).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(1),
        approved: approved != 0,
        requires_approval: policy.requires_approval,
        retry: policy.retry,
        active_run: current_run.map(RunId),
        children: children(conn, task)?,
    })
}

/// A task's children, ordered by id.
pub(super) fn children(conn: &Connection, task: TaskId) -> Result<Vec<DependencyFacts>> {
    facts_of(conn, sql!("select_children"), task)
}

pub(super) fn parse_status(text: &str) -> Result<Status> {
    Ok(Status::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))?)
}

/// A task's dependencies that are not waived, ordered by id.
pub(super) fn dependencies(conn: &Connection, task: TaskId) -> Result<Vec<DependencyFacts>> {
    facts_of(conn, sql!("select_dependencies"), task)
}

/// Rows of `(id, key, title, status)` as facts named by key, else title.
fn facts_of(conn: &Connection, query: &str, task: TaskId) -> Result<Vec<DependencyFacts>> {
    let mut stmt = conn.prepare_cached(query)?;
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
    rows.into_iter()
        .map(|(id, key, title, status)| {
            Ok(DependencyFacts {
                id: TaskId(id),
                name: key.unwrap_or(title),
                status: parse_status(&status)?,
            })
        })
        .collect()
}

pub(super) fn load_task(conn: &Connection, task: TaskId) -> Result<Task> {
    Ok(conn
        .prepare_cached(sql!("select_task"))?
        .query_row([task.0], task_from_row)
        .optional()?
        .ok_or(StoreError::TaskNotFound(task))??)
}

/// Apply a plan in the transaction `conn`, settling dependents as it asks.
pub(super) fn carry_out(conn: &Connection, plan: &Plan, op: &OwnedOp) -> Result<()> {
    decide::carry_out(plan, &mut Target { conn, op })
}

/// One transaction, as the core's [`PlanTarget`].
struct Target<'a> {
    conn: &'a Connection,
    op: &'a OwnedOp,
}

impl PlanTarget for Target<'_> {
    type Error = Error;

    fn apply(&mut self, effect: &Effect) -> Result<()> {
        apply(self.conn, effect, self.op)
    }

    fn dependents(&mut self, task: TaskId) -> Result<Vec<TaskId>> {
        Ok(query_ids(self.conn, sql!("select_dependents"), task.0)?
            .into_iter()
            .map(TaskId)
            .collect())
    }

    fn dependent(&mut self, task: TaskId) -> Result<DependentFacts> {
        Ok(DependentFacts {
            task: task_facts(self.conn, task)?,
            dependencies: dependencies(self.conn, task)?,
        })
    }
}

fn apply(conn: &Connection, effect: &Effect, op: &OwnedOp) -> Result<()> {
    match effect {
        Effect::Create { task, to, reason } => {
            // Inserted as waiting; the create event records where it really starts.
            set_status(
                conn,
                *task,
                Status::Waiting,
                *to,
                reason.as_deref(),
                None,
                op.now,
            )?;
            insert_event(
                conn,
                *task,
                None,
                op,
                EventKind::Create,
                None,
                *to,
                reason.as_deref(),
                None,
            )
        }
        Effect::Move(step) => move_task(conn, step, op),
        Effect::SetAttempts {
            task,
            attempts_used,
        } => {
            conn.prepare_cached(sql!("set_task_attempts"))?
                .execute(params![task.0, i64::from(*attempts_used)])?;
            Ok(())
        }
        Effect::SetReason { task, reason } => {
            conn.prepare_cached(sql!("set_task_reason"))?
                .execute(params![task.0, reason])?;
            Ok(())
        }
        Effect::Approve { task } => {
            conn.prepare_cached(sql!("set_task_approved"))?
                .execute([task.0])?;
            Ok(())
        }
        Effect::Waive { task, dependency } => {
            conn.prepare_cached(sql!("waive_dependency"))?
                .execute(params![task.0, dependency.0])?;
            Ok(())
        }
        Effect::EndRun {
            run,
            state,
            outcome,
        } => {
            let ended: Option<i64> = conn
                .prepare_cached(sql!("end_active_run_of_task_by_run"))?
                .query_row(params![run.0, state.as_str(), op.now.0, outcome], |r| {
                    r.get(0)
                })
                .optional()?;
            if ended.is_none() {
                let stored = load_run(conn, *run)?;
                let status = task_facts(conn, stored.task)?.status;
                return Err(StoreError::Conflict {
                    task: stored.task,
                    status,
                    message: format!("run {run} ended underneath this operation"),
                }
                .into());
            }
            Ok(())
        }
        Effect::AnswerReplies { task, run } => super::agents::answer_replies(conn, *task, *run),
        Effect::InsertReply {
            task,
            message,
            session,
        } => {
            conn.prepare_cached(sql!("insert_reply"))?.execute(params![
                task.0,
                message,
                session.agent,
                session.step,
                session.session_id,
                op.now.0
            ])?;
            Ok(())
        }
        Effect::AppendReply { reply, message } => {
            conn.prepare_cached(sql!("append_to_reply"))?
                .execute(params![reply, message])?;
            Ok(())
        }
        Effect::SettleDependents { .. } => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn insert_event(
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
        ])
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                // A retry or reply of a finished task whose unique key a newer live task holds.
                Error::Store(StoreError::Conflict {
                    task,
                    status: from,
                    message: "another live task of the project holds its unique key; wait for that task to finish or cancel it first".into(),
                })
            }
            other => Error::from(other),
        })?;
    if changed == 0 {
        let status = task_facts(conn, task)?.status;
        return Err(StoreError::Conflict {
            task,
            status,
            message: format!("expected it to be {from}; it changed underneath this operation"),
        }
        .into());
    }
    Ok(())
}

/// Store a checked move conditionally, and log it.
fn move_task(conn: &Connection, step: &Move, op: &OwnedOp) -> Result<()> {
    let reason = step.reason.as_deref();
    set_status(
        conn,
        step.task,
        step.from,
        step.to,
        reason,
        step.not_before,
        op.now,
    )?;
    insert_event(
        conn,
        step.task,
        step.run,
        op,
        step.kind,
        Some(step.from),
        step.to,
        reason,
        None,
    )?;
    if step.from == Status::AwaitingInput
        && matches!(step.kind, EventKind::Cancel | EventKind::PullMerged)
    {
        // Nobody can answer a cancelled task: its request closes with it.
        conn.prepare_cached(sql!("close_open_info_requests"))?
            .execute(params![step.task.0, op.now.0, "task cancelled"])?;
    }
    Ok(())
}

pub(super) fn load_run(conn: &Connection, run: RunId) -> Result<orch_core::Run> {
    Ok(conn
        .prepare_cached(sql!("select_run"))?
        .query_row([run.0], run_from_row)
        .optional()?
        .ok_or(StoreError::RunNotFound(run))??)
}

/// End the run if `token` still holds its lease; returns its task, or `None` if refused.
pub(super) fn end_run(
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
                crate::fencing::token_hash(&token),
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

/// A fenced insert (`... FROM runs WHERE id = run AND token and owner match AND state = 'active'`)
/// wrote `written` rows: none means the request was refused, which is recorded like a stale
/// heartbeat.
pub(super) fn require_fenced(
    conn: &Connection,
    written: usize,
    run: RunId,
    token: FencingToken,
    what: &str,
    op: &OwnedOp,
) -> Result<()> {
    if written == 0 {
        return Err(refuse(conn, run, token, what, op)?.into());
    }
    Ok(())
}

/// Refuse (and record) a request from anyone but the holder of an active run's lease.
pub(super) fn require_holder(
    conn: &Connection,
    run: RunId,
    token: FencingToken,
    what: &str,
    op: &OwnedOp,
) -> Result<()> {
    if fencing::holding(conn, run, &token, &op.actor)? != crate::fencing::Holding::Active {
        return Err(refuse(conn, run, token, what, op)?.into());
    }
    Ok(())
}
