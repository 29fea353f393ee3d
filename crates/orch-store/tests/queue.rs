//! The task queue on a real SQLite file: claim order, dependencies, leases, fencing, retries,
//! stale recovery, cancel, approval and the append-only event log.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orch_core::{EventKind, FencingToken, Outcome, RunState, Status, TaskId};
use orch_store::{StoreError, TaskFilter};
use support::store_tests;
use support::*;

async fn status(db: &TestDb, id: TaskId) -> Status {
    db.store.task(id).await.expect("task").status
}

async fn assert_consistent(db: &TestDb) {
    let problems = db.store.check_consistency().await.expect("doctor");
    assert!(problems.is_empty(), "{problems:#?}");
}

async fn claims_take_the_highest_priority_then_the_oldest_task(db: TestDb) {
    let ids = db
        .submit(
            vec![
                task_with("low", &[], 0, policy(1)),
                task_with("high-old", &[], 5, policy(1)),
                task_with("high-new", &[], 5, policy(1)),
            ],
            0,
        )
        .await;
    let mut order = Vec::new();
    while let Some(claim) = db.store.claim_next("w", LEASE, op("w", 1)).await.unwrap() {
        order.push(claim.task.id);
    }
    assert_eq!(order, vec![ids[1], ids[2], ids[0]]);
    assert_consistent(&db).await;
}

async fn a_diamond_becomes_claimable_in_dependency_order(db: TestDb) {
    // A; B and C need A; D needs B and C.
    let ids = db
        .submit(
            vec![
                task("a", &[]),
                task("b", &[0]),
                task("c", &[0]),
                task("d", &[1, 2]),
            ],
            0,
        )
        .await;
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    assert_eq!(status(&db, a).await, Status::Queued);
    for id in [b, c, d] {
        assert_eq!(status(&db, id).await, Status::Waiting);
    }
    let claim_a = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim_a.task.id, a);
    assert!(
        db.store
            .claim_next("w", LEASE, op("w", 1))
            .await
            .unwrap()
            .is_none(),
        "B and C wait for A"
    );
    succeed(&db.store, &claim_a, "w", 2).await;
    let first = db
        .store
        .claim_next("w", LEASE, op("w", 3))
        .await
        .unwrap()
        .unwrap();
    let second = db
        .store
        .claim_next("w", LEASE, op("w", 3))
        .await
        .unwrap()
        .unwrap();
    let mut pair = vec![first.task.id, second.task.id];
    pair.sort();
    assert_eq!(pair, vec![b, c], "B and C run side by side");
    assert!(
        db.store
            .claim_next("w", LEASE, op("w", 3))
            .await
            .unwrap()
            .is_none(),
        "D waits for both"
    );
    succeed(&db.store, &first, "w", 4).await;
    assert_eq!(status(&db, d).await, Status::Waiting);
    succeed(&db.store, &second, "w", 5).await;
    assert_eq!(status(&db, d).await, Status::Queued);
    let claim_d = db
        .store
        .claim_next("w", LEASE, op("w", 6))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim_d.task.id, d);
    // The claim hands the worker its dependencies, done, in id order; a task without any
    // gets none.
    assert_eq!(claim_d.task.needs, vec![b, c]);
    let handed: Vec<_> = claim_d
        .dependencies
        .iter()
        .map(|dep| (dep.id, dep.status))
        .collect();
    assert_eq!(handed, vec![(b, Status::Done), (c, Status::Done)]);
    assert!(claim_a.dependencies.is_empty() && claim_a.task.needs.is_empty());
    assert_eq!(first.task.needs, vec![a]);
    assert_eq!(first.dependencies.len(), 1);
    assert_consistent(&db).await;
}

