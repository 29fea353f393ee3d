//! The forge tables on every backend: a project's repository, task links (an issue becomes
//! exactly one task), and the durable outbox (enqueued once per key, leased to one dispatcher,
//! finished with a result that updates the task's link, failed with a retry time).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orch_core::forge::{
    ensure_labels_op, publish_op, pull_request_op, ForgeKind, ForgeResult, KeyedOp, RepoSlug,
};
use orch_core::{TaskId, Timestamp};
use orch_store::{NewForgeOp, OutboxState, StoreError};
use support::{store_tests, task, TestDb};

const LEASE: Duration = Duration::from_secs(30);

fn repo() -> RepoSlug {
    RepoSlug::parse("octo/widgets").unwrap()
}

fn new_op(db: &TestDb, task: Option<TaskId>, op: KeyedOp) -> NewForgeOp {
    NewForgeOp {
        project: db.project,
        task,
        event: Some(7),
        op,
    }
}

async fn a_project_link_is_stored_and_replaced(db: TestDb) {
    assert_eq!(db.store.project_forge(db.project).await.unwrap(), None);
    db.store
        .link_project_forge(db.project, ForgeKind::Github, &repo(), Timestamp(1))
        .await
        .unwrap();
    let other = RepoSlug::parse("octo/gadgets").unwrap();
    db.store
        .link_project_forge(db.project, ForgeKind::Github, &other, Timestamp(2))
        .await
        .unwrap();
    let link = db.store.project_forge(db.project).await.unwrap().unwrap();
    assert_eq!(link.repo, other);
    assert_eq!(link.linked_at, Timestamp(2));
    assert_eq!(db.store.project_forges().await.unwrap().len(), 1);
}

async fn an_issue_becomes_exactly_one_task(db: TestDb) {
    let ids = db.submit(vec![task("a", &[]), task("b", &[])], 0).await;
    db.store
        .link_task_issue(ids[0], &repo(), 12, Timestamp(1))
        .await
        .unwrap();
    // The same link again is harmless (a webhook and the poller both saw the issue).
    db.store
        .link_task_issue(ids[0], &repo(), 12, Timestamp(2))
        .await
        .unwrap();
    let taken = db
        .store
        .link_task_issue(ids[1], &repo(), 12, Timestamp(3))
        .await
        .unwrap_err();
    assert!(
        matches!(&taken, StoreError::Invalid { reason, .. } if reason.contains("already task")),
        "{taken}"
    );
    let moved = db
        .store
        .link_task_issue(ids[0], &repo(), 13, Timestamp(3))
        .await
        .unwrap_err();
    assert!(matches!(moved, StoreError::Invalid { .. }), "{moved}");
    assert_eq!(
        db.store
            .task_of_issue(db.project, &repo(), 12)
            .await
            .unwrap(),
        Some(ids[0])
    );
    assert_eq!(
        db.store
            .task_of_issue(db.project, &repo(), 13)
            .await
            .unwrap(),
        None
    );
    let link = db.store.forge_link(ids[0]).await.unwrap().unwrap();
    assert_eq!((link.repo.as_str(), link.issue), ("octo/widgets", Some(12)));
    assert_eq!(db.store.forge_link(ids[1]).await.unwrap(), None);
    let missing = db
        .store
        .link_task_issue(TaskId(999), &repo(), 14, Timestamp(3))
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::TaskNotFound(_)), "{missing}");
}

async fn a_push_is_recorded_on_the_link(db: TestDb) {
    let id = db.submit(vec![task("a", &[])], 0).await[0];
    for commit in ["aaa", "bbb"] {
        db.store
            .record_forge_push(id, &repo(), "orch/task-1", commit, Timestamp(1))
            .await
            .unwrap();
    }
    let link = db.store.forge_link(id).await.unwrap().unwrap();
    assert_eq!(link.head_branch.as_deref(), Some("orch/task-1"));
    assert_eq!(link.pushed_commit.as_deref(), Some("bbb"));
    assert_eq!(link.issue, None);
}

