//! OpenCode against the model server: a scripted session, a resume, and API failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    assert_session_effects, cli_available, dirs, dump, record_fixture, run_cli, turns, CliRun,
    Dirs, SESSION_SCRIPT, SESSION_TURNS,
};
use orch_modelsim::clienv::{self, Settings};
use orch_modelsim::{ModelServer, Script, Served, Turn};

async fn opencode(
    extra: &[&str],
    dirs: &Dirs,
    base_url: &str,
    settings: Settings,
    timeout: Duration,
) -> CliRun {
    let env = clienv::opencode(base_url, &dirs.run, &settings).unwrap();
    let mut args = vec!["run", "--format", "json"];
    args.extend_from_slice(extra);
    run_cli("opencode", &args, &dirs.work, &env, timeout).await
}

fn texts(run: &CliRun) -> Vec<String> {
    run.json_lines()
        .into_iter()
        .filter(|line| line["type"] == "text")
        .map(|line| line["part"]["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn opencode_writes_runs_answers_and_resumes_with_the_earlier_history() {
    if !cli_available("opencode") {
        return;
    }
    let server = ModelServer::start(Script::from_yaml(SESSION_SCRIPT).unwrap())
        .await
        .unwrap();
    let dirs = dirs();
    let first = opencode(
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
    assert_eq!(texts(&first), ["All done: hello.txt created"]);
    let session = first.json_lines()[0]["sessionID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        turns(&server).len(),
        SESSION_TURNS,
        "the title request does not use a turn"
    );
    assert!(server
        .requests()
        .iter()
        .any(|r| matches!(r.served, Served::Auxiliary { .. })));
    record_fixture("opencode", "success", &first.stdout, &dirs.work, &dirs.run);

    let second = opencode(
        &["--session", &session, "A second prompt"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(120),
    )
    .await;
    dump("resume", &server, &second);
    assert_eq!(second.exit_code, Some(0));
    assert_eq!(texts(&second), ["Resumed and remembered"]);
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
    record_fixture("opencode", "resume", &second.stdout, &dirs.work, &dirs.run);
    server.shutdown().await.unwrap();
}

async fn failing_run(status: u16, timeout: Duration) -> (CliRun, usize) {
    let server = ModelServer::start(Script::single(vec![Turn::Error {
        status,
        retry_after_secs: Some(1),
        message: None,
    }]))
    .await
    .unwrap();
    let dirs = dirs();
    let run = opencode(
        &["This will fail"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        timeout,
    )
    .await;
    dump(&format!("status {status}"), &server, &run);
    record_fixture(
        "opencode",
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
async fn opencode_reports_a_401_with_an_error_line_and_exit_1() {
    if !cli_available("opencode") {
        return;
    }
    let (run, requests) = failing_run(401, Duration::from_secs(60)).await;
    assert!(!run.timed_out);
    assert_eq!(run.exit_code, Some(1));
    assert!(run.json_lines().iter().any(|l| l["type"] == "error"));
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn opencode_retries_429_and_500_then_reports_an_error_line() {
    if !cli_available("opencode") {
        return;
    }
    for status in [429, 500] {
        let started = std::time::Instant::now();
        let (run, requests) = failing_run(status, Duration::from_secs(90)).await;
        eprintln!(
            "status {status}: {requests} requests in {:?}",
            started.elapsed()
        );
        assert!(!run.timed_out, "status {status}");
        assert_eq!(run.exit_code, Some(1), "status {status}");
        assert!(
            run.json_lines().iter().any(|l| l["type"] == "error"),
            "status {status}"
        );
        assert!(
            requests >= 2,
            "status {status}: retried, got {requests} requests"
        );
    }
}

#[tokio::test]
async fn opencode_waits_on_a_hanging_model_until_killed() {
    if !cli_available("opencode") {
        return;
    }
    let server = ModelServer::start(Script::single(vec![Turn::Hang]))
        .await
        .unwrap();
    let dirs = dirs();
    let run = opencode(
        &["This will hang"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(20),
    )
    .await;
    dump("hang", &server, &run);
    assert!(run.timed_out);
    assert_eq!(turns(&server).len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn opencode_gives_up_on_a_hanging_model_after_the_request_timeout() {
    if !cli_available("opencode") {
        return;
    }
    let server = ModelServer::start(Script::single(vec![Turn::Hang]))
        .await
        .unwrap();
    let dirs = dirs();
    let settings = Settings {
        request_timeout: Some(Duration::from_secs(3)),
        ..Settings::no_retries()
    };
    let started = std::time::Instant::now();
    let run = opencode(
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
    record_fixture(
        "opencode",
        "hang_timeout",
        &run.stdout,
        &dirs.work,
        &dirs.run,
    );
    assert!(!run.timed_out, "the CLI gave up by itself");
    assert_eq!(run.exit_code, Some(1));
    let error = run
        .json_lines()
        .into_iter()
        .find(|l| l["type"] == "error")
        .unwrap();
    assert_eq!(
        error["error"]["data"]["message"],
        "The operation timed out."
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn opencode_retries_a_429_and_then_succeeds() {
    if !cli_available("opencode") {
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
    let run = opencode(
        &["Recover please"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(90),
    )
    .await;
    dump("retry", &server, &run);
    eprintln!("finished after {:?}", started.elapsed());
    record_fixture("opencode", "retry_429", &run.stdout, &dirs.work, &dirs.run);
    assert_eq!(run.exit_code, Some(0));
    assert!(run.stdout.contains("Recovered after a retry"));
    assert_eq!(turns(&server).len(), 2, "one 429, one retry");
    server.shutdown().await.unwrap();
}
