//! The feedback loop's reactions on every backend: a reaction's causes are recorded in the same
//! transaction as its follow-up run, its `needs_review` or its forge writes, so a cause is
//! reacted to once (a repeat does nothing), rounds are counted per kind, and a follow-up the
//! task cannot take records nothing.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orch_core::forge::feedback::RoundKind;
use orch_core::forge::{ForgeOp, KeyedOp, MergeMethod, RepoSlug};
use orch_core::{Outcome, Status, Timestamp};
use orch_store::{NewForgeOp, NewReaction, ReactionEffect};
use support::{op, policy, store_tests, task_with, TestDb};

const LEASE: Duration = Duration::from_secs(30);

/// A done task with an agent session, linked to pull request 5.
async fn done_task_with_a_pull(db: &TestDb) -> orch_core::TaskId {
    let id = db.submit(vec![task_with("t", &[], 0, policy(1))], 0).await[0];
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    let usage = orch_store::UsageRecord {
        step: "work".into(),
        agent: "sim".into(),
        model: None,
        session_id: Some("sess-1".into()),
        input_tokens: 1,
        output_tokens: 1,
        cost_usd: 0.0,
    };
    db.store
        .record_usage(claim.run.id, claim.token, vec![usage], op("w", 1))
        .await
        .unwrap();
    db.store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Succeeded,
            None,
            op("w", 1),
        )
        .await
        .unwrap();
    let repo = RepoSlug::parse("octo/widgets").unwrap();
    db.store
        .record_forge_push(id, &repo, "orch/t", "abc", Timestamp(2))
        .await
        .unwrap();
    id
}

/// Link pull request 5 to `id` the way the outbox's writer links it.
async fn link_pull_5(db: &TestDb, id: orch_core::TaskId) {
    let open = NewForgeOp {
        project: db.project,
        task: Some(id),
        event: None,
        op: orch_core::forge::pull_request_op(id, "t", "orch/t", "main", "body", false),
    };
    db.store
        .enqueue_forge_ops(&[open], Timestamp(2))
        .await
        .unwrap();
    let claimed = db
        .store
        .claim_forge_ops("d", LEASE, 1, Timestamp(2))
        .await
        .unwrap();
    db.store
        .finish_forge_op(
            claimed[0].id,
            "d",
            &orch_core::forge::ForgeResult::Pull {
                number: 5,
                url: "http://forge/pull/5".into(),
            },
            Timestamp(2),
        )
        .await
        .unwrap();
}

fn follow_up(task: orch_core::TaskId, causes: &[&str], message: &str) -> NewReaction {
    NewReaction {
        task,
        causes: causes.iter().map(|c| (*c).to_owned()).collect(),
        name: "follow_up",
        effect: ReactionEffect::FollowUp {
            kind: RoundKind::Checks,
            message: message.into(),
        },
        ops: Vec::new(),
    }
}

async fn a_cause_starts_one_follow_up_however_often_it_is_recorded(db: TestDb) {
    let id = done_task_with_a_pull(&db).await;
    let reaction = follow_up(id, &["check:check-run:1@abc"], "Check `test` failed");
    assert!(db
        .store
        .record_forge_reaction(&reaction, op("poller", 3))
        .await
        .unwrap());
    assert_eq!(db.store.task(id).await.unwrap().status, Status::Queued);
    // The run answers the follow-up with its message.
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.reply.unwrap().message, "Check `test` failed");
    db.store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Succeeded,
            None,
            op("w", 5),
        )
        .await
        .unwrap();
    // The same cause again (the next poll, or after a crash): nothing.
    assert!(!db
        .store
        .record_forge_reaction(&reaction, op("poller", 6))
        .await
        .unwrap());
    assert_eq!(db.store.task(id).await.unwrap().status, Status::Done);
    let state = db.store.forge_feedback(id).await.unwrap();
    assert_eq!(state.rounds.get(&RoundKind::Checks), Some(&1));
    assert!(state.reacted.contains("check:check-run:1@abc"));
    // A reaction with one new and one known cause does nothing either.
    let mixed = follow_up(id, &["review:9", "check:check-run:1@abc"], "x");
    assert!(!db
        .store
        .record_forge_reaction(&mixed, op("poller", 7))
        .await
        .unwrap());
    assert!(!db
        .store
        .forge_feedback(id)
        .await
        .unwrap()
        .reacted
        .contains("review:9"));
    // Rounds count reactions, not causes.
    let two = NewReaction {
        effect: ReactionEffect::FollowUp {
            kind: RoundKind::Reviews,
            message: "Review".into(),
        },
        ..follow_up(id, &["review:9", "review-comment:10"], "")
    };
    assert!(db
        .store
        .record_forge_reaction(&two, op("poller", 8))
        .await
        .unwrap());
    let state = db.store.forge_feedback(id).await.unwrap();
    assert_eq!(state.rounds.get(&RoundKind::Reviews), Some(&1));
    assert_eq!(state.reacted.len(), 3);
}