async fn an_op_is_enqueued_once_per_key(db: TestDb) {
    let id = db.submit(vec![task("a", &[])], 0).await[0];
    let ops = vec![
        new_op(&db, None, ensure_labels_op(&repo(), "orch", "plan")),
        new_op(&db, Some(id), publish_op(id, "T", "B", "orch")),
    ];
    assert_eq!(
        db.store
            .enqueue_forge_ops(&ops, Timestamp(1))
            .await
            .unwrap(),
        2
    );
    // After a crash the same change is enqueued again: nothing new is stored.
    assert_eq!(
        db.store
            .enqueue_forge_ops(&ops, Timestamp(2))
            .await
            .unwrap(),
        0
    );
    let stored = db.store.forge_ops(None).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].op, ops[1].op.op);
    assert_eq!(stored[1].state, OutboxState::Pending);
    assert_eq!(stored[1].created_at, Timestamp(1));
    assert_eq!(db.store.forge_ops(Some(id)).await.unwrap().len(), 1);
    assert_eq!(db.store.last_forge_event().await.unwrap(), 7);
}

async fn a_leased_op_is_not_claimed_twice_until_its_lease_expires(db: TestDb) {
    let ids = db.submit(vec![task("a", &[]), task("b", &[])], 0).await;
    let ops: Vec<NewForgeOp> = ids
        .iter()
        .map(|&id| new_op(&db, Some(id), publish_op(id, "T", "B", "orch")))
        .collect();
    db.store
        .enqueue_forge_ops(&ops, Timestamp(10))
        .await
        .unwrap();
    // Not due before it was enqueued.
    assert!(db
        .store
        .claim_forge_ops("d1", LEASE, 10, Timestamp(9))
        .await
        .unwrap()
        .is_empty());
    let first = db
        .store
        .claim_forge_ops("d1", LEASE, 1, Timestamp(10))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].task, Some(ids[0]));
    let second = db
        .store
        .claim_forge_ops("d2", LEASE, 10, Timestamp(11))
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "only the op d1 does not hold");
    assert_eq!(second[0].task, Some(ids[1]));
    // d1 dies; after its lease another dispatcher takes its op over, and d1's late answer is
    // refused.
    let later = Timestamp(10 + 30_000);
    let taken_over = db
        .store
        .claim_forge_ops("d3", LEASE, 10, later)
        .await
        .unwrap();
    let ids_taken: Vec<_> = taken_over.iter().map(|e| e.id).collect();
    assert!(ids_taken.contains(&first[0].id), "{taken_over:?}");
    let late = db
        .store
        .finish_forge_op(first[0].id, "d1", &ForgeResult::Nothing, later)
        .await
        .unwrap_err();
    assert!(matches!(late, StoreError::Invalid { .. }), "{late}");
    db.store
        .finish_forge_op(
            first[0].id,
            "d3",
            &ForgeResult::Issue {
                number: 31,
                url: None,
            },
            later,
        )
        .await
        .unwrap();
    let done = &db.store.forge_ops(Some(ids[0])).await.unwrap()[0];
    assert_eq!(done.state, OutboxState::Done);
    assert_eq!(
        done.result,
        Some(ForgeResult::Issue {
            number: 31,
            url: None
        })
    );
    // The published task is now linked to its issue.
    let link = db.store.forge_link(ids[0]).await.unwrap().unwrap();
    assert_eq!(link.issue, Some(31));
    // Done is done: it is never claimed again.
    let again = db
        .store
        .claim_forge_ops("d4", LEASE, 10, Timestamp(later.0 + 60_000))
        .await
        .unwrap();
    assert!(again.iter().all(|e| e.id != first[0].id));
}

