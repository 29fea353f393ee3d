//! Review verdicts on a real SQLite file: recorded fenced by the run's token, handed to the
//! task's later claims.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orch_core::FencingToken;
use orch_store::{ReviewRecord, ReviewVerdict, StoreError};
use support::{op, policy, store_tests, task_with, TestDb, LEASE};

fn reject(round: u32) -> ReviewRecord {
    ReviewRecord {
        round,
        verdict: ReviewVerdict::Reject,
        reasons: vec![format!("fix {round}")],
        escalated: false,
    }
}

async fn a_recorded_rejection_reaches_the_next_claim_of_the_task(db: TestDb) {
    db.submit(vec![task_with("t", &[], 0, policy(3))], 0).await;
    let first = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    assert!(first.reviews.is_empty());
    let (run, token) = (first.run.id, first.token);
    db.store
        .record_review(run, token, reject(1), op("w", 2))
        .await
        .unwrap();
    // A repeat of the same run's report replaces it rather than counting twice.
    db.store
        .record_review(run, token, reject(1), op("w", 2))
        .await
        .unwrap();
    db.store
        .requeue(
            run,
            token,
            Duration::ZERO,
            Some("review rejected"),
            op("w", 3),
        )
        .await
        .unwrap();
    db.store.tick(op("scheduler", 4)).await.unwrap();
    let second = db
        .store
        .claim_next("w2", LEASE, op("w2", 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.reviews, vec![reject(1)]);
}

async fn a_review_after_the_run_ended_or_with_a_forged_token_is_refused_and_recorded(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(3))], 0).await[0];
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    let forged = FencingToken::from_bytes([7; 16]);
    let err = db
        .store
        .record_review(claim.run.id, forged, reject(1), op("w", 2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotLeaseHolder { .. }), "{err}");
    db.store
        .requeue(claim.run.id, claim.token, Duration::ZERO, None, op("w", 3))
        .await
        .unwrap();
    let err = db
        .store
        .record_review(claim.run.id, claim.token, reject(1), op("w", 4))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StaleLease { .. }), "{err}");
    let events = db.store.events(id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind.as_str(), "refused");
    assert!(last
        .reason
        .as_deref()
        .unwrap()
        .starts_with("review report refused"));
}

store_tests!(
    a_recorded_rejection_reaches_the_next_claim_of_the_task,
    a_review_after_the_run_ended_or_with_a_forged_token_is_refused_and_recorded,
);
