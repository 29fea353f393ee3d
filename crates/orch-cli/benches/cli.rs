//! CLI benchmarks: `orch task list` on a home of 10,000 tasks (its first page, the latest 50)
//! and `orch doctor --no-agents` on 100,000 tasks, each next to `orch version` (the cost of
//! starting the binary at all) measured in the same run on the same machine.
//!
//! Run with `cargo bench -p orch-cli --bench cli` (`ORCH_BENCH_LIST_TASKS` and
//! `ORCH_BENCH_DOCTOR_TASKS` change the counts). Prints a Markdown table for
//! `docs/benchmarks.md`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orch_core::{NewTask, RetryPolicy, TaskSpec, TaskTitle, Timestamp};
use orch_store::{Op, SqliteOptions, Store, Submission};

const ORCH: &str = env!("CARGO_BIN_EXE_orch");

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn new_task(i: usize) -> NewTask {
    NewTask {
        spec: TaskSpec {
            key: None,
            title: TaskTitle::parse(format!("bench task {i}: make the thing work")).expect("title"),
            body: String::new(),
            labels: if i.is_multiple_of(10) {
                vec!["docs".into()]
            } else {
                Vec::new()
            },
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

/// A home with `n` queued tasks (submitted 1,000 to a transaction).
fn fill(home: &Path, n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Store::open_sqlite(&home.join("orch.db"), SqliteOptions::default())
            .await
            .expect("open");
        let project = store
            .ensure_project("/bench", Timestamp(0))
            .await
            .expect("project");
        let mut done = 0;
        while done < n {
            let batch = (done..n.min(done + 1000)).map(new_task).collect::<Vec<_>>();
            done += batch.len();
            let submission = Submission {
                project: project.id,
                workflow: None,
                tasks: batch,
            };
            store
                .submit(&submission, Op::now("bench"))
                .await
                .expect("submit");
        }
        store.close().await;
    });
}

/// The median wall time of `runs` runs of `orch --home <home> <args>` (each must exit 0).
fn time(home: &Path, args: &[&str], runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let out = Command::new(ORCH)
                .arg("--home")
                .arg(home)
                .args(args)
                .env_remove("ORCH_DATABASE_URL")
                .output()
                .expect("run orch");
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "orch {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let list_tasks = count("ORCH_BENCH_LIST_TASKS", 10_000);
    let doctor_tasks = count("ORCH_BENCH_DOCTOR_TASKS", 100_000);
    let dir = tempfile::tempdir().expect("temp dir");

    let list_home = dir.path().join("list");
    std::fs::create_dir_all(&list_home).expect("home");
    fill(&list_home, list_tasks);
    let start = time(&list_home, &["version"], 11);
    let list = time(&list_home, &["task", "list"], 11);
    let label = time(&list_home, &["task", "list", "--label", "docs"], 11);
    let json = time(&list_home, &["task", "list", "--json"], 11);

    let doctor_home = dir.path().join("doctor");
    std::fs::create_dir_all(&doctor_home).expect("home");
    let filling = Instant::now();
    fill(&doctor_home, doctor_tasks);
    let filled = filling.elapsed();
    let doctor = time(&doctor_home, &["doctor", "--no-agents"], 3);

    println!("| command | tasks | median ms | `orch version` ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `orch task list` (latest 50) | {list_tasks} | {} | {} |",
        ms(list),
        ms(start)
    );
    println!(
        "| `orch task list --label docs` (latest 50) | {list_tasks} | {} | {} |",
        ms(label),
        ms(start)
    );
    println!(
        "| `orch task list --json` (latest 50) | {list_tasks} | {} | {} |",
        ms(json),
        ms(start)
    );
    println!(
        "| `orch doctor --no-agents` | {doctor_tasks} | {} | {} |",
        ms(doctor),
        ms(start)
    );
    println!(
        "\n(filling {doctor_tasks} tasks took {:.1} s)",
        filled.as_secs_f64()
    );
}
