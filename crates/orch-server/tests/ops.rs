//! Operations and live streams end to end: `/metrics`, request ids, rate limiting, CORS and
//! `/v1/events`, on the real daemon (`serve`) on 127.0.0.1:0 with a real HTTP client.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use orch_core::{NewTask, Outcome, RetryPolicy, TaskSpec, TaskTitle};
use orch_server::{serve, ServeError, ServeOptions};
use orch_store::{Op, SqliteOptions, Store, Submission};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running daemon on a fresh home, with a second store handle on the same database (as a
/// worker process would have) to move tasks along.
struct Daemon {
    home: TempDir,
    project: TempDir,
    store: Store,
    base: String,
    token: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), ServeError>>,
}

async fn open_store(home: &Path) -> Store {
    Store::open_sqlite(&home.join("orch.db"), SqliteOptions::default())
        .await
        .unwrap()
}

impl Daemon {
    async fn start(configure: impl FnOnce(&mut ServeOptions)) -> Daemon {
        let home = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let mut options = ServeOptions::new(home.path());
        options.workers = 0;
        options.listen = Some("127.0.0.1:0".parse().unwrap());
        configure(&mut options);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(serve(
            open_store(home.path()).await,
            options,
            shutdown.clone(),
        ));
        let addr = support::serve_addr(home.path(), &handle).await;
        let token = std::fs::read_to_string(home.path().join("token"))
            .unwrap()
            .trim()
            .to_owned();
        Daemon {
            store: open_store(home.path()).await,
            home,
            project,
            base: format!("http://{addr}"),
            token,
            client: reqwest::Client::new(),
            shutdown,
            handle,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the daemon stops within 30 s, open streams included")
            .unwrap()
            .unwrap();
        drop(self.home);
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn create_task(&self, title: &str) -> i64 {
        let response = self
            .client
            .post(format!("{}/v1/tasks", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "project": self.project.path().to_str().unwrap(), "title": title }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
    }

    /// Claim the next task and complete it successfully, as a worker would.
    async fn claim_and_complete(&self) {
        let claim = self
            .store
            .claim_next(
                "test-worker",
                Duration::from_secs(30),
                Op::now("test-worker"),
            )
            .await
            .unwrap()
            .expect("a queued task");
        self.store
            .complete(
                claim.run.id,
                claim.token,
                Outcome::Succeeded,
                None,
                Op::now("test-worker"),
            )
            .await
            .unwrap();
    }

    /// `/metrics`, parsed with a Prometheus text-format parser.
    async fn scrape(&self) -> prometheus_parse::Scrape {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    /// Open `/v1/events` with `query`; returns once the response headers are in, so the
    /// subscription is registered.
    async fn subscribe(&self, query: &str) -> reqwest::Response {
        let response = self
            .get(&format!("/v1/events{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response
    }
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// Server-sent events read from a response: `(event, data)` pairs.
struct SseReader {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>,
    >,
    buffer: String,
}

impl SseReader {
    fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event that is not a keep-alive comment, within `timeout`.
    async fn next(&mut self, timeout: Duration) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut kind = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if kind.is_empty() {
                    continue;
                }
                return (kind, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an event within the timeout")
                .expect("the stream stays open")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn new_task(n: usize) -> NewTask {
    NewTask {
        spec: TaskSpec {
            key: None,
            title: TaskTitle::parse(format!("bulk task {n}")).unwrap(),
            body: String::new(),
            labels: Vec::new(),
            priority: 0,
            steps: Vec::new(),
            retry: RetryPolicy {
                max_attempts: 3,
                backoff_base: Duration::ZERO,
                backoff_max: Duration::ZERO,
                jitter: Duration::ZERO,
            },
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

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_the_task_claim_and_duration_metrics_move() {
    let daemon = Daemon::start(|_| {}).await;
    let before = daemon.scrape().await;
    assert_eq!(sample(&before, "orch_claims_total", &[]), Some(0.0));
    assert_eq!(
        sample(&before, "orch_tasks", &[("status", "queued")]),
        Some(0.0)
    );

    daemon.create_task("measured").await;
    let queued = daemon.scrape().await;
    assert_eq!(
        sample(&queued, "orch_tasks", &[("status", "queued")]),
        Some(1.0)
    );

    daemon.claim_and_complete().await;
    // The claim and the completion are counted from the committed events (polled every 100 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = daemon.scrape().await;
        let claims = sample(&scrape, "orch_claims_total", &[]);
        let done = sample(&scrape, "orch_tasks", &[("status", "done")]);
        let durations = sample(
            &scrape,
            "orch_run_duration_seconds",
            &[("outcome", "complete")],
        );
        if claims == Some(1.0) && done == Some(1.0) && durations == Some(1.0) {
            assert_eq!(
                sample(&scrape, "orch_tasks", &[("status", "queued")]),
                Some(0.0)
            );
            // The requests above were counted under their route templates.
            assert!(
                sample(
                    &scrape,
                    "orch_http_requests_total",
                    &[("route", "/v1/tasks"), ("method", "POST"), ("code", "201")]
                ) == Some(1.0),
                "{:?}",
                scrape.samples
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "claims {claims:?}, done {done:?}, durations {durations:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sent_one_is_echoed() {
    let daemon = Daemon::start(|_| {}).await;
    let open = daemon
        .client
        .get(format!("{}/health", daemon.base))
        .send()
        .await
        .unwrap();
    let generated = open.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 16, "{generated}");

    let echoed = daemon
        .get("/v1/status")
        .header("x-request-id", "trace-42.a")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), StatusCode::OK);
    assert_eq!(echoed.headers()["x-request-id"], "trace-42.a");

    // Refused requests carry one too; an id that could forge log lines is replaced.
    let refused = daemon
        .client
        .get(format!("{}/v1/status", daemon.base))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let replaced = refused.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(replaced.len(), 16, "{replaced}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_client_over_its_burst_gets_429_with_retry_after_while_health_and_workers_are_exempt() {
    let daemon = Daemon::start(|options| {
        options.rate_limit_per_sec = 1;
        options.rate_limit_burst = 3;
    })
    .await;
    for remaining in ["2", "1", "0"] {
        let response = daemon.get("/v1/status").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
    }
    let limited = daemon.get("/v1/status").send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");

    let health = daemon
        .client
        .get(format!("{}/health", daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // Remote workers are not limited: the worker token gets its route's own answer (403 here,
    // outside `/v1/worker/`), never 429.
    let worker_token = std::fs::read_to_string(daemon.home.path().join("worker-token")).unwrap();
    for _ in 0..5 {
        let response = daemon
            .client
            .get(format!("{}/v1/status", daemon.base))
            .bearer_auth(worker_token.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers().get("x-ratelimit-remaining").is_none());
    }
    daemon.stop().await;
}

#[tokio::test]
async fn configured_cors_origins_are_allowed_and_others_get_no_cors_headers() {
    let daemon = Daemon::start(|options| {
        options.cors_origins = vec!["https://ui.example".to_owned()];
    })
    .await;
    let preflight = |origin: &'static str| {
        daemon
            .client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/tasks", daemon.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://ui.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    daemon.stop().await;
}

#[tokio::test]
async fn an_sse_subscriber_receives_the_create_claim_and_complete_events_of_its_task_in_order() {
    let daemon = Daemon::start(|_| {}).await;
    let other = daemon.create_task("not followed").await;
    let id = other + 1;
    let mut events = SseReader::new(daemon.subscribe(&format!("?task={id}")).await);
    assert_eq!(daemon.create_task("followed").await, id);
    // `other` is older, so it is claimed first; its events must not reach this subscriber.
    daemon.claim_and_complete().await;
    daemon.claim_and_complete().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (kind, event) = events.next(Duration::from_secs(10)).await;
        assert_eq!(kind, "transition");
        assert_eq!(event["task"], id, "{event}");
        seen.push((
            event["kind"].as_str().unwrap().to_owned(),
            event["to"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        seen,
        [
            ("create".to_owned(), "queued".to_owned()),
            ("claim".to_owned(), "running".to_owned()),
            ("complete".to_owned(), "done".to_owned()),
        ]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_hold_back_another_or_the_daemon() {
    let daemon = Daemon::start(|_| {}).await;
    let stalled = daemon.subscribe("").await;
    let mut reader = SseReader::new(daemon.subscribe("?status=queued").await);
    let scrape = daemon.scrape().await;
    assert_eq!(sample(&scrape, "orch_sse_subscribers", &[]), Some(2.0));

    let project = daemon
        .store
        .ensure_project(
            daemon.project.path().to_str().unwrap(),
            orch_store::wall_clock(),
        )
        .await
        .unwrap();
    const TASKS: usize = 1500;
    let submission = Submission {
        project: project.id,
        workflow: None,
        tasks: (0..TASKS).map(new_task).collect(),
    };
    let started = Instant::now();
    daemon
        .store
        .submit(&submission, Op::now("test"))
        .await
        .unwrap();
    for n in 0..TASKS {
        let (kind, event) = reader.next(Duration::from_secs(20)).await;
        assert_eq!(kind, "transition", "event {n}: {event}");
        assert_eq!(event["kind"], "create");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The daemon still answers while the stalled subscriber holds its connection open.
    let status = daemon.get("/v1/status").send().await.unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    drop(stalled);
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = daemon.scrape().await;
        if sample(&scrape, "orch_sse_subscribers", &[]) == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers never went back to 0"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop().await;
}

/// Claim the next task and write its run's log files as a worker would; returns the task, the
/// run directory and the claim.
async fn claimed_run_with_logs(daemon: &Daemon) -> (i64, std::path::PathBuf, orch_store::Claim) {
    let task = daemon.create_task("logged").await;
    let claim = daemon
        .store
        .claim_next(
            "test-worker",
            Duration::from_secs(30),
            Op::now("test-worker"),
        )
        .await
        .unwrap()
        .unwrap();
    let dir = daemon
        .home
        .path()
        .join(format!("runs/{task}/{}", claim.run.attempt));
    std::fs::create_dir_all(dir.join("steps/build")).unwrap();
    std::fs::write(
        dir.join("logs.txt"),
        "step build: start\nstep build: ERROR one\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("steps/build/cmd-1.stdout.log"),
        "compiling\nerror: two\nwarning: three\n",
    )
    .unwrap();
    (task, dir, claim)
}

#[tokio::test]
async fn run_logs_come_as_text_and_as_json_lines_matching_q_with_limit_and_offset() {
    let daemon = Daemon::start(|_| {}).await;
    let (task, _dir, _claim) = claimed_run_with_logs(&daemon).await;
    let text = daemon
        .get(&format!("/v1/runs/{task}/1/logs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        text,
        "==> logs.txt <==\nstep build: start\nstep build: ERROR one\n\
         ==> steps/build/cmd-1.stdout.log <==\ncompiling\nerror: two\nwarning: three\n"
    );
    let search: Value = daemon
        .get(&format!(
            "/v1/runs/{task}/1/logs?format=json&q=error&offset=1&limit=5"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        search,
        json!({ "total": 2, "offset": 1, "lines": [
            { "file": "steps/build/cmd-1.stdout.log", "line": 2, "text": "error: two" }
        ]})
    );
    let missing = daemon
        .get(&format!("/v1/runs/{task}/2/logs"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    daemon.stop().await;
}

#[tokio::test]
async fn following_run_logs_streams_new_output_and_ends_after_the_run_ends() {
    let daemon = Daemon::start(|_| {}).await;
    let (task, dir, claim) = claimed_run_with_logs(&daemon).await;
    let response = daemon
        .get(&format!("/v1/runs/{task}/1/logs?follow=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response);
    let (kind, first) = reader.next(Duration::from_secs(10)).await;
    assert_eq!((kind.as_str(), &first["file"]), ("log", &json!("logs.txt")));
    let (_, second) = reader.next(Duration::from_secs(10)).await;
    assert_eq!(second["file"], "steps/build/cmd-1.stdout.log");

    use std::io::Write;
    let mut stdout = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("steps/build/cmd-1.stdout.log"))
        .unwrap();
    stdout.write_all(b"linking\n").unwrap();
    let (kind, grown) = reader.next(Duration::from_secs(10)).await;
    assert_eq!(kind, "log");
    assert_eq!(grown["text"], "linking\n");

    daemon
        .store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Succeeded,
            None,
            Op::now("test-worker"),
        )
        .await
        .unwrap();
    let (kind, _) = reader.next(Duration::from_secs(10)).await;
    assert_eq!(kind, "end");
    daemon.stop().await;
}
