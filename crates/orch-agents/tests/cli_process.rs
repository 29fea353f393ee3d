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

/// A fake Agent Client Protocol agent: answers `initialize`, `session/new` and one
/// `session/prompt`, asking permission before it writes `acp.txt` in its working directory.
/// `mode`: `ok`, `crash` (dies mid-prompt), `linger` (never exits after answering).
const FAKE_ACP_AGENT: &str = r#"
import json, sys, time
mode = sys.argv[1]
def send(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
def update(u):
    send({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "fake-1", "update": u}})
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": m["id"], "result": {"protocolVersion": 1, "agentCapabilities": {"loadSession": False}}})
    elif method == "session/new":
        send({"jsonrpc": "2.0", "id": m["id"], "result": {"sessionId": "fake-1"}})
    elif method == "session/prompt":
        if mode == "crash":
            sys.stderr.write("fake agent: out of memory\n"); sys.exit(3)
        call = {"toolCallId": "c1", "title": "write acp.txt", "kind": "edit", "locations": [{"path": "acp.txt"}]}
        send({"jsonrpc": "2.0", "id": "perm-1", "method": "session/request_permission", "params": {"sessionId": "fake-1", "toolCall": call, "options": [{"optionId": "no", "name": "No", "kind": "reject_once"}, {"optionId": "yes", "name": "Yes", "kind": "allow_once"}]}})
        answer = json.loads(sys.stdin.readline())
        if answer["result"]["outcome"].get("optionId") == "yes":
            open("acp.txt", "w").write(m["params"]["prompt"][0]["text"])
        update(dict(call, sessionUpdate="tool_call_update", status="completed"))
        update({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "wrote "}})
        update({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "acp.txt"}})
        send({"jsonrpc": "2.0", "id": m["id"], "result": {"stopReason": "end_turn", "usage": {"inputTokens": 7, "outputTokens": 3}}})
        if mode == "linger":
            time.sleep(600)
"#;

async fn run_acp(mode: &str, workdir: &Path, grace: Duration, resume: Option<&str>) -> Ran {
    let script = workdir.join("fake_acp.py");
    std::fs::write(&script, FAKE_ACP_AGENT).unwrap();
    let mut config = AgentsConfig {
        enable_real_cli: true,
        stall_timeout: Duration::from_secs(60),
        result_grace: grace,
        ..AgentsConfig::default()
    };
    let toml = format!(
        "argv = [\"python3\", {:?}, \"{mode}\"]\noutput = \"acp\"\n",
        script.display().to_string()
    );
    config
        .commands
        .insert("fake-acp".into(), toml::from_str(&toml).unwrap());
    let agent = Agent::resolve("fake-acp", &config).unwrap();
    let request = AgentRequest {
        prompt: "hello over acp".into(),
        workdir: workdir.to_owned(),
        resume_session: resume.map(str::to_owned),
        ..AgentRequest::default()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let result = agent.run(&request, tx, CancellationToken::new()).await;
    let took = started.elapsed();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    Ran {
        result,
        events,
        raw: Vec::new(),
        took,
    }
}

#[tokio::test]
async fn an_acp_agent_is_driven_over_its_stdin_and_exits_when_orch_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run_acp("ok", dir.path(), Duration::from_secs(30), None).await;
    let outcome = ran.result.unwrap();
    assert_eq!(outcome.result_text, "wrote acp.txt");
    assert_eq!(outcome.session_id.as_deref(), Some("fake-1"));
    assert_eq!((outcome.input_tokens, outcome.output_tokens), (7, 3));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("acp.txt")).unwrap(),
        "hello over acp",
        "the permission request was answered with the allow option"
    );
    assert!(
        ran.events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolCall { id, .. } if id == "c1")),
        "{:?}",
        ran.events
    );
    // Closing stdin ended it, not the 30 s result grace.
    assert!(ran.took < Duration::from_secs(10), "took {:?}", ran.took);
}

#[tokio::test]
async fn an_acp_agent_that_dies_mid_prompt_is_a_crash_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run_acp("crash", dir.path(), Duration::from_secs(5), None).await;
    let error = ran.result.unwrap_err();
    assert!(matches!(error, AgentError::Crashed { .. }), "{error:?}");
    assert!(error.to_string().contains("out of memory"), "{error}");
}

#[tokio::test]
async fn an_acp_agent_that_lingers_after_its_answer_is_ended_by_the_result_grace() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run_acp("linger", dir.path(), Duration::from_millis(300), None).await;
    assert_eq!(ran.result.unwrap().result_text, "wrote acp.txt");
    assert!(ran.took < Duration::from_secs(10), "took {:?}", ran.took);
}

#[tokio::test]
async fn resuming_an_acp_agent_without_load_session_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run_acp("ok", dir.path(), Duration::from_secs(30), Some("old-1")).await;
    let error = ran.result.unwrap_err();
    assert!(matches!(error, AgentError::Failed(_)), "{error:?}");
    assert!(error.to_string().contains("loadSession"), "{error}");
    assert!(ran.took < Duration::from_secs(10), "took {:?}", ran.took);
}
