//! Shared helpers for the end-to-end tests: a temporary orch home, the real `orch` binary run
//! on it with a deadline, claim-loop workers whose JSON lines are read as they come, and direct
//! reads (and deliberate damage) of the SQLite database the binary wrote.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The binary under test.
pub const ORCH: &str = env!("CARGO_BIN_EXE_orch");

/// How long any single `orch` command may take before the test calls it hung.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// How often polling loops look again.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Call `check` until it returns `Some`, or panic naming `what` once `timeout` has passed.
pub fn poll_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// What a finished `orch` command left behind.
#[derive(Debug)]
pub struct Finished {
    /// The exit code (`None` if a signal ended the process).
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// Stdout as one JSON document; panics (showing both streams) if it is not one.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Stdout as JSON lines (claim-loop output).
    pub fn json_lines(&self) -> Vec<Value> {
        parse_lines(&self.stdout)
    }

    /// Panic with both streams unless the exit code is `expected`.
    pub fn expect_code(&self, expected: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(expected),
            "{what}: wrong exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Parse every non-empty line as JSON.
pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// The lines among `lines` whose `event` field is `event`.
pub fn events_named<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// An integer field of a JSON value, panicking with the value if it is missing.
pub fn int(value: &Value, field: &str) -> i64 {
    value[field]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer `{field}` in {value}"))
}

/// A process started by a test. Dropping it kills and reaps the process, so a failing test
/// leaves nothing running (SIGKILL also ends a process stopped with SIGSTOP).
pub struct Process {
    child: Child,
    /// Lines of stdout, delivered as the process prints them.
    lines: Receiver<String>,
    /// Lines already taken from `lines`.
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Process {
    fn spawn(mut command: Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            // A read error only shortens the diagnostics.
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Process {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// The operating system's process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pids fit in i32"))
    }

    /// Send a signal to the process.
    pub fn signal(&self, signal: Signal) {
        signal::kill(self.pid(), signal).unwrap_or_else(|e| panic!("send {signal}: {e}"));
    }

    /// Wait for a JSON line whose `event` is `event` and return it.
    pub fn wait_for_event(&mut self, event: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let value: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                    if value["event"] == event {
                        return value;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no `{event}` line within {timeout:?}; lines so far: {:?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the process closed stdout before a `{event}` line; lines: {:?}; status: {:?}",
                    self.seen,
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Wait for the process to exit and collect what it printed.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let status = poll_until("the process to exit", timeout, || {
            self.child.try_wait().expect("query the child's status")
        });
        self.collect(status)
    }

    /// SIGKILL the process, reap it, and collect what it printed before it died.
    pub fn kill(mut self) -> Finished {
        // The process may have exited on its own just before; either way it is gone after this.
        let _ = self.child.kill();
        let status = self.child.wait().expect("reap the killed child");
        self.collect(status)
    }

    fn collect(&mut self, status: ExitStatus) -> Finished {
        // The process has exited, so its stdout reaches end-of-file and the reader finishes.
        let mut lines = std::mem::take(&mut self.seen);
        lines.extend(self.lines.iter());
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().expect("the stderr reader does not panic"))
            .unwrap_or_default();
        let stdout: String = lines.iter().map(|l| format!("{l}\n")).collect();
        Finished {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh orch home in a temporary directory, deleted at the end of the test.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("create a temporary orch home"),
        }
    }

    /// The home directory (also the working directory of every command, so it is the project).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.path().join("orch.db")
    }

    /// `orch --home <home> <args>`, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(ORCH);
        command
            .arg("--home")
            .arg(self.path())
            .args(args)
            .current_dir(self.path())
            .env_remove("ORCH_HOME")
            .env_remove("ORCH_LOG");
        command
    }

    /// Start `orch <args>` in the background.
    pub fn spawn(&self, args: &[&str]) -> Process {
        Process::spawn(self.command(args))
    }

    /// Run `orch <args>` to the end.
    pub fn run(&self, args: &[&str]) -> Finished {
        self.spawn(args).finish(COMMAND_DEADLINE)
    }

    /// Run `orch <args>`, require exit code 0, and parse stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let finished = self.run(args);
        finished.expect_code(0, &format!("orch {}", args.join(" ")));
        finished.json()
    }

    /// Write a file in the home and return its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Submit `count` independent tasks as one workflow whose retries wait no time at all.
    /// Returns their ids in order.
    pub fn submit_tasks(&self, count: usize, max_attempts: u32) -> Vec<i64> {
        let mut yaml = format!(
            "name: batch\ndefaults:\n  retry: {{max_attempts: {max_attempts}, backoff: 0s, max_backoff: 0s, jitter: 0s}}\ntasks:\n"
        );
        for n in 1..=count {
            yaml.push_str(&format!("  - id: t{n}\n    title: task number {n}\n"));
        }
        let file = self.write("batch.yml", &yaml);
        let file = file.to_str().expect("temp paths are UTF-8");
        let submitted = self.json(&["run", file, "--json"]);
        let ids: Vec<i64> = submitted["tasks"]
            .as_array()
            .expect("`tasks` is a list")
            .iter()
            .map(|t| int(t, "id"))
            .collect();
        assert_eq!(ids.len(), count, "every task was submitted");
        ids
    }

    /// Task counts by status, from `orch status --json`.
    pub fn status_counts(&self) -> (i64, BTreeMap<String, i64>) {
        let status = self.json(&["status", "--json"]);
        let by_status = status["by_status"]
            .as_object()
            .expect("`by_status` is an object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().expect("counts are integers")))
            .collect();
        (int(&status, "total"), by_status)
    }

    /// Require `orch doctor` to exit 0 and no task to have two `complete` events.
    pub fn assert_consistent(&self, when: &str) {
        self.run(&["doctor"])
            .expect_code(0, &format!("orch doctor {when}"));
        let twice = self.tasks_completed_more_than_once();
        assert!(
            twice.is_empty(),
            "{when}: tasks with more than one `complete` event (task, count): {twice:?}"
        );
    }

    /// `(task, count)` for every task with more than one `complete` event.
    pub fn tasks_completed_more_than_once(&self) -> Vec<(i64, i64)> {
        self.query_pairs(
            "SELECT task_id, COUNT(*) FROM events WHERE kind = 'complete' \
             GROUP BY task_id HAVING COUNT(*) > 1 ORDER BY task_id",
        )
    }

    /// Run a query returning two integer columns.
    pub fn query_pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        self.with_connection(|conn| {
            let mut stmt = conn.prepare(sql)?;
            let pairs = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(pairs)
        })
    }

    /// Run a query returning one integer.
    pub fn query_int(&self, sql: &str) -> i64 {
        self.with_connection(|conn| conn.query_row(sql, [], |r| r.get(0)))
    }

    /// Change the database behind orch's back; returns the rows affected.
    pub fn execute(&self, sql: &str) -> u64 {
        self.with_connection(|conn| conn.execute(sql, []).map(|n| n as u64))
    }

    fn with_connection<T>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> T {
        let conn = rusqlite::Connection::open(self.database())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.database().display()));
        conn.busy_timeout(Duration::from_secs(10))
            .expect("set busy timeout");
        work(&conn).unwrap_or_else(|e| panic!("query {}: {e}", self.database().display()))
    }
}
