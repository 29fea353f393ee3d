//! The consistency check behind `orch doctor`, for every backend: each backend reads one
//! snapshot into a [`Snapshot`], loading the dependencies of the tasks [`needs_dependencies`]
//! names, and [`Snapshot::problems`] replays every task's events against it.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use orch_core::plan::DependencyFacts;
use orch_core::{Event, Status, TaskId};

use crate::rows::EventRow;
use crate::Problem;

/// What the check reads.
#[derive(Default)]
pub(crate) struct Snapshot {
    /// Every task's stored status, as text.
    pub statuses: Vec<(i64, String)>,
    /// Every readable event, by task.
    pub events: BTreeMap<i64, Vec<Event>>,
    /// Active runs per task.
    pub active_runs: BTreeMap<i64, usize>,
    /// The dependencies of the tasks that [`needs_dependencies`].
    pub dependencies: BTreeMap<i64, Vec<DependencyFacts>>,
    /// The children of the tasks that [`needs_dependencies`] (a parent waits for them).
    pub children: BTreeMap<i64, Vec<DependencyFacts>>,
    /// The tasks with an open info request.
    pub open_requests: BTreeSet<i64>,
    /// Problems found while reading (unreadable events).
    pub problems: Vec<Problem>,
}

/// Whether the check needs the dependencies of a task stored with this status.
pub(crate) fn needs_dependencies(status: &str) -> bool {
    matches!(
        Status::from_str(status),
        Ok(Status::Waiting | Status::Blocked | Status::Queued)
    )
}

impl Snapshot {
    /// Add one stored event (an unreadable one is a problem of its task).
    pub(crate) fn add_event(&mut self, row: EventRow) {
        let task = row.task_id;
        match row.into_event() {
            Ok(event) => self.events.entry(task).or_default().push(event),
            Err(e) => self.problems.push(Problem {
                task: TaskId(task),
                message: format!("unreadable event: {e}"),
            }),
        }
    }

    /// Replay every task's events and compare them with the stored state.
    pub(crate) fn problems(mut self) -> Vec<Problem> {
        let mut problems = std::mem::take(&mut self.problems);
        for (id, status_text) in &self.statuses {
            let task = TaskId(*id);
            let Ok(status) = Status::from_str(status_text) else {
                problems.push(Problem {
                    task,
                    message: format!("stored status `{status_text}` is not a status"),
                });
                continue;
            };
            let events = self.events.remove(id).unwrap_or_default();
            let active_runs = self.active_runs.get(id).copied().unwrap_or(0);
            let deps = self.dependencies.get(id).map(Vec::as_slice);
            let children = self.children.get(id).map_or(&[][..], Vec::as_slice);
            for message in
                orch_core::replay::check_task(status, &events, active_runs, deps, children)
            {
                problems.push(Problem { task, message });
            }
            let open = self.open_requests.contains(id);
            if let Some(message) = info_request_problem(task, status, open) {
                problems.push(Problem { task, message });
            }
        }
        for task in self.events.keys() {
            problems.push(Problem {
                task: TaskId(*task),
                message: "events exist for a task that does not".into(),
            });
        }
        problems
    }
}

/// A task awaiting input must have an open info request (else no answer can reach it), and an
/// open request belongs to a task awaiting input (a cancel closes the task's requests).
fn info_request_problem(task: TaskId, status: Status, open: bool) -> Option<String> {
    match (status, open) {
        (Status::AwaitingInput, false) => Some(format!(
            "the task is awaiting_input but has no open info request, so no answer can reach \
             it; run `orch task cancel {task}` and then `orch task retry {task}` to run it again"
        )),
        (Status::AwaitingInput, true) | (_, false) => None,
        (status, true) => Some(format!(
            "an info request of this task is still open although the task is {status}, so its \
             answer would go nowhere; a running `orch serve` closes it within a minute (start \
             one), or `orch task cancel {task}` ends the task"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awaiting_input_and_open_requests_go_together() {
        let task = TaskId(7);
        assert!(info_request_problem(task, Status::AwaitingInput, true).is_none());
        assert!(info_request_problem(task, Status::Queued, false).is_none());
        assert!(info_request_problem(task, Status::Cancelled, true).is_some());
        let lost = info_request_problem(task, Status::AwaitingInput, false).unwrap();
        assert!(lost.contains("no open info request") && lost.contains("orch task retry 7"));
        let stale = info_request_problem(task, Status::NeedsReview, true).unwrap();
        assert!(stale.contains("needs_review") && stale.contains("orch serve"));
    }
}
