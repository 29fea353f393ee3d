//! Claim-time limits on both backends: concurrency per agent, label and project, daily budgets,
//! no head-of-line blocking, the reason a passed-over task shows, and racing claimers.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use orch_core::limits::{ClaimLimits, ConcurrencyLimits, DailyBudgets, DailyLimit};
use orch_core::{Outcome, Status, Step, StepAction, TaskId};
use orch_store::{Store, UsageRecord};
use support::store_tests;
use support::*;

fn agent_task(key: &str, agent: &str, labels: &[&str]) -> orch_core::NewTask {
    let mut task = task(key, &[]);
    task.spec.labels = labels.iter().map(|l| l.to_string()).collect();
    task.spec.steps = vec![Step {
        name: "work".into(),
        action: StepAction::Agent {
            agent: agent.into(),
            prompt: "do it".into(),
            model: None,
            profile: None,
        },
        timeout: None,
        network: true,
        plan: false,
    }];
    task
}

fn concurrency(agents: &[(&str, u32)], labels: &[(&str, u32)]) -> ClaimLimits {
    ClaimLimits::new(
        ConcurrencyLimits {
            agents: agents.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        },
        DailyBudgets::default(),
    )
    .unwrap()
}

async fn claimed(store: &Store, owner: &str, now: i64) -> Option<orch_store::Claim> {
    store
        .claim_next(owner, LEASE, op(owner, now))
        .await
        .unwrap()
}

async fn reason(db: &TestDb, id: TaskId) -> (Status, Option<String>) {
    let task = db.store.task(id).await.unwrap();
    (task.status, task.status_reason)
}

async fn a_full_agent_limit_passes_over_its_task_and_claims_the_next_eligible_one(db: TestDb) {
    db.store
        .set_claim_limits(concurrency(&[("claude", 1)], &[]));
    let ids = db
        .submit(
            vec![
                agent_task("a", "claude", &[]),
                agent_task("b", "claude", &[]),
                agent_task("c", "codex", &[]),
            ],
            0,
        )
        .await;
    let first = claimed(&db.store, "w", 1).await.unwrap();
    assert_eq!(first.task.id, ids[0]);
    // No head-of-line blocking: b waits for claude, c is taken.
    assert_eq!(claimed(&db.store, "w", 2).await.unwrap().task.id, ids[2]);
    assert_eq!(
        reason(&db, ids[1]).await,
        (
            Status::Queued,
            Some("waiting for: agent `claude` concurrency limit 1/1 running".into())
        )
    );
    assert!(claimed(&db.store, "w", 3).await.is_none());
    succeed(&db.store, &first, "w", 4).await;
    let second = claimed(&db.store, "w", 5).await.unwrap();
    assert_eq!(second.task.id, ids[1]);
    assert_eq!(second.task.status_reason, None);
    assert!(db.store.check_consistency().await.unwrap().is_empty());
}

async fn limits_on_labels_and_projects_hold_and_raising_them_frees_the_task(db: TestDb) {
    let name = db.store.projects().await.unwrap()[0].name.clone();
    db.store
        .set_claim_limits(concurrency(&[], &[("deploy", 1)]));
    let ids = db
        .submit(
            vec![
                agent_task("a", "sim", &["deploy"]),
                agent_task("b", "sim", &["deploy", "prod"]),
                agent_task("c", "sim", &[]),
            ],
            0,
        )
        .await;
    assert_eq!(claimed(&db.store, "w", 1).await.unwrap().task.id, ids[0]);
    assert_eq!(claimed(&db.store, "w", 2).await.unwrap().task.id, ids[2]);
    assert!(claimed(&db.store, "w", 3).await.is_none());
    assert_eq!(
        reason(&db, ids[1]).await.1.as_deref(),
        Some("waiting for: label `deploy` concurrency limit 1/1 running")
    );
    // The project's own limit (2 running now) then holds it back instead.
    let mut limits = concurrency(&[], &[("deploy", 2)]);
    limits.concurrency.projects.insert(name.clone(), 2);
    db.store.set_claim_limits(limits);
    assert!(claimed(&db.store, "w", 4).await.is_none());
    assert_eq!(
        reason(&db, ids[1]).await.1,
        Some(format!(
            "waiting for: project `{name}` concurrency limit 2/2 running"
        ))
    );
    // Raised: claimed at once.
    db.store
        .set_claim_limits(concurrency(&[], &[("deploy", 2)]));
    assert_eq!(claimed(&db.store, "w", 5).await.unwrap().task.id, ids[1]);
}

