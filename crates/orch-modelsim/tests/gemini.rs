//! Gemini CLI against the model server: a scripted session, a resume, and API failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    assert_session_effects, cli_available, dirs, dump, record_fixture, run_cli, turns, CliRun,
    Dirs, SESSION_SCRIPT, SESSION_TURNS,
};
use orch_modelsim::clienv::{self, Settings};
use orch_modelsim::{ModelServer, Script, Turn};

async fn gemini(
    extra: &[&str],
    dirs: &Dirs,
    base_url: &str,
    settings: Settings,
    timeout: Duration,
) -> CliRun {
    let env = clienv::gemini(base_url, &dirs.run, &settings).unwrap();
    let mut args = vec!["--output-format", "stream-json", "--yolo", "--skip-trust"];
    args.extend_from_slice(extra);
    run_cli("gemini", &args, &dirs.work, &env, timeout).await
}

#[tokio::test]
async fn gemini_writes_runs_answers_and_resumes_with_the_earlier_history() {
    if !cli_available("gemini") {
        return;
    }
    let server = ModelServer::start(Script::from_yaml(SESSION_SCRIPT).unwrap())
        .await
        .unwrap();
    let dirs = dirs();
    let first = gemini(
        &["-p", "Please create hello"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(120),
    )
    .await;
    dump("first", &server, &first);
    assert_eq!(first.exit_code, Some(0));
    assert_session_effects(&dirs.work);
    assert_eq!(
        turns(&server).len(),
        SESSION_TURNS,
        "the router side request does not use a turn"
    );
    assert!(first.stdout.contains("All done: hello.txt created"));
    record_fixture("gemini", "success", &first.stdout, &dirs.work, &dirs.run);
    let classifier = server
        .requests()
        .into_iter()
        .find(|r| matches!(r.served, orch_modelsim::Served::Auxiliary { .. }))
        .expect("gemini sends a routing side request");
    assert!(classifier.path.ends_with(":generateContent"));
    assert!(
        !first.stderr.contains("ClassifierStrategy failed"),
        "the side answer follows the requested JSON schema: {}",
        first.stderr
    );

    let second = gemini(
        &["-p", "A second prompt", "--resume", "latest"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(120),
    )
    .await;
    dump("resume", &server, &second);
    assert_eq!(second.exit_code, Some(0));
    assert!(second.stdout.contains("Resumed and remembered"));
    let resumed = turns(&server).pop().unwrap();
    let body = resumed.body_text();
    assert!(body.contains("A second prompt"), "{body}");
    assert!(
        body.contains("Please create hello"),
        "the resumed request carries the first prompt"
    );
    record_fixture("gemini", "resume", &second.stdout, &dirs.work, &dirs.run);
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
    let run = gemini(
        &["-p", "This will fail"],
        &dirs,
        &server.base_url(),
        Settings::no_retries(),
        timeout,
    )
    .await;
    dump(&format!("status {status}"), &server, &run);
    record_fixture(
        "gemini",
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
async fn gemini_reports_api_errors_with_the_http_status_as_exit_code() {
    if !cli_available("gemini") {
        return;
    }
    for status in [401, 429, 500] {
        let (run, requests) = failing_run(status, Duration::from_secs(90)).await;
        assert!(!run.timed_out, "status {status}");
        // Gemini CLI exits with the HTTP status truncated to 8 bits (401 -> 145, 429 -> 173,
        // 500 -> 244), not with 1.
        assert_eq!(
            run.exit_code,
            Some(i32::from(status % 256)),
            "status {status}"
        );
        let result = run
            .json_lines()
            .into_iter()
            .rfind(|line| line["type"] == "result")
            .expect("gemini prints a final result line");
        assert_eq!(result["status"], "error", "status {status}");
        assert_eq!(
            requests, 1,
            "no retries with general.maxAttempts = 1 (status {status})"
        );
    }
}

#[tokio::test]
async fn gemini_waits_on_a_hanging_model_until_killed() {
    if !cli_available("gemini") {
        return;
    }
    let server = ModelServer::start(Script::single(vec![Turn::Hang]))
        .await
        .unwrap();
    let dirs = dirs();
    let run = gemini(
        &["-p", "This will hang"],
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
async fn gemini_retries_a_429_and_then_succeeds() {
    if !cli_available("gemini") {
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
    let run = gemini(
        &["-p", "Recover please"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(90),
    )
    .await;
    dump("retry", &server, &run);
    eprintln!("finished after {:?}", started.elapsed());
    record_fixture("gemini", "retry_429", &run.stdout, &dirs.work, &dirs.run);
    assert_eq!(run.exit_code, Some(0));
    assert!(run.stdout.contains("Recovered after a retry"));
    assert_eq!(turns(&server).len(), 2, "one 429, one retry");
    server.shutdown().await.unwrap();
}
