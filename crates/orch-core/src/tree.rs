//! Parents and children (SPEC §4): a task may have a parent; a parent with unfinished children
//! rests `blocked` and continues by itself when they are all `done`; a failed child sends it to
//! `needs_review`. The rules here are used by [`crate::decide`] (and `orch doctor`'s replay);
//! [`tree_order`] lays out `orch task list --tree`.

use std::collections::{BTreeMap, BTreeSet};

use crate::lifecycle::Status;
use crate::model::TaskId;
use crate::plan::DependencyFacts;

/// The summary of a task's children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChildrenState {
    /// How many children there are.
    pub total: usize,
    /// How many are `done`.
    pub done: usize,
    /// How many failed, were cancelled or need review.
    pub failed: usize,
}

impl ChildrenState {
    /// Whether some child has not finished yet (or failed): the parent may not run.
    pub fn holds_parent(self) -> bool {
        self.done < self.total
    }
}

/// Whether a child in this status has failed its parent.
pub fn child_failed(status: Status) -> bool {
    matches!(
        status,
        Status::Failed | Status::NeedsReview | Status::Cancelled
    )
}

/// Summarize `children`, with a sentence for the parent's reason: the first failed child, else
/// how many are done.
pub fn summarize_children(children: &[DependencyFacts]) -> (ChildrenState, Option<String>) {
    let mut state = ChildrenState {
        total: children.len(),
        ..ChildrenState::default()
    };
    let mut failed = None;
    for child in children {
        if child.status == Status::Done {
            state.done += 1;
        } else if child_failed(child.status) {
            state.failed += 1;
            if failed.is_none() {
                failed = Some(format!(
                    "child {} (`{}`) is {}",
                    child.id, child.name, child.status
                ));
            }
        }
    }
    let reason = failed.or_else(|| {
        state.holds_parent().then(|| {
            format!(
                "waits for its children: {} of {} done",
                state.done, state.total
            )
        })
    });
    (state, reason)
}

/// One row of a tree listing: the task and how deep it is (0: no parent among the rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRow {
    /// Index into the rows given to [`tree_order`].
    pub index: usize,
    /// 0 for a root.
    pub depth: usize,
}

/// Order rows (`id`, `parent`) as a tree: each root (no parent, or a parent not among the rows)
/// in the given order, each followed by its children depth first, oldest (lowest id) first.
pub fn tree_order(rows: &[(TaskId, Option<TaskId>)]) -> Vec<TreeRow> {
    let present: BTreeSet<TaskId> = rows.iter().map(|(id, _)| *id).collect();
    let mut children: BTreeMap<TaskId, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (index, (_, parent)) in rows.iter().enumerate() {
        match parent {
            Some(parent) if present.contains(parent) => {
                children.entry(*parent).or_default().push(index);
            }
            _ => roots.push(index),
        }
    }
    for kids in children.values_mut() {
        kids.sort_by_key(|&k| rows[k].0);
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = BTreeSet::new();
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((index, depth)) = stack.pop() {
        if !seen.insert(index) {
            continue;
        }
        out.push(TreeRow { index, depth });
        if let Some(kids) = children.get(&rows[index].0) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    // A cycle (impossible through orch, which sets a parent only on creation) would leave rows
    // unreached: list them as roots rather than drop them.
    for index in 0..rows.len() {
        if !seen.contains(&index) {
            out.push(TreeRow { index, depth: 0 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(id: i64, status: Status) -> DependencyFacts {
        DependencyFacts {
            id: TaskId(id),
            name: format!("c{id}"),
            status,
        }
    }

    #[test]
    fn children_are_summarized_with_the_first_failure_named() {
        let (state, reason) = summarize_children(&[
            child(2, Status::Done),
            child(3, Status::Running),
            child(4, Status::Failed),
        ]);
        assert_eq!(
            state,
            ChildrenState {
                total: 3,
                done: 1,
                failed: 1
            }
        );
        assert_eq!(reason.as_deref(), Some("child 4 (`c4`) is failed"));
        let (state, reason) =
            summarize_children(&[child(2, Status::Done), child(3, Status::Queued)]);
        assert!(state.holds_parent());
        assert_eq!(
            reason.as_deref(),
            Some("waits for its children: 1 of 2 done")
        );
        let (state, reason) = summarize_children(&[]);
        assert!(!state.holds_parent());
        assert_eq!(reason, None);
    }

    #[test]
    fn a_tree_lists_children_under_their_parents_depth_first() {
        let t = |id: i64, parent: Option<i64>| (TaskId(id), parent.map(TaskId));
        let rows = [
            t(1, None),
            t(2, Some(1)),
            t(3, None),
            t(4, Some(2)),
            t(5, Some(1)),
            t(6, Some(99)),
        ];
        let order: Vec<(i64, usize)> = tree_order(&rows)
            .into_iter()
            .map(|r| (rows[r.index].0 .0, r.depth))
            .collect();
        assert_eq!(order, vec![(1, 0), (2, 1), (4, 2), (5, 1), (3, 0), (6, 0)]);
    }
}
