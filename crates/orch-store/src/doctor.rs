//! The consistency check behind `orch doctor`, for every backend: each backend reads one
//! snapshot into a [`Snapshot`], loading the dependencies of the tasks [`needs_dependencies`]
//! names, and [`Snapshot::problems`] replays every task's events against it.

use std::collections::BTreeMap;
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
            for message in orch_core::replay::check_task(status, &events, active_runs, deps) {
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
