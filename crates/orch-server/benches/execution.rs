//! Execution benchmark: 1,000 no-op exec tasks (`true`) from submit to done (bundles written)
//! with 2 embedded workers, next to spawning the same 1,000 `true` processes from a plain Rust
//! loop on 2 threads (the limit); and enqueue → process-start latency on an idle queue.
//!
//! The same throughput with the OS sandbox on (`sandbox = "required"`: Landlock, user and
//! network namespaces, rlimits for every command) and off, alternated in one run: the sandbox
//! may cost at most 10% of tasks/s.
//!
//! `cargo bench -p orch-server --bench execution` (`ORCH_BENCH_TASKS` changes the count).

use std::path::Path;
use std::time::{Duration, Instant};

use orch_core::spec::parse_workflow;
use orch_core::{NewTask, TaskId, Timestamp};
use orch_server::{serve, ServeOptions};
use orch_store::{Op, SqliteOptions, Store, Submission};
use tokio_util::sync::CancellationToken;

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    Timestamp(i64::try_from(ms).expect("ms fit"))
}

fn op() -> Op<'static> {
    Op {
        actor: "bench",
        now: now(),
        jitter_unit: 0.5,
    }
}

fn noop_task(i: usize) -> NewTask {
    let yaml = format!("tasks:\n  - id: t{i}\n    title: no-op {i}\n    steps:\n      - exec:\n          - argv: [\"true\"]\n");
    parse_workflow("bench", &yaml)
        .expect("valid")
        .tasks
        .remove(0)
}

/// A project directory: a git repository (one worktree per task) or a plain directory copied
/// per task.
fn project(dir: &Path, git: bool) {
    std::fs::create_dir_all(dir).expect("project dir");
    std::fs::write(dir.join("README"), "bench\n").expect("file");
    if git {
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args([
                    "-c",
                    "user.name=b",
                    "-c",
                    "user.email=b@b",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .current_dir(dir)
                .output()
                .expect("git")
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q"]);
        run(&["add", "-A"]);
        run(&["commit", "-q", "-m", "init"]);
    } else {
        std::fs::write(dir.join(".orch.toml"), "non_git = \"copy\"\n").expect("config");
    }
}

async fn open(home: &Path) -> Store {
    Store::open_sqlite(&home.join("orch.db"), SqliteOptions::default())
        .await
        .expect("store")
}

/// Submit `n` tasks at once, serve with 2 workers until idle; tasks/s from submit to done.
/// `sandbox` is the global `sandbox` setting (`None`: the default).
async fn throughput(n: usize, git: bool, sandbox: Option<&str>) -> f64 {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = dir.path().join("repo");
    project(&repo, git);
    let home = dir.path().join("home");
    if let Some(mode) = sandbox {
        std::fs::create_dir_all(&home).expect("home");
        std::fs::write(home.join("config.toml"), format!("sandbox = \"{mode}\"\n"))
            .expect("config");
    }
    let store = open(&home).await;
    let project = store
        .ensure_project(&repo.to_string_lossy(), now())
        .await
        .expect("project");
    let start = Instant::now();
    let tasks: Vec<NewTask> = (0..n).map(noop_task).collect();
    store
        .submit(
            &Submission {
                project: project.id,
                workflow: None,
                tasks,
            },
            op(),
        )
        .await
        .expect("submit");
    let mut options = ServeOptions::new(&home);
    options.workers = 2;
    options.exit_when_idle = true;
    options.tick = Duration::from_millis(20);
    serve(store.clone(), options, CancellationToken::new())
        .await
        .expect("serve");
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let counts = store.status_counts().await.expect("counts");
    assert_eq!(
        counts.get(&orch_core::Status::Done).copied().unwrap_or(0),
        n as u64,
        "{counts:?}"
    );
    rate
}

/// The limit: spawn and wait for `n` `true` processes from 2 threads.
fn bare_spawn(n: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                for _ in (t..n).step_by(2) {
                    let status = std::process::Command::new("true")
                        .status()
                        .expect("spawn true");
                    assert!(status.success());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Enqueue → process-start latency on an idle queue: one task at a time, each submitted after
/// the previous one is done; latency = the command's start in manifest.json − the task's
/// creation time.
async fn latency(samples: usize, git: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = dir.path().join("repo");
    project(&repo, git);
    let home = dir.path().join("home");
    let store = open(&home).await;
    let project = store
        .ensure_project(&repo.to_string_lossy(), now())
        .await
        .expect("project");
    let shutdown = CancellationToken::new();
    let mut options = ServeOptions::new(&home);
    options.workers = 2;
    let daemon = tokio::spawn(serve(store.clone(), options, shutdown.clone()));
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let ids: Vec<TaskId> = store
            .submit(
                &Submission {
                    project: project.id,
                    workflow: None,
                    tasks: vec![noop_task(i)],
                },
                op(),
            )
            .await
            .expect("submit");
        let task = ids[0];
        loop {
            let t = store.task(task).await.expect("task");
            if t.status == orch_core::Status::Done {
                let manifest: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(
                        home.join("runs")
                            .join(task.to_string())
                            .join("1")
                            .join("manifest.json"),
                    )
                    .expect("manifest"),
                )
                .expect("json");
                let started = manifest["entries"][0]["started_at_ms"]
                    .as_i64()
                    .expect("started_at_ms");
                latencies.push((started - t.created_at.0) as f64);
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    shutdown.cancel();
    daemon.await.expect("join").expect("serve");
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    (pick(0.5), pick(0.99))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let n: usize = std::env::var("ORCH_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20 } else { 1_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bare = bare_spawn(n);
    println!("execution benchmark: {n} no-op exec tasks (`true`), 2 embedded workers\n");
    println!("| workspace | orch tasks/s (submit → done) | bare spawn/s (2 threads) | orch / bare | start latency p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for git in [false, true] {
        let rate = rt.block_on(throughput(n, git, None));
        let (p50, p99) = rt.block_on(latency(if quick { 5 } else { 200 }, git));
        let kind = if git {
            "git worktree"
        } else {
            "copy (non-git)"
        };
        println!(
            "| {kind} | {rate:.0} | {bare:.0} | {:.2} | {p50:.0} ms | {p99:.0} ms |",
            rate / bare
        );
    }
    sandbox_cost(&rt, n);
}

/// Sandbox on and off, alternated (off, on, off, on, ...) so drift on a shared machine hits
/// both; the best of each is kept.
fn sandbox_cost(rt: &tokio::runtime::Runtime, n: usize) {
    let support = orch_process::support();
    if !support.missing().is_empty() {
        println!(
            "\nsandbox: this machine lacks {}; measured with what it has",
            support.missing().join(", ")
        );
    }
    let (mut off, mut on) = (0.0f64, 0.0f64);
    for _ in 0..3 {
        off = off.max(rt.block_on(throughput(n, true, Some("off"))));
        on = on.max(rt.block_on(throughput(n, true, Some("best_effort"))));
    }
    println!(
        "\nsandbox: {n} no-op exec tasks in git worktrees, 2 embedded workers ({})\n",
        support.describe()
    );
    println!("| sandbox | orch tasks/s (submit → done) |");
    println!("|---|---:|");
    println!("| off | {off:.0} |");
    println!("| on | {on:.0} |");
    println!(
        "\non / off = {:.3} (cost {:.1}% of tasks/s; target: at most 10%)",
        on / off,
        (1.0 - on / off) * 100.0
    );
}