async fn a_refused_follow_up_records_nothing(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(1))], 0).await[0];
    // Queued, not finished: the follow-up is refused and its cause is not recorded.
    let refused = db
        .store
        .record_forge_reaction(&follow_up(id, &["c"], "m"), op("poller", 1))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(db
        .store
        .forge_feedback(id)
        .await
        .unwrap()
        .reacted
        .is_empty());
}

async fn needs_review_and_forge_writes_happen_with_their_cause(db: TestDb) {
    let id = done_task_with_a_pull(&db).await;
    assert_eq!(db.store.tasks_with_open_pulls().await.unwrap(), vec![]);
    db.store.enqueue_forge_ops(&[], Timestamp(2)).await.unwrap();
    link_pull_5(&db, id).await;
    assert_eq!(db.store.tasks_with_open_pulls().await.unwrap(), vec![id]);

    let merge = NewReaction {
        task: id,
        causes: vec!["merge:abc".into()],
        name: "merge",
        effect: ReactionEffect::None,
        ops: vec![NewForgeOp {
            project: db.project,
            task: Some(id),
            event: None,
            op: KeyedOp {
                key: "merge:task-1:abc".into(),
                op: ForgeOp::MergePull {
                    pull: 5,
                    method: MergeMethod::Squash,
                    head_sha: Some("abc".into()),
                },
            },
        }],
    };
    assert!(db
        .store
        .record_forge_reaction(&merge, op("poller", 3))
        .await
        .unwrap());
    assert!(!db
        .store
        .record_forge_reaction(&merge, op("poller", 4))
        .await
        .unwrap());
    let merges = db
        .store
        .forge_ops(Some(id))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.op, ForgeOp::MergePull { .. }))
        .count();
    assert_eq!(merges, 1);

    let closed = NewReaction {
        task: id,
        causes: vec!["closed:pr-5".into()],
        name: "needs_review",
        effect: ReactionEffect::NeedsReview("pull request #5 was closed".into()),
        ops: Vec::new(),
    };
    assert!(db
        .store
        .record_forge_reaction(&closed, op("poller", 5))
        .await
        .unwrap());
    let task = db.store.task(id).await.unwrap();
    assert_eq!(task.status, Status::NeedsReview);
    assert_eq!(
        task.status_reason.as_deref(),
        Some("pull request #5 was closed")
    );
    // Its closing handled, the pull request is no longer looked at.
    assert_eq!(db.store.tasks_with_open_pulls().await.unwrap(), vec![]);
}

async fn a_merge_finishes_a_running_task_once_and_cancels_its_run(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(1))], 0).await[0];
    let repo = RepoSlug::parse("octo/widgets").unwrap();
    db.store
        .record_forge_push(id, &repo, "orch/t", "abc", Timestamp(2))
        .await
        .unwrap();
    link_pull_5(&db, id).await;
    assert_eq!(
        db.store.linked_numbers(db.project).await.unwrap(),
        vec![(id, None, Some(5))]
    );
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    let merged = NewReaction {
        task: id,
        causes: vec!["merged:pr-5".into()],
        name: "finish",
        effect: ReactionEffect::Finish("pull request #5 was merged".into()),
        ops: Vec::new(),
    };
    assert!(db
        .store
        .record_forge_reaction(&merged, op("poller", 3))
        .await
        .unwrap());
    assert!(!db
        .store
        .record_forge_reaction(&merged, op("poller", 4))
        .await
        .unwrap());
    let task = db.store.task(id).await.unwrap();
    assert_eq!(task.status, Status::Done);
    assert_eq!(
        task.status_reason.as_deref(),
        Some("pull request #5 was merged")
    );
    let run = db.store.run(claim.run.id).await.unwrap();
    assert_eq!(run.state, orch_core::RunState::Cancelled);
    // The worker's late completion is refused: the run is over.
    assert!(db
        .store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Succeeded,
            None,
            op("w", 5)
        )
        .await
        .is_err());
    assert_eq!(db.store.task(id).await.unwrap().status, Status::Done);
}

store_tests!(
    a_merge_finishes_a_running_task_once_and_cancels_its_run,
    a_cause_starts_one_follow_up_however_often_it_is_recorded,
    a_refused_follow_up_records_nothing,
    needs_review_and_forge_writes_happen_with_their_cause,
);