async fn a_failed_dependency_blocks_its_dependents_and_retrying_it_unblocks_them(db: TestDb) {
    let ids = db
        .submit(
            vec![
                task_with("a", &[], 0, policy(1)),
                task_with("b", &[0], 0, policy(1)),
                task_with("c", &[0], 0, policy(1)),
                task_with("d", &[1, 2], 0, policy(1)),
            ],
            0,
        )
        .await;
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    db.store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Succeeded,
            None,
            op("w", 2),
        )
        .await
        .unwrap();
    // B fails with no attempts left.
    let claim_b = loop {
        let claim = db
            .store
            .claim_next("w", LEASE, op("w", 3))
            .await
            .unwrap()
            .unwrap();
        if claim.task.id == b {
            break claim;
        }
        db.store
            .complete(
                claim.run.id,
                claim.token,
                Outcome::Succeeded,
                None,
                op("w", 3),
            )
            .await
            .unwrap();
    };
    let to = db
        .store
        .complete(
            claim_b.run.id,
            claim_b.token,
            Outcome::Failed,
            Some("tests failed"),
            op("w", 4),
        )
        .await
        .unwrap();
    assert_eq!(to, Status::Failed);
    let task_d = db.store.task(d).await.unwrap();
    assert_eq!(task_d.status, Status::Blocked);
    let reason = task_d.status_reason.unwrap();
    assert!(
        reason.contains(&format!("dependency {b}")) && reason.contains("failed"),
        "{reason}"
    );
    db.store.retry(b, None, op("cli", 6)).await.unwrap();
    assert_eq!(
        status(&db, d).await,
        Status::Waiting,
        "D waits again while B is retried"
    );
    // C is still running or queued; finish everything else.
    while let Some(claim) = db.store.claim_next("w", LEASE, op("w", 7)).await.unwrap() {
        assert_ne!(claim.task.id, d, "D must not run before B and C are done");
        db.store
            .complete(
                claim.run.id,
                claim.token,
                Outcome::Succeeded,
                None,
                op("w", 8),
            )
            .await
            .unwrap();
        if status(&db, b).await == Status::Done && status(&db, c).await == Status::Done {
            break;
        }
    }
    assert_eq!(status(&db, d).await, Status::Queued);
    assert_eq!(status(&db, a).await, Status::Done);
    assert_consistent(&db).await;
}

async fn blocking_is_transitive_down_a_chain(db: TestDb) {
    let ids = db
        .submit(
            vec![
                task_with("a", &[], 0, policy(1)),
                task("b", &[0]),
                task("c", &[1]),
            ],
            0,
        )
        .await;
    db.store
        .cancel(ids[0], Some("not needed"), op("cli", 1))
        .await
        .unwrap();
    assert_eq!(status(&db, ids[1]).await, Status::Blocked);
    assert_eq!(status(&db, ids[2]).await, Status::Blocked);
    db.store.retry(ids[0], None, op("cli", 2)).await.unwrap();
    assert_eq!(status(&db, ids[1]).await, Status::Waiting);
    assert_eq!(status(&db, ids[2]).await, Status::Waiting);
    assert_consistent(&db).await;
}

async fn a_completion_with_a_stale_token_is_refused_and_leaves_an_event(db: TestDb) {
    let ids = db.submit(vec![task("a", &[])], 0).await;
    let first = db
        .store
        .claim_next("w1", Duration::from_millis(100), op("w1", 0))
        .await
        .unwrap()
        .unwrap();
    // The lease runs out; recovery hands the task to someone else.
    let recovered = db
        .store
        .recover_expired(op("scheduler", 1_000))
        .await
        .unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].status, Status::RetryWait);
    db.store.promote_due(op("scheduler", 1_000)).await.unwrap();
    let second = db
        .store
        .claim_next("w2", LEASE, op("w2", 1_001))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.task.id, ids[0]);
    assert_eq!(second.run.attempt, 2);
    assert!(second.run.id > first.run.id, "run ids only grow");
    assert_ne!(second.token, first.token, "every claim gets its own token");

    let heartbeat = db
        .store
        .heartbeat(first.run.id, first.token, LEASE, op("w1", 1_002))
        .await;
    assert!(
        matches!(heartbeat, Err(StoreError::StaleLease { .. })),
        "{heartbeat:?}"
    );
    let late = db
        .store
        .complete(
            first.run.id,
            first.token,
            Outcome::Succeeded,
            None,
            op("w1", 1_003),
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::StaleLease { .. })),
        "{late:?}"
    );
    // A forged token for the live run is refused too, as a stranger's request.
    let forged = db
        .store
        .complete(
            second.run.id,
            FencingToken::from_bytes([7; 16]),
            Outcome::Succeeded,
            None,
            op("w1", 1_004),
        )
        .await;
    assert!(
        matches!(forged, Err(StoreError::NotLeaseHolder { .. })),
        "{forged:?}"
    );
    assert_eq!(
        status(&db, ids[0]).await,
        Status::Running,
        "refusals change nothing"
    );

    db.store
        .complete(
            second.run.id,
            second.token,
            Outcome::Succeeded,
            None,
            op("w2", 1_005),
        )
        .await
        .unwrap();
    let events = db.store.events(ids[0]).await.unwrap();
    let refused = events
        .iter()
        .filter(|e| e.kind == EventKind::Refused)
        .count();
    assert_eq!(refused, 3);
    let completes = events
        .iter()
        .filter(|e| e.kind == EventKind::Complete)
        .count();
    assert_eq!(completes, 1);
    let runs = db.store.runs(ids[0]).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.state).collect::<Vec<_>>(),
        vec![RunState::Lost, RunState::Succeeded]
    );
    assert_consistent(&db).await;
}

