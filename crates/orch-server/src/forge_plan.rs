//! The forge side of planning (issue 12's `plan` label, `orch_core::planner`): a child a
//! planner made for a task linked to an issue gets an issue of its own (a `create_issue` op on
//! the child's `create` event, keyed by the parent and the item's index; its body carries the
//! child's marker, so the issue coming back by webhook or polling is linked to the child, never
//! made a new task), and once that issue exists it is made a sub-issue of the parent's, in plan order (an
//! `add_sub_issue` op, keyed the same way). Both are enqueued by the leader's forge sync; the
//! keys make every look again (a crash, a second daemon) store nothing new.

use std::collections::BTreeMap;
use std::path::Path;

use orch_core::forge::{ForgeOp, ForgeResult, DEFAULT_TRIGGER_LABEL};
use orch_core::planner::{child_issue_op, item_index, sub_issue_op};
use orch_core::{Event, EventKind, Task, TaskId};
use orch_store::{NewForgeOp, OutboxState, Project, ProjectForge, Store, StoreError};

/// The `create_issue` op of a planned child, on its `create` event: when the child came from a
/// plan (its parent has a planner step, it has an item key), has no issue yet, and its parent
/// is linked to one.
pub async fn child_issue_ops(
    store: &Store,
    home: &Path,
    (project, link): (&Project, &ProjectForge),
    task: &Task,
    event: &Event,
) -> Result<Vec<NewForgeOp>, StoreError> {
    let (EventKind::Create, Some(parent), Some(index)) =
        (event.kind, task.parent, item_index(&task.spec))
    else {
        return Ok(Vec::new());
    };
    let parent_task = store.task(parent).await?;
    if !parent_task.spec.steps.iter().any(|s| s.plan) {
        return Ok(Vec::new());
    }
    let Some(parent_issue) = store.forge_link(parent).await?.and_then(|l| l.issue) else {
        return Ok(Vec::new());
    };
    if store
        .forge_link(task.id)
        .await?
        .and_then(|l| l.issue)
        .is_some()
    {
        return Ok(Vec::new());
    }
    let label = crate::forge::settings(home, Path::new(&project.path), Some(link))
        .ok()
        .flatten()
        .map_or_else(|| DEFAULT_TRIGGER_LABEL.to_owned(), |s| s.trigger_label);
    let body = format!("{}\n\nPart of #{parent_issue}.", task.spec.body.trim_end());
    Ok(vec![NewForgeOp {
        project: task.project,
        task: Some(task.id),
        event: Some(event.id),
        op: child_issue_op(
            parent,
            index,
            task.id,
            task.spec.title.as_str(),
            body.trim_start(),
            vec![label],
        ),
    }])
}

/// The next `add_sub_issue` op of each planned parent, linking its children's issues in plan
/// order: item `n` is linked only once item `n-1`'s link is settled (done, or given up on), so a
/// retried or late `create_issue` never leaves the sub-issues out of order on the forge. An item
/// whose issue is not open yet holds back the ones after it. Enqueued under their own keys, so
/// a repeat stores nothing. Returns how many were new.
pub async fn enqueue_sub_issues(store: &Store) -> Result<u64, StoreError> {
    // Per parent: each item's opened issue (and its entry), and each item's link state.
    let mut created: BTreeMap<TaskId, BTreeMap<usize, (u64, orch_store::OutboxEntry)>> =
        BTreeMap::new();
    let mut linked: BTreeMap<(TaskId, usize), OutboxState> = BTreeMap::new();
    for entry in store.forge_ops(None).await? {
        if let Some(item) = sub_issue_key(&entry.key) {
            linked.insert(item, entry.state);
            continue;
        }
        let (
            OutboxState::Done,
            ForgeOp::CreateIssue { .. },
            Some(ForgeResult::Issue { number, .. }),
        ) = (entry.state, &entry.op, &entry.result)
        else {
            continue;
        };
        let Some((parent, index)) = plan_key(&entry.key) else {
            continue;
        };
        let number = *number;
        created
            .entry(parent)
            .or_default()
            .insert(index, (number, entry));
    }
    let mut ops = Vec::new();
    for (parent, items) in created {
        let mut next = 0;
        let pending = loop {
            match linked.get(&(parent, next)) {
                Some(OutboxState::Done | OutboxState::Failed) => next += 1,
                Some(OutboxState::Pending) => break None,
                None => break items.get(&next),
            }
        };
        let Some((number, entry)) = pending else {
            continue;
        };
        let Some(parent_issue) = store.forge_link(parent).await?.and_then(|l| l.issue) else {
            continue;
        };
        ops.push(NewForgeOp {
            project: entry.project,
            task: entry.task,
            event: None,
            op: sub_issue_op(parent, next, parent_issue, *number),
        });
    }
    if ops.is_empty() {
        return Ok(0);
    }
    store
        .enqueue_forge_ops(&ops, orch_store::wall_clock())
        .await
}

/// The parent and item index of a plan's `add_sub_issue` key.
fn sub_issue_key(key: &str) -> Option<(TaskId, usize)> {
    let rest = key.strip_prefix("sub-issue:task-")?;
    let (parent, index) = rest.split_once(":item-")?;
    Some((TaskId(parent.parse().ok()?), index.parse().ok()?))
}

/// The parent and item index of a plan's `create_issue` key.
fn plan_key(key: &str) -> Option<(TaskId, usize)> {
    let rest = key.strip_prefix("plan:task-")?;
    let (parent, index) = rest.split_once(":item-")?;
    Some((TaskId(parent.parse().ok()?), index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::{plan_key, sub_issue_key};
    use orch_core::TaskId;

    #[test]
    fn a_plan_key_names_the_parent_and_the_item() {
        assert_eq!(plan_key("plan:task-4:item-2"), Some((TaskId(4), 2)));
        assert_eq!(plan_key("publish:task-4"), None);
        assert_eq!(plan_key("plan:task-x:item-2"), None);
        assert_eq!(
            sub_issue_key("sub-issue:task-4:item-1"),
            Some((TaskId(4), 1))
        );
        assert_eq!(sub_issue_key("plan:task-4:item-1"), None);
    }
}
