//! Unique keys, parents and children, and approvals with a comment, on both backends.

#![allow(clippy::unwrap_used)]

mod support;

use orch_core::{EventKind, Outcome, Status, TaskId};
use orch_store::{ApprovalVerdict, StoreError, Submission};
use support::store_tests;
use support::*;

async fn status(db: &TestDb, id: TaskId) -> Status {
    db.store.task(id).await.expect("task").status
}

async fn assert_consistent(db: &TestDb) {
    let problems = db.store.check_consistency().await.expect("doctor");
    assert!(problems.is_empty(), "{problems:#?}");
}

fn keyed(name: &str, key: &str) -> orch_core::NewTask {
    let mut t = task(name, &[]);
    t.spec.unique_key = Some(key.to_owned());
    t
}

fn child_of(name: &str, parent: TaskId, max_attempts: u32) -> orch_core::NewTask {
    let mut t = task_with(name, &[], 0, policy(max_attempts));
    t.parent = Some(parent);
    t
}

/// Claim the task `id` (it must be the next one) and end its run with `outcome`.
async fn run(db: &TestDb, id: TaskId, outcome: Outcome, now: i64) -> Status {
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", now))
        .await
        .unwrap()
        .expect("a claim");
    assert_eq!(claim.task.id, id, "the claimed task");
    db.store
        .complete(claim.run.id, claim.token, outcome, None, op("w", now + 1))
        .await
        .unwrap()
}

async fn a_second_submit_with_a_live_unique_key_returns_the_first(db: TestDb) {
    let first = db.submit(vec![keyed("a", "nightly")], 0).await[0];
    let again = db
        .store
        .submit_reporting(
            &Submission {
                project: db.project,
                workflow: None,
                tasks: vec![keyed("b", "nightly"), keyed("c", "other")],
            },
            op("test", 1),
        )
        .await
        .unwrap();
    assert_eq!(again.tasks[0], first);
    assert_eq!(again.existing, vec![first]);
    assert_ne!(again.tasks[1], first);
    assert_eq!(
        db.store.events(first).await.unwrap().len(),
        1,
        "nothing happened to it"
    );
    // Once the first has finished, the key is free again.
    db.store.cancel(first, None, op("cli", 2)).await.unwrap();
    let second = db.submit(vec![keyed("d", "nightly")], 3).await[0];
    assert_ne!(second, first);
    // ...and the finished one cannot come back to life while the new one holds the key.
    let err = db.store.retry(first, None, op("cli", 4)).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { message, .. } if message.contains("unique key")),
        "{err:?}"
    );
    assert_eq!(status(&db, first).await, Status::Cancelled);
    assert_consistent(&db).await;
}

async fn concurrent_submits_of_one_unique_key_create_one_task(db: TestDb) {
    let submits = (0..8).map(|i| {
        let store = db.store.clone();
        let project = db.project;
        tokio::spawn(async move {
            store
                .submit(
                    &Submission {
                        project,
                        workflow: None,
                        tasks: vec![keyed(&format!("t{i}"), "deploy-42")],
                    },
                    op("test", i),
                )
                .await
                .unwrap()[0]
        })
    });
    let ids: Vec<TaskId> = futures_ids(submits).await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let all = db
        .store
        .tasks(&orch_store::TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "one task for one key");
    assert_consistent(&db).await;
}

async fn futures_ids(
    handles: impl Iterator<Item = tokio::task::JoinHandle<TaskId>>,
) -> Vec<TaskId> {
    let handles: Vec<_> = handles.collect();
    let mut ids = Vec::new();
    for handle in handles {
        ids.push(handle.await.unwrap());
    }
    ids
}