async fn a_heartbeat_extends_the_lease_so_recovery_leaves_it_alone(db: TestDb) {
    db.submit(vec![task("a", &[])], 0).await;
    let claim = db
        .store
        .claim_next("w", Duration::from_millis(100), op("w", 0))
        .await
        .unwrap()
        .unwrap();
    let expires = db
        .store
        .heartbeat(
            claim.run.id,
            claim.token,
            Duration::from_millis(100),
            op("w", 90),
        )
        .await
        .unwrap();
    assert_eq!(expires.0, 190);
    assert!(db
        .store
        .recover_expired(op("scheduler", 150))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        db.store
            .recover_expired(op("scheduler", 191))
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn a_lease_that_keeps_expiring_ends_in_needs_review_at_max_attempts(db: TestDb) {
    let ids = db
        .submit(vec![task_with("a", &[], 0, policy(2)), task("b", &[0])], 0)
        .await;
    let lease = Duration::from_millis(10);
    let first = db
        .store
        .claim_next("w", lease, op("w", 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.run.attempt, 1);
    db.store.tick(op("scheduler", 100)).await.unwrap();
    let second = db
        .store
        .claim_next("w", lease, op("w", 101))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.task.id, second.run.attempt), (ids[0], 2));
    let report = db.store.tick(op("scheduler", 200)).await.unwrap();
    assert_eq!(report.recovered[0].status, Status::NeedsReview);
    let task = db.store.task(ids[0]).await.unwrap();
    assert_eq!(task.status, Status::NeedsReview);
    assert!(task.status_reason.unwrap().contains("no attempts are left"));
    assert_eq!(
        status(&db, ids[1]).await,
        Status::Blocked,
        "a task needing review blocks its dependents"
    );
    assert_consistent(&db).await;
}

async fn failures_back_off_exponentially_before_the_next_attempt(db: TestDb) {
    let retry = orch_core::RetryPolicy {
        max_attempts: 3,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        jitter: Duration::ZERO,
    };
    let ids = db.submit(vec![task_with("a", &[], 0, retry)], 0).await;
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.store
            .complete(claim.run.id, claim.token, Outcome::Failed, None, op("w", 0))
            .await
            .unwrap(),
        Status::RetryWait
    );
    assert_eq!(
        db.store.task(ids[0]).await.unwrap().not_before.unwrap().0,
        1_000
    );
    assert!(
        db.store.promote_due(op("s", 999)).await.unwrap().is_empty(),
        "not before the backoff"
    );
    assert!(db
        .store
        .claim_next("w", LEASE, op("w", 999))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        db.store.promote_due(op("s", 1_000)).await.unwrap(),
        vec![ids[0]]
    );
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1_000))
        .await
        .unwrap()
        .unwrap();
    db.store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Failed,
            None,
            op("w", 1_000),
        )
        .await
        .unwrap();
    assert_eq!(
        db.store.task(ids[0]).await.unwrap().not_before.unwrap().0,
        3_000,
        "the second wait doubles"
    );
    db.store.promote_due(op("s", 3_000)).await.unwrap();
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 3_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.store
            .complete(
                claim.run.id,
                claim.token,
                Outcome::Failed,
                None,
                op("w", 3_000)
            )
            .await
            .unwrap(),
        Status::Failed
    );
    // A retry by hand gives a fresh set of attempts, here after a delay.
    assert_eq!(
        db.store
            .retry(ids[0], Some(Duration::from_secs(5)), op("cli", 4_000))
            .await
            .unwrap(),
        Status::RetryWait
    );
    assert_eq!(db.store.task(ids[0]).await.unwrap().attempts_used, 0);
    assert_consistent(&db).await;
}

