//! Queue benchmark: enqueue/s and claim+complete/s for 10,000 tasks on a file-backed SQLite with
//! 1, 2 and 8 concurrent claimers, next to the bare SQL a claim needs (the same statements, one
//! transaction per row, without orch's code) measured in the same run on the same machine.
//!
//! Then the same on PostgreSQL when `ORCH_BENCH_POSTGRES_URL` (or `ORCH_TEST_POSTGRES_URL`)
//! names a server (`queue_postgres/mod.rs`): orch against the bare SQL through the same driver,
//! and the task-ready → claimed latency with LISTEN/NOTIFY.
//!
//! Run with `cargo bench -p orch-store --bench queue` (`ORCH_BENCH_TASKS` changes the SQLite
//! count, `ORCH_BENCH_PG_TASKS` the PostgreSQL one, `ORCH_BENCH_PG_ROUNDS` how often orch and the
//! bare SQL alternate per row, `ORCH_BENCH_PICKUP_SAMPLES` the pickups). Prints Markdown tables for
//! `docs/benchmarks.md`.

#[path = "queue_postgres/mod.rs"]
mod postgres;

use std::path::Path;
use std::time::{Duration, Instant};

use orch_core::{NewTask, Outcome, RetryPolicy, TaskSpec, TaskTitle, Timestamp};
use orch_store::{Op, SqliteOptions, Store, Submission};
use rusqlite::{OptionalExtension, TransactionBehavior};

fn op(actor: &str) -> Op<'_> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    Op {
        actor,
        now: Timestamp(i64::try_from(now).expect("ms fit")),
        jitter_unit: 0.5,
    }
}

fn new_task(i: usize) -> NewTask {
    NewTask {
        spec: TaskSpec {
            key: Some(format!("t{i}")),
            title: TaskTitle::parse(format!("bench task {i}")).expect("title"),
            body: String::new(),
            labels: Vec::new(),
            priority: i32::try_from(i % 3).expect("small"),
            steps: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: None,
            requires_approval: false,
            merge: None,
            start_from: orch_core::StartFrom::default(),
            unique_key: None,
            tools: Vec::new(),
            budget: None,
        },
        needs_in_batch: Vec::new(),
        needs_existing: Vec::new(),
        parent: None,
        parent_in_batch: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Open a fresh store in `dir` and enqueue `n` tasks, one transaction each. Returns tasks/s.
fn enqueue(dir: &Path, n: usize) -> f64 {
    runtime().block_on(async {
        let store = Store::open_sqlite(&dir.join("orch.db"), SqliteOptions::default())
            .await
            .expect("open");
        let project = store
            .ensure_project("/bench", Timestamp(0))
            .await
            .expect("project")
            .id;
        let start = Instant::now();
        for i in 0..n {
            let submission = Submission {
                project,
                workflow: None,
                tasks: vec![new_task(i)],
            };
            store
                .submit(&submission, op("bench"))
                .await
                .expect("submit");
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        store.close().await;
        rate
    })
}

/// Claim and complete everything with `claimers` OS threads, each with its own connection.
fn claim_complete(db: &Path, claimers: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..claimers)
        .map(|c| {
            let db = db.to_owned();
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    let store = Store::open_sqlite(&db, SqliteOptions::default())
                        .await
                        .expect("open");
                    let name = format!("claimer-{c}");
                    let mut done = 0usize;
                    while let Some(claim) = store
                        .claim_next(&name, Duration::from_secs(60), op(&name))
                        .await
                        .expect("claim")
                    {
                        store
                            .complete(
                                claim.run.id,
                                claim.token,
                                Outcome::Succeeded,
                                None,
                                op(&name),
                            )
                            .await
                            .expect("complete");
                        done += 1;
                    }
                    store.close().await;
                    done
                })
            })
        })
        .collect();
    let total: usize = threads
        .into_iter()
        .map(|t| t.join().expect("claimer"))
        .sum();
    total as f64 / start.elapsed().as_secs_f64()
}

