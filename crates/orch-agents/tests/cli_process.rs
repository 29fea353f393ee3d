//! The CLI runner on real processes: small shell scripts stand in for a CLI's behaviours that
//! the real CLIs show only sometimes (hanging after the result, going silent, crashing).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orch_agents::{Agent, AgentError, AgentEvent, AgentRequest, AgentsConfig, RawOutput};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A fake `claude` that prints `body` (a shell script) instead of talking to a model.
fn fake_cli(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-claude");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn config(binary: &Path, stall: Duration, grace: Duration) -> AgentsConfig {
    let mut config = AgentsConfig {
        enable_real_cli: true,
        stall_timeout: stall,
        result_grace: grace,
        ..AgentsConfig::default()
    };
    config.claude.binary = Some(binary.display().to_string());
    config
}

struct Ran {
    result: Result<orch_agents::AgentOutcome, AgentError>,
    events: Vec<AgentEvent>,
    raw: Vec<RawOutput>,
    took: Duration,
}

async fn run(config: &AgentsConfig, workdir: &Path, cancel: CancellationToken) -> Ran {
    let agent = Agent::resolve("claude", config).unwrap();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel();
    let request = AgentRequest {
        prompt: "do it".into(),
        workdir: workdir.to_owned(),
        raw_output: Some(raw_tx),
        ..AgentRequest::default()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let result = agent.run(&request, tx, cancel).await;
    let took = started.elapsed();
    drop(request);
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let mut raw = Vec::new();
    while let Ok(r) = raw_rx.try_recv() {
        raw.push(r);
    }
    Ran {
        result,
        events,
        raw,
        took,
    }
}

const INIT: &str = r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-x","tools":[],"cwd":"/w"}"#;
const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"all done","session_id":"s-1","total_cost_usd":0.25,"usage":{"input_tokens":10,"output_tokens":5}}"#;

#[tokio::test]
async fn a_cli_that_hangs_after_its_result_is_ended_and_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let cli = fake_cli(
        dir.path(),
        &format!("echo '{INIT}'\necho '{RESULT}'\nexec sleep 600"),
    );
    let ran = run(
        &config(&cli, Duration::from_secs(60), Duration::from_millis(300)),
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    let outcome = ran.result.unwrap();
    assert_eq!(outcome.result_text, "all done");
    assert_eq!(outcome.session_id.as_deref(), Some("s-1"));
    assert_eq!((outcome.input_tokens, outcome.output_tokens), (10, 5));
    assert!((outcome.cost_usd - 0.25).abs() < 1e-9);
    assert!(ran.took < Duration::from_secs(10), "took {:?}", ran.took);
    assert!(matches!(ran.raw.first(), Some(RawOutput::Stdout(line)) if line.contains("init")));
}

#[tokio::test]
async fn a_silent_cli_is_killed_as_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let cli = fake_cli(dir.path(), &format!("echo '{INIT}'\nexec sleep 600"));
    let ran = run(
        &config(&cli, Duration::from_millis(500), Duration::from_secs(5)),
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    let error = ran.result.unwrap_err();
    assert!(matches!(error, AgentError::Stalled { .. }), "{error:?}");
    assert!(error.to_string().contains("stalled"), "{error}");
    assert!(ran.took < Duration::from_secs(10));
}

#[tokio::test]
async fn output_keeps_the_stall_watchdog_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let cli = fake_cli(
        dir.path(),
        &format!("echo '{INIT}'\nfor i in 1 2 3 4 5 6; do sleep 0.2; echo \"working $i\" >&2; done\necho '{RESULT}'"),
    );
    let ran = run(
        &config(&cli, Duration::from_millis(700), Duration::from_secs(5)),
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.result.unwrap().result_text, "all done");
}

#[tokio::test]
async fn a_crash_without_a_result_says_how_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let cli = fake_cli(
        dir.path(),
        &format!("echo '{INIT}'\necho 'segfault in module x' >&2\nexit 3"),
    );
    let ran = run(
        &config(&cli, Duration::from_secs(60), Duration::from_secs(5)),
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    let error = ran.result.unwrap_err();
    assert!(matches!(error, AgentError::Crashed { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("exit code 3") && text.contains("segfault in module x"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_binary_is_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run(
        &config(
            &dir.path().join("nope"),
            Duration::from_secs(60),
            Duration::from_secs(5),
        ),
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    let error = ran.result.unwrap_err();
    assert_eq!(
        error.class(),
        orch_agents::FailureClass::NotInstalled,
        "{error:?}"
    );
    assert!(!error.class().retryable());
}

#[tokio::test]
async fn cancelling_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("child.pid");
    let cli = fake_cli(
        dir.path(),
        &format!(
            "echo '{INIT}'\nsleep 600 &\necho $! > {}\nwait",
            marker.display()
        ),
    );
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    let ran = run(
        &config(&cli, Duration::from_secs(60), Duration::from_secs(5)),
        dir.path(),
        cancel,
    )
    .await;
    assert!(matches!(ran.result, Err(AgentError::Cancelled(_))));
    let pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The background child was in the CLI's process group, so it is gone too (a signal takes
    // effect when the process is next scheduled, so give a loaded machine a moment).
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(), "the CLI's child {pid} survived");
}

#[tokio::test]
async fn unparsable_and_unknown_lines_are_kept_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let cli = fake_cli(
        dir.path(),
        &format!("echo '{INIT}'\necho 'Warning: something odd'\necho '{{\"type\":\"brand_new\",\"x\":1}}'\necho '{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"te'\necho '{RESULT}'"),
    );
    let ran = run(
        &config(&cli, Duration::from_secs(60), Duration::from_secs(5)),
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert!(ran.result.is_ok());
    let unknown = ran
        .events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Unknown { .. }))
        .count();
    assert_eq!(unknown, 3, "{:?}", ran.events);
}
