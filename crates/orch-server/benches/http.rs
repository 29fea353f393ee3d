//! HTTP worker benchmark: claim→complete round trips per second through the worker API with 1
//! and 4 remote workers, next to the same loop through the store in-process (embedded workers)
//! in the same run; and task-ready → process-start latency for a real remote worker pool.
//! Everything runs on SQLite, then again on PostgreSQL (a fresh database per daemon, dropped
//! after it) when `ORCH_BENCH_POSTGRES_URL` or `ORCH_TEST_POSTGRES_URL` names a server.
//!
//! `cargo bench -p orch-server --bench http` (`ORCH_BENCH_TASKS` changes the count).

use std::net::SocketAddr;

use std::time::{Duration, Instant};

use orch_core::spec::parse_workflow;
use orch_core::{NewTask, Outcome, Status, TaskId};
use orch_server::{serve, ServeOptions};
use orch_store::{DatabaseConfig, Op, SqliteOptions, Store, Submission};
use orch_worker::HttpCoordinator;
use orch_worker::{Coordinator, WorkerSettings};
use tokio_util::sync::CancellationToken;

fn noop_task(i: usize) -> NewTask {
    let yaml = format!("tasks:\n  - id: t{i}\n    title: no-op {i}\n    steps:\n      - exec:\n          - argv: [\"true\"]\n");
    parse_workflow("bench", &yaml)
        .expect("valid")
        .tasks
        .remove(0)
}

/// Where a benchmark daemon keeps its state.
#[derive(Clone)]
enum Backend {
    Sqlite,
    /// The server's admin URL; each daemon gets a database of its own.
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }
}

struct Daemon {
    store: Store,
    /// The daemon's PostgreSQL database, dropped after it stops.
    database: Option<orch_testdb::ScratchDatabase>,
    addr: SocketAddr,
    worker_token: String,
    token: String,
    repo: std::path::PathBuf,
    project: orch_core::ProjectId,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), orch_server::ServeError>>,
    _dir: tempfile::TempDir,
}

/// `orch serve` with the API on a free port and no embedded workers, over a non-git project
/// (copy workspaces) with no rate limit.
async fn daemon(backend: &Backend) -> Daemon {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    std::fs::write(repo.join(".orch.toml"), "non_git = \"copy\"\n").expect("config");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let (config, database) = match backend {
        Backend::Sqlite => (
            DatabaseConfig::Sqlite {
                path: home.join("orch.db"),
                options: SqliteOptions::default(),
            },
            None,
        ),
        Backend::Postgres(admin_url) => {
            let database = orch_testdb::ScratchDatabase::create(admin_url, "orch_bench_http");
            let url = database.url.clone();
            (DatabaseConfig::Postgres { url }, Some(database))
        }
    };
    let store = Store::open(&config).await.expect("store");
    let project = store
        .ensure_project(&repo.to_string_lossy(), orch_store::wall_clock())
        .await
        .expect("project")
        .id;
    let mut options = ServeOptions::new(&home);
    options.workers = 0;
    options.listen = Some("127.0.0.1:0".parse().expect("addr"));
    options.rate_limit_per_sec = 0;
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(serve(store.clone(), options, shutdown.clone()));
    let addr_file = home.join("serve.addr");
    let start = Instant::now();
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            if let Ok(addr) = text.trim().parse() {
                break addr;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let worker_token = std::fs::read_to_string(home.join("worker-token"))
        .expect("worker token")
        .trim()
        .to_owned();
    let token = std::fs::read_to_string(home.join("token"))
        .expect("token")
        .trim()
        .to_owned();
    Daemon {
        store,
        database,
        addr,
        worker_token,
        token,
        repo,
        project,
        shutdown,
        handle,
        _dir: dir,
    }
}

impl Daemon {
    /// Stops the daemon and drops its PostgreSQL database.
    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.expect("join").expect("serve");
        drop(self.store);
        drop(self.database);
    }
}

async fn submit(store: &Store, project: orch_core::ProjectId, n: usize) -> Vec<TaskId> {
    let tasks = (0..n).map(noop_task).collect();
    store
        .submit(
            &Submission {
                project,
                workflow: None,
                tasks,
            },
            Op::now("bench"),
        )
        .await
        .expect("submit")
}

