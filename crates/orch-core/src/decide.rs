//! The rules of every store operation, as pure functions from facts to a [`Plan`]: what a
//! completion, a lost lease, a requeue, a cancel, a retry, an unblock, an approval or a reply
//! does to a task and its dependents, how a new task starts, and how projects are named. (How
//! a refused request about a run is recorded is still the backend's: `sqlite/fencing.rs`.)
//!
//! No I/O, no clock, no randomness: `now` and the jitter come in as arguments. A backend loads
//! the facts, calls one of these, and hands the plan to [`carry_out`] with its transaction.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::lifecycle::{self, EventKind, Status};
use crate::model::{Outcome, RunId, RunState, TaskId, Timestamp};
use crate::plan::{
    summarize, AgentSession, DependencyFacts, DependentFacts, Effect, Move, Plan, Refusal,
    TaskFacts,
};
use crate::tree;

/// What a backend does for [`carry_out`]: apply one effect, and load the facts of dependents.
pub trait PlanTarget {
    /// The backend's error; a refusal found while settling dependents converts into it.
    type Error: From<Refusal>;
    /// Apply one effect (never `SettleDependents`, which `carry_out` handles).
    fn apply(&mut self, effect: &Effect) -> Result<(), Self::Error>;
    /// The tasks that depend on `task`, ordered by id.
    fn dependents(&mut self, task: TaskId) -> Result<Vec<TaskId>, Self::Error>;
    /// One dependent's facts, read now (after the effects applied so far).
    fn dependent(&mut self, task: TaskId) -> Result<DependentFacts, Self::Error>;
}

/// Apply a plan, then settle the dependents it names, and theirs, down the graph: a dependent's
/// facts are read right before its own decision, so each sees the changes made before it.
pub fn carry_out<T: PlanTarget>(plan: &Plan, target: &mut T) -> Result<(), T::Error> {
    let mut work = Vec::new();
    apply_all(&plan.effects, target, &mut work)?;
    while let Some(task) = work.pop() {
        for dependent in target.dependents(task)? {
            let facts = target.dependent(dependent)?;
            let effects = settle_dependent(&facts)?;
            apply_all(&effects, target, &mut work)?;
        }
    }
    Ok(())
}

fn apply_all<T: PlanTarget>(
    effects: &[Effect],
    target: &mut T,
    work: &mut Vec<TaskId>,
) -> Result<(), T::Error> {
    for effect in effects {
        match effect {
            Effect::SettleDependents { task } => work.push(*task),
            other => target.apply(other)?,
        }
    }
    Ok(())
}

/// A task that just became `queued` stops for approval if it needs one it does not have.
fn gate(task: &TaskFacts, to: Status) -> Result<Option<Move>, Refusal> {
    if to == Status::Queued && task.requires_approval && !task.approved {
        let gate = Move::checked(
            task.id,
            Status::Queued,
            EventKind::RequestApproval,
            Status::AwaitingApproval,
        )?;
        return Ok(Some(
            gate.because(Some("waits for `orch task approve`".into())),
        ));
    }
    Ok(None)
}

/// Push `first` and the approval gate it may need; returns the status the task ends in.
fn moved(effects: &mut Vec<Effect>, task: &TaskFacts, first: Move) -> Result<Status, Refusal> {
    let to = first.to;
    effects.push(Effect::Move(first));
    match gate(task, to)? {
        Some(gate) => {
            let status = gate.to;
            effects.push(Effect::Move(gate));
            Ok(status)
        }
        None => Ok(to),
    }
}

/// How a new task starts: where its dependencies put it, stopped for approval if it needs one.
pub fn create(task: &TaskFacts, dependencies: &[DependencyFacts]) -> Result<Plan, Refusal> {
    let (state, reason) = summarize(dependencies);
    let start = state.resting_status();
    lifecycle::transition(None, EventKind::Create, start).map_err(|source| {
        Refusal::Transition {
            task: task.id,
            source,
        }
    })?;
    let mut effects = vec![Effect::Create {
        task: task.id,
        to: start,
        reason,
    }];
    let mut status = start;
    if let Some(gate) = gate(task, start)? {
        status = gate.to;
        effects.push(Effect::Move(gate));
    }
    // A new child holds its parent: the parent (a dependent of its children) is settled too.
    effects.push(Effect::SettleDependents { task: task.id });
    Ok(Plan { status, effects })
}