async fn a_requeue_waits_its_delay_and_does_not_use_up_an_attempt(db: TestDb) {
    let ids = db.submit(vec![task_with("a", &[], 0, policy(1))], 0).await;
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 0))
        .await
        .unwrap()
        .unwrap();
    db.store
        .requeue(
            claim.run.id,
            claim.token,
            Duration::from_secs(30),
            Some("rate limited"),
            op("w", 10),
        )
        .await
        .unwrap();
    let task = db.store.task(ids[0]).await.unwrap();
    assert_eq!(
        (task.status, task.attempts_used, task.not_before.unwrap().0),
        (Status::RetryWait, 0, 30_010)
    );
    db.store.promote_due(op("s", 30_010)).await.unwrap();
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 30_011))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.run.attempt, 2);
    assert_eq!(
        db.store
            .complete(
                claim.run.id,
                claim.token,
                Outcome::Failed,
                None,
                op("w", 30_012)
            )
            .await
            .unwrap(),
        Status::Failed
    );
}

async fn cancelling_a_running_task_voids_its_lease(db: TestDb) {
    let ids = db.submit(vec![task("a", &[]), task("b", &[0])], 0).await;
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 0))
        .await
        .unwrap()
        .unwrap();
    db.store
        .cancel(ids[0], Some("wrong branch"), op("cli", 1))
        .await
        .unwrap();
    let heartbeat = db
        .store
        .heartbeat(claim.run.id, claim.token, LEASE, op("w", 2))
        .await;
    assert!(matches!(heartbeat, Err(StoreError::StaleLease { .. })));
    assert_eq!(status(&db, ids[1]).await, Status::Blocked);
    let again = db
        .store
        .cancel(ids[0], None, op("cli", 3))
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("cannot `cancel`")
            || again
                .to_string()
                .contains("only tasks that have not finished"),
        "{again}"
    );
    assert_consistent(&db).await;
}

async fn a_task_that_requires_approval_waits_for_it(db: TestDb) {
    let mut gated = task("deploy", &[0]);
    gated.spec.requires_approval = true;
    let ids = db.submit(vec![task("build", &[]), gated], 0).await;
    let build = db
        .store
        .claim_next("w", LEASE, op("w", 0))
        .await
        .unwrap()
        .unwrap();
    db.store
        .complete(
            build.run.id,
            build.token,
            Outcome::Succeeded,
            None,
            op("w", 1),
        )
        .await
        .unwrap();
    assert_eq!(status(&db, ids[1]).await, Status::AwaitingApproval);
    assert!(db
        .store
        .claim_next("w", LEASE, op("w", 2))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        db.store.approve(ids[1], op("cli", 3)).await.unwrap(),
        Status::Queued
    );
    assert_eq!(
        db.store
            .claim_next("w", LEASE, op("w", 4))
            .await
            .unwrap()
            .unwrap()
            .task
            .id,
        ids[1]
    );
    assert_consistent(&db).await;
}

async fn a_retry_of_a_task_that_is_not_finished_is_refused_with_a_reason(db: TestDb) {
    let ids = db.submit(vec![task("a", &[])], 0).await;
    let err = db
        .store
        .retry(ids[0], None, op("cli", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                status: Status::Queued,
                ..
            }
        ),
        "{err}"
    );
    let err = db.store.task(TaskId(999)).await.unwrap_err();
    assert!(matches!(err, StoreError::TaskNotFound(TaskId(999))));
}

async fn a_submission_naming_a_missing_task_creates_nothing(db: TestDb) {
    let mut dangling = task("x", &[]);
    dangling.needs_existing = vec![TaskId(42)];
    let result = db
        .store
        .submit(
            &orch_store::Submission {
                project: db.project,
                workflow: None,
                tasks: vec![task("ok", &[]), dangling],
            },
            op("cli", 0),
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::Invalid { .. })),
        "{result:?}"
    );
    assert!(
        db.store
            .tasks(&TaskFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "all or nothing"
    );
}

