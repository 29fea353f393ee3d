//! What a decision wants changed: a [`Plan`] of [`Effect`]s that a store backend applies, in
//! order, in one transaction, and the facts a decision reads.
//!
//! The split is the store's contract: a backend loads the facts (`TaskFacts`, the dependencies),
//! calls a `decide::*` function, and applies the plan with conditional updates
//! (`WHERE id = ? AND status = ?`; zero rows is a conflict). The rules — which status follows
//! which outcome, how dependencies resolve, what may be cancelled — live only in `decide`, so a
//! second backend does not copy them.

use crate::lifecycle::{self, DependencyState, EventKind, Status, TransitionError};
use crate::model::{RunId, RunState, TaskId, Timestamp};
use crate::retry::RetryPolicy;

/// What decisions need to know about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFacts {
    /// The task.
    pub id: TaskId,
    /// Its status now.
    pub status: Status,
    /// Attempts used since it was created or last retried by hand.
    pub attempts_used: u32,
    /// Attempts it may use.
    pub max_attempts: u32,
    /// Whether a human approved it ahead of time.
    pub approved: bool,
    /// Whether it must be approved before it runs.
    pub requires_approval: bool,
    /// Its retry policy (for the backoff).
    pub retry: RetryPolicy,
    /// Its active run, if one is.
    pub active_run: Option<RunId>,
    /// Its children (tasks whose parent it is), ordered by id.
    pub children: Vec<DependencyFacts>,
}

/// One dependency of a task that has not been waived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyFacts {
    /// The dependency.
    pub id: TaskId,
    /// Its workflow key, else its title (for reasons).
    pub name: String,
    /// Its status now.
    pub status: Status,
}

/// A task whose dependencies changed, with its own (unwaived) dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependentFacts {
    /// The task.
    pub task: TaskFacts,
    /// Its dependencies, ordered by id.
    pub dependencies: Vec<DependencyFacts>,
}

/// The agent session a follow-up resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSession {
    /// The agent.
    pub agent: String,
    /// The step the session belongs to.
    pub step: String,
    /// The session to resume.
    pub session_id: String,
}

/// A status change: stored with `UPDATE ... WHERE id = task AND status = from`, and an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The task.
    pub task: TaskId,
    /// The status it must still have.
    pub from: Status,
    /// The status it gets.
    pub to: Status,
    /// The event's kind.
    pub kind: EventKind,
    /// Why, in words (the task's reason and the event's).
    pub reason: Option<String>,
    /// For `retry_wait`: not before this instant.
    pub not_before: Option<Timestamp>,
    /// The run the event concerns.
    pub run: Option<RunId>,
}

impl Move {
    /// A move checked against the transition table.
    pub fn checked(
        task: TaskId,
        from: Status,
        kind: EventKind,
        to: Status,
    ) -> Result<Move, Refusal> {
        lifecycle::transition(Some(from), kind, to)
            .map_err(|source| Refusal::Transition { task, source })?;
        Ok(Move {
            task,
            from,
            to,
            kind,
            reason: None,
            not_before: None,
            run: None,
        })
    }

    /// The same move with a reason.
    pub fn because(mut self, reason: Option<String>) -> Move {
        self.reason = reason;
        self
    }

    /// The same move, waiting until `not_before`.
    pub fn until(mut self, not_before: Option<Timestamp>) -> Move {
        self.not_before = not_before;
        self
    }

    /// The same move, about `run`.
    pub fn of_run(mut self, run: Option<RunId>) -> Move {
        self.run = run;
        self
    }
}

/// One change a plan asks for. Backends apply them in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A new task (stored as `waiting`) starts in `to`: the `create` event.
    Create {
        /// The task.
        task: TaskId,
        /// Where it starts.
        to: Status,
        /// Why (a blocking dependency).
        reason: Option<String>,
    },
    /// A status change with its event.
    Move(Move),
    /// Set the attempts used.
    SetAttempts {
        /// The task.
        task: TaskId,
        /// The new count.
        attempts_used: u32,
    },
    /// Keep a task's reason true without a transition (still blocked, by another dependency).
    SetReason {
        /// The task.
        task: TaskId,
        /// The reason.
        reason: Option<String>,
    },
    /// Mark a task approved.
    Approve {
        /// The task.
        task: TaskId,
    },
    /// Waive one dependency of a task (marked, not deleted).
    Waive {
        /// The task.
        task: TaskId,
        /// The dependency it goes ahead without.
        dependency: TaskId,
    },
    /// End a run that must still be active (zero rows is a conflict).
    EndRun {
        /// The run.
        run: RunId,
        /// How it ended.
        state: RunState,
        /// A short description.
        outcome: String,
    },
    /// A successful run answers the task's pending follow-ups.
    AnswerReplies {
        /// The task.
        task: TaskId,
        /// The run that answered.
        run: RunId,
    },
    /// Record a follow-up for the task's next run.
    InsertReply {
        /// The task.
        task: TaskId,
        /// What the user said.
        message: String,
        /// The session it resumes.
        session: AgentSession,
    },
    /// Add a message to a follow-up not yet answered.
    AppendReply {
        /// The pending reply.
        reply: i64,
        /// What the user said now.
        message: String,
    },
    /// Re-evaluate the `waiting`/`blocked` dependents of this task, after everything else in
    /// the plan (see [`crate::decide::carry_out`]).
    SettleDependents {
        /// The task whose status changed.
        task: TaskId,
    },
}

/// What a decision wants changed, and the task's status once it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The task's status after the plan.
    pub status: Status,
    /// The changes, in order.
    pub effects: Vec<Effect>,
}

/// Why a decision refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The transition table refuses the change.
    #[error("task {task}: {source}")]
    Transition {
        /// The task.
        task: TaskId,
        /// The table's refusal.
        source: TransitionError,
    },
    /// The operation does not apply to the task now.
    #[error("task {task} is {status}: {message}")]
    Conflict {
        /// The task.
        task: TaskId,
        /// Its status.
        status: Status,
        /// What is in the way and what to do.
        message: String,
    },
}

/// Summarize a task's dependencies, with a sentence naming the first blocking one.
pub fn summarize(dependencies: &[DependencyFacts]) -> (DependencyState, Option<String>) {
    let mut state = DependencyState {
        total: dependencies.len(),
        ..DependencyState::default()
    };
    let mut reason = None;
    for dependency in dependencies {
        if dependency.status == Status::Done {
            state.done += 1;
        } else if dependency.status.blocks_dependents() {
            state.blocking += 1;
            if reason.is_none() {
                reason = Some(format!(
                    "dependency {} (`{}`) is {}",
                    dependency.id, dependency.name, dependency.status
                ));
            }
        }
    }
    (state, reason)
}
