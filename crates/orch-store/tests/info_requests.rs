//! Info requests on both backends: a run parks asking for values and frees its slot, the answer
//! (secret values sealed) queues the task, only the next run's holder reads the values, and an
//! unanswered request expires to `needs_review`.

#![allow(clippy::unwrap_used)]

mod support;

use orch_core::info_request::{AskFile, Hint, RequestState};
use orch_core::{FencingToken, RunState, Status, Timestamp};
use orch_store::secret_box::SecretBox;
use orch_store::{AnswerValue, NewInfoRequest, StoreError};
use support::{op, policy, store_tests, task_with, TestDb, LEASE};

const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";

fn aws(expires_at: Option<i64>) -> NewInfoRequest {
    NewInfoRequest {
        step: "deploy".into(),
        ask: AskFile {
            hint: Some(Hint::Aws),
            ..AskFile::default()
        }
        .resolve()
        .unwrap(),
        expires_at: expires_at.map(Timestamp),
    }
}

fn sealed() -> SecretBox {
    SecretBox::new(&[7; 32])
}

fn answer(box_: &SecretBox) -> Vec<AnswerValue> {
    vec![
        AnswerValue {
            key: "AWS_ACCESS_KEY_ID".into(),
            secret: false,
            value: "AKIDEXAMPLE".into(),
        },
        AnswerValue {
            key: "AWS_SECRET_ACCESS_KEY".into(),
            secret: true,
            value: box_.encrypt(SECRET.as_bytes()),
        },
    ]
}

async fn a_parked_run_frees_its_slot_and_the_answer_queues_the_task_for_a_new_run(db: TestDb) {
    // One attempt only: parking must give it back, or the answered task could never run again.
    let ids = db
        .submit(
            vec![
                task_with("asks", &[], 1, policy(1)),
                task_with("other", &[], 0, policy(1)),
            ],
            0,
        )
        .await;
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.task.id, ids[0]);
    let id = db
        .store
        .request_input(claim.run.id, claim.token, aws(None), op("w", 2))
        .await
        .unwrap();
    assert_eq!(
        db.store.task(ids[0]).await.unwrap().status,
        Status::AwaitingInput
    );
    let run = db.store.run(claim.run.id).await.unwrap();
    assert_eq!(run.state, RunState::Requeued);
    // The slot is free: the next claim takes the other task, never the parked one.
    let next = db
        .store
        .claim_next("w", LEASE, op("w", 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.task.id, ids[1]);
    assert!(db
        .store
        .claim_next("w", LEASE, op("w", 3))
        .await
        .unwrap()
        .is_none());
    let open = db.store.open_info_requests().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, id);
    assert_eq!(open[0].step, "deploy");
    assert_eq!(open[0].hint, Some(Hint::Aws));
    assert!(db.store.check_consistency().await.unwrap().is_empty());

    let box_ = sealed();
    let status = db
        .store
        .answer_input(ids[0], answer(&box_), op("alice", 4))
        .await
        .unwrap();
    assert_eq!(status, Status::Queued);
    assert!(db.store.open_info_requests().await.unwrap().is_empty());
    let requests = db.store.info_requests(ids[0]).await.unwrap();
    assert_eq!(requests[0].state, RequestState::Answered);
    assert_eq!(requests[0].closed_by.as_deref(), Some("alice"));
    let secret = requests[0]
        .answers
        .iter()
        .find(|a| a.key == "AWS_SECRET_ACCESS_KEY")
        .unwrap();
    assert!(secret.secret && secret.value.is_none(), "{secret:?}");
    let id_value = requests[0]
        .answers
        .iter()
        .find(|a| a.key == "AWS_ACCESS_KEY_ID")
        .unwrap();
    assert_eq!(id_value.value.as_deref(), Some("AKIDEXAMPLE"));

    // The next run (attempt 2 of a task with one attempt) gets the values, the secret sealed.
    let again = db
        .store
        .claim_next("w", LEASE, op("w", 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.task.id, ids[0]);
    let values = db
        .store
        .input_values(again.run.id, again.token, op("w", 6))
        .await
        .unwrap();
    assert_eq!(values.len(), 2);
    let secret = values
        .iter()
        .find(|v| v.key == "AWS_SECRET_ACCESS_KEY")
        .unwrap();
    assert_eq!(secret.step, "deploy");
    assert!(secret.value.starts_with("enc:v1:"));
    assert_eq!(box_.decrypt(&secret.value).unwrap(), SECRET.as_bytes());
    // Nobody reading the database sees the secret.
    assert!(db
        .raw_cells()
        .await
        .iter()
        .all(|(_, cell)| !cell.contains(SECRET)));
    let kinds: Vec<&str> = db
        .store
        .events(ids[0])
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        vec!["create", "claim", "request_input", "answer", "claim"]
    );
    assert!(db.store.check_consistency().await.unwrap().is_empty());
}