async fn a_tasks_ops_are_sent_in_order_one_at_a_time(db: TestDb) {
    let id = db.submit(vec![task("a", &[])], 0).await[0];
    let ops = vec![
        new_op(&db, Some(id), publish_op(id, "T", "B", "orch")),
        new_op(
            &db,
            Some(id),
            pull_request_op(id, "T", "orch/a", "main", "body", true),
        ),
    ];
    db.store
        .enqueue_forge_ops(&ops, Timestamp(1))
        .await
        .unwrap();
    let first = db
        .store
        .claim_forge_ops("d", LEASE, 10, Timestamp(2))
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "the second waits for the first");
    // The first fails and is retried later: the second still waits behind it.
    db.store
        .fail_forge_op(
            first[0].id,
            "d",
            "502 from the forge",
            Some(Timestamp(100)),
            Timestamp(3),
        )
        .await
        .unwrap();
    assert!(db
        .store
        .claim_forge_ops("d", LEASE, 10, Timestamp(4))
        .await
        .unwrap()
        .is_empty());
    let retried = db
        .store
        .claim_forge_ops("d", LEASE, 10, Timestamp(100))
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].last_error.as_deref(), Some("502 from the forge"));
    // Given up on: failed for good, and the next op goes ahead.
    db.store
        .fail_forge_op(retried[0].id, "d", "422: refused", None, Timestamp(101))
        .await
        .unwrap();
    let next = db
        .store
        .claim_forge_ops("d", LEASE, 10, Timestamp(102))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(matches!(
        next[0].op,
        orch_core::forge::ForgeOp::CreatePullRequest { .. }
    ));
    db.store
        .finish_forge_op(
            next[0].id,
            "d",
            &ForgeResult::Pull {
                number: 5,
                url: "https://github.com/octo/widgets/pull/5".into(),
            },
            Timestamp(103),
        )
        .await
        .unwrap();
    let states: Vec<OutboxState> = db
        .store
        .forge_ops(Some(id))
        .await
        .unwrap()
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(states, [OutboxState::Failed, OutboxState::Done]);
    let link = db.store.forge_link(id).await.unwrap().unwrap();
    assert_eq!(link.pr_number, Some(5));
    assert_eq!(link.head_branch.as_deref(), Some("orch/a"));
}

/// A dispatcher's name is stable across restarts: what it held when it was killed it takes back
/// at once (no waiting out its own lease); others still wait for the lease.
async fn a_restarted_dispatcher_takes_back_its_own_leases(db: TestDb) {
    let id = db.submit(vec![task("a", &[])], 0).await[0];
    db.store
        .enqueue_forge_ops(
            &[new_op(&db, Some(id), publish_op(id, "T", "B", "orch"))],
            Timestamp(1),
        )
        .await
        .unwrap();
    let held = db
        .store
        .claim_forge_ops("forge-abc", LEASE, 10, Timestamp(2))
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert!(db
        .store
        .claim_forge_ops("forge-xyz", LEASE, 10, Timestamp(3))
        .await
        .unwrap()
        .is_empty());
    let again = db
        .store
        .claim_forge_ops("forge-abc", LEASE, 10, Timestamp(3))
        .await
        .unwrap();
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), [held[0].id]);
    db.store
        .finish_forge_op(
            again[0].id,
            "forge-abc",
            &ForgeResult::Nothing,
            Timestamp(4),
        )
        .await
        .unwrap();
    assert!(db
        .store
        .claim_forge_ops("forge-abc", LEASE, 10, Timestamp(5))
        .await
        .unwrap()
        .is_empty());
}