/// The reference: the bare SQL of a claim (SELECT the next task, UPDATE it, INSERT an event, in
/// one BEGIN IMMEDIATE transaction) and of a completion (UPDATE, INSERT event), through the same
/// driver (rusqlite, cached statements) and settings, on the same schema, called directly on the
/// claimer's thread: no orch code, no hand-off to a connection thread.
fn bare_sql(db: &Path, claimers: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..claimers)
        .map(|_| {
            let db = db.to_owned();
            std::thread::spawn(move || {
                let mut conn = rusqlite::Connection::open(&db).expect("open");
                conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
                conn.pragma_update(None, "synchronous", "NORMAL").expect("synchronous");
                conn.pragma_update(None, "wal_autocheckpoint", orch_store::WAL_AUTOCHECKPOINT_PAGES).expect("checkpoint");
                let mut done = 0usize;
                loop {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).expect("begin");
                    let next: Option<i64> = tx
                        .prepare_cached("SELECT id FROM tasks WHERE status = 'queued' ORDER BY priority DESC, id LIMIT 1")
                        .expect("prepare")
                        .query_row([], |r| r.get(0))
                        .optional()
                        .expect("select");
                    let Some(id) = next else { break };
                    tx.prepare_cached("UPDATE tasks SET status = 'running' WHERE id = ?1").expect("prepare").execute([id]).expect("update");
                    tx.prepare_cached("INSERT INTO events (task_id, at, actor, kind, from_status, to_status) VALUES (?1, 0, 'ref', 'claim', 'queued', 'running')")
                        .expect("prepare")
                        .execute([id])
                        .expect("insert");
                    tx.commit().expect("commit");
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).expect("begin");
                    tx.prepare_cached("UPDATE tasks SET status = 'done' WHERE id = ?1").expect("prepare").execute([id]).expect("update");
                    tx.prepare_cached("INSERT INTO events (task_id, at, actor, kind, from_status, to_status) VALUES (?1, 0, 'ref', 'complete', 'running', 'done')")
                        .expect("prepare")
                        .execute([id])
                        .expect("insert");
                    tx.commit().expect("commit");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let total: usize = threads
        .into_iter()
        .map(|t| t.join().expect("reference"))
        .sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once with a tiny count.
    let quick = std::env::args().any(|a| a == "--test");
    let n: usize = std::env::var("ORCH_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 50 } else { 10_000 });
    println!("queue benchmark: {n} tasks, file-backed SQLite, WAL, synchronous=NORMAL");
    println!();
    println!("| claimers | enqueue/s | orch claim+complete/s | bare SQL claim+complete/s | orch / bare |");
    println!("|---:|---:|---:|---:|---:|");
    for claimers in [1usize, 2, 8] {
        let orch_dir = tempfile::tempdir().expect("temp dir");
        let enqueue_rate = enqueue(orch_dir.path(), n);
        let orch_rate = claim_complete(&orch_dir.path().join("orch.db"), claimers);

        let ref_dir = tempfile::tempdir().expect("temp dir");
        enqueue(ref_dir.path(), n);
        let bare_rate = bare_sql(&ref_dir.path().join("orch.db"), claimers);
        println!(
            "| {claimers} | {enqueue_rate:.0} | {orch_rate:.0} | {bare_rate:.0} | {:.2} |",
            orch_rate / bare_rate
        );
    }
    let pg_url = ["ORCH_BENCH_POSTGRES_URL", "ORCH_TEST_POSTGRES_URL"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()));
    match pg_url {
        Some(url) => {
            let pg_n: usize = std::env::var("ORCH_BENCH_PG_TASKS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 20 } else { 2_000 });
            let rounds: usize = std::env::var("ORCH_BENCH_PG_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 1 } else { 3 });
            let samples: usize = std::env::var("ORCH_BENCH_PICKUP_SAMPLES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 10 } else { 500 });
            postgres::run(&url, pg_n, rounds.max(1), samples.max(1));
        }
        None => println!(
            "\nPostgreSQL skipped: set ORCH_BENCH_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        ),
    }
}
