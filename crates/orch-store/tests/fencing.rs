//! Fencing tokens on a real SQLite file: random secrets bound to the claiming worker, stored
//! only as hashes, and refusals of strangers that cannot flood a task's log.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orch_core::{EventKind, FencingToken, Outcome, Status};
use orch_store::{StoreError, REFUSAL_WINDOW_MS};
use support::store_tests;
use support::*;

/// Submit one task and claim it as `owner` at time 1.
async fn claimed(db: &TestDb, owner: &str) -> (orch_core::TaskId, orch_store::Claim) {
    let id = db.submit(vec![task("a", &[])], 0).await[0];
    let claim = db
        .store
        .claim_next(owner, LEASE, op(owner, 1))
        .await
        .unwrap()
        .unwrap();
    (id, claim)
}

/// The holder completes its run after all, and the log still replays to the stored state.
async fn holder_completes(db: &TestDb, claim: &orch_store::Claim, owner: &str, at: i64) {
    db.store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Succeeded,
            None,
            op(owner, at),
        )
        .await
        .unwrap();
    assert_eq!(
        db.store.task(claim.task.id).await.unwrap().status,
        Status::Done
    );
    assert!(db.store.check_consistency().await.unwrap().is_empty());
}

fn refused_events(events: &[orch_core::Event]) -> Vec<&orch_core::Event> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Refused)
        .collect()
}

async fn a_claims_token_is_a_random_secret_that_the_database_never_holds(db: TestDb) {
    let (id, claim) = claimed(&db, "w").await;
    let secret = claim.token.expose_hex();
    assert_eq!(secret.len(), 32);
    assert_ne!(secret, format!("{:032x}", claim.run.id.0));
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
    assert_eq!(db.store.task(id).await.unwrap().status, Status::Done);

    // Every text and blob in the database, as hex and as text: the secret is in none of them.
    let cells = db.raw_cells().await;
    for (table, text) in &cells {
        assert!(!text.contains(&secret), "{table} holds the secret: {text}");
    }
    assert!(
        cells.len() > 10,
        "the scan read the database ({} cells)",
        cells.len()
    );
}

async fn another_worker_with_the_run_id_and_even_the_token_cannot_act_on_the_run(db: TestDb) {
    let (id, claim) = claimed(&db, "a").await;
    let made_up = FencingToken::from_bytes([1; 16]);
    let run = claim.run.id;
    for token in [made_up, claim.token] {
        let results = [
            db.store
                .heartbeat(run, token, LEASE, op("b", 2))
                .await
                .map(drop),
            db.store
                .requeue(run, token, Duration::ZERO, None, op("b", 2))
                .await
                .map(drop),
            db.store
                .check_lease(run, token, "bundle upload", op("b", 2))
                .await
                .map(drop),
            db.store
                .complete(run, token, Outcome::Succeeded, None, op("b", 2))
                .await
                .map(drop),
            db.store
                .record_usage(run, token, Vec::new(), op("b", 2))
                .await,
        ];
        for result in results {
            assert!(
                matches!(result, Err(StoreError::NotLeaseHolder { .. })),
                "{result:?}"
            );
        }
    }
    // The owner with a made-up token is a stranger too.
    let owner_forged = db
        .store
        .heartbeat(claim.run.id, made_up, LEASE, op("a", 3))
        .await;
    assert!(
        matches!(owner_forged, Err(StoreError::NotLeaseHolder { .. })),
        "{owner_forged:?}"
    );
    assert!(db
        .store
        .is_holder(claim.run.id, claim.token, "a")
        .await
        .unwrap());
    assert!(!db
        .store
        .is_holder(claim.run.id, claim.token, "b")
        .await
        .unwrap());

    let events = db.store.events(id).await.unwrap();
    let refused = refused_events(&events);
    assert_eq!(refused.len(), 1, "one event per window: {refused:#?}");
    let data = &refused[0].data;
    assert_eq!(data["owner"], "b");
    assert_eq!(data["run_owner"], "a");
    assert_eq!(data["refused"], 1);
    assert!(!data.to_string().contains(&claim.token.expose_hex()));

    holder_completes(&db, &claim, "a", 4).await;
}

async fn a_thousand_forged_requests_add_one_event_per_window_that_counts_them(db: TestDb) {
    let (id, claim) = claimed(&db, "real").await;
    let before = db.store.events(id).await.unwrap().len();
    for i in 0..1_000u16 {
        let forged = FencingToken::from_bytes([(i % 251) as u8; 16]);
        let worker = if i % 2 == 0 { "real" } else { "mallory" };
        let result = if i % 3 == 0 {
            db.store
                .heartbeat(claim.run.id, forged, LEASE, op(worker, 10))
                .await
                .map(drop)
        } else {
            db.store
                .complete(claim.run.id, forged, Outcome::Failed, None, op(worker, 10))
                .await
                .map(drop)
        };
        assert!(
            matches!(result, Err(StoreError::NotLeaseHolder { .. })),
            "{result:?}"
        );
    }
    let events = db.store.events(id).await.unwrap();
    assert_eq!(events.len() - before, 1, "1,000 forgeries, one event");

    // The next forgery after the window closes records one event that counts the rest.
    let late = db
        .store
        .heartbeat(
            claim.run.id,
            FencingToken::from_bytes([3; 16]),
            LEASE,
            op("mallory", 10 + REFUSAL_WINDOW_MS),
        )
        .await;
    assert!(late.is_err());
    let events = db.store.events(id).await.unwrap();
    let refused = refused_events(&events);
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[1].data["refused"], 1_000);

    holder_completes(&db, &claim, "real", 20).await;
}

async fn the_holder_asking_too_late_is_refused_and_recorded_every_time(db: TestDb) {
    let (id, claim) = claimed(&db, "w").await;
    db.store.cancel(id, None, op("cli", 2)).await.unwrap();
    for at in [3, 4, 5] {
        let late = db
            .store
            .heartbeat(claim.run.id, claim.token, LEASE, op("w", at))
            .await;
        assert!(
            matches!(late, Err(StoreError::StaleLease { .. })),
            "{late:?}"
        );
    }
    let events = db.store.events(id).await.unwrap();
    assert_eq!(refused_events(&events).len(), 3);
}

store_tests!(
    a_claims_token_is_a_random_secret_that_the_database_never_holds,
    another_worker_with_the_run_id_and_even_the_token_cannot_act_on_the_run,
    a_thousand_forged_requests_add_one_event_per_window_that_counts_them,
    the_holder_asking_too_late_is_refused_and_recorded_every_time,
);