async fn a_parent_is_blocked_until_all_its_children_are_done(db: TestDb) {
    let parent = db.submit(vec![task("parent", &[])], 0).await[0];
    assert_eq!(status(&db, parent).await, Status::Queued);
    let children = db
        .submit(
            vec![child_of("c1", parent, 1), child_of("c2", parent, 1)],
            1,
        )
        .await;
    assert_eq!(status(&db, parent).await, Status::Blocked);
    let reason = db.store.task(parent).await.unwrap().status_reason;
    assert_eq!(
        reason.as_deref(),
        Some("waits for its children: 0 of 2 done")
    );
    assert_eq!(
        run(&db, children[0], Outcome::Succeeded, 2).await,
        Status::Done
    );
    assert_eq!(status(&db, parent).await, Status::Blocked);
    let reason = db.store.task(parent).await.unwrap().status_reason;
    assert_eq!(
        reason.as_deref(),
        Some("waits for its children: 1 of 2 done")
    );
    assert_eq!(
        run(&db, children[1], Outcome::Succeeded, 4).await,
        Status::Done
    );
    assert_eq!(status(&db, parent).await, Status::Queued);
    assert_eq!(
        db.store.task(children[0]).await.unwrap().parent,
        Some(parent)
    );
    assert_eq!(run(&db, parent, Outcome::Succeeded, 6).await, Status::Done);
    // A done task takes no more children.
    let err = db
        .store
        .submit(
            &Submission {
                project: db.project,
                workflow: None,
                tasks: vec![child_of("late", parent, 1)],
            },
            op("test", 8),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_consistent(&db).await;
}

async fn a_failed_child_sends_its_parent_to_needs_review(db: TestDb) {
    let parent = db.submit(vec![task("parent", &[])], 0).await[0];
    let children = db
        .submit(
            vec![child_of("ok", parent, 1), child_of("bad", parent, 1)],
            1,
        )
        .await;
    assert_eq!(
        run(&db, children[0], Outcome::Succeeded, 2).await,
        Status::Done
    );
    assert_eq!(
        run(&db, children[1], Outcome::Failed, 4).await,
        Status::Failed
    );
    let parent_task = db.store.task(parent).await.unwrap();
    assert_eq!(parent_task.status, Status::NeedsReview);
    assert_eq!(
        parent_task.status_reason.as_deref(),
        Some(format!("child {} (`bad`) is failed", children[1]).as_str())
    );
    let events = db.store.events(parent).await.unwrap();
    assert_eq!(events.last().unwrap().kind, EventKind::ChildFailed);
    // A retry of the parent waits for the failed child to be retried and done.
    assert_eq!(
        db.store.retry(parent, None, op("cli", 6)).await.unwrap(),
        Status::Blocked
    );
    assert_eq!(
        db.store
            .retry(children[1], None, op("cli", 7))
            .await
            .unwrap(),
        Status::Queued
    );
    assert_eq!(status(&db, parent).await, Status::Blocked);
    assert_eq!(
        run(&db, children[1], Outcome::Succeeded, 8).await,
        Status::Done
    );
    assert_eq!(status(&db, parent).await, Status::Queued);
    assert_consistent(&db).await;
}

async fn a_running_parent_that_adds_children_blocks_after_its_run_and_resumes(db: TestDb) {
    let parent = db.submit(vec![task("parent", &[])], 0).await[0];
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    // Its step adds a child while it runs.
    let child = db.submit(vec![child_of("child", parent, 1)], 2).await[0];
    assert_eq!(status(&db, parent).await, Status::Running);
    let after = db
        .store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Succeeded,
            None,
            op("w", 3),
        )
        .await
        .unwrap();
    assert_eq!(after, Status::Blocked);
    let blocked = db.store.task(parent).await.unwrap();
    assert_eq!(
        blocked.attempts_used, 0,
        "waiting for children costs no attempt"
    );
    assert_eq!(run(&db, child, Outcome::Succeeded, 4).await, Status::Done);
    assert_eq!(status(&db, parent).await, Status::Queued);
    assert_eq!(run(&db, parent, Outcome::Succeeded, 6).await, Status::Done);
    assert_consistent(&db).await;
}

async fn approvals_and_rejections_carry_the_comment_and_the_actor(db: TestDb) {
    let mut gated = task("deploy", &[]);
    gated.spec.requires_approval = true;
    let mut other = task("deploy-2", &[]);
    other.spec.requires_approval = true;
    let ids = db.submit(vec![gated, other], 0).await;
    assert_eq!(status(&db, ids[0]).await, Status::AwaitingApproval);
    assert_eq!(
        db.store
            .judge_approval(
                ids[0],
                ApprovalVerdict::Approve,
                Some("change window open"),
                op("cli:alice", 1)
            )
            .await
            .unwrap(),
        Status::Queued
    );
    assert_eq!(
        db.store
            .judge_approval(
                ids[1],
                ApprovalVerdict::Reject,
                Some("not on a Friday"),
                op("api:bob", 2)
            )
            .await
            .unwrap(),
        Status::Cancelled
    );
    let approved = db.store.events(ids[0]).await.unwrap();
    let approve = approved.last().unwrap();
    assert_eq!(
        (
            approve.kind,
            approve.actor.as_str(),
            approve.reason.as_deref()
        ),
        (EventKind::Approve, "cli:alice", Some("change window open"))
    );
    let rejected = db.store.events(ids[1]).await.unwrap();
    let reject = rejected.last().unwrap();
    assert_eq!(
        (reject.kind, reject.actor.as_str(), reject.reason.as_deref()),
        (
            EventKind::Reject,
            "api:bob",
            Some("rejected: not on a Friday")
        )
    );
    // Only a task waiting for approval can be rejected.
    let err = db
        .store
        .judge_approval(ids[0], ApprovalVerdict::Reject, None, op("cli", 3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_consistent(&db).await;
}

store_tests!(
    a_second_submit_with_a_live_unique_key_returns_the_first,
    concurrent_submits_of_one_unique_key_create_one_task,
    a_parent_is_blocked_until_all_its_children_are_done,
    a_failed_child_sends_its_parent_to_needs_review,
    a_running_parent_that_adds_children_blocks_after_its_run_and_resumes,
    approvals_and_rejections_carry_the_comment_and_the_actor,
);