/// Whether a task may become the parent of a new child: not once it is done or cancelled
/// (nothing would wait for the child).
pub fn adopt(parent: &TaskFacts) -> Result<(), Refusal> {
    if matches!(parent.status, Status::Done | Status::Cancelled) {
        return Err(Refusal::Conflict {
            task: parent.id,
            status: parent.status,
            message: "a finished task cannot get children; give the child another parent or none"
                .into(),
        });
    }
    Ok(())
}

/// A run ended with `outcome` (its fenced end already stored): where the task goes.
pub fn complete(
    task: &TaskFacts,
    run: RunId,
    outcome: Outcome,
    reason: Option<&str>,
    now: Timestamp,
    jitter_unit: f64,
) -> Result<Plan, Refusal> {
    let (children, children_reason) = tree::summarize_children(&task.children);
    if outcome == Outcome::Succeeded && children.holds_parent() {
        return await_children(task, run, children, children_reason);
    }
    let (kind, to, not_before) = match outcome {
        Outcome::Succeeded => (EventKind::Complete, Status::Done, None),
        Outcome::NeedsReview => (EventKind::Escalate, Status::NeedsReview, None),
        Outcome::FailedPermanently => (EventKind::Fail, Status::Failed, None),
        Outcome::Failed => {
            let to = lifecycle::decide_after_failure(task.attempts_used, task.max_attempts);
            (EventKind::Fail, to, backoff(task, to, now, jitter_unit))
        }
    };
    let step = Move::checked(task.id, task.status, kind, to)?
        .because(reason.map(str::to_owned))
        .until(not_before)
        .of_run(Some(run));
    let mut effects = vec![Effect::Move(step)];
    if to == Status::Done {
        effects.push(Effect::AnswerReplies { task: task.id, run });
    }
    effects.push(Effect::SettleDependents { task: task.id });
    Ok(Plan {
        status: to,
        effects,
    })
}

/// A run succeeded with children unfinished: the parent rests `blocked` until they are all
/// done (the attempt is given back: waiting for children is not a failure), or needs a human
/// at once if one failed. Its next run starts at the first step not yet checkpointed.
fn await_children(
    task: &TaskFacts,
    run: RunId,
    children: tree::ChildrenState,
    reason: Option<String>,
) -> Result<Plan, Refusal> {
    let (kind, to) = if children.failed > 0 {
        (EventKind::Escalate, Status::NeedsReview)
    } else {
        (EventKind::AwaitChildren, Status::Blocked)
    };
    let step = Move::checked(task.id, task.status, kind, to)?
        .because(reason)
        .of_run(Some(run));
    let mut effects = Vec::new();
    if to == Status::Blocked {
        effects.push(Effect::SetAttempts {
            task: task.id,
            attempts_used: task.attempts_used.saturating_sub(1),
        });
    }
    effects.push(Effect::Move(step));
    effects.push(Effect::SettleDependents { task: task.id });
    Ok(Plan {
        status: to,
        effects,
    })
}

/// The run state a completion with `outcome` stores.
pub fn run_state_after(outcome: Outcome) -> RunState {
    match outcome {
        Outcome::Succeeded => RunState::Succeeded,
        Outcome::Failed | Outcome::FailedPermanently => RunState::Failed,
        Outcome::NeedsReview => RunState::Escalated,
    }
}

fn backoff(task: &TaskFacts, to: Status, now: Timestamp, jitter_unit: f64) -> Option<Timestamp> {
    (to == Status::RetryWait)
        .then(|| now.after(task.retry.backoff(task.attempts_used, jitter_unit)))
}

/// A run was lost (its lease expired, or its worker restarted; the run already ended `lost`):
/// another attempt after the backoff, or a human must look at max attempts.
pub fn lose(
    task: &TaskFacts,
    run: RunId,
    why: &str,
    now: Timestamp,
    jitter_unit: f64,
) -> Result<Plan, Refusal> {
    let to = lifecycle::decide_after_lost_lease(task.attempts_used, task.max_attempts);
    let reason = if to == Status::NeedsReview {
        format!(
            "run {run} was lost ({why}) on attempt {} of {}; no attempts are left",
            task.attempts_used, task.max_attempts
        )
    } else {
        format!("run {run} was lost: {why}")
    };
    let step = Move::checked(task.id, task.status, EventKind::Lose, to)?
        .because(Some(reason))
        .until(backoff(task, to, now, jitter_unit))
        .of_run(Some(run));
    Ok(Plan {
        status: to,
        effects: vec![
            Effect::Move(step),
            Effect::SettleDependents { task: task.id },
        ],
    })
}

