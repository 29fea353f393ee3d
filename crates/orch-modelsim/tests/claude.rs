//! Claude Code against the model server: a scripted session, a resume, and API failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    assert_session_effects, cli_available, dirs, dump, record_fixture, run_cli, turns, CliRun,
    SESSION_SCRIPT, SESSION_TURNS,
};
use orch_modelsim::clienv::{self, Settings};
use orch_modelsim::{ModelServer, Script, Turn};

fn result_line(run: &CliRun) -> serde_json::Value {
    run.json_lines()
        .into_iter()
        .rfind(|line| line["type"] == "result")
        .expect("claude prints a final result line")
}

async fn claude(
    args: &[&str],
    dirs: &common::Dirs,
    base_url: &str,
    settings: Settings,
    timeout: Duration,
) -> CliRun {
    let env = clienv::claude(base_url, &dirs.run, &settings).unwrap();
    let mut all = vec![
        "--output-format",
        "stream-json",
        "--verbose",
        "--allowedTools",
        "Write,Edit,Bash",
    ];
    all.extend_from_slice(args);
    run_cli("claude", &all, &dirs.work, &env, timeout).await
}

#[tokio::test]
async fn claude_writes_runs_answers_and_resumes_with_the_earlier_history() {
    if !cli_available("claude") {
        return;
    }
    let server = ModelServer::start(Script::from_yaml(SESSION_SCRIPT).unwrap())
        .await
        .unwrap();
    let dirs = dirs();
    let first = claude(
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
    let result = result_line(&first);
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "All done: hello.txt created");
    let session = result["session_id"].as_str().unwrap().to_owned();
    assert_eq!(turns(&server).len(), SESSION_TURNS);
    record_fixture("claude", "success", &first.stdout, &dirs.work, &dirs.run);

    let second = claude(
        &["-p", "A second prompt", "--resume", &session],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(120),
    )
    .await;
    dump("resume", &server, &second);
    assert_eq!(second.exit_code, Some(0));
    assert_eq!(result_line(&second)["result"], "Resumed and remembered");
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
    record_fixture("claude", "resume", &second.stdout, &dirs.work, &dirs.run);
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
    let run = claude(
        &["-p", "This will fail"],
        &dirs,
        &server.base_url(),
        Settings::no_retries(),
        Duration::from_secs(60),
    )
    .await;
    dump(&format!("status {status}"), &server, &run);
    record_fixture(
        "claude",
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
async fn claude_reports_api_errors_with_is_error_and_exit_1() {
    if !cli_available("claude") {
        return;
    }
    for status in [401, 429, 500] {
        let (run, requests) = failing_run(status).await;
        assert!(!run.timed_out, "status {status}");
        assert_eq!(run.exit_code, Some(1), "status {status}");
        let result = result_line(&run);
        assert_eq!(result["is_error"], true, "status {status}");
        assert_eq!(result["api_error_status"], status, "status {status}");
        assert_eq!(
            requests, 1,
            "no retries with CLAUDE_CODE_MAX_RETRIES=0 (status {status})"
        );
    }
}

#[tokio::test]
async fn claude_waits_on_a_hanging_model_until_killed() {
    if !cli_available("claude") {
        return;
    }
    let server = ModelServer::start(Script::single(vec![Turn::Hang]))
        .await
        .unwrap();
    let dirs = dirs();
    let run = claude(
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
async fn claude_gives_up_on_a_hanging_model_after_the_request_timeout() {
    if !cli_available("claude") {
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
    let run = claude(
        &["-p", "This will hang"],
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
    record_fixture("claude", "hang_timeout", &run.stdout, &dirs.work, &dirs.run);
    assert!(!run.timed_out, "the CLI gave up by itself");
    assert_eq!(run.exit_code, Some(1));
    let result = result_line(&run);
    assert_eq!(result["is_error"], true);
    assert_eq!(result["result"], "Request timed out");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn claude_retries_a_429_and_then_succeeds() {
    if !cli_available("claude") {
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
    let run = claude(
        &["-p", "Recover please"],
        &dirs,
        &server.base_url(),
        Settings::default(),
        Duration::from_secs(90),
    )
    .await;
    dump("retry", &server, &run);
    eprintln!("finished after {:?}", started.elapsed());
    record_fixture("claude", "retry_429", &run.stdout, &dirs.work, &dirs.run);
    assert_eq!(run.exit_code, Some(0));
    assert!(run.stdout.contains("Recovered after a retry"));
    assert_eq!(turns(&server).len(), 2, "one 429, one retry");
    server.shutdown().await.unwrap();
}
