//! Codex CLI against the model server: a scripted session, a resume, and API failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    assert_session_effects, cli_available, dirs, dump, record_fixture, run_cli, turns, CliRun,
    Dirs, SESSION_SCRIPT, SESSION_TURNS,
};
use orch_modelsim::clienv::{self, Settings};
use orch_modelsim::{ModelServer, Script, Turn};

const BASE_ARGS: &[&str] = &[
    "exec",
    "--json",
    "--skip-git-repo-check",
    "--dangerously-bypass-approvals-and-sandbox",
];

async fn codex(
    extra: &[&str],
    dirs: &Dirs,
    base_url: &str,
    settings: Settings,
    timeout: Duration,
) -> CliRun {
    let env = clienv::codex(base_url, &dirs.run, &settings).unwrap();
    let work = dirs.work.to_string_lossy().into_owned();
    let mut args = BASE_ARGS.to_vec();
    args.extend_from_slice(&["-C", &work]);
    args.extend_from_slice(extra);
    run_cli("codex", &args, &dirs.work, &env, timeout).await
}

fn agent_messages(run: &CliRun) -> Vec<String> {
    run.json_lines()
        .into_iter()
        .filter(|line| line["type"] == "item.completed" && line["item"]["type"] == "agent_message")
        .map(|line| line["item"]["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn codex_writes_runs_answers_and_resumes_with_the_earlier_history() {
    if !cli_available("codex") {
        return;
    }
    let server = ModelServer::start(Script::from_yaml(SESSION_SCRIPT).unwrap())
        .await
        .unwrap();
    let dirs = dirs();
    let first = codex(
        &["Please create hello"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(120),
    )
    .await;
    dump("first", &server, &first);
    assert_eq!(first.exit_code, Some(0));
    assert_session_effects(&dirs.work);
    assert_eq!(agent_messages(&first), ["All done: hello.txt created"]);
    let lines = first.json_lines();
    let thread = lines
        .iter()
        .find(|line| line["type"] == "thread.started")
        .and_then(|line| line["thread_id"].as_str())
        .expect("codex prints thread.started with a thread_id")
        .to_owned();
    assert!(lines.iter().any(|line| line["type"] == "turn.completed"));
    assert_eq!(turns(&server).len(), SESSION_TURNS);
    record_fixture("codex", "success", &first.stdout, &dirs.work, &dirs.run);

    let second = codex(
        &["resume", &thread, "A second prompt"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(120),
    )
    .await;
    dump("resume", &server, &second);
    assert_eq!(second.exit_code, Some(0));
    assert_eq!(agent_messages(&second), ["Resumed and remembered"]);
    let resumed = turns(&server).pop().unwrap();
    let body = resumed.body_text();
    assert!(body.contains("A second prompt"), "{body}");
    assert!(
        body.contains("Please create hello"),
        "the resumed request carries the first prompt"
    );
    assert!(
        body.contains("All done: hello.txt created"),
        "and the first answer"
    );
    record_fixture("codex", "resume", &second.stdout, &dirs.work, &dirs.run);
    server.shutdown().await.unwrap();
}

async fn failing_run(status: u16) -> (CliRun, usize) {
    let server = ModelServer::start(Script::single(vec![Turn::Error {
        status,
        retry_after_secs: Some(1),
        message: None,
    }]))
    .await
    .unwrap();
    let dirs = dirs();
    let run = codex(
        &["This will fail"],
        &dirs,
        &server.base_url(),
        Settings::no_retries(),
        Duration::from_secs(60),
    )
    .await;
    dump(&format!("status {status}"), &server, &run);
    record_fixture(
        "codex",
        &format!("error_{status}"),
        &run.stdout,
        &dirs.work,
        &dirs.run,
    );
    let count = turns(&server).len();
    server.shutdown().await.unwrap();
    (run, count)
}

#[tokio::test]
async fn codex_reports_api_errors_with_turn_failed_and_exit_1() {
    if !cli_available("codex") {
        return;
    }
    for status in [401, 429, 500] {
        let (run, requests) = failing_run(status).await;
        assert!(!run.timed_out, "status {status}");
        assert_eq!(run.exit_code, Some(1), "status {status}");
        let lines = run.json_lines();
        assert!(
            lines.iter().any(|l| l["type"] == "turn.failed"),
            "status {status}"
        );
        assert_eq!(
            requests, 1,
            "no retries with request_max_retries = 0 (status {status})"
        );
    }
}

#[tokio::test]
async fn codex_waits_on_a_hanging_model_until_killed() {
    if !cli_available("codex") {
        return;
    }
    let server = ModelServer::start(Script::single(vec![Turn::Hang]))
        .await
        .unwrap();
    let dirs = dirs();
    let run = codex(
        &["This will hang"],
        &dirs,
        &server.base_url(),
        Settings::no_retries(),
        Duration::from_secs(20),
    )
    .await;
    dump("hang", &server, &run);
    assert!(run.timed_out);
    assert_eq!(turns(&server).len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn codex_gives_up_on_a_stalled_stream_after_the_idle_timeout() {
    if !cli_available("codex") {
        return;
    }
    let server = ModelServer::start(Script::single(vec![Turn::Stall]))
        .await
        .unwrap();
    let dirs = dirs();
    let settings = Settings {
        request_timeout: Some(Duration::from_secs(3)),
        ..Settings::no_retries()
    };
    let started = std::time::Instant::now();
    let run = codex(
        &["This will hang"],
        &dirs,
        &server.base_url(),
        settings,
        Duration::from_secs(60),
    )
    .await;
    dump("hang with timeout", &server, &run);
    eprintln!(
        "gave up after {:?} and {} requests",
        started.elapsed(),
        turns(&server).len()
    );
    record_fixture("codex", "stall_timeout", &run.stdout, &dirs.work, &dirs.run);
    // stream_idle_timeout_ms only covers a response whose headers arrived: a `hang` (no status
    // line at all) is never timed out by Codex 0.169.0, hence `stall` here.
    assert!(!run.timed_out, "the CLI gave up by itself");
    assert_eq!(run.exit_code, Some(1));
    assert!(run.json_lines().iter().any(|l| l["type"] == "turn.failed"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn codex_retries_a_429_and_then_succeeds() {
    if !cli_available("codex") {
        return;
    }
    let server = ModelServer::start(Script::single(vec![Turn::Say {
        text: "Recovered after a retry".into(),
    }]))
    .await
    .unwrap();
    server.force_next(Turn::Error {
        status: 429,
        retry_after_secs: Some(1),
        message: None,
    });
    let dirs = dirs();
    let started = std::time::Instant::now();
    let run = codex(
        &["Recover please"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(90),
    )
    .await;
    dump("retry", &server, &run);
    eprintln!("finished after {:?}", started.elapsed());
    record_fixture("codex", "retry_429", &run.stdout, &dirs.work, &dirs.run);
    assert_eq!(run.exit_code, Some(0));
    assert!(run.stdout.contains("Recovered after a retry"));
    assert_eq!(turns(&server).len(), 2, "one 429, one retry");
    server.shutdown().await.unwrap();
}
