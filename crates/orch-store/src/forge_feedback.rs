//! The store's side of a pull request's feedback loop: the causes each task reacted to and the
//! rounds it used ([`FeedbackState`]), and [`Store::record_forge_reaction`], which records a
//! reaction's causes and carries it out (a follow-up run, `needs_review`, forge writes) in one
//! transaction, so a crash between the two can neither lose nor double a reaction.

use std::collections::{BTreeMap, BTreeSet};

use orch_core::forge::feedback::RoundKind;
use orch_core::TaskId;

use crate::{NewForgeOp, Op, Result, Store};

/// What a task's feedback loop has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedbackState {
    /// Follow-up runs used, per kind.
    pub rounds: BTreeMap<RoundKind, u32>,
    /// Every cause reacted to.
    pub reacted: BTreeSet<String>,
}

/// What a reaction does to the task itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReactionEffect {
    /// Nothing (forge writes only).
    None,
    /// A follow-up run with this message (as `reply` starts one).
    FollowUp {
        /// The round's kind.
        kind: RoundKind,
        /// The message.
        message: String,
    },
    /// The task goes from `done` to `needs_review`, with this reason.
    NeedsReview(String),
    /// The pull request was merged: a task that is not `done` ends `done` with this reason, its
    /// active run cancelled (`orch_core::forge::feedback::finish_merged`).
    Finish(String),
}

/// A reaction to record and carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReaction {
    /// The task.
    pub task: TaskId,
    /// Its causes (at least one).
    pub causes: Vec<String>,
    /// Its stored name: `follow_up`, `merge`, `finish` or `needs_review`.
    pub name: &'static str,
    /// What it does to the task.
    pub effect: ReactionEffect,
    /// Forge writes it enqueues.
    pub ops: Vec<NewForgeOp>,
}

/// A stored reaction row before it is read.
pub(crate) fn fold(rows: Vec<(String, Option<String>)>) -> FeedbackState {
    let mut state = FeedbackState::default();
    for (cause, kind) in rows {
        if let Some(kind) = kind.as_deref().and_then(RoundKind::parse) {
            *state.rounds.entry(kind).or_default() += 1;
        }
        state.reacted.insert(cause);
    }
    state
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
    /// The causes `task` reacted to and the rounds it used.
    pub async fn forge_feedback(&self, task: TaskId) -> Result<FeedbackState> {
        delegate!(self.forge_feedback(task))
    }

    /// Tasks with a pull request whose merge or closing was not handled yet: what the poller
    /// looks at.
    pub async fn tasks_with_open_pulls(&self) -> Result<Vec<TaskId>> {
        delegate!(self.tasks_with_open_pulls())
    }

    /// Record the reaction's causes and carry it out, in one transaction. `Ok(false)`: one of
    /// its causes was recorded before (the reaction happened already); nothing is done. A
    /// follow-up the task cannot take (it has no agent session, it is not finished) is refused
    /// (`Conflict`) and nothing is recorded.
    pub async fn record_forge_reaction(&self, reaction: &NewReaction, op: Op<'_>) -> Result<bool> {
        if reaction.causes.is_empty() {
            return Err(crate::StoreError::Invalid {
                field: "causes".into(),
                reason: "a reaction needs a cause to be recorded under".into(),
            });
        }
        delegate!(self.record_forge_reaction(reaction.clone(), op))
    }
}
