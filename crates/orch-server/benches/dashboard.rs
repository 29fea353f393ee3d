//! Dashboard benchmark: the board's first page (`GET /`, HTML, signed in) on a home of 10,000
//! tasks, its size, and the filtered and live (fragment) variants; next to, in the same run and
//! through the same server, the JSON API's newest page (`GET /v1/tasks?order=newest&limit=100`)
//! and the store's board query alone, as baselines.
//!
//! `cargo bench -p orch-server --bench dashboard` (`ORCH_BENCH_BOARD_TASKS` changes the count,
//! `ORCH_BENCH_BOARD_ROUNDS` the requests per row). Fails if the first page takes 300 ms or
//! more at the median, or weighs 300 KB or more.

use std::time::{Duration, Instant};

use orch_core::spec::parse_workflow;
use orch_core::NewTask;
use orch_server::{serve, ServeOptions};
use orch_store::{BoardQuery, DashboardGrant, Op, SqliteOptions, Store, Submission};
use tokio_util::sync::CancellationToken;

const BUDGET: Duration = Duration::from_millis(300);
const MAX_BYTES: usize = 300 * 1024;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tasks(from: usize, count: usize) -> Vec<NewTask> {
    let mut yaml = String::from("tasks:\n");
    for i in from..from + count {
        let label = if i % 10 == 0 { "docs" } else { "code" };
        let agent = ["sim", "claude", "codex"][i % 3];
        yaml.push_str(&format!(
            "  - id: t{i}\n    title: Task number {i} of the benchmark, with a title of ordinary length\n    labels: [{label}, \"area:store\"]\n    steps:\n      - agent: {agent}\n        prompt: Do thing {i}.\n"
        ));
    }
    parse_workflow("bench", &yaml).expect("valid").tasks
}

struct Sample {
    median: Duration,
    p95: Duration,
    bytes: usize,
}

fn summarize(mut times: Vec<Duration>, bytes: usize) -> Sample {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    Sample {
        median: at(0.5),
        p95: at(0.95),
        bytes,
    }
}

async fn get(client: &reqwest::Client, url: &str, header: (&str, &str), rounds: usize) -> Sample {
    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let response = client
            .get(url)
            .header(header.0, header.1)
            .send()
            .await
            .expect("request");
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        let body = response.bytes().await.expect("body");
        times.push(start.elapsed());
        bytes = body.len();
    }
    summarize(times, bytes)
}

fn row(what: &str, sample: &Sample) {
    println!(
        "| {what} | {:.1} | {:.1} | {} |",
        sample.median.as_secs_f64() * 1000.0,
        sample.p95.as_secs_f64() * 1000.0,
        sample.bytes
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let count = env_number("ORCH_BENCH_BOARD_TASKS", 10_000);
    let rounds = env_number("ORCH_BENCH_BOARD_ROUNDS", 30);
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path().join("home");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    let store = Store::open_sqlite(&home.join("orch.db"), SqliteOptions::default())
        .await
        .expect("store");
    let project = store
        .ensure_project(&repo.to_string_lossy(), orch_store::wall_clock())
        .await
        .expect("project")
        .id;
    let mut made = 0;
    while made < count {
        let batch = (count - made).min(1000);
        store
            .submit(
                &Submission {
                    project,
                    workflow: None,
                    tasks: tasks(made, batch),
                },
                Op::now("bench"),
            )
            .await
            .expect("submit");
        made += batch;
    }
    // A session made directly in the store (the browser's cookie holds the secret).
    let secret = "bench-session-secret";
    let now = orch_store::wall_clock();
    store
        .create_dashboard_session(&DashboardGrant {
            token_hash: orch_server::dashboard::auth::hash_secret(secret),
            actor: "bench".to_owned(),
            created_at: now,
            expires_at: now.after(Duration::from_secs(3600)),
        })
        .await
        .expect("session");

    let mut options = ServeOptions::new(&home);
    options.workers = 0;
    options.listen = Some("127.0.0.1:0".parse().expect("addr"));
    options.rate_limit_per_sec = 0;
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(serve(store.clone(), options, shutdown.clone()));
    let addr_file = home.join("serve.addr");
    let start = Instant::now();
    let addr: std::net::SocketAddr = loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            if let Ok(addr) = text.trim().parse() {
                break addr;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no daemon");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let token = std::fs::read_to_string(home.join("token")).expect("token");
    let bearer = format!("Bearer {}", token.trim());
    let cookie = format!("orch_session={secret}");
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    // Warm up (prepared statements, page cache).
    get(&client, &format!("{base}/"), ("cookie", &cookie), 3).await;
    get(
        &client,
        &format!("{base}/v1/tasks?order=newest&limit=100"),
        ("authorization", &bearer),
        3,
    )
    .await;

    let mut store_times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let page = store
            .board(&BoardQuery {
                limit: 100,
                ..BoardQuery::default()
            })
            .await
            .expect("board");
        store_times.push(start.elapsed());
        assert_eq!(page.tasks.len(), 100.min(count));
    }
    let store_only = summarize(store_times, 0);
    let api = get(
        &client,
        &format!("{base}/v1/tasks?order=newest&limit=100"),
        ("authorization", &bearer),
        rounds,
    )
    .await;
    let board = get(&client, &format!("{base}/"), ("cookie", &cookie), rounds).await;
    let fragment = get(
        &client,
        &format!("{base}/board/fragment"),
        ("cookie", &cookie),
        rounds,
    )
    .await;
    let label = get(
        &client,
        &format!("{base}/?label=docs"),
        ("cookie", &cookie),
        rounds,
    )
    .await;
    let text = get(
        &client,
        &format!("{base}/?q=number%209999"),
        ("cookie", &cookie),
        rounds,
    )
    .await;
    let agent_done = get(
        &client,
        &format!("{base}/?agent=codex&status=done"),
        ("cookie", &cookie),
        rounds,
    )
    .await;
    let inbox = get(
        &client,
        &format!("{base}/inbox"),
        ("cookie", &cookie),
        rounds,
    )
    .await;

    println!("board on {count} tasks, {rounds} requests per row");
    println!();
    println!("| request | median ms | p95 ms | bytes |");
    println!("|---|---:|---:|---:|");
    row("store: `Store::board` first page (baseline)", &store_only);
    row(
        "API: `GET /v1/tasks?order=newest&limit=100` (baseline)",
        &api,
    );
    row("dashboard: `GET /` (first page, HTML)", &board);
    row("dashboard: `GET /board/fragment` (live refresh)", &fragment);
    row("dashboard: `GET /?label=docs`", &label);
    row("dashboard: `GET /?q=number 9999` (text search)", &text);
    row(
        "dashboard: `GET /?agent=codex&status=done` (no match)",
        &agent_done,
    );
    row("dashboard: `GET /inbox` (empty)", &inbox);
    println!();
    println!(
        "first page / API page: {:.2}x",
        board.median.as_secs_f64() / api.median.as_secs_f64()
    );

    shutdown.cancel();
    let _ = handle.await;
    assert!(
        board.median < BUDGET,
        "the board's first page took {:?} at the median; the budget is {BUDGET:?}",
        board.median
    );
    assert!(
        board.bytes < MAX_BYTES,
        "the board's first page weighs {} bytes; the budget is {MAX_BYTES}",
        board.bytes
    );
}
