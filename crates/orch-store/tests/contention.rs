//! Eight OS threads, each with its own store (as eight processes would have), claim from one
//! database at once: every task is held by exactly one claimer at a time and completed exactly
//! once. And many processes opening a new database at once all succeed. On both backends.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orch_core::{EventKind, Outcome, Status, TaskId, Timestamp};
use orch_store::{DatabaseConfig, Op, SqliteOptions, Store, TaskFilter};
use support::*;

fn wall_clock() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    i64::try_from(ms).expect("ms fit in i64")
}

/// One held lease: which claimer held it.
#[derive(Debug, Clone, Copy)]
struct Hold {
    claimer: usize,
}

fn eight_threads_claiming_from_one_database_never_share_a_task(backend: Backend) {
    const TASKS: usize = 400;
    const THREADS: usize = 8;
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = setup.block_on(TestDb::try_on(backend)) else {
        return;
    };
    let config = db.config();
    setup.block_on(async {
        let tasks = (0..TASKS).map(|i| task(&format!("t{i}"), &[])).collect();
        db.submit(tasks, wall_clock()).await;
    });
    let holds: Arc<Mutex<BTreeMap<TaskId, Vec<Hold>>>> = Arc::default();
    let mut threads = Vec::new();
    for claimer in 0..THREADS {
        let config = config.clone();
        let holds = Arc::clone(&holds);
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let store = Store::open(&config).await.unwrap();
                let name = format!("claimer-{claimer}");
                let op = |now| Op {
                    actor: &name,
                    now: Timestamp(now),
                    jitter_unit: 0.5,
                };
                loop {
                    let Some(claim) = store
                        .claim_next(&name, Duration::from_secs(60), op(wall_clock()))
                        .await
                        .unwrap()
                    else {
                        break;
                    };
                    // Hold the lease briefly so other claimers run while it is held.
                    tokio::task::yield_now().await;
                    store
                        .complete(
                            claim.run.id,
                            claim.token,
                            Outcome::Succeeded,
                            None,
                            op(wall_clock()),
                        )
                        .await
                        .unwrap();
                    holds
                        .lock()
                        .unwrap()
                        .entry(claim.task.id)
                        .or_default()
                        .push(Hold { claimer });
                }
                store.close().await;
            });
        }));
    }
    for thread in threads {
        thread.join().expect("claimer thread panicked");
    }
    let holds = holds.lock().unwrap();
    assert_eq!(holds.len(), TASKS, "every task was claimed");
    for (task, task_holds) in holds.iter() {
        assert_eq!(
            task_holds.len(),
            1,
            "task {task} was claimed more than once: {task_holds:?}"
        );
    }
    let claimers: std::collections::BTreeSet<usize> =
        holds.values().flatten().map(|h| h.claimer).collect();
    assert!(
        claimers.len() > 1,
        "the work was actually shared: {claimers:?}"
    );
    setup.block_on(async {
        let tasks = db.store.tasks(&TaskFilter::default()).await.unwrap();
        assert!(tasks.iter().all(|t| t.status == Status::Done));
        for task in &tasks {
            let events = db.store.events(task.id).await.unwrap();
            assert_eq!(
                events.iter().filter(|e| e.kind == EventKind::Claim).count(),
                1
            );
            assert_eq!(
                events
                    .iter()
                    .filter(|e| e.kind == EventKind::Complete)
                    .count(),
                1
            );
        }
        let problems = db.store.check_consistency().await.unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    });
}

fn many_openers_of_a_new_database_at_the_same_moment_all_succeed(backend: Backend) {
    // Regression (SQLite): two processes opening a new home at once got "database is locked"
    // from the switch to WAL mode, which SQLite reports without waiting on the busy timeout.
    // PostgreSQL: the migrations run once, under the advisory lock, while the others wait.
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (config, _database) = match backend {
            Backend::Sqlite => (
                DatabaseConfig::Sqlite {
                    path: dir.path().join("orch.db"),
                    options: SqliteOptions::default(),
                },
                None,
            ),
            Backend::Postgres => {
                let Some(url) = postgres_url() else { return };
                let database = pg_database(&url);
                let config = DatabaseConfig::Postgres {
                    url: database.url.clone(),
                };
                (config, Some(database))
            }
        };
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let (config, barrier) = (config.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    barrier.wait();
                    rt.block_on(async {
                        let store = Store::open(&config).await?;
                        store.status_counts().await?;
                        store.close().await;
                        Ok::<_, orch_store::StoreError>(())
                    })
                })
            })
            .collect();
        for opener in openers {
            opener
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
}

mod sqlite {
    use super::*;

    #[test]
    fn eight_threads_claiming_from_one_database_never_share_a_task() {
        super::eight_threads_claiming_from_one_database_never_share_a_task(Backend::Sqlite);
    }

    #[test]
    fn many_openers_of_a_new_database_at_the_same_moment_all_succeed() {
        super::many_openers_of_a_new_database_at_the_same_moment_all_succeed(Backend::Sqlite);
    }
}

mod postgres {
    use super::*;

    #[test]
    fn eight_threads_claiming_from_one_database_never_share_a_task() {
        super::eight_threads_claiming_from_one_database_never_share_a_task(Backend::Postgres);
    }

    #[test]
    fn many_openers_of_a_new_database_at_the_same_moment_all_succeed() {
        super::many_openers_of_a_new_database_at_the_same_moment_all_succeed(Backend::Postgres);
    }
}