/// What the forge made calls for more writes (a marker comment with the new pull request's
/// link): they are stored with the op's `done`, in one transaction, or not at all when the
/// dispatcher's lease is gone.
async fn a_finished_op_enqueues_its_follow_ups_with_it(db: TestDb) {
    let ids = db.submit(vec![task("a", &[]), task("b", &[])], 0).await;
    let ops: Vec<NewForgeOp> = ids
        .iter()
        .map(|&id| new_op(&db, Some(id), publish_op(id, "T", "B", "orch")))
        .collect();
    db.store
        .enqueue_forge_ops(&ops, Timestamp(1))
        .await
        .unwrap();
    let held = db
        .store
        .claim_forge_ops("d1", LEASE, 10, Timestamp(2))
        .await
        .unwrap();
    assert_eq!(held.len(), 2);
    let follow = |id: TaskId, key: &str| NewForgeOp {
        project: db.project,
        task: Some(id),
        event: None,
        op: KeyedOp {
            key: key.to_owned(),
            op: orch_core::forge::ForgeOp::CloseIssue { issue: 9 },
        },
    };
    db.store
        .finish_forge_op_with(
            held[0].id,
            "d1",
            &ForgeResult::Issue {
                number: 12,
                url: None,
            },
            &[
                follow(ids[0], "marker:a:issue-12"),
                follow(ids[0], "labels:a:issue-12"),
            ],
            Timestamp(3),
        )
        .await
        .unwrap();
    let first: Vec<(String, OutboxState)> = db
        .store
        .forge_ops(Some(ids[0]))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.state))
        .collect();
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(first[0].1, OutboxState::Done);
    assert_eq!(
        first[1..],
        [
            ("marker:a:issue-12".to_owned(), OutboxState::Pending),
            ("labels:a:issue-12".to_owned(), OutboxState::Pending)
        ]
    );
    assert_eq!(
        db.store.forge_link(ids[0]).await.unwrap().unwrap().issue,
        Some(12)
    );
    // d1's lease on the second op ran out and d2 took it: d1's late `done` is refused and
    // enqueues nothing.
    let later = Timestamp(2 + 30_000);
    let taken = db
        .store
        .claim_forge_ops("d2", LEASE, 10, later)
        .await
        .unwrap();
    assert!(taken.iter().any(|e| e.id == held[1].id), "{taken:?}");
    let late = db
        .store
        .finish_forge_op_with(
            held[1].id,
            "d1",
            &ForgeResult::Nothing,
            &[follow(ids[1], "marker:b:late")],
            later,
        )
        .await
        .unwrap_err();
    assert!(matches!(late, StoreError::Invalid { .. }), "{late}");
    let second = db.store.forge_ops(Some(ids[1])).await.unwrap();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0].state, OutboxState::Pending);
    // A follow-up whose key is stored already is left as it is.
    db.store
        .finish_forge_op_with(
            held[1].id,
            "d2",
            &ForgeResult::Nothing,
            &[follow(ids[1], "marker:a:issue-12")],
            Timestamp(later.0 + 1),
        )
        .await
        .unwrap();
    assert_eq!(db.store.forge_ops(Some(ids[1])).await.unwrap().len(), 1);
    assert_eq!(db.store.forge_ops(None).await.unwrap().len(), 4);
}

/// A dispatcher that is still sending renews its leases: nobody takes its ops over when the
/// first lease would have run out; once it stops renewing (it died), they are taken over after
/// the last renewal's lease. An expired lease is not renewed (another may hold the op).
async fn a_renewed_lease_is_not_taken_over(db: TestDb) {
    let id = db.submit(vec![task("a", &[])], 0).await[0];
    db.store
        .enqueue_forge_ops(
            &[new_op(&db, Some(id), publish_op(id, "T", "B", "orch"))],
            Timestamp(1),
        )
        .await
        .unwrap();
    let held = db
        .store
        .claim_forge_ops("d1", LEASE, 10, Timestamp(10))
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        db.store
            .renew_forge_leases("d1", LEASE, Timestamp(20_000))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.store
            .renew_forge_leases("d2", LEASE, Timestamp(20_000))
            .await
            .unwrap(),
        0,
        "d2 holds nothing"
    );
    assert!(db
        .store
        .claim_forge_ops("d2", LEASE, 10, Timestamp(10 + 30_000))
        .await
        .unwrap()
        .is_empty());
    let expired = Timestamp(20_000 + 30_000);
    assert_eq!(
        db.store
            .renew_forge_leases("d1", LEASE, expired)
            .await
            .unwrap(),
        0,
        "an expired lease is not renewed"
    );
    let taken = db
        .store
        .claim_forge_ops("d2", LEASE, 10, expired)
        .await
        .unwrap();
    assert_eq!(taken.iter().map(|e| e.id).collect::<Vec<_>>(), [held[0].id]);
    assert_eq!(taken[0].lease_owner.as_deref(), Some("d2"));
}

store_tests!(
    a_finished_op_enqueues_its_follow_ups_with_it,
    a_renewed_lease_is_not_taken_over,
    a_restarted_dispatcher_takes_back_its_own_leases,
    a_project_link_is_stored_and_replaced,
    an_issue_becomes_exactly_one_task,
    a_push_is_recorded_on_the_link,
    an_op_is_enqueued_once_per_key,
    a_leased_op_is_not_claimed_twice_until_its_lease_expires,
    a_tasks_ops_are_sent_in_order_one_at_a_time,
);
