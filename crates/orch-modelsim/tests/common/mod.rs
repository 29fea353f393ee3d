//! Shared harness for the real-CLI tests: start a CLI in a temp dir against the model server,
//! with stdin closed, a deadline and process-group kill, and optionally record its stdout as a
//! fixture for the orch-agents adapter tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use orch_modelsim::clienv::CliEnv;
use orch_modelsim::{ModelServer, RequestRecord};

/// Returns whether `program` is on PATH; without it the test fails under `CI`, else skips.
pub fn cli_available(program: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{program}` is not installed but CI is set: the real-CLI tests must run in CI"
        );
        eprintln!("skipping: `{program}` is not on PATH (set CI to make this a failure)");
    }
    found
}

/// What a CLI run produced.
#[derive(Debug)]
pub struct CliRun {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl CliRun {
    /// The stdout lines that parse as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// Runs `program args` in `cwd` with `env`, stdin = /dev/null, killed (whole group) at
/// `timeout`; keeps the output printed before the deadline.
pub async fn run_cli(
    program: &str,
    args: &[&str],
    cwd: &Path,
    env: &CliEnv,
    timeout: Duration,
) -> CliRun {
    // Captured outside `cwd` so the agent does not see (or list) the capture files.
    let capture = tempfile::tempdir().unwrap();
    let out_path = capture.path().join("stdout");
    let err_path = capture.path().join("stderr");
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0);
    env.apply(&mut command);
    // OpenCode takes its working directory from $PWD, not from the process's cwd.
    command.env("PWD", cwd);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let pid = child.id().expect("a just spawned child has a pid");
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    kill_group(pid);
    let (exit_code, timed_out) = match waited {
        Ok(status) => (status.unwrap().code(), false),
        Err(_) => {
            let _ = child.wait().await;
            (None, true)
        }
    };
    CliRun {
        exit_code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        timed_out,
    }
}

fn kill_group(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
    // The group may already be gone; that is the normal case.
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
}

/// Prints the request log (visible when a test fails).
pub fn dump(label: &str, server: &ModelServer, run: &CliRun) {
    eprintln!(
        "=== {label}: exit {:?}, timed out {}",
        run.exit_code, run.timed_out
    );
    eprintln!("--- stdout\n{}", run.stdout);
    eprintln!("--- stderr\n{}", truncate(&run.stderr, 4000));
    for request in server.requests() {
        eprintln!(
            "--- {} {} {:?} served {:?}\n{:?}\n{}",
            request.method,
            request.path,
            request.query,
            request.served,
            request.headers,
            truncate(&request.body_text(), 300)
        );
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Requests answered from the script.
pub fn turns(server: &ModelServer) -> Vec<RequestRecord> {
    server.turn_requests()
}

/// With `MODELSIM_RECORD_FIXTURES=1`, saves `stdout` as
/// `crates/orch-agents/tests/fixtures/<cli>/<case>.jsonl`, temp paths replaced by `/WORKDIR`
/// and `/RUNDIR`.
pub fn record_fixture(cli: &str, case: &str, stdout: &str, workdir: &Path, run_dir: &Path) {
    if std::env::var_os("MODELSIM_RECORD_FIXTURES").is_none() {
        return;
    }
    let mut text = stdout.to_owned();
    for (path, placeholder) in [(run_dir, "/RUNDIR"), (workdir, "/WORKDIR")] {
        if let Ok(real) = path.canonicalize() {
            text = text.replace(&*real.to_string_lossy(), placeholder);
        }
        text = text.replace(&*path.to_string_lossy(), placeholder);
    }
    let dir = fixtures_dir().join(cli);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{case}.jsonl")), text).unwrap();
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../orch-agents/tests/fixtures")
}

/// A temp dir holding `work/` (the agent's cwd) and `run/` (CLI state and config).
pub struct Dirs {
    _root: tempfile::TempDir,
    pub work: PathBuf,
    pub run: PathBuf,
}

pub fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    let run = root.path().join("run");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    Dirs {
        _root: root,
        work,
        run,
    }
}

/// The session every CLI test runs: a write, a run, two commands in one turn, a final answer;
/// then a second prompt for the resumed session.
pub const SESSION_SCRIPT: &str = r#"
conversations:
  - match: "create hello"
    turns:
      - write: {path: hello.txt, content: "hello from modelsim\n"}
      - run: {command: "echo hi > ran.txt"}
      - tools: [{run: {command: "echo one > one.txt"}}, {run: {command: "echo two > two.txt"}}]
      - say: {text: "All done: hello.txt created"}
  - match: "second prompt"
    turns:
      - say: {text: "Resumed and remembered"}
"#;

/// Script turns the first prompt of [`SESSION_SCRIPT`] uses.
pub const SESSION_TURNS: usize = 4;

/// Asserts what [`SESSION_SCRIPT`]'s first conversation did in `work`.
pub fn assert_session_effects(work: &Path) {
    let read = |name: &str| std::fs::read_to_string(work.join(name)).unwrap_or_default();
    assert_eq!(
        read("hello.txt"),
        "hello from modelsim\n",
        "the scripted write happened"
    );
    assert_eq!(read("ran.txt"), "hi\n", "the scripted command ran");
    assert_eq!(
        read("one.txt"),
        "one\n",
        "the first of two tool calls in one turn ran"
    );
    assert_eq!(
        read("two.txt"),
        "two\n",
        "the second of two tool calls in one turn ran"
    );
}