/// A worker gave its run back (the run already ended `requeued`): the attempt is given back,
/// since a rate limit or a shutdown is not the task's fault, and it runs again after `delay`.
pub fn requeue(
    task: &TaskFacts,
    run: RunId,
    delay: Duration,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<Plan, Refusal> {
    let step = Move::checked(task.id, task.status, EventKind::Requeue, Status::RetryWait)?
        .because(reason.map(str::to_owned))
        .until(Some(now.after(delay)))
        .of_run(Some(run));
    Ok(Plan {
        status: Status::RetryWait,
        effects: vec![
            Effect::SetAttempts {
                task: task.id,
                attempts_used: task.attempts_used.saturating_sub(1),
            },
            Effect::Move(step),
        ],
    })
}

/// A `retry_wait` task whose backoff has elapsed goes back to `queued`.
pub fn retry_due(task: TaskId) -> Result<Plan, Refusal> {
    let step = Move::checked(task, Status::RetryWait, EventKind::RetryDue, Status::Queued)?;
    Ok(Plan {
        status: Status::Queued,
        effects: vec![Effect::Move(step)],
    })
}

/// Cancel a task that has not finished; its active run ends `cancelled`.
pub fn cancel(task: &TaskFacts, reason: Option<&str>) -> Result<Plan, Refusal> {
    if !lifecycle::can(task.status, EventKind::Cancel) {
        return Err(Refusal::Conflict {
            task: task.id,
            status: task.status,
            message: "only tasks that have not finished can be cancelled".into(),
        });
    }
    let mut effects = Vec::new();
    if let Some(run) = task.active_run {
        effects.push(Effect::EndRun {
            run,
            state: RunState::Cancelled,
            outcome: reason.unwrap_or("cancelled").to_owned(),
        });
    }
    let step = Move::checked(task.id, task.status, EventKind::Cancel, Status::Cancelled)?
        .because(reason.map(str::to_owned))
        .of_run(task.active_run);
    effects.push(Effect::Move(step));
    effects.push(Effect::SettleDependents { task: task.id });
    Ok(Plan {
        status: Status::Cancelled,
        effects,
    })
}

/// Give a finished task a fresh set of attempts: where its dependencies put it, or
/// `retry_wait` until `now + delay` if it could run.
pub fn retry(
    task: &TaskFacts,
    dependencies: &[DependencyFacts],
    delay: Option<Duration>,
    now: Timestamp,
) -> Result<Plan, Refusal> {
    if !lifecycle::can(task.status, EventKind::Retry) {
        let hint = match task.status {
            Status::Done => "it is done",
            Status::Blocked => "it is blocked by a dependency; retry that dependency instead",
            Status::RetryWait => "it already waits for its next attempt",
            _ => "it has not finished; only failed, needs_review or cancelled tasks can be retried",
        };
        return Err(Refusal::Conflict {
            task: task.id,
            status: task.status,
            message: format!("cannot retry: {hint}"),
        });
    }
    let (state, block_reason) = summarize(dependencies);
    let (resting, block_reason) = resting_with_children(task, state.resting_status(), block_reason);
    let (to, not_before, reason) = match delay {
        Some(delay) if resting == Status::Queued => {
            (Status::RetryWait, Some(now.after(delay)), None)
        }
        _ => (resting, None, block_reason),
    };
    let mut effects = vec![Effect::SetAttempts {
        task: task.id,
        attempts_used: 0,
    }];
    let step = Move::checked(task.id, task.status, EventKind::Retry, to)?
        .because(reason)
        .until(not_before);
    let status = moved(&mut effects, task, step)?;
    effects.push(Effect::SettleDependents { task: task.id });
    Ok(Plan { status, effects })
}

/// Let a `blocked` task go ahead without the dependencies that block it: they are waived (not
/// deleted, so they stay visible and the event names them).
pub fn unblock(task: &TaskFacts, dependencies: &[DependencyFacts]) -> Result<Plan, Refusal> {
    if task.status != Status::Blocked {
        return Err(Refusal::Conflict {
            task: task.id,
            status: task.status,
            message: "only blocked tasks can be unblocked".into(),
        });
    }
    let (waived, kept): (Vec<&DependencyFacts>, Vec<&DependencyFacts>) = dependencies
        .iter()
        .partition(|d| d.status.blocks_dependents());
    let kept: Vec<DependencyFacts> = kept.into_iter().cloned().collect();
    let (to, _) = resting_with_children(task, summarize(&kept).0.resting_status(), None);
    let reason = (!waived.is_empty()).then(|| {
        let names: Vec<String> = waived.iter().map(|d| d.id.to_string()).collect();
        format!(
            "unblocked by hand; going ahead without dependencies {}",
            names.join(", ")
        )
    });
    let mut effects: Vec<Effect> = waived
        .iter()
        .map(|d| Effect::Waive {
            task: task.id,
            dependency: d.id,
        })
        .collect();
    let step = Move::checked(task.id, Status::Blocked, EventKind::Unblock, to)?.because(reason);
    let status = moved(&mut effects, task, step)?;
    effects.push(Effect::SettleDependents { task: task.id });
    Ok(Plan { status, effects })
}

/// Approve a task waiting for approval (it is queued), or ahead of time (it will not stop for
/// approval once its dependencies are done).
pub fn approve(task: &TaskFacts) -> Result<Plan, Refusal> {
    approve_with(task, None)
}

/// [`approve`] with the approver's comment, which the `approve` event carries as its reason.
pub fn approve_with(task: &TaskFacts, comment: Option<&str>) -> Result<Plan, Refusal> {
    if task.status == Status::AwaitingApproval {
        let step = Move::checked(task.id, task.status, EventKind::Approve, Status::Queued)?
            .because(comment.map(str::to_owned));
        return Ok(Plan {
            status: Status::Queued,
            effects: vec![Effect::Approve { task: task.id }, Effect::Move(step)],
        });
    }
    if task.approved
        || !task.requires_approval
        || task.status.is_finished()
        || task.status == Status::Running
    {
        return Err(Refusal::Conflict {
            task: task.id,
            status: task.status,
            message: "it is not waiting for approval".into(),
        });
    }
    Ok(Plan {
        status: task.status,
        effects: vec![Effect::Approve { task: task.id }],
    })
}

/// Reject a task waiting for approval: it is cancelled, with the comment as the `reject`
/// event's reason; its dependents are settled (they block, as on a cancel).
pub fn reject(task: &TaskFacts, comment: Option<&str>) -> Result<Plan, Refusal> {
    if task.status != Status::AwaitingApproval {
        return Err(Refusal::Conflict {
            task: task.id,
            status: task.status,
            message: "only a task waiting for approval can be rejected; use `orch task cancel` to stop it".into(),
        });
    }
    let reason = match comment {
        Some(comment) => format!("rejected: {comment}"),
        None => "rejected".to_owned(),
    };
    let step = Move::checked(task.id, task.status, EventKind::Reject, Status::Cancelled)?
        .because(Some(reason));
    Ok(Plan {
        status: Status::Cancelled,
        effects: vec![
            Effect::Move(step),
            Effect::SettleDependents { task: task.id },
        ],
    })
}

/// Reopen a finished task with a follow-up for the last agent session. A reply not yet
/// answered (`pending`, its run failed) is still owed: the new message joins it, so one resumed
/// session hears both and neither is dropped.
pub fn reply(
    task: &TaskFacts,
    message: &str,
    session: Option<AgentSession>,
    pending: Option<i64>,
) -> Result<Plan, Refusal> {
    if !lifecycle::can(task.status, EventKind::Reply) {
        return Err(Refusal::Conflict {
            task: task.id,
            status: task.status,
            message: "cannot reply: the task has not finished; reply once it is done, failed, needs_review or cancelled".into(),
        });
    }
    let Some(session) = session else {
        return Err(Refusal::Conflict {
            task: task.id,
            status: task.status,
            message: "cannot reply: no agent session of this task was recorded, so there is nothing to resume; use `orch task retry` to run it again".into(),
        });
    };
    let record = match pending {
        Some(reply) => Effect::AppendReply {
            reply,
            message: message.to_owned(),
        },
        None => Effect::InsertReply {
            task: task.id,
            message: message.to_owned(),
            session,
        },
    };
    let shown: String = message.chars().take(120).collect();
    let step = Move::checked(task.id, task.status, EventKind::Reply, Status::Queued)?
        .because(Some(format!("reply: {shown}")));
    Ok(Plan {
        status: Status::Queued,
        effects: vec![
            record,
            Effect::SetAttempts {
                task: task.id,
                attempts_used: 0,
            },
            Effect::Move(step),
        ],
    })
}

/// A `waiting` or `blocked` task whose dependencies changed moves to where they now put it;
/// blocking is transitive, and so is its end.
///
/// A parent is a dependent of its children too: a failed child sends a parent that is not
/// running to `needs_review`; an unfinished one keeps it (or puts it) `blocked`; when all are
/// done it goes where its dependencies put it.
pub fn settle_dependent(dependent: &DependentFacts) -> Result<Vec<Effect>, Refusal> {
    let task = &dependent.task;
    let (children, children_reason) = tree::summarize_children(&task.children);
    if children.failed > 0 && lifecycle::can(task.status, EventKind::ChildFailed) {
        let step = Move::checked(
            task.id,
            task.status,
            EventKind::ChildFailed,
            Status::NeedsReview,
        )?
        .because(children_reason);
        return Ok(vec![
            Effect::Move(step),
            Effect::SettleDependents { task: task.id },
        ]);
    }
    if children.holds_parent()
        && matches!(
            task.status,
            Status::Queued | Status::AwaitingApproval | Status::RetryWait
        )
    {
        let step = Move::checked(task.id, task.status, EventKind::Block, Status::Blocked)?
            .because(children_reason);
        return Ok(vec![
            Effect::Move(step),
            Effect::SettleDependents { task: task.id },
        ]);
    }
    if !matches!(task.status, Status::Waiting | Status::Blocked) {
        return Ok(Vec::new());
    }
    let (state, reason) = summarize(&dependent.dependencies);
    let (to, reason) = resting_with_children(task, state.resting_status(), reason);
    if to == task.status {
        // Still blocked, perhaps by another dependency: keep the reason true (no transition,
        // so no event).
        return Ok(if to == Status::Blocked {
            vec![Effect::SetReason {
                task: task.id,
                reason,
            }]
        } else {
            Vec::new()
        });
    }
    let kind = match (task.status, to) {
        (_, Status::Queued) => EventKind::Promote,
        (Status::Waiting, Status::Blocked) => EventKind::Block,
        (Status::Blocked, Status::Waiting) => EventKind::DepWait,
        _ => return Ok(Vec::new()),
    };
    let mut effects = Vec::new();
    moved(
        &mut effects,
        task,
        Move::checked(task.id, task.status, kind, to)?.because(reason),
    )?;
    if to == Status::Blocked || task.status == Status::Blocked {
        effects.push(Effect::SettleDependents { task: task.id });
    }
    Ok(effects)
}

/// Where a task rests given where its dependencies put it (`resting`, with their `reason`) and
/// its children: `blocked` while a child is unfinished and nothing else holds it, or when a
/// child failed (the reason names the child).
fn resting_with_children(
    task: &TaskFacts,
    resting: Status,
    reason: Option<String>,
) -> (Status, Option<String>) {
    let (children, children_reason) = tree::summarize_children(&task.children);
    if children.failed > 0 || (children.holds_parent() && resting == Status::Queued) {
        (Status::Blocked, children_reason)
    } else {
        (resting, reason)
    }
}

/// A short unique name for a project at `path`: its directory's name, with `-2`, `-3`, ...
/// when that is `taken`.
pub fn project_name(path: &str, taken: &BTreeSet<String>) -> String {
    let base = std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("project")
        .to_owned();
    let mut name = base.clone();
    let mut suffix = 2;
    while taken.contains(&name) {
        name = format!("{base}-{suffix}");
        suffix += 1;
    }
    name
}

#[cfg(test)]
mod tests;
