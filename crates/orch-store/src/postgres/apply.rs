//! Loading the facts decisions need, and applying their plans: every effect of an
//! `orch_core::plan::Plan` as a conditional statement in the caller's transaction.

use orch_core::decide;
use orch_core::plan::{DependencyFacts, DependentFacts, Effect, Move, Plan, TaskFacts};
use orch_core::{EventKind, FencingToken, RunId, RunState, Status, Task, TaskId, Timestamp};

pub(super) use super::fencing::refuse;
use super::rows::{run_from_row, task_from_row};
use super::{fencing, Result, Tx};
use crate::rows::{parse, SpecPolicy};
use crate::{Op, StoreError};

/// The few columns decisions need; the task's row stays locked until the transaction ends.
pub(super) async fn task_facts(tx: &Tx<'_>, task: TaskId) -> Result<TaskFacts> {
    let row = tx
        .query_opt(sql!("select_task_facts"), &[&task.0])
        .await?
        .ok_or(StoreError::TaskNotFound(task))?;
    let policy = SpecPolicy::of(task, row.try_get("spec")?)?;
    let attempts_used: i64 = row.try_get("attempts_used")?;
    let max_attempts: i64 = row.try_get("max_attempts")?;
    Ok(TaskFacts {
        id: task,
        status: parse(row.try_get("status")?)?,
        attempts_used: u32::try_from(attempts_used).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(1),
        approved: row.try_get("approved")?,
        requires_approval: policy.requires_approval,
        retry: policy.retry,
        active_run: row.try_get::<_, Option<i64>>("current_run")?.map(RunId),
    })
}

/// A task's dependencies that are not waived, ordered by id. Deciding an existing task needs no
/// lock on them: the decision holds the task's own row (`task_facts`), and a dependency that
/// finishes settles its dependents under the same row lock, so one of the two sees the other.
pub(super) async fn dependencies(tx: &Tx<'_>, task: TaskId) -> Result<Vec<DependencyFacts>> {
    dependency_facts(tx.query(sql!("select_dependencies"), &[&task.0]).await?)
}

/// [`dependencies`] of a task being created, locked (`FOR SHARE`) until the transaction ends: a
/// dependency finishing meanwhile cannot see the new task yet, so its completion must wait for
/// this commit (and then settle the new task), or have committed before (and be seen here).
pub(super) async fn locked_dependencies(tx: &Tx<'_>, task: TaskId) -> Result<Vec<DependencyFacts>> {
    dependency_facts(
        tx.query(sql!("select_dependencies_locked"), &[&task.0])
            .await?,
    )
}

fn dependency_facts(rows: Vec<tokio_postgres::Row>) -> Result<Vec<DependencyFacts>> {
    rows.iter()
        .map(|row| {
            let key: Option<String> = row.try_get("key")?;
            Ok(DependencyFacts {
                id: TaskId(row.try_get("id")?),
                name: match key {
                    Some(key) => key,
                    None => row.try_get("title")?,
                },
                status: parse(row.try_get("status")?)?,
            })
        })
        .collect()
}

pub(super) async fn load_task(tx: &Tx<'_>, task: TaskId) -> Result<Task> {
    let row = tx
        .query_opt(sql!("select_task"), &[&task.0])
        .await?
        .ok_or(StoreError::TaskNotFound(task))?;
    task_from_row(&row)
}

pub(super) async fn load_run(tx: &Tx<'_>, run: RunId) -> Result<orch_core::Run> {
    let row = tx
        .query_opt(sql!("select_run"), &[&run.0])
        .await?
        .ok_or(StoreError::RunNotFound(run))?;
    run_from_row(&row)
}

/// Apply a plan in the transaction, then settle the dependents it names, and theirs, down the
/// graph: `orch_core::decide::carry_out`'s loop, awaiting each statement (the core's
/// `PlanTarget` is synchronous; the decisions are still the core's `settle_dependent`).
pub(super) async fn carry_out(tx: &Tx<'_>, plan: &Plan, op: &Op<'_>) -> Result<()> {
    let mut work = Vec::new();
    apply_all(tx, &plan.effects, op, &mut work).await?;
    while let Some(task) = work.pop() {
        for dependent in tx.ids(sql!("select_dependents"), &[&task.0]).await? {
            let dependent = TaskId(dependent);
            let facts = DependentFacts {
                task: task_facts(tx, dependent).await?,
                dependencies: dependencies(tx, dependent).await?,
            };
            let effects = decide::settle_dependent(&facts)?;
            apply_all(tx, &effects, op, &mut work).await?;
        }
    }
    Ok(())
}

async fn apply_all(
    tx: &Tx<'_>,
    effects: &[Effect],
    op: &Op<'_>,
    work: &mut Vec<TaskId>,
) -> Result<()> {
    for effect in effects {
        match effect {
            Effect::SettleDependents { task } => work.push(*task),
            other => apply(tx, other, op).await?,
        }
    }
    Ok(())
}