/// `workers` loops doing claim→complete (no execution) through `coordinator` until the queue is
/// empty. Returns round trips per second.
async fn round_trips(coordinator: Coordinator, workers: usize) -> f64 {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let coordinator = coordinator.clone();
        set.spawn(async move {
            let name = format!("bench-{w}");
            let mut done = 0usize;
            let mut last = Instant::now();
            while let Some(claim) = coordinator
                .claim(&name, Duration::from_secs(60))
                .await
                .expect("claim")
            {
                coordinator
                    .complete(&name, claim.run.id, claim.token, Outcome::Succeeded, None)
                    .await
                    .expect("complete");
                done += 1;
                last = Instant::now();
            }
            (done, last)
        });
    }
    // The clock stops at the last completion: an HTTP worker's final claim long-polls for
    // more work before it learns there is none, and that wait is not throughput.
    let (mut total, mut end) = (0, start);
    while let Some(result) = set.join_next().await {
        let (done, last) = result.expect("worker");
        total += done;
        end = end.max(last);
    }
    total as f64 / (end - start).as_secs_f64()
}

/// Enqueue → process start through a remote worker pool: one task at a time on an idle queue,
/// submitted through the API (`POST /v1/tasks`, which wakes waiting claims) or straight into
/// the store (as another process on the home would; seen by the claims' polling).
async fn remote_latency(backend: &Backend, samples: usize, through_api: bool) -> (f64, f64) {
    let d = daemon(backend).await;
    let http =
        HttpCoordinator::new(&format!("http://{}", d.addr), &d.worker_token, None).expect("client");
    let worker_home = tempfile::tempdir().expect("tmp");
    let stop = CancellationToken::new();
    let pool = tokio::spawn(orch_worker::run_workers(
        Coordinator::Http(http),
        WorkerSettings::new("remote", worker_home.path()),
        2,
        stop.clone(),
        Duration::from_secs(5),
    ));
    let mut latencies = Vec::with_capacity(samples);
    let client = reqwest::Client::new();
    for i in 0..samples {
        let id = if through_api {
            let created: serde_json::Value = client
                .post(format!("http://{}/v1/tasks", d.addr))
                .bearer_auth(&d.token)
                .json(&serde_json::json!({
                    "project": d.repo.to_string_lossy(),
                    "title": format!("no-op {i}"),
                    "steps": [{ "exec": [{ "argv": ["true"] }] }],
                }))
                .send()
                .await
                .expect("POST /v1/tasks")
                .json()
                .await
                .expect("a task");
            TaskId(created["id"].as_i64().expect("an id"))
        } else {
            submit(&d.store, d.project, 1).await[0]
        };
        loop {
            let task = d.store.task(id).await.expect("task");
            if task.status == Status::Done {
                let manifest: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(
                        worker_home
                            .path()
                            .join("runs")
                            .join(id.to_string())
                            .join("1")
                            .join("manifest.json"),
                    )
                    .expect("manifest"),
                )
                .expect("json");
                let started = manifest["entries"][0]["started_at_ms"]
                    .as_i64()
                    .expect("start");
                latencies.push((started - task.created_at.0) as f64);
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    stop.cancel();
    pool.await.expect("pool");
    d.stop().await;
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    (pick(0.5), pick(0.99))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let n: usize = std::env::var("ORCH_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20 } else { 2_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut backends = vec![Backend::Sqlite];
    match ["ORCH_BENCH_POSTGRES_URL", "ORCH_TEST_POSTGRES_URL"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
    {
        Some(url) => backends.push(Backend::Postgres(url)),
        None => println!(
            "PostgreSQL skipped: set ORCH_BENCH_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)\n"
        ),
    }
    println!("HTTP worker benchmark: {n} claim→complete round trips per row\n");
    println!("| backend | workers | embedded (store) round trips/s | HTTP round trips/s | HTTP / embedded |");
    println!("|---|---:|---:|---:|---:|");
    for backend in &backends {
        for workers in [1usize, 4] {
            let (embedded, http) = rt.block_on(async {
                let d = daemon(backend).await;
                submit(&d.store, d.project, n).await;
                let embedded = round_trips(Coordinator::Local(d.store.clone()), workers).await;
                submit(&d.store, d.project, n).await;
                let client =
                    HttpCoordinator::new(&format!("http://{}", d.addr), &d.worker_token, None)
                        .expect("client");
                let http = round_trips(Coordinator::Http(client), workers).await;
                d.stop().await;
                (embedded, http)
            });
            println!(
                "| {} | {workers} | {embedded:.0} | {http:.0} | {:.2} |",
                backend.name(),
                http / embedded
            );
        }
    }
    let samples = if quick { 5 } else { 200 };
    println!();
    println!(
        "Task ready → remote process start (2 remote workers, idle queue, {samples} samples):\n"
    );
    println!("| backend | how the task is submitted | p50 ms | p99 ms |");
    println!("|---|---|---:|---:|");
    for backend in &backends {
        for (through_api, how) in [
            (true, "through the API"),
            (false, "into the store by another process"),
        ] {
            let (p50, p99) = rt.block_on(remote_latency(backend, samples, through_api));
            println!("| {} | {how} | {p50:.0} | {p99:.0} |", backend.name());
        }
    }
}
