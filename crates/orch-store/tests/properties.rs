//! Property test: random sequences of store operations (submissions with dependencies, claims,
//! heartbeats, completions with fresh and stale tokens, time jumps, recovery, cancel, retry,
//! unblock, approve, requeue) on a real SQLite file never record a transition the table refuses,
//! never lose a task, never complete one twice, and the event replay always equals the state.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use orch_core::{EventKind, FencingToken, Outcome, RunId, TaskId};
use orch_store::{StoreError, TaskFilter};
use proptest::prelude::*;
use support::*;

#[derive(Debug, Clone)]
enum Action {
    Submit {
        tasks: Vec<(Vec<usize>, bool)>,
        on_existing: Option<usize>,
    },
    Claim,
    Heartbeat(usize),
    Complete(usize, u8),
    CompleteStale(usize),
    Requeue(usize),
    Advance(u64),
    Tick,
    Cancel(usize),
    Retry(usize),
    Unblock(usize),
    Approve(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let submit = (
        proptest::collection::vec(
            (
                proptest::collection::vec(0usize..4, 0..3),
                proptest::bool::weighted(0.2),
            ),
            1..4,
        ),
        proptest::option::of(0usize..32),
    )
        .prop_map(|(tasks, on_existing)| Action::Submit { tasks, on_existing });
    prop_oneof![
        2 => submit,
        4 => Just(Action::Claim),
        2 => (0usize..8).prop_map(Action::Heartbeat),
        4 => (0usize..8, 0u8..3).prop_map(|(i, o)| Action::Complete(i, o)),
        1 => (0usize..8).prop_map(Action::CompleteStale),
        1 => (0usize..8).prop_map(Action::Requeue),
        2 => (0u64..3_000).prop_map(Action::Advance),
        2 => Just(Action::Tick),
        1 => (0usize..32).prop_map(Action::Cancel),
        2 => (0usize..32).prop_map(Action::Retry),
        1 => (0usize..32).prop_map(Action::Unblock),
        1 => (0usize..32).prop_map(Action::Approve),
    ]
}

/// Errors that mean "this does not apply now": expected, and must change nothing.
fn is_refusal(err: &StoreError) -> bool {
    err.is_refusal()
}

async fn run_actions(backend: Backend, actions: Vec<Action>) -> Result<(), TestCaseError> {
    let db = TestDb::on(backend).await;
    let lease = Duration::from_millis(1_000);
    let mut now: i64 = 0;
    let mut ids: Vec<TaskId> = Vec::new();
    let mut held: Vec<(RunId, FencingToken)> = Vec::new();
    let mut stale: Vec<(RunId, FencingToken)> = Vec::new();
    for action in actions {
        let result: Result<(), StoreError> = match action.clone() {
            Action::Submit { tasks, on_existing } => {
                let batch: Vec<_> = tasks
                    .iter()
                    .enumerate()
                    .map(|(i, (needs, approval))| {
                        let needs: Vec<usize> = needs.iter().copied().filter(|&d| d < i).collect();
                        let mut t = task_with(
                            &format!("k{}", ids.len() + i),
                            &needs,
                            i32::try_from(i).unwrap_or(0),
                            policy(2),
                        );
                        t.spec.requires_approval = *approval;
                        if let (0, Some(pick)) = (i, on_existing) {
                            if !ids.is_empty() {
                                t.needs_existing = vec![ids[pick % ids.len()]];
                            }
                        }
                        t
                    })
                    .collect();
                let submitted = db
                    .store
                    .submit(
                        &orch_store::Submission {
                            project: db.project,
                            workflow: None,
                            tasks: batch,
                        },
                        op("prop", now),
                    )
                    .await;
                submitted.map(|new| ids.extend(new))
            }
            Action::Claim => db
                .store
                .claim_next("w", lease, op("w", now))
                .await
                .map(|claim| {
                    if let Some(claim) = claim {
                        held.push((claim.run.id, claim.token));
                    }
                }),
            Action::Heartbeat(i) if !held.is_empty() => {
                let (run, token) = held[i % held.len()];
                db.store
                    .heartbeat(run, token, lease, op("w", now))
                    .await
                    .map(|_| ())
            }
            Action::Complete(i, outcome) if !held.is_empty() => {
                let (run, token) = held.remove(i % held.len());
                stale.push((run, token));
                let outcome = [Outcome::Succeeded, Outcome::Failed, Outcome::NeedsReview]
                    [usize::from(outcome)];
                db.store
                    .complete(run, token, outcome, None, op("w", now))
                    .await
                    .map(|_| ())
            }
            Action::CompleteStale(i) if !stale.is_empty() => {
                let (run, token) = stale[i % stale.len()];
                let result = db
                    .store
                    .complete(run, token, Outcome::Succeeded, None, op("w", now))
                    .await;
                prop_assert!(
                    matches!(result, Err(StoreError::StaleLease { .. })),
                    "a stale completion was accepted: {result:?}"
                );
                Ok(())
            }
            Action::Requeue(i) if !held.is_empty() => {
                let (run, token) = held.remove(i % held.len());
                stale.push((run, token));
                db.store
                    .requeue(
                        run,
                        token,
                        Duration::from_millis(500),
                        Some("rate limited"),
                        op("w", now),
                    )
                    .await
                    .map(|_| ())
            }
            Action::Advance(ms) => {
                now += i64::try_from(ms).unwrap_or(0);
                Ok(())
            }
            Action::Tick => db.store.tick(op("scheduler", now)).await.map(|_| ()),
            Action::Cancel(i) if !ids.is_empty() => db
                .store
                .cancel(ids[i % ids.len()], None, op("cli", now))
                .await
                .map(|_| ()),
            Action::Retry(i) if !ids.is_empty() => db
                .store
                .retry(ids[i % ids.len()], None, op("cli", now))
                .await
                .map(|_| ()),
            Action::Unblock(i) if !ids.is_empty() => db
                .store
                .unblock(ids[i % ids.len()], op("cli", now))
                .await
                .map(|_| ()),
            Action::Approve(i) if !ids.is_empty() => db
                .store
                .approve(ids[i % ids.len()], op("cli", now))
                .await
                .map(|_| ()),
            _ => Ok(()),
        };
        if let Err(err) = &result {
            prop_assert!(is_refusal(err), "{action:?} failed: {err}");
        }
        let problems = db
            .store
            .check_consistency()
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(problems.is_empty(), "after {action:?}: {problems:#?}");
    }
    let tasks = db
        .store
        .tasks(&TaskFilter::default())
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(tasks.len(), ids.len(), "no task is lost");
    for task in &tasks {
        let events = db
            .store
            .events(task.id)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            events
                .iter()
                .filter(|e| e.kind == EventKind::Complete)
                .count()
                <= 1
        );
        prop_assert_eq!(events.first().map(|e| e.kind), Some(EventKind::Create));
    }
    Ok(())
}

fn run_on(backend: Backend, actions: Vec<Action>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_actions(backend, actions))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_event_log_and_the_state_in_agreement_on_sqlite(
        actions in proptest::collection::vec(action(), 1..60)
    ) {
        run_on(Backend::Sqlite, actions)?;
    }
}

proptest! {
    // Fewer cases on PostgreSQL: each creates and drops a database.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_event_log_and_the_state_in_agreement_on_postgres(
        actions in proptest::collection::vec(action(), 1..60)
    ) {
        if postgres_url().is_some() {
            run_on(Backend::Postgres, actions)?;
        }
    }
}