async fn apply(tx: &Tx<'_>, effect: &Effect, op: &Op<'_>) -> Result<()> {
    match effect {
        Effect::Create { task, to, reason } => {
            // Inserted as waiting; the create event records where it really starts.
            set_status(
                tx,
                *task,
                Status::Waiting,
                *to,
                reason.as_deref(),
                None,
                op.now,
            )
            .await?;
            insert_event(
                tx,
                *task,
                None,
                op,
                EventKind::Create,
                None,
                *to,
                reason.as_deref(),
                None,
            )
            .await
        }
        Effect::Move(step) => move_task(tx, step, op).await,
        Effect::SetAttempts {
            task,
            attempts_used,
        } => {
            tx.execute(
                sql!("set_task_attempts"),
                &[&task.0, &i64::from(*attempts_used)],
            )
            .await?;
            Ok(())
        }
        Effect::SetReason { task, reason } => {
            tx.execute(sql!("set_task_reason"), &[&task.0, reason])
                .await?;
            Ok(())
        }
        Effect::Approve { task } => {
            tx.execute(sql!("set_task_approved"), &[&task.0]).await?;
            Ok(())
        }
        Effect::Waive { task, dependency } => {
            tx.execute(sql!("waive_dependency"), &[&task.0, &dependency.0])
                .await?;
            Ok(())
        }
        Effect::EndRun {
            run,
            state,
            outcome,
        } => {
            let ended = tx
                .query_opt(
                    sql!("end_active_run_of_task_by_run"),
                    &[&run.0, &state.as_str(), &op.now.0, outcome],
                )
                .await?;
            if ended.is_none() {
                let stored = load_run(tx, *run).await?;
                let status = task_facts(tx, stored.task).await?.status;
                return Err(StoreError::Conflict {
                    task: stored.task,
                    status,
                    message: format!("run {run} ended underneath this operation"),
                }
                .into());
            }
            Ok(())
        }
        Effect::AnswerReplies { task, run } => {
            tx.execute(sql!("answer_replies"), &[&task.0, &run.0])
                .await?;
            Ok(())
        }
        Effect::InsertReply {
            task,
            message,
            session,
        } => {
            tx.execute(
                sql!("insert_reply"),
                &[
                    &task.0,
                    message,
                    &session.agent,
                    &session.step,
                    &session.session_id,
                    &op.now.0,
                ],
            )
            .await?;
            Ok(())
        }
        Effect::AppendReply { reply, message } => {
            tx.execute(sql!("append_to_reply"), &[reply, message])
                .await?;
            Ok(())
        }
        Effect::SettleDependents { .. } => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_event(
    tx: &Tx<'_>,
    task: TaskId,
    run: Option<RunId>,
    op: &Op<'_>,
    kind: EventKind,
    from: Option<Status>,
    to: Status,
    reason: Option<&str>,
    data: Option<&serde_json::Value>,
) -> Result<()> {
    let data = data.map_or_else(|| "{}".to_owned(), ToString::to_string);
    tx.execute(
        sql!("insert_event"),
        &[
            &task.0,
            &run.map(|r| r.0),
            &op.now.0,
            &op.actor,
            &kind.as_str(),
            &from.map(Status::as_str),
            &to.as_str(),
            &reason,
            &data,
        ],
    )
    .await?;
    Ok(())
}

async fn set_status(
    tx: &Tx<'_>,
    task: TaskId,
    from: Status,
    to: Status,
    reason: Option<&str>,
    not_before: Option<Timestamp>,
    now: Timestamp,
) -> Result<()> {
    let changed = tx
        .execute(
            sql!("set_task_status"),
            &[
                &task.0,
                &from.as_str(),
                &to.as_str(),
                &reason,
                &not_before.map(|t| t.0),
                &now.0,
            ],
        )
        .await?;
    if changed == 0 {
        let status = task_facts(tx, task).await?.status;
        return Err(StoreError::Conflict {
            task,
            status,
            message: format!("expected it to be {from}; it changed underneath this operation"),
        }
        .into());
    }
    if to == Status::Queued {
        tx.wake();
    }
    Ok(())
}

/// Store a checked move conditionally, and log it.
/// The update and the insert are pipelined on the connection: they touch different tables, and
/// a refused update fails the whole transaction.
async fn move_task(tx: &Tx<'_>, step: &Move, op: &Op<'_>) -> Result<()> {
    let reason = step.reason.as_deref();
    tokio::try_join!(
        set_status(
            tx,
            step.task,
            step.from,
            step.to,
            reason,
            step.not_before,
            op.now,
        ),
        insert_event(
            tx,
            step.task,
            step.run,
            op,
            step.kind,
            Some(step.from),
            step.to,
            reason,
            None,
        ),
    )?;
    Ok(())
}

/// End the run if `token` still holds its lease; returns its task, or `None` if refused.
pub(super) async fn end_run(
    tx: &Tx<'_>,
    run: RunId,
    token: FencingToken,
    state: RunState,
    reason: Option<&str>,
    op: &Op<'_>,
) -> Result<Option<TaskId>> {
    let row = tx
        .query_opt(
            sql!("end_run"),
            &[
                &run.0,
                &crate::fencing::token_hash(&token),
                &state.as_str(),
                &op.now.0,
                &reason,
                &op.actor,
            ],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(TaskId(row.try_get(0)?)),
        None => None,
    })
}

/// A fenced insert wrote `written` rows: none means the request was refused, which is recorded
/// like a stale heartbeat.
pub(super) async fn require_fenced(
    tx: &Tx<'_>,
    written: u64,
    run: RunId,
    token: FencingToken,
    what: &str,
    op: &Op<'_>,
) -> Result<Result<(), StoreError>> {
    if written == 0 {
        return Ok(Err(refuse(tx, run, token, what, op).await?));
    }
    Ok(Ok(()))
}

/// Refuse (and record) a request from anyone but the holder of an active run's lease.
pub(super) async fn require_holder(
    tx: &Tx<'_>,
    run: RunId,
    token: FencingToken,
    what: &str,
    op: &Op<'_>,
) -> Result<Result<(), StoreError>> {
    if fencing::holding(tx, run, &token, op.actor).await? != crate::fencing::Holding::Active {
        return Ok(Err(refuse(tx, run, token, what, op).await?));
    }
    Ok(Ok(()))
}
