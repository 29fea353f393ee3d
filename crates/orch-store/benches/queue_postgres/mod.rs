//! The queue benchmark on PostgreSQL: orch's claim+complete against the bare SQL of a claim
//! through the same driver (tokio-postgres), at 1, 2 and 8 claimers, each claimer with its own
//! store (its own pool, as separate processes have), each measurement on a fresh database; and
//! the latency from a task becoming ready (its submission through another store handle, as
//! through another server) to its claim by an idle claimer woken by LISTEN/NOTIFY.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::{Outcome, Timestamp};
use orch_store::{DatabaseConfig, Store, Submission};
use tokio_postgres::NoTls;

use super::{new_task, op};

/// A database created for one measurement and dropped after it.
type Database = orch_testdb::ScratchDatabase;

fn config(database: &Database) -> DatabaseConfig {
    DatabaseConfig::Postgres {
        url: database.url.clone(),
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A fresh database with `n` queued tasks. With `timed`, submitted one per transaction and
/// timed (returns enqueue/s); else in batches of 500 (faster set-up, no rate).
async fn seeded(admin_url: &str, n: usize, timed: bool) -> (Database, f64) {
    let database = Database::create(admin_url, "orch_bench");
    let store = Store::open(&config(&database)).await.expect("open");
    let project = store
        .ensure_project("/bench", Timestamp(0))
        .await
        .expect("project")
        .id;
    let start = Instant::now();
    let per_submission = if timed { 1 } else { 500 };
    let mut i = 0;
    while i < n {
        let end = (i + per_submission).min(n);
        let submission = Submission {
            project,
            workflow: None,
            tasks: (i..end).map(new_task).collect(),
        };
        store
            .submit(&submission, op("bench"))
            .await
            .expect("submit");
        i = end;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    (database, rate)
}

/// orch: `claim_next` then `complete(Succeeded)` until the queue is empty, `claimers` at once.
async fn orch(config: &DatabaseConfig, claimers: usize) -> f64 {
    let mut stores = Vec::new();
    for _ in 0..claimers {
        stores.push(Store::open(config).await.expect("open"));
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, store) in stores.into_iter().enumerate() {
        tasks.spawn(async move {
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
        });
    }
    let total: usize = tasks.join_all().await.into_iter().sum();
    total as f64 / start.elapsed().as_secs_f64()
}

/// The reference: the bare SQL of a claim (the same `SKIP LOCKED` select, the update to
/// running and the event insert in one transaction) and of its completion (the update to done
/// and its event in a second), through tokio-postgres with prepared statements, one connection
/// per claimer, on the same schema; no orch code.
async fn bare(url: &str, claimers: usize) -> f64 {
    let mut clients = Vec::new();
    for _ in 0..claimers {
        clients.push(admin(url).await);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        tasks.spawn(async move {
            let next = client
                .prepare(
                    "SELECT id FROM tasks WHERE status = 'queued' ORDER BY priority DESC, id \
                     LIMIT 1 FOR UPDATE SKIP LOCKED",
                )
                .await
                .expect("prepare");
            let set = client
                .prepare("UPDATE tasks SET status = $2 WHERE id = $1")
                .await
                .expect("prepare");
            let event = client
                .prepare(
                    "INSERT INTO events (task_id, at, actor, kind, from_status, to_status) \
                     VALUES ($1, 0, 'ref', $2, $3, $4)",
                )
                .await
                .expect("prepare");
            let mut done = 0usize;
            loop {
                let tx = client.transaction().await.expect("begin");
                let Some(row) = tx.query_opt(&next, &[]).await.expect("select") else {
                    break;
                };
                let id: i64 = row.get(0);
                tx.execute(&set, &[&id, &"running"]).await.expect("update");
                tx.execute(&event, &[&id, &"claim", &"queued", &"running"])
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
                let tx = client.transaction().await.expect("begin");
                tx.execute(&set, &[&id, &"done"]).await.expect("update");
                tx.execute(&event, &[&id, &"complete", &"running", &"done"])
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
                done += 1;
            }
            done
        });
    }
    let total: usize = tasks.join_all().await.into_iter().sum();
    total as f64 / start.elapsed().as_secs_f64()
}

/// Latency percentiles in ms: (p50, p99, max).
type Percentiles = (f64, f64, f64);

fn percentiles(mut latencies: Vec<f64>) -> Percentiles {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

/// Task-ready → claimed: one idle claimer waits with `wait_for_work`; another store handle
/// submits one task at a time. Measured to `claim_next` returning the task from the start of
/// the submission (including the submitting transaction) and from its return (the commit).
async fn pickup(admin_url: &str, samples: usize) -> (Percentiles, Percentiles) {
    let database = Database::create(admin_url, "orch_bench");
    let submitter = Store::open(&config(&database)).await.expect("open");
    let claimer = Store::open(&config(&database)).await.expect("open");
    let project = submitter
        .ensure_project("/bench", Timestamp(0))
        .await
        .expect("project")
        .id;
    // Start the claimer's LISTEN connection.
    claimer
        .wait_for_work(&mut claimer.watch_work(), Duration::from_secs(2))
        .await;
    let (claimed_tx, mut claimed_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let claiming = {
        let claimer = claimer.clone();
        tokio::spawn(async move {
            let mut got = 0;
            let mut watch = claimer.watch_work();
            while got < samples {
                match claimer
                    .claim_next("idle", Duration::from_secs(60), op("idle"))
                    .await
                    .expect("claim")
                {
                    Some(claim) => {
                        let at = Instant::now();
                        claimer
                            .complete(
                                claim.run.id,
                                claim.token,
                                Outcome::Succeeded,
                                None,
                                op("idle"),
                            )
                            .await
                            .expect("complete");
                        got += 1;
                        if claimed_tx.send(at).is_err() {
                            return;
                        }
                    }
                    // The worker's idle wait: early on a NOTIFY, else after its poll interval.
                    None => {
                        claimer
                            .wait_for_work(&mut watch, Duration::from_millis(20))
                            .await;
                    }
                }
            }
        })
    };
    let submitter = Arc::new(submitter);
    let mut from_start = Vec::with_capacity(samples);
    let mut from_commit = Vec::with_capacity(samples);
    for i in 0..samples {
        // Let the claimer settle into its wait, as an idle worker would be.
        tokio::time::sleep(Duration::from_millis(15)).await;
        let ready = Instant::now();
        let submission = Submission {
            project,
            workflow: None,
            tasks: vec![new_task(i)],
        };
        submitter
            .submit(&submission, op("bench"))
            .await
            .expect("submit");
        let committed = Instant::now();
        let claimed = claimed_rx.recv().await.expect("claimed");
        from_start.push(claimed.duration_since(ready).as_secs_f64() * 1000.0);
        // The claim can land before the submitter hears its COMMIT answered: 0 then.
        from_commit.push(claimed.saturating_duration_since(committed).as_secs_f64() * 1000.0);
    }
    claiming.await.expect("claimer");
    submitter.close().await;
    claimer.close().await;
    drop(database);
    (percentiles(from_start), percentiles(from_commit))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Run the PostgreSQL part with `n` tasks per measurement, `rounds` alternations of orch and
/// the bare SQL per claimer count (medians reported, so drift on a shared machine hits both),
/// and `samples` pickups; prints Markdown tables.
pub fn run(admin_url: &str, n: usize, rounds: usize, samples: usize) {
    let rt = runtime();
    println!();
    println!(
        "queue benchmark on PostgreSQL: {n} tasks per measurement, orch and bare SQL alternated \
         {rounds} times per row (medians), {admin_url}"
    );
    println!();
    println!("| claimers | enqueue/s | orch claim+complete/s | bare SQL claim+complete/s | orch / bare | per-round orch / bare |");
    println!("|---:|---:|---:|---:|---:|---|");
    for claimers in [1usize, 2, 8] {
        rt.block_on(async {
            let mut enqueue_rate = 0.0;
            let (mut orch_rates, mut bare_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                let (orch_db, rate) = seeded(admin_url, n, round == 0).await;
                if round == 0 {
                    enqueue_rate = rate;
                }
                let (bare_db, _) = seeded(admin_url, n, false).await;
                // Alternate which side goes first, so a trend in the machine's load does not
                // always favour one.
                let (orch_rate, bare_rate) = if round.is_multiple_of(2) {
                    let o = orch(&config(&orch_db), claimers).await;
                    (o, bare(&bare_db.url, claimers).await)
                } else {
                    let b = bare(&bare_db.url, claimers).await;
                    (orch(&config(&orch_db), claimers).await, b)
                };
                drop((orch_db, bare_db));
                orch_rates.push(orch_rate);
                bare_rates.push(bare_rate);
                ratios.push(format!("{:.2}", orch_rate / bare_rate));
            }
            let (orch_rate, bare_rate) = (median(orch_rates), median(bare_rates));
            println!(
                "| {claimers} | {enqueue_rate:.0} | {orch_rate:.0} | {bare_rate:.0} | {:.2} | {} |",
                orch_rate / bare_rate,
                ratios.join(" ")
            );
        });
    }
    let (start, commit) = rt.block_on(pickup(admin_url, samples));
    println!();
    println!("task ready → claimed through LISTEN/NOTIFY ({samples} tasks, submitted through another store handle):");
    println!();
    println!("| measured from | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| the submission's start | {:.2} | {:.2} | {:.2} |",
        start.0, start.1, start.2
    );
    println!(
        "| the submission's commit | {:.2} | {:.2} | {:.2} |",
        commit.0, commit.1, commit.2
    );
}
