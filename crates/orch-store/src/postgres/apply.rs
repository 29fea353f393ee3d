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
    let active_run = row.try_get::<_, Option<i64>>("current_run")?.map(RunId);
    facts_from_row(task, &row, active_run, children(tx, task).await?)
}

fn facts_from_row(
    task: TaskId,
    row: &tokio_postgres::Row,
    active_run: Option<RunId>,
    children: Vec<DependencyFacts>,
) -> Result<TaskFacts> {
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
        active_run,
        children,
    })
}

/// What [`end_run_with_facts`] read under the task's lock besides its facts: the tasks to
/// settle after it, and whether a reply waits to be answered.
pub(super) struct AfterRun {
    pub task: TaskId,
    pub dependents: Vec<TaskId>,
    pub pending_reply: bool,
}

/// A run's end with what deciding about its task needs, in one round trip: end the run if
/// `token` still holds its lease and lock its task (`end_run_facts`), then, sent behind it on
/// the connection and so read under that lock (a fresh snapshot), the task's children, the
/// tasks to settle after it and its pending replies (`select_after_run_end`). `None` if refused
/// (nothing changed).
pub(super) async fn end_run_with_facts(
    tx: &Tx<'_>,
    run: RunId,
    token: FencingToken,
    state: RunState,
    reason: Option<&str>,
    op: &Op<'_>,
) -> Result<Option<(TaskFacts, AfterRun)>> {
    let (end, after) = tokio::try_join!(
        tx.statement(sql!("end_run_facts")),
        tx.statement(sql!("select_after_run_end")),
    )?;
    let hash = crate::fencing::token_hash(&token);
    let end_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &run.0,
        &hash,
        &state.as_str(),
        &op.now.0,
        &reason,
        &op.actor,
    ];
    let run_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&run.0];
    // `biased`: sent in this order; errors read in this order too, so the first statement's
    // failure (a deadlock, say) is the one answered, not "transaction is aborted".
    let (ended, after) = tokio::join!(
        biased;
        tx.query_opt_prepared(&end, &end_params),
        tx.query_prepared(&after, &run_param),
    );
    let Some(row) = ended? else {
        return Ok(None);
    };
    let mut children = Vec::new();
    let mut dependents = Vec::new();
    let mut pending_reply = false;
    for row in after? {
        let id = TaskId(row.try_get("id")?);
        match row.try_get::<_, &str>("kind")? {
            "c" => children.push(dependency_facts_of(&row)?),
            "d" => dependents.push(id),
            _ => pending_reply = true,
        }
    }
    let task = TaskId(row.try_get("id")?);
    let facts = facts_from_row(task, &row, None, children)?;
    Ok(Some((
        facts,
        AfterRun {
            task,
            dependents,
            pending_reply,
        },
    )))
}

/// A task's children, ordered by id. Read under the parent's row lock (`task_facts`): a child
/// that changes settles its parent under the same lock, so one of the two sees the other.
pub(super) async fn children(tx: &Tx<'_>, task: TaskId) -> Result<Vec<DependencyFacts>> {
    dependency_facts(tx.query(sql!("select_children"), &[&task.0]).await?)
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
    rows.iter().map(dependency_facts_of).collect()
}

fn dependency_facts_of(row: &tokio_postgres::Row) -> Result<DependencyFacts> {
    let key: Option<String> = row.try_get("key")?;
    Ok(DependencyFacts {
        id: TaskId(row.try_get("id")?),
        name: match key {
            Some(key) => key,
            None => row.try_get("title")?,
        },
        status: parse(row.try_get("status")?)?,
    })
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
    carry_out_knowing(tx, plan, op, None).await
}

/// [`carry_out`] with what was already read about one task under its lock
/// ([`end_run_with_facts`]): its dependents' look-up is saved, and answering its replies when
/// none is pending.
pub(super) async fn carry_out_knowing(
    tx: &Tx<'_>,
    plan: &Plan,
    op: &Op<'_>,
    mut known: Option<AfterRun>,
) -> Result<()> {
    let mut work = Vec::new();
    for effect in &plan.effects {
        match effect {
            Effect::SettleDependents { task } => work.push(*task),
            Effect::AnswerReplies { task, .. }
                if known
                    .as_ref()
                    .is_some_and(|k| k.task == *task && !k.pending_reply) => {}
            other => apply(tx, other, op).await?,
        }
    }
    while let Some(task) = work.pop() {
        let dependents = match known.take_if(|k| k.task == task) {
            Some(known) => known.dependents,
            None => tx
                .ids(sql!("select_dependents"), &[&task.0])
                .await?
                .into_iter()
                .map(TaskId)
                .collect(),
        };
        for dependent in dependents {
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
        .await
        .map_err(|e| unique_key_violation(e, task, from))?;
    if changed == 0 {
        return Err(changed_underneath(tx, task, from).await);
    }
    if to == Status::Queued {
        tx.wake();
    }
    Ok(())
}

/// A status change refused by `tasks_one_live_per_unique_key` becomes [`unique_key_taken`].
fn unique_key_violation(error: super::Error, task: TaskId, from: Status) -> super::Error {
    match error {
        super::Error::Pg(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                && e.as_db_error().and_then(|db| db.constraint())
                    == Some("tasks_one_live_per_unique_key") =>
        {
            super::Error::Store(unique_key_taken(task, from))
        }
        other => other,
    }
}

/// A conditional update of `task` from `from` found it changed: the conflict, with the status
/// it has now.
async fn changed_underneath(tx: &Tx<'_>, task: TaskId, from: Status) -> super::Error {
    let status = match task_facts(tx, task).await {
        Ok(facts) => facts.status,
        Err(error) => return error,
    };
    StoreError::Conflict {
        task,
        status,
        message: format!("expected it to be {from}; it changed underneath this operation"),
    }
    .into()
}

/// A status change would make a second live task with one unique key (a retry or reply of a
/// finished task whose key a newer task holds).
fn unique_key_taken(task: TaskId, from: Status) -> StoreError {
    StoreError::Conflict {
        task,
        status: from,
        message: "another live task of the project holds its unique key; wait for that task to finish or cancel it first".into(),
    }
}

/// Store a checked move conditionally, and log it, in one statement (`move_task`).
async fn move_task(tx: &Tx<'_>, step: &Move, op: &Op<'_>) -> Result<()> {
    let reason = step.reason.as_deref();
    let moved = tx
        .query_opt(
            sql!("move_task"),
            &[
                &step.task.0,
                &step.from.as_str(),
                &step.to.as_str(),
                &reason,
                &step.not_before.map(|t| t.0),
                &op.now.0,
                &step.run.map(|r| r.0),
                &step.kind.as_str(),
                &op.actor,
            ],
        )
        .await
        .map_err(|e| unique_key_violation(e, step.task, step.from))?;
    if moved.is_none() {
        return Err(changed_underneath(tx, step.task, step.from).await);
    }
    if step.to == Status::Queued {
        tx.wake();
    }
    if step.from == Status::AwaitingInput
        && matches!(step.kind, EventKind::Cancel | EventKind::PullMerged)
    {
        // Nobody can answer a cancelled task: its request closes with it.
        tx.execute(
            sql!("close_open_info_requests"),
            &[&step.task.0, &op.now.0, &"task cancelled"],
        )
        .await?;
    }
    Ok(())
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