async fn a_wrong_answer_stores_nothing_and_says_what_is_wrong(db: TestDb) {
    let id = db.submit(vec![task_with("t", &[], 0, policy(2))], 0).await[0];
    let box_ = sealed();
    // Not awaiting input yet.
    let err = db
        .store
        .answer_input(id, answer(&box_), op("alice", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let claim = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    db.store
        .request_input(claim.run.id, claim.token, aws(None), op("w", 2))
        .await
        .unwrap();
    let mut unknown = answer(&box_);
    unknown.push(AnswerValue {
        key: "OTHER".into(),
        secret: false,
        value: "x".into(),
    });
    let mut missing = answer(&box_);
    missing.remove(0);
    let mut clear = answer(&box_);
    clear[1].value = SECRET.into();
    for (values, expected) in [
        (unknown, "`OTHER` is not asked for"),
        (missing, "no value for AWS_ACCESS_KEY_ID"),
        (clear, "unsealed"),
    ] {
        let err = db
            .store
            .answer_input(id, values, op("alice", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid { .. }) && err.to_string().contains(expected),
            "{err}"
        );
    }
    assert_eq!(
        db.store.task(id).await.unwrap().status,
        Status::AwaitingInput
    );
    assert!(db.store.info_requests(id).await.unwrap()[0]
        .answers
        .is_empty());
    // The database itself refuses a secret in clear, whoever writes it.
    let request = db.store.info_requests(id).await.unwrap()[0].id;
    let refused = db
        .raw_execute(&format!(
            "INSERT INTO info_values (request_id, task_id, key, secret, value) VALUES ({request}, {}, 'AWS_SECRET_ACCESS_KEY', {}, 'clear')",
            id.0,
            if db.pg.is_some() { "TRUE" } else { "1" }
        ))
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

async fn only_the_holder_of_the_run_reads_the_values_and_only_its_own_tasks(db: TestDb) {
    let ids = db
        .submit(
            vec![
                task_with("a", &[], 1, policy(2)),
                task_with("b", &[], 0, policy(2)),
            ],
            0,
        )
        .await;
    let box_ = sealed();
    let a = db
        .store
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    db.store
        .request_input(a.run.id, a.token, aws(None), op("w", 2))
        .await
        .unwrap();
    db.store
        .answer_input(ids[0], answer(&box_), op("alice", 3))
        .await
        .unwrap();
    // Task b's run (the next claim by priority is a again; take it, then b).
    let a2 = db
        .store
        .claim_next("w", LEASE, op("w", 4))
        .await
        .unwrap()
        .unwrap();
    let b = db
        .store
        .claim_next("w", LEASE, op("w", 4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a2.task.id, b.task.id), (ids[0], ids[1]));
    assert!(db
        .store
        .input_values(b.run.id, b.token, op("w", 5))
        .await
        .unwrap()
        .is_empty());
    // b's token does not open a's run, and a forged token neither: refused and recorded.
    let err = db
        .store
        .input_values(a2.run.id, b.token, op("w", 5))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotLeaseHolder { .. }), "{err}");
    let err = db
        .store
        .input_values(a2.run.id, FencingToken::from_bytes([9; 16]), op("w", 5))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotLeaseHolder { .. }), "{err}");
    // The parked run's old token is stale.
    let err = db
        .store
        .input_values(a.run.id, a.token, op("w", 5))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StaleLease { .. }), "{err}");
    // A run that already parked cannot park again with its old token.
    let err = db
        .store
        .request_input(a.run.id, a.token, aws(None), op("w", 6))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StaleLease { .. }), "{err}");
}

async fn an_unanswered_request_expires_to_needs_review_and_a_cancelled_one_closes(db: TestDb) {
    let ids = db
        .submit(
            vec![
                task_with("a", &[], 1, policy(2)),
                task_with("b", &[], 0, policy(2)),
            ],
            0,
        )
        .await;
    for (now, expires) in [(1, Some(100)), (2, None)] {
        let claim = db
            .store
            .claim_next("w", LEASE, op("w", now))
            .await
            .unwrap()
            .unwrap();
        db.store
            .request_input(claim.run.id, claim.token, aws(expires), op("w", now))
            .await
            .unwrap();
    }
    assert!(db
        .store
        .expire_info_requests(op("scheduler", 50))
        .await
        .unwrap()
        .is_empty());
    let expired = db
        .store
        .expire_info_requests(op("scheduler", 100))
        .await
        .unwrap();
    assert_eq!(expired, vec![ids[0]]);
    let task = db.store.task(ids[0]).await.unwrap();
    assert_eq!(task.status, Status::NeedsReview);
    assert!(
        task.status_reason
            .as_deref()
            .unwrap()
            .contains("was not answered within"),
        "{:?}",
        task.status_reason
    );
    assert_eq!(
        db.store.info_requests(ids[0]).await.unwrap()[0].state,
        RequestState::Expired
    );
    db.store
        .cancel(ids[1], None, op("alice", 101))
        .await
        .unwrap();
    assert!(db.store.open_info_requests().await.unwrap().is_empty());
    // The cancel closed it at once (not only the daemon's sweep), so `orch doctor` has nothing
    // to say between the two.
    let closed = &db.store.info_requests(ids[1]).await.unwrap()[0];
    assert_eq!(closed.state, RequestState::Closed);
    assert_eq!(closed.closed_at, Some(Timestamp(101)));
    assert!(db.store.check_consistency().await.unwrap().is_empty());
    db.store
        .expire_info_requests(op("scheduler", 102))
        .await
        .unwrap();
    assert_eq!(
        db.store.info_requests(ids[1]).await.unwrap()[0].state,
        RequestState::Closed
    );
    assert!(db.store.check_consistency().await.unwrap().is_empty());
}

store_tests!(
    a_parked_run_frees_its_slot_and_the_answer_queues_the_task_for_a_new_run,
    a_wrong_answer_stores_nothing_and_says_what_is_wrong,
    only_the_holder_of_the_run_reads_the_values_and_only_its_own_tasks,
    an_unanswered_request_expires_to_needs_review_and_a_cancelled_one_closes,
);
