//! Event replay: rebuild a task's status from its events and check every step against the table.

use crate::lifecycle::{transition, Status, TransitionError};
use crate::model::Event;
use crate::plan::{summarize, DependencyFacts};

/// Why a task's events do not replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The task has no events at all.
    #[error("the task has no events")]
    NoEvents,
    /// An event's `from` is not the status the earlier events lead to.
    #[error("event {event} says the task went from {} but the earlier events leave it {}", fmt_status(*recorded_from), fmt_status(*replayed))]
    Gap {
        /// The event's id.
        event: i64,
        /// What the event says the status was.
        recorded_from: Option<Status>,
        /// What replay says it was.
        replayed: Option<Status>,
    },
    /// An event's transition is not in the table.
    #[error("event {event}: {source}")]
    Refused {
        /// The event's id.
        event: i64,
        /// The table's refusal.
        source: TransitionError,
    },
    /// More than one `done` was recorded (without a `reply` reopening the task in between).
    #[error("the task was completed {0} times")]
    DoneTwice(usize),
}

fn fmt_status(status: Option<Status>) -> String {
    status.map_or_else(|| "nothing (not created)".to_owned(), |s| s.to_string())
}

/// Replay `events` (one task's, in id order) and return the status they lead to.
pub fn replay(events: &[Event]) -> Result<Status, ReplayError> {
    let mut status: Option<Status> = None;
    let mut dones = 0;
    for event in events {
        if event.from != status {
            return Err(ReplayError::Gap {
                event: event.id,
                recorded_from: event.from,
                replayed: status,
            });
        }
        let next =
            transition(status, event.kind, event.to).map_err(|source| ReplayError::Refused {
                event: event.id,
                source,
            })?;
        // A merged pull request finishing a task that left `done` (for review, or a follow-up)
        // ends what the earlier completion began; it is not a second completion.
        let merged = event.kind == crate::lifecycle::EventKind::PullMerged;
        if next == Status::Done && status != Some(Status::Done) && !merged {
            dones += 1;
            if dones > 1 {
                return Err(ReplayError::DoneTwice(dones));
            }
        }
        // A follow-up reopens a done task on purpose: its next completion is a new one.
        if event.kind == crate::lifecycle::EventKind::Reply {
            dones = 0;
        }
        status = Some(next);
    }
    status.ok_or(ReplayError::NoEvents)
}

/// What is wrong with one stored task: its events must replay to its status, it must hold
/// exactly one active run while `running` and none otherwise (an `awaiting_input` task's run
/// was parked: it ended), and a `waiting`/`blocked`/`queued` task must rest where its
/// (unwaived) `dependencies` and its `children` put it.
pub fn check_task(
    status: Status,
    events: &[Event],
    active_runs: usize,
    dependencies: Option<&[DependencyFacts]>,
    children: &[DependencyFacts],
) -> Vec<String> {
    let mut problems = Vec::new();
    match replay(events) {
        Ok(replayed) if replayed == status => {}
        Ok(replayed) => problems.push(format!(
            "the task is {status} but its events replay to {replayed}"
        )),
        Err(e) => problems.push(format!("its events do not replay: {e}")),
    }
    let holds_a_run = status == Status::Running;
    if holds_a_run && active_runs != 1 {
        problems.push(format!(
            "the task is {status} but has {active_runs} active runs (expected 1)"
        ));
    } else if !holds_a_run && active_runs > 0 {
        problems.push(format!(
            "the task is {status} but still has {active_runs} active run(s)"
        ));
    }
    if let Some(dependencies) = dependencies {
        let (deps, _) = summarize(dependencies);
        let (kids, _) = crate::tree::summarize_children(children);
        let mut expected = deps.resting_status();
        if kids.failed > 0 || (kids.holds_parent() && expected == Status::Queued) {
            // A parent waits for its children; one that failed needs a human, which `blocked`
            // (after a retry by hand) also allows.
            expected = Status::Blocked;
        }
        if matches!(status, Status::Waiting | Status::Blocked | Status::Queued)
            && expected != status
        {
            problems.push(format!(
                "the task is {status} but its dependencies ({} of {} done, {} blocking) and children ({} of {} done, {} failed) say it should be {expected}",
                deps.done, deps.total, deps.blocking, kids.done, kids.total, kids.failed
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::EventKind;
    use crate::model::{TaskId, Timestamp};

    fn event(id: i64, kind: EventKind, from: Option<Status>, to: Status) -> Event {
        Event {
            id,
            task: TaskId(1),
            run: None,
            at: Timestamp(0),
            actor: "test".into(),
            kind,
            from,
            to,
            reason: None,
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_clean_history_replays_to_its_last_status() {
        let events = [
            event(1, EventKind::Create, None, Status::Queued),
            event(2, EventKind::Claim, Some(Status::Queued), Status::Running),
            event(
                3,
                EventKind::Refused,
                Some(Status::Running),
                Status::Running,
            ),
            event(4, EventKind::Complete, Some(Status::Running), Status::Done),
        ];
        assert_eq!(replay(&events), Ok(Status::Done));
    }

    #[test]
    fn a_missing_event_is_a_gap() {
        let events = [
            event(1, EventKind::Create, None, Status::Queued),
            event(3, EventKind::Complete, Some(Status::Running), Status::Done),
        ];
        assert!(matches!(
            replay(&events),
            Err(ReplayError::Gap { event: 3, .. })
        ));
    }

    #[test]
    fn a_forbidden_transition_is_refused() {
        let events = [
            event(1, EventKind::Create, None, Status::Queued),
            event(2, EventKind::Complete, Some(Status::Queued), Status::Done),
        ];
        assert!(matches!(
            replay(&events),
            Err(ReplayError::Refused { event: 2, .. })
        ));
    }
}
