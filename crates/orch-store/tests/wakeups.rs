//! Idle claimers wake when work becomes ready (`Store::wait_for_work`), and named leases
//! (`Store::hold_lease`) have one holder at a time.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use orch_core::Outcome;
use support::store_tests;
use support::*;

/// Far longer than any wake-up takes, so returning well before it proves a wake-up.
const LONG: Duration = Duration::from_secs(20);

/// Wait on `waiter` while `act` runs; how long the wait took.
async fn woken_by<F: std::future::Future<Output = ()>>(
    waiter: &orch_store::Store,
    act: F,
) -> Duration {
    let started = Instant::now();
    // Watched before `act` commits anything, as a claimer watches before it looks.
    let mut watch = waiter.watch_work();
    let ((), ()) = tokio::join!(waiter.wait_for_work(&mut watch, LONG), act);
    started.elapsed()
}

async fn a_commit_that_queues_a_task_wakes_a_waiting_claimer(db: TestDb) {
    if db.backend == Backend::Postgres {
        // A first wait starts the LISTEN connection and returns once it listens.
        db.store
            .wait_for_work(&mut db.store.watch_work(), Duration::from_secs(5))
            .await;
    }
    let clone = db.store.clone();
    let took = woken_by(&db.store, async {
        db.submit(vec![task("a", &[])], 0).await;
    })
    .await;
    assert!(took < LONG / 2, "the submission woke the waiter ({took:?})");

    // A completion that releases a dependent wakes it too.
    let ids = db.submit(vec![task("b", &[]), task("c", &[0])], 0).await;
    let mut claim = clone
        .claim_next("w", LEASE, op("w", 1))
        .await
        .unwrap()
        .unwrap();
    while claim.task.id != ids[0] {
        clone
            .complete(
                claim.run.id,
                claim.token,
                Outcome::Succeeded,
                None,
                op("w", 1),
            )
            .await
            .unwrap();
        claim = clone
            .claim_next("w", LEASE, op("w", 1))
            .await
            .unwrap()
            .unwrap();
    }
    let took = woken_by(&db.store, async {
        clone
            .complete(
                claim.run.id,
                claim.token,
                Outcome::Succeeded,
                None,
                op("w", 2),
            )
            .await
            .unwrap();
    })
    .await;
    assert!(took < LONG / 2, "the completion woke the waiter ({took:?})");
}

async fn a_lease_has_one_holder_until_it_expires(db: TestDb) {
    let ttl = Duration::from_secs(10);
    let store = &db.store;
    assert!(store
        .hold_lease("leader", "a", ttl, op("a", 0))
        .await
        .unwrap());
    assert!(
        !store
            .hold_lease("leader", "b", ttl, op("b", 5_000))
            .await
            .unwrap(),
        "b cannot take a lease a holds"
    );
    assert!(
        store
            .hold_lease("leader", "a", ttl, op("a", 9_000))
            .await
            .unwrap(),
        "a renews it, to 19 s"
    );
    assert!(
        !store
            .hold_lease("leader", "b", ttl, op("b", 18_999))
            .await
            .unwrap(),
        "the renewal counts"
    );
    assert!(
        store
            .hold_lease("leader", "b", ttl, op("b", 19_000))
            .await
            .unwrap(),
        "b takes it over once it expired"
    );
    assert!(
        !store
            .hold_lease("leader", "a", ttl, op("a", 19_001))
            .await
            .unwrap(),
        "a lost it"
    );
    assert!(
        store
            .hold_lease("other", "a", ttl, op("a", 19_001))
            .await
            .unwrap(),
        "leases are named"
    );
}

/// Work made ready after a claim began looking (too late for it to see) but before the
/// claimer waits is not missed: the wait returns at once instead of sleeping until its poll.
async fn work_made_ready_while_a_claim_looks_ends_the_next_wait_at_once(db: TestDb) {
    if db.backend == Backend::Postgres {
        db.store
            .wait_for_work(&mut db.store.watch_work(), Duration::from_secs(5))
            .await;
    }
    for round in 0..3 {
        let mut watch = db.store.watch_work();
        let found = db.store.claim_next("w", LEASE, op("w", 1)).await.unwrap();
        assert!(found.is_none(), "round {round}: the queue is empty");
        // The commit's wake-up fires now, while nobody waits.
        db.submit(vec![task(&format!("late {round}"), &[])], 1)
            .await;
        let started = Instant::now();
        db.store.wait_for_work(&mut watch, LONG).await;
        let took = started.elapsed();
        assert!(
            took < LONG / 2,
            "round {round}: the wait returned at once ({took:?})"
        );
        let claim = db.store.claim_next("w", LEASE, op("w", 2)).await.unwrap();
        let claim = claim.expect("the late task is there");
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
    }
}

