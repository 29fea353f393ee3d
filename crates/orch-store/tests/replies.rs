//! Follow-up replies and agent usage on a real SQLite file.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orch_core::{Outcome, Status};
use orch_store::{Claim, Delivery, UsageRecord};
use support::{op, policy, store_tests, task_with, TestDb};

const LEASE: Duration = Duration::from_secs(30);

async fn run_once(db: &TestDb, outcome: Outcome, now: i64) -> Claim {
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", now))
        .await
        .unwrap()
        .expect("a task is ready");
    let usage = UsageRecord {
        step: "work".into(),
        agent: "sim".into(),
        model: None,
        session_id: Some("sess-1".into()),
        input_tokens: 10,
        output_tokens: 2,
        cost_usd: 0.0,
    };
    db.store
        .record_usage(claim.run.id, claim.token, vec![usage], op("w", now))
        .await
        .unwrap();
    db.store
        .complete(claim.run.id, claim.token, outcome, None, op("w", now))
        .await
        .unwrap();
    claim
}

async fn a_second_reply_before_the_first_was_answered_joins_it_and_neither_is_lost(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(1))], 0).await[0];
    run_once(&db, Outcome::Succeeded, 1).await;

    assert_eq!(
        db.store.reply(id, "first", op("cli", 2)).await.unwrap(),
        Status::Queued
    );
    let claim = run_once(&db, Outcome::FailedPermanently, 3).await;
    let reply = claim.reply.expect("the run answers the reply");
    assert_eq!(
        (reply.message.as_str(), reply.session_id.as_str()),
        ("first", "sess-1")
    );

    // The reply's run failed: the first message is still owed, and the second joins it.
    db.store.reply(id, "second", op("cli", 4)).await.unwrap();
    let claim = run_once(&db, Outcome::Succeeded, 5).await;
    assert_eq!(claim.reply.unwrap().message, "first\n\nsecond");

    // Answered: the next reply starts afresh.
    db.store.reply(id, "third", op("cli", 6)).await.unwrap();
    let claim = run_once(&db, Outcome::Succeeded, 7).await;
    assert_eq!(claim.reply.unwrap().message, "third");
    assert!(db.store.check_consistency().await.unwrap().is_empty());
}

async fn a_reply_needs_a_finished_task_with_a_recorded_session(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(1))], 0).await[0];
    let refused = db
        .store
        .reply(id, "too early", op("cli", 1))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("has not finished"),
        "{refused}"
    );
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 2))
        .await
        .unwrap()
        .unwrap();
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
    let refused = db
        .store
        .reply(id, "no session", op("cli", 4))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("nothing to resume"),
        "{refused}"
    );
}

async fn usage_from_a_stale_token_is_refused_and_repeats_replace(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(1))], 0).await[0];
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    let record = |tokens| UsageRecord {
        step: "work".into(),
        agent: "claude".into(),
        model: Some("m".into()),
        session_id: None,
        input_tokens: tokens,
        output_tokens: 1,
        cost_usd: 0.5,
    };
    let stale = orch_core::FencingToken::from_bytes([9; 16]);
    assert!(db
        .store
        .record_usage(claim.run.id, stale, vec![record(1)], op("w", 2))
        .await
        .is_err());
    for tokens in [5, 9] {
        db.store
            .record_usage(claim.run.id, claim.token, vec![record(tokens)], op("w", 2))
            .await
            .unwrap();
    }
    let rows = db.store.task_usage(id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].input_tokens, 9);
    let summary = db.store.usage_summary(7).await.unwrap();
    assert_eq!(summary.by_agent[0].key, "claude");
    assert_eq!(summary.by_day[0].key, "1970-01-01");
    assert_eq!(summary.by_project.len(), 1);
    assert_eq!(summary.by_project[0].input_tokens, 9);
    assert_eq!(summary.by_project[0].sessions, 1);
}

async fn a_note_records_a_merge_without_changing_the_status_and_replays(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(1))], 0).await[0];
    run_once(&db, Outcome::Succeeded, 1).await;
    let data = serde_json::json!({ "commit": "abc123" });
    let status = db
        .store
        .record_note(
            id,
            orch_core::EventKind::Merged,
            "landed",
            data,
            op("cli", 2),
        )
        .await
        .unwrap();
    assert_eq!(status, Status::Done);
    let events = db.store.events(id).await.unwrap();
    let note = events.last().unwrap();
    assert_eq!(note.kind, orch_core::EventKind::Merged);
    assert_eq!((note.from, note.to), (Some(Status::Done), Status::Done));
    assert_eq!(note.data["commit"], "abc123");
    assert_eq!(db.store.task(id).await.unwrap().status, Status::Done);
    assert!(db.store.check_consistency().await.unwrap().is_empty());

    let refused = db
        .store
        .record_note(
            id,
            orch_core::EventKind::Cancel,
            "no",
            serde_json::json!({}),
            op("cli", 3),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("only notes"), "{refused}");
}

async fn a_reply_once_per_delivery_id_replies_once_however_often_it_is_delivered(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(1))], 0).await[0];
    run_once(&db, Outcome::Succeeded, 1).await;
    let comment = Delivery::new("github-comment", "o/r#1/comment-7");
    assert_eq!(
        db.store
            .reply_once(id, "from the comment", &comment, op("webhook", 2))
            .await
            .unwrap(),
        Some(Status::Queued)
    );
    // Delivered again (even after the reply's run): nothing more.
    assert_eq!(
        db.store
            .reply_once(id, "from the comment", &comment, op("webhook", 3))
            .await
            .unwrap(),
        None
    );
    let claim = run_once(&db, Outcome::Succeeded, 4).await;
    assert_eq!(claim.reply.unwrap().message, "from the comment");
    assert_eq!(
        db.store
            .reply_once(id, "from the comment", &comment, op("webhook", 5))
            .await
            .unwrap(),
        None
    );
    // A refused reply (the task is queued) records nothing: a later delivery may act.
    let other = Delivery::new("github-comment", "o/r#1/comment-8");
    db.store.reply(id, "again", op("cli", 6)).await.unwrap();
    assert!(db
        .store
        .reply_once(id, "too early", &other, op("webhook", 7))
        .await
        .is_err());
    run_once(&db, Outcome::Succeeded, 8).await;
    assert_eq!(
        db.store
            .reply_once(id, "now", &other, op("webhook", 9))
            .await
            .unwrap(),
        Some(Status::Queued)
    );
    assert!(db.store.check_consistency().await.unwrap().is_empty());
}

store_tests!(
    a_note_records_a_merge_without_changing_the_status_and_replays,
    a_second_reply_before_the_first_was_answered_joins_it_and_neither_is_lost,
    a_reply_needs_a_finished_task_with_a_recorded_session,
    a_reply_once_per_delivery_id_replies_once_however_often_it_is_delivered,
    usage_from_a_stale_token_is_refused_and_repeats_replace,
);