async fn racing_claimers_on_two_handles_never_pass_a_limit(db: TestDb) {
    let other = db.reopen().await;
    let limits = concurrency(&[("claude", 2)], &[]);
    db.store.set_claim_limits(limits.clone());
    other.set_claim_limits(limits);
    let tasks = (0..12)
        .map(|i| agent_task(&format!("t{i}"), "claude", &[]))
        .collect();
    db.submit(tasks, 0).await;
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..12 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        claims.spawn(async move {
            let owner = format!("w{i}");
            store
                .claim_next(&owner, LEASE, op(&owner, 1))
                .await
                .unwrap()
                .is_some()
        });
    }
    let mut won = 0;
    while let Some(result) = claims.join_next().await {
        won += usize::from(result.unwrap());
    }
    assert_eq!(won, 2, "a limit of 2 let {won} claims through");
    let running = db
        .store
        .tasks(&orch_store::TaskFilter {
            status: Some(Status::Running),
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    assert_eq!(running, 2);
}

async fn a_daily_run_quota_and_cost_limit_keep_tasks_queued_with_the_reason(db: TestDb) {
    let now = orch_store::wall_clock().0;
    let limits = ClaimLimits::new(
        ConcurrencyLimits::default(),
        DailyBudgets {
            project: Some(DailyLimit {
                runs: Some(3),
                ..Default::default()
            }),
            agents: [(
                "claude".to_owned(),
                DailyLimit {
                    cost_usd: Some(1.0),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        },
    )
    .unwrap();
    db.store.set_claim_limits(limits.clone());
    let ids = db
        .submit(
            vec![
                agent_task("a", "claude", &[]),
                agent_task("b", "claude", &[]),
                agent_task("c", "codex", &[]),
                agent_task("d", "codex", &[]),
                agent_task("e", "codex", &[]),
            ],
            now,
        )
        .await;
    let first = claimed(&db.store, "w", now).await.unwrap();
    assert_eq!(first.task.id, ids[0]);
    let usage = UsageRecord {
        step: "work".into(),
        agent: "claude".into(),
        model: None,
        session_id: Some("s1".into()),
        input_tokens: 1000,
        output_tokens: 50,
        cost_usd: 1.25,
    };
    db.store
        .record_usage(first.run.id, first.token, vec![usage], op("w", now))
        .await
        .unwrap();
    db.store
        .complete(
            first.run.id,
            first.token,
            Outcome::Succeeded,
            None,
            op("w", now),
        )
        .await
        .unwrap();
    // Claude's dollar is spent: b waits, c and d (codex) run; then the run quota (3) is spent.
    assert_eq!(claimed(&db.store, "w", now).await.unwrap().task.id, ids[2]);
    let (status, why) = reason(&db, ids[1]).await;
    assert_eq!(status, Status::Queued);
    let why = why.unwrap();
    assert!(
        why.starts_with("waiting for: agent `claude` daily cost limit $1.25/$1.00 spent on "),
        "{why}"
    );
    assert_eq!(claimed(&db.store, "w", now).await.unwrap().task.id, ids[3]);
    assert!(claimed(&db.store, "w", now).await.is_none());
    for waiting in [ids[1], ids[4]] {
        let why = reason(&db, waiting).await.1.unwrap();
        assert!(why.contains("daily runs limit 3/3"), "{why}");
    }
    let today = db.store.usage_today(&limits).await.unwrap();
    let claude = today.tally.spent_agents["claude"];
    assert_eq!((claude.runs, claude.sessions, claude.tokens), (1, 1, 1050));
    assert!((claude.cost_usd - 1.25).abs() < 1e-9);
    assert_eq!(today.tally.running_agents.get("codex"), Some(&2));
    assert_eq!(today.time_zone, "UTC");
}

/// A run's end frees a slot without making any task `queued`: under limits it still wakes a
/// claimer that found the queue's tasks held back (on PostgreSQL the commit also notifies the
/// other processes), instead of leaving it asleep until its poll.
async fn a_run_ending_under_a_full_limit_wakes_a_waiting_claimer(db: TestDb) {
    const LONG: Duration = Duration::from_secs(20);
    db.store
        .set_claim_limits(concurrency(&[("claude", 1)], &[]));
    if db.backend == Backend::Postgres {
        // A first wait starts the LISTEN connection and returns once it listens.
        db.store
            .wait_for_work(&mut db.store.watch_work(), Duration::from_secs(5))
            .await;
    }
    let ids = db
        .submit(
            vec![
                agent_task("a", "claude", &[]),
                agent_task("b", "claude", &[]),
            ],
            0,
        )
        .await;
    let first = claimed(&db.store, "w", 1).await.unwrap();
    let mut watch = db.store.watch_work();
    assert!(
        claimed(&db.store, "v", 2).await.is_none(),
        "b waits for claude"
    );
    let started = Instant::now();
    let ((), _) = tokio::join!(
        db.store.wait_for_work(&mut watch, LONG),
        succeed(&db.store, &first, "w", 3),
    );
    let took = started.elapsed();
    assert!(
        took < LONG / 2,
        "the completion woke the claimer ({took:?})"
    );
    assert_eq!(claimed(&db.store, "v", 4).await.unwrap().task.id, ids[1]);
}

store_tests!(
    a_run_ending_under_a_full_limit_wakes_a_waiting_claimer,
    a_full_agent_limit_passes_over_its_task_and_claims_the_next_eligible_one,
    limits_on_labels_and_projects_hold_and_raising_them_frees_the_task,
    racing_claimers_on_two_handles_never_pass_a_limit,
    a_daily_run_quota_and_cost_limit_keep_tasks_queued_with_the_reason,
);
