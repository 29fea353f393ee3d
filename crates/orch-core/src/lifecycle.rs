//! The task lifecycle (SPEC §4) as an explicit transition table.
//!
//! Every status change in orch is a triple `(from, kind, to)`. The table below lists every triple
//! that is allowed; anything else is refused with a [`TransitionError`]. Where the target depends
//! on context (are there attempts left? are the dependencies done?), the caller decides the target
//! with the small `decide_*` functions here and the table still checks the result.

use std::fmt;
use std::str::FromStr;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Some dependency is not `done` yet.
    Waiting,
    /// Ready to be claimed by a worker.
    Queued,
    /// Ready, but a human must approve before it may run.
    AwaitingApproval,
    /// A worker holds a lease on a run of it.
    Running,
    /// A step of its run asked a human for values (an info request): the run ended (parked)
    /// and holds no worker slot; the answer queues the task again.
    AwaitingInput,
    /// A run failed and another attempt is scheduled after a backoff.
    RetryWait,
    /// A dependency failed, was cancelled or needs review; nothing runs until that changes.
    Blocked,
    /// Finished successfully. Terminal.
    Done,
    /// Finished unsuccessfully with no attempts left.
    Failed,
    /// A human must look (max attempts on lost leases, review rejection, timeouts).
    NeedsReview,
    /// Cancelled by a user.
    Cancelled,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 11] = [
        Status::Waiting,
        Status::Queued,
        Status::AwaitingApproval,
        Status::Running,
        Status::AwaitingInput,
        Status::RetryWait,
        Status::Blocked,
        Status::Done,
        Status::Failed,
        Status::NeedsReview,
        Status::Cancelled,
    ];

    /// The stable name used in the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Queued => "queued",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Running => "running",
            Status::AwaitingInput => "awaiting_input",
            Status::RetryWait => "retry_wait",
            Status::Blocked => "blocked",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::NeedsReview => "needs_review",
            Status::Cancelled => "cancelled",
        }
    }

    /// `done` is the only status nothing but a user's follow-up (`reply`) can leave: no
    /// worker, timer or retry ever moves a done task.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Done)
    }

    /// Statuses in which the task will not move again without a human (or a retry).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Status::Done | Status::Failed | Status::NeedsReview | Status::Cancelled
        )
    }

    /// A dependency in this status stops its dependents from ever running on their own.
    pub fn blocks_dependents(self) -> bool {
        matches!(
            self,
            Status::Failed | Status::Cancelled | Status::NeedsReview | Status::Blocked
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that orch does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}`; expected one of: waiting, queued, awaiting_approval, running, awaiting_input, retry_wait, blocked, done, failed, needs_review, cancelled")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What happened to a task. Transition kinds change the status; note kinds only record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The task was submitted.
    Create,
    /// All dependencies are done: the task may be claimed.
    Promote,
    /// A dependency is blocking no longer, but others are still running.
    DepWait,
    /// A dependency failed, was cancelled, needs review or is itself blocked.
    Block,
    /// The task needs a human's approval before it may run.
    RequestApproval,
    /// A human approved the task.
    Approve,
    /// A worker claimed the task and holds a lease on a new run.
    Claim,
    /// The running agent asked a human for input.
    RequestInput,
    /// The human answered.
    Answer,
    /// The run succeeded.
    Complete,
    /// The run failed.
    Fail,
    /// The run ended asking for a human (review rejection, timeout, ...).
    Escalate,
    /// The run's lease expired without a heartbeat: the run is lost.
    Lose,
    /// The worker gave the task back to be run again after a delay.
    Requeue,
    /// The backoff of a retry elapsed.
    RetryDue,
    /// A user asked for another attempt.
    Retry,
    /// A user cancelled the task.
    Cancel,
    /// A user unblocked the task.
    Unblock,
    /// Note: a request carrying a stale fencing token or an expired lease was refused.
    Refused,
    /// A follow-up message (`orch task reply`) reopened a finished task for a new run that
    /// resumes the agent's session.
    Reply,
    /// Note: the task's change was landed in the project's checkout (`orch task merge`, or a
    /// workflow's final merge); the data names the commit, the branch it went into and how.
    Merged,
    /// Note: a workflow's automatic merge of the task was refused (a dirty checkout, a
    /// conflict); the reason says why. The task keeps its status.
    MergeRefused,
    /// A child of the task failed, was cancelled or needs review: a human must look at the
    /// parent.
    ChildFailed,
    /// The run ended with children of the task unfinished: the parent rests `blocked` until
    /// they are all done, then continues at its next step.
    AwaitChildren,
    /// A human rejected a task waiting for approval.
    Reject,
    /// The task's pull request was merged while the task was not `done` (a human merged it
    /// during a follow-up run, or while the task waited for review): the task is finished
    /// (issue 12), its active run cancelled.
    PullMerged,
}

impl EventKind {
    /// Every kind, transition kinds first.
    pub const ALL: [EventKind; 26] = [
        EventKind::Create,
        EventKind::Promote,
        EventKind::DepWait,
        EventKind::Block,
        EventKind::RequestApproval,
        EventKind::Approve,
        EventKind::Claim,
        EventKind::RequestInput,
        EventKind::Answer,
        EventKind::Complete,
        EventKind::Fail,
        EventKind::Escalate,
        EventKind::Lose,
        EventKind::Requeue,
        EventKind::RetryDue,
        EventKind::Retry,
        EventKind::Cancel,
        EventKind::Unblock,
        EventKind::Refused,
        EventKind::Reply,
        EventKind::Merged,
        EventKind::MergeRefused,
        EventKind::ChildFailed,
        EventKind::AwaitChildren,
        EventKind::Reject,
        EventKind::PullMerged,
    ];

    /// The stable name stored in the event log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Promote => "promote",
            EventKind::DepWait => "dep_wait",
            EventKind::Block => "block",
            EventKind::RequestApproval => "request_approval",
            EventKind::Approve => "approve",
            EventKind::Claim => "claim",
            EventKind::RequestInput => "request_input",
            EventKind::Answer => "answer",
            EventKind::Complete => "complete",
            EventKind::Fail => "fail",
            EventKind::Escalate => "escalate",
            EventKind::Lose => "lose",
            EventKind::Requeue => "requeue",
            EventKind::RetryDue => "retry_due",
            EventKind::Retry => "retry",
            EventKind::Cancel => "cancel",
            EventKind::Unblock => "unblock",
            EventKind::Refused => "refused",
            EventKind::Reply => "reply",
            EventKind::Merged => "merged",
            EventKind::MergeRefused => "merge_refused",
            EventKind::ChildFailed => "child_failed",
            EventKind::AwaitChildren => "await_children",
            EventKind::Reject => "reject",
            EventKind::PullMerged => "pull_merged",
        }
    }

    /// Notes record something without changing the status (`from == to`).
    pub fn is_note(self) -> bool {
        matches!(
            self,
            EventKind::Refused | EventKind::Merged | EventKind::MergeRefused
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event kind name that orch does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind `{0}`")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.to_owned()))
    }
}

use EventKind as K;
use Status as S;

/// Every allowed transition. `None` as `from` means "the task does not exist yet".
pub const TRANSITIONS: &[(Option<Status>, EventKind, Status)] = &[
    (None, K::Create, S::Waiting),
    (None, K::Create, S::Queued),
    (None, K::Create, S::Blocked),
    (Some(S::Waiting), K::Promote, S::Queued),
    (Some(S::Blocked), K::Promote, S::Queued),
    (Some(S::Blocked), K::DepWait, S::Waiting),
    (Some(S::Waiting), K::Block, S::Blocked),
    (Some(S::Queued), K::RequestApproval, S::AwaitingApproval),
    (Some(S::AwaitingApproval), K::Approve, S::Queued),
    (Some(S::Queued), K::Claim, S::Running),
    (Some(S::Running), K::RequestInput, S::AwaitingInput),
    // An info request parks the task without a run (no worker slot held); the answer queues
    // it again and an unanswered request past its deadline sends it to a human.
    (Some(S::AwaitingInput), K::Answer, S::Queued),
    (Some(S::AwaitingInput), K::Escalate, S::NeedsReview),
    (Some(S::Running), K::Complete, S::Done),
    (Some(S::Running), K::Fail, S::RetryWait),
    (Some(S::Running), K::Fail, S::Failed),
    (Some(S::Running), K::Escalate, S::NeedsReview),
    (Some(S::Running), K::Lose, S::RetryWait),
    (Some(S::Running), K::Lose, S::NeedsReview),
    (Some(S::Running), K::Requeue, S::RetryWait),
    (Some(S::RetryWait), K::RetryDue, S::Queued),
    (Some(S::Failed), K::Retry, S::Queued),
    (Some(S::Failed), K::Retry, S::Waiting),
    (Some(S::Failed), K::Retry, S::Blocked),
    (Some(S::Failed), K::Retry, S::RetryWait),
    (Some(S::NeedsReview), K::Retry, S::Queued),
    (Some(S::NeedsReview), K::Retry, S::Waiting),
    (Some(S::NeedsReview), K::Retry, S::Blocked),
    (Some(S::NeedsReview), K::Retry, S::RetryWait),
    (Some(S::Cancelled), K::Retry, S::Queued),
    (Some(S::Cancelled), K::Retry, S::Waiting),
    (Some(S::Cancelled), K::Retry, S::Blocked),
    (Some(S::Cancelled), K::Retry, S::RetryWait),
    (Some(S::Waiting), K::Cancel, S::Cancelled),
    (Some(S::Queued), K::Cancel, S::Cancelled),
    (Some(S::AwaitingApproval), K::Cancel, S::Cancelled),
    (Some(S::Running), K::Cancel, S::Cancelled),
    (Some(S::AwaitingInput), K::Cancel, S::Cancelled),
    (Some(S::RetryWait), K::Cancel, S::Cancelled),
    (Some(S::Blocked), K::Cancel, S::Cancelled),
    (Some(S::NeedsReview), K::Cancel, S::Cancelled),
    (Some(S::Blocked), K::Unblock, S::Queued),
    (Some(S::Blocked), K::Unblock, S::Waiting),
    (Some(S::Done), K::Reply, S::Queued),
    (Some(S::Failed), K::Reply, S::Queued),
    (Some(S::NeedsReview), K::Reply, S::Queued),
    (Some(S::Cancelled), K::Reply, S::Queued),
    // A done task's pull request needs a human (closed without merge, feedback rounds used up).
    (Some(S::Done), K::Escalate, S::NeedsReview),
    // Parents and children (SPEC §4): a parent with unfinished children rests `blocked` (it
    // gets a child while queued or waiting, or its run ends before they are done), continues
    // (`promote`) when they are all done, and needs a human when one fails.
    (Some(S::Queued), K::Block, S::Blocked),
    (Some(S::AwaitingApproval), K::Block, S::Blocked),
    (Some(S::RetryWait), K::Block, S::Blocked),
    (Some(S::Running), K::AwaitChildren, S::Blocked),
    (Some(S::Waiting), K::ChildFailed, S::NeedsReview),
    (Some(S::Queued), K::ChildFailed, S::NeedsReview),
    (Some(S::Blocked), K::ChildFailed, S::NeedsReview),
    (Some(S::AwaitingApproval), K::Reject, S::Cancelled),
    // A merged pull request finishes its task whatever it was doing (issue 12).
    (Some(S::Waiting), K::PullMerged, S::Done),
    (Some(S::Queued), K::PullMerged, S::Done),
    (Some(S::AwaitingApproval), K::PullMerged, S::Done),
    (Some(S::Running), K::PullMerged, S::Done),
    (Some(S::AwaitingInput), K::PullMerged, S::Done),
    (Some(S::RetryWait), K::PullMerged, S::Done),
    (Some(S::Blocked), K::PullMerged, S::Done),
    (Some(S::Failed), K::PullMerged, S::Done),
    (Some(S::NeedsReview), K::PullMerged, S::Done),
    (Some(S::Cancelled), K::PullMerged, S::Done),
];

/// A refused status change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The triple is not in [`TRANSITIONS`].
    #[error("a task that is {} cannot `{kind}` to {to}{}", from.map_or("new".to_owned(), |s| s.to_string()), allowed_hint(*from, *kind))]
    NotAllowed {
        /// The status before (None: the task did not exist).
        from: Option<Status>,
        /// What was attempted.
        kind: EventKind,
        /// The status asked for.
        to: Status,
    },
    /// A note kind must leave the status as it is.
    #[error("`{kind}` records a note and cannot change the status from {from} to {to}")]
    NoteChangesStatus {
        /// The status before.
        from: Status,
        /// The note kind.
        kind: EventKind,
        /// The status asked for.
        to: Status,
    },
}

fn allowed_hint(from: Option<Status>, kind: EventKind) -> String {
    let sources: Vec<&str> = TRANSITIONS
        .iter()
        .filter(|(_, k, _)| *k == kind)
        .filter_map(|(f, _, _)| f.map(Status::as_str))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if sources.is_empty() || from.is_none() {
        String::new()
    } else {
        format!(
            " (`{kind}` applies only to tasks that are {})",
            sources.join(", ")
        )
    }
}

/// Check one status change against the table. Returns the new status.
pub fn transition(
    from: Option<Status>,
    kind: EventKind,
    to: Status,
) -> Result<Status, TransitionError> {
    if kind.is_note() {
        return match from {
            Some(from) if from == to => Ok(to),
            Some(from) => Err(TransitionError::NoteChangesStatus { from, kind, to }),
            None => Err(TransitionError::NotAllowed { from, kind, to }),
        };
    }
    if TRANSITIONS.contains(&(from, kind, to)) {
        Ok(to)
    } else {
        Err(TransitionError::NotAllowed { from, kind, to })
    }
}

/// Whether any transition of `kind` leaves `from`.
pub fn can(from: Status, kind: EventKind) -> bool {
    if kind.is_note() {
        return true;
    }
    TRANSITIONS
        .iter()
        .any(|(f, k, _)| *f == Some(from) && *k == kind)
}

/// The summary of a task's dependencies that decides whether it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DependencyState {
    /// How many dependencies there are.
    pub total: usize,
    /// How many are `done`.
    pub done: usize,
    /// How many are in a status that blocks dependents.
    pub blocking: usize,
}

impl DependencyState {
    /// Where a task with these dependencies belongs while it is not running.
    pub fn resting_status(self) -> Status {
        if self.blocking > 0 {
            Status::Blocked
        } else if self.done == self.total {
            Status::Queued
        } else {
            Status::Waiting
        }
    }
}

/// The status a run failure leads to: another attempt if any is left, else `failed`.
pub fn decide_after_failure(attempts_used: u32, max_attempts: u32) -> Status {
    if attempts_used < max_attempts {
        Status::RetryWait
    } else {
        Status::Failed
    }
}

/// The status a lost lease leads to: another attempt if any is left, else a human must look.
pub fn decide_after_lost_lease(attempts_used: u32, max_attempts: u32) -> Status {
    if attempts_used < max_attempts {
        Status::RetryWait
    } else {
        Status::NeedsReview
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(from: Option<Status>, kind: EventKind, to: Status, expect_ok: bool) {
        let result = transition(from, kind, to);
        assert_eq!(
            result.is_ok(),
            expect_ok,
            "{from:?} --{kind}--> {to}: {result:?}"
        );
    }

    #[test]
    fn the_table_allows_the_main_path_of_a_task() {
        check(None, K::Create, S::Waiting, true);
        check(Some(S::Waiting), K::Promote, S::Queued, true);
        check(Some(S::Queued), K::Claim, S::Running, true);
        check(Some(S::Running), K::Complete, S::Done, true);
    }

    #[test]
    fn done_is_left_only_by_a_reply_to_queued_or_its_pull_request_needing_review() {
        for kind in EventKind::ALL.into_iter().filter(|k| !k.is_note()) {
            for to in Status::ALL {
                let allowed = (kind == K::Reply && to == S::Queued)
                    || (kind == K::Escalate && to == S::NeedsReview);
                check(Some(S::Done), kind, to, allowed);
            }
        }
    }

    #[test]
    fn notes_never_change_the_status() {
        check(Some(S::Running), K::Refused, S::Running, true);
        check(Some(S::Running), K::Refused, S::Done, false);
        check(Some(S::Done), K::Merged, S::Done, true);
        check(Some(S::Done), K::Merged, S::Queued, false);
        check(Some(S::Done), K::MergeRefused, S::Done, true);
    }

    #[test]
    fn a_refused_transition_says_which_statuses_the_kind_applies_to() {
        let err = transition(Some(S::Done), K::Claim, S::Running).unwrap_err();
        expect_test::expect!["a task that is done cannot `claim` to running (`claim` applies only to tasks that are queued)"]
            .assert_eq(&err.to_string());
    }

    #[test]
    fn every_name_round_trips() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        }
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
    }

    #[test]
    fn failures_retry_until_attempts_run_out() {
        assert_eq!(decide_after_failure(1, 3), S::RetryWait);
        assert_eq!(decide_after_failure(3, 3), S::Failed);
        assert_eq!(decide_after_lost_lease(2, 3), S::RetryWait);
        assert_eq!(decide_after_lost_lease(3, 3), S::NeedsReview);
    }

    #[test]
    fn every_status_is_reachable_and_only_done_is_a_dead_end() {
        let mut reached = std::collections::BTreeSet::new();
        let mut frontier = vec![None];
        while let Some(from) = frontier.pop() {
            for (f, _, to) in TRANSITIONS {
                if *f == from && reached.insert(*to) {
                    frontier.push(Some(*to));
                }
            }
        }
        assert_eq!(
            reached.len(),
            Status::ALL.len(),
            "unreachable: {:?}",
            Status::ALL
                .iter()
                .filter(|s| !reached.contains(s))
                .collect::<Vec<_>>()
        );
        for status in Status::ALL {
            let leaves = TRANSITIONS.iter().any(|(f, kind, to)| {
                *f == Some(status)
                        && *kind != K::Reply
                        // The pull request of a done task needing a human reopens it.
                        && !(*f == Some(S::Done) && *kind == K::Escalate && *to == S::NeedsReview)
            });
            assert_eq!(leaves, !status.is_terminal(), "{status}");
        }
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #[test]
        fn random_requests_only_ever_take_allowed_steps_and_replay_to_the_state(
            requests in proptest::collection::vec(
                proptest::prop_oneof![
                    // Mostly requests that are allowed from some status, so histories get long...
                    3 => (0..TRANSITIONS.len()).prop_map(|i| (TRANSITIONS[i].1, TRANSITIONS[i].2)),
                    // ...and some that are nonsense anywhere.
                    1 => (0..EventKind::ALL.len(), 0..Status::ALL.len()).prop_map(|(k, s)| (EventKind::ALL[k], Status::ALL[s])),
                ],
                0..80,
            )
        ) {
            let mut state: Option<Status> = None;
            let mut events = Vec::new();
            for (i, (kind, to)) in requests.into_iter().enumerate() {
                let before = state;
                match transition(state, kind, to) {
                    Ok(next) => {
                        proptest::prop_assert!(kind.is_note() || TRANSITIONS.contains(&(before, kind, next)));
                        events.push(crate::model::Event {
                            id: i64::try_from(i).unwrap_or(0),
                            task: crate::model::TaskId(1),
                            run: None,
                            at: crate::model::Timestamp(0),
                            actor: "prop".into(),
                            kind,
                            from: before,
                            to: next,
                            reason: None,
                            data: serde_json::Value::Null,
                        });
                        state = Some(next);
                    }
                    Err(_) => proptest::prop_assert_eq!(state, before, "a refused request changes nothing"),
                }
            }
            match state {
                None => proptest::prop_assert!(events.is_empty()),
                Some(state) => proptest::prop_assert_eq!(crate::replay::replay(&events), Ok(state)),
            }
        }
    }

    #[test]
    fn dependency_state_picks_the_resting_status() {
        let deps = |total, done, blocking| DependencyState {
            total,
            done,
            blocking,
        };
        assert_eq!(deps(0, 0, 0).resting_status(), S::Queued);
        assert_eq!(deps(2, 1, 0).resting_status(), S::Waiting);
        assert_eq!(deps(2, 1, 1).resting_status(), S::Blocked);
        assert_eq!(deps(2, 2, 0).resting_status(), S::Queued);
    }
}