async fn the_event_log_refuses_update_and_delete(db: TestDb) {
    let ids = db.submit(vec![task("a", &[])], 0).await;
    let update = db.raw_execute("UPDATE events SET kind = 'complete'").await;
    assert!(update.unwrap_err().contains("append-only"));
    let delete = db.raw_execute("DELETE FROM events").await;
    assert!(delete.unwrap_err().contains("append-only"));
    assert_eq!(
        db.store.events(ids[0]).await.unwrap().len(),
        1,
        "the create event is still there"
    );
}

async fn doctor_finds_a_task_whose_state_was_changed_by_hand(db: TestDb) {
    let ids = db.submit(vec![task("a", &[]), task("b", &[0])], 0).await;
    assert_consistent(&db).await;
    db.raw_execute(&format!(
        "UPDATE tasks SET status = 'done' WHERE id = {}",
        ids[0].0
    ))
    .await
    .unwrap();
    let problems = db.store.check_consistency().await.unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.task == ids[0] && p.message.contains("replay to queued")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.task == ids[1] && p.message.contains("should be queued")),
        "B's dependencies are all done now, yet it waits: {problems:#?}"
    );
}

async fn dependencies_finishing_at_once_release_their_dependent(db: TestDb) {
    // Two handles, as two servers: each completes one parent of a diamond at the same moment.
    let other = db.reopen().await;
    for round in 0..10 {
        let ids = db
            .submit(
                vec![
                    task(&format!("a{round}"), &[]),
                    task(&format!("b{round}"), &[]),
                    task(&format!("c{round}"), &[0, 1]),
                ],
                0,
            )
            .await;
        let first = db
            .store
            .claim_next("w1", LEASE, op("w1", 1))
            .await
            .unwrap()
            .unwrap();
        let second = other
            .claim_next("w2", LEASE, op("w2", 1))
            .await
            .unwrap()
            .unwrap();
        let (one, two) = tokio::join!(
            db.store.complete(
                first.run.id,
                first.token,
                Outcome::Succeeded,
                None,
                op("w1", 2)
            ),
            other.complete(
                second.run.id,
                second.token,
                Outcome::Succeeded,
                None,
                op("w2", 2)
            ),
        );
        assert_eq!((one.unwrap(), two.unwrap()), (Status::Done, Status::Done));
        assert_eq!(status(&db, ids[2]).await, Status::Queued, "round {round}");
        let last = db
            .store
            .claim_next("w1", LEASE, op("w1", 3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last.task.id, ids[2]);
        db.store
            .complete(
                last.run.id,
                last.token,
                Outcome::Succeeded,
                None,
                op("w1", 4),
            )
            .await
            .unwrap();
    }
    other.close().await;
    assert_consistent(&db).await;
}

async fn a_task_created_while_its_dependency_finishes_is_released(db: TestDb) {
    let other = db.reopen().await;
    for round in 0..10 {
        let parent = db.submit(vec![task(&format!("p{round}"), &[])], 0).await[0];
        let claim = db
            .store
            .claim_next("w", LEASE, op("w", 1))
            .await
            .unwrap()
            .unwrap();
        let mut child = task(&format!("c{round}"), &[]);
        child.needs_existing = vec![parent];
        let submission = orch_store::Submission {
            project: db.project,
            workflow: None,
            tasks: vec![child],
        };
        let (done, created) = tokio::join!(
            db.store.complete(
                claim.run.id,
                claim.token,
                Outcome::Succeeded,
                None,
                op("w", 2)
            ),
            other.submit(&submission, op("other", 2)),
        );
        done.unwrap();
        let child = created.unwrap()[0];
        assert_eq!(status(&db, child).await, Status::Queued, "round {round}");
        let next = db
            .store
            .claim_next("w", LEASE, op("w", 3))
            .await
            .unwrap()
            .unwrap();
        db.store
            .complete(
                next.run.id,
                next.token,
                Outcome::Succeeded,
                None,
                op("w", 4),
            )
            .await
            .unwrap();
    }
    other.close().await;
    assert_consistent(&db).await;
}

async fn submit_once_creates_nothing_for_a_known_delivery_id_and_records_the_new_ones(db: TestDb) {
    use orch_store::{Delivery, Submission};
    let submission = Submission {
        project: db.project,
        workflow: None,
        tasks: vec![task("hook", &[])],
    };
    let first = vec![
        Delivery::new("github", "d-1"),
        Delivery::new("github-issue", "acme/w#1"),
    ];
    let created = db
        .store
        .submit_once(&first, &submission, op("webhook", 1))
        .await
        .unwrap();
    assert!(created.created);
    assert_eq!(created.tasks.len(), 1);
    let replay = db
        .store
        .submit_once(&first[..1], &submission, op("webhook", 2))
        .await
        .unwrap();
    assert_eq!(
        (replay.tasks.clone(), replay.created),
        (created.tasks.clone(), false)
    );
    // A new delivery about the same issue: nothing new, and its id now answers the same.
    let other = vec![
        Delivery::new("github", "d-2"),
        Delivery::new("github-issue", "acme/w#1"),
    ];
    let again = db
        .store
        .submit_once(&other, &submission, op("webhook", 3))
        .await
        .unwrap();
    assert!(!again.created);
    let again = db
        .store
        .submit_once(&other[..1], &submission, op("webhook", 4))
        .await
        .unwrap();
    assert_eq!((again.tasks, again.created), (created.tasks, false));
    assert_eq!(
        db.store.tasks(&TaskFilter::default()).await.unwrap().len(),
        1
    );
    assert_consistent(&db).await;
}

#[tokio::test]
async fn a_postgres_server_that_does_not_answer_is_reported_as_unavailable() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = orch_store::Store::open(&orch_store::DatabaseConfig::Postgres {
        url: "postgres://orch@127.0.0.1:1/orch".into(),
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, orch_store::StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("cannot get a connection to PostgreSQL"),
        "{err}"
    );
}

async fn listing_filters_by_label_and_pages_newest_first(db: TestDb) {
    let mut tasks = vec![
        task("a", &[]),
        task("b", &[]),
        task("c", &[]),
        task("d", &[]),
    ];
    tasks[1].spec.labels = vec!["docs".into(), "area:store".into()];
    tasks[3].spec.labels = vec!["docs".into()];
    // A label that merely contains the one asked for does not match.
    tasks[2].spec.labels = vec!["docs-old".into()];
    let ids = db.submit(tasks, 1).await;
    let listed = |filter: TaskFilter| {
        let store = db.store.clone();
        async move {
            store
                .tasks(&filter)
                .await
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(TaskFilter {
            label: Some("docs".into()),
            ..TaskFilter::default()
        })
        .await,
        vec![ids[1], ids[3]]
    );
    assert_eq!(
        listed(TaskFilter {
            label: Some("docs".into()),
            newest_first: true,
            ..TaskFilter::default()
        })
        .await,
        vec![ids[3], ids[1]]
    );
    assert_eq!(
        listed(TaskFilter {
            newest_first: true,
            limit: Some(2),
            ..TaskFilter::default()
        })
        .await,
        vec![ids[3], ids[2]],
        "the first page of the newest"
    );
    assert_eq!(
        listed(TaskFilter {
            label: Some("nothing".into()),
            ..TaskFilter::default()
        })
        .await,
        Vec::<TaskId>::new()
    );
}

store_tests!(
    listing_filters_by_label_and_pages_newest_first,
    dependencies_finishing_at_once_release_their_dependent,
    a_task_created_while_its_dependency_finishes_is_released,
    the_event_log_refuses_update_and_delete,
    doctor_finds_a_task_whose_state_was_changed_by_hand,
    claims_take_the_highest_priority_then_the_oldest_task,
    a_diamond_becomes_claimable_in_dependency_order,
    a_failed_dependency_blocks_its_dependents_and_retrying_it_unblocks_them,
    blocking_is_transitive_down_a_chain,
    a_completion_with_a_stale_token_is_refused_and_leaves_an_event,
    a_heartbeat_extends_the_lease_so_recovery_leaves_it_alone,
    a_lease_that_keeps_expiring_ends_in_needs_review_at_max_attempts,
    failures_back_off_exponentially_before_the_next_attempt,
    a_requeue_waits_its_delay_and_does_not_use_up_an_attempt,
    cancelling_a_running_task_voids_its_lease,
    a_task_that_requires_approval_waits_for_it,
    a_retry_of_a_task_that_is_not_finished_is_refused_with_a_reason,
    a_submission_naming_a_missing_task_creates_nothing,
    submit_once_creates_nothing_for_a_known_delivery_id_and_records_the_new_ones,
);