/// Each claimer has its own watch: a wake-up that came while two claimers of one handle were
/// looking ends both their waits, not only the first one's.
async fn a_wake_up_during_two_claimers_looks_ends_both_waits(db: TestDb) {
    if db.backend == Backend::Postgres {
        db.store
            .wait_for_work(&mut db.store.watch_work(), Duration::from_secs(5))
            .await;
    }
    let (mut first, mut second) = (db.store.watch_work(), db.store.watch_work());
    for name in ["first", "second"] {
        let found = db.store.claim_next(name, LEASE, op(name, 1)).await.unwrap();
        assert!(found.is_none(), "{name}: the queue is empty");
    }
    db.submit(vec![task("late", &[])], 1).await;
    for (name, watch) in [("first", &mut first), ("second", &mut second)] {
        let started = Instant::now();
        db.store.wait_for_work(watch, LONG).await;
        let took = started.elapsed();
        assert!(
            took < LONG / 2,
            "{name}: the wait returned at once ({took:?})"
        );
    }
}

store_tests!(
    a_wake_up_during_two_claimers_looks_ends_both_waits,
    a_commit_that_queues_a_task_wakes_a_waiting_claimer,
    a_lease_has_one_holder_until_it_expires,
    work_made_ready_while_a_claim_looks_ends_the_next_wait_at_once,
);

/// PostgreSQL's own: its wake-ups cross processes through LISTEN/NOTIFY; SQLite's only reach
/// the handle that committed (another process is seen when its poll comes round).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_through_another_server_wakes_a_waiting_claimer_on_postgres() {
    let Some(db) = TestDb::try_on(Backend::Postgres).await else {
        return;
    };
    let other = db.reopen().await;
    db.store
        .wait_for_work(&mut db.store.watch_work(), Duration::from_secs(5))
        .await;
    for round in 0..3 {
        let took = woken_by(&db.store, async {
            other
                .submit(
                    &orch_store::Submission {
                        project: db.project,
                        workflow: None,
                        tasks: vec![task(&format!("t{round}"), &[])],
                    },
                    op("other", 0),
                )
                .await
                .unwrap();
        })
        .await;
        assert!(took < LONG / 2, "round {round}: woken by NOTIFY ({took:?})");
    }
    other.close().await;
}

/// PostgreSQL's own: SQLite has no connections to lose. Every connection of the store is
/// killed by the server (as in a failover or a restart); the next operations run on new ones,
/// and the LISTEN connection comes back so waiters are woken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_connections_are_killed_reconnects_and_still_wakes_claimers() {
    let Some(db) = TestDb::try_on(Backend::Postgres).await else {
        return;
    };
    let database = db.pg.as_ref().expect("a PostgreSQL test database");
    db.submit(vec![task("before", &[])], 0).await;
    db.store
        .wait_for_work(&mut db.store.watch_work(), Duration::from_secs(5))
        .await;
    let killer = database.connect().await;
    // The listener connects in the background: wait until the pool's and the listener's
    // connections are both there before killing them.
    for _ in 0..100 {
        let row = killer
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = killer
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(
        killed >= 2,
        "the pool's and the listener's connections ({killed})"
    );

    let claim = db.store.claim_next("w", LEASE, op("w", 1)).await.unwrap();
    assert!(claim.is_some(), "the claim ran on a new connection");

    // The listener reconnects (and wakes everyone once when it does); then a submission
    // through another handle wakes a waiter again.
    let other = db.reopen().await;
    let deadline = Instant::now() + LONG;
    let mut watch = db.store.watch_work();
    loop {
        db.store
            .wait_for_work(&mut watch, Duration::from_millis(200))
            .await;
        let listening = killer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN orch_work%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if listening > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the listener did not reconnect");
    }
    let took = woken_by(&db.store, async {
        other
            .submit(
                &orch_store::Submission {
                    project: db.project,
                    workflow: None,
                    tasks: vec![task("after", &[])],
                },
                op("other", 2),
            )
            .await
            .unwrap();
    })
    .await;
    assert!(
        took < LONG / 2,
        "woken by NOTIFY after reconnecting ({took:?})"
    );
    other.close().await;
}
