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

/// How long an `orch serve` that exits when idle may take in these tests.
pub const SERVE_DEADLINE: Duration = Duration::from_secs(60);

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

    /// Whether the process has exited (its status is kept for [`Process::finish`]).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("query the child's status")
            .is_some()
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

    /// Wait for a line of stdout containing `text` and return it (lines before it are kept for
    /// [`Process::finish`]).
    pub fn wait_for_line(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line with `{text}` within {timeout:?}; lines so far: {:?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the process closed stdout before a line with `{text}`; lines: {:?}; status: {:?}",
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

/// The database a test home uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The home's own SQLite file (the default).
    Sqlite,
    /// A fresh database on the PostgreSQL server of `ORCH_TEST_POSTGRES_URL`.
    Postgres,
}

/// Run SQL through `psql` and return its unaligned, tab-separated rows.
pub fn psql(url: &str, sql: &str) -> Vec<Vec<String>> {
    let output = Command::new("psql")
        .args([
            "-q",
            "-X",
            "-A",
            "-t",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .unwrap_or_else(|e| panic!("run psql (is the PostgreSQL client installed?): {e}"));
    assert!(
        output.status.success(),
        "psql `{sql}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

/// Run each scenario, `fn name(home: Home)` (or, after `shared:`, `fn name(database:
/// SharedDatabase)` for several homes on one database), on both backends: the tests are
/// `name::sqlite` and `name::postgres` (which skips with a printed reason outside CI when
/// `ORCH_TEST_POSTGRES_URL` is unset, and fails in CI).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    (shared: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(crate::support::SharedDatabase::new());
                }

                #[test]
                fn postgres() {
                    if let Some(database) = crate::support::SharedDatabase::postgres(concat!(
                        module_path!(),
                        "::postgres"
                    )) {
                        super::$name(database);
                    }
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(crate::support::Home::new());
                }

                #[test]
                fn postgres() {
                    if let Some(home) = crate::support::Home::with_backend(
                        crate::support::Backend::Postgres,
                        concat!(module_path!(), "::postgres"),
                    ) {
                        super::$name(home);
                    }
                }
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

/// A fresh orch home in a temporary directory, deleted at the end of the test.
pub struct Home {
    dir: tempfile::TempDir,
    /// `--database URL` for every command: a database shared with other homes.
    database: Option<SharedDatabase>,
}

/// A database several homes (daemons) share, fresh for one test: an SQLite file outside every
/// home (`sqlite:///...`), or a database of its own on the PostgreSQL server of
/// `ORCH_TEST_POSTGRES_URL`, dropped when the last home using it is gone.
#[derive(Clone)]
pub struct SharedDatabase {
    url: String,
    _keep: std::sync::Arc<Keep>,
}

/// What keeps a shared database alive.
enum Keep {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] orch_testdb::ScratchDatabase),
}

impl SharedDatabase {
    /// A shared SQLite file.
    pub fn new() -> SharedDatabase {
        let dir = tempfile::tempdir().expect("create a directory for the shared database");
        SharedDatabase {
            url: format!("sqlite://{}", dir.path().join("shared.db").display()),
            _keep: std::sync::Arc::new(Keep::Sqlite(dir)),
        }
    }

    /// A fresh PostgreSQL database, or `None` outside CI without `ORCH_TEST_POSTGRES_URL` (the
    /// reason is printed; in CI a missing server fails the test).
    pub fn postgres(test: &str) -> Option<SharedDatabase> {
        let server = orch_testdb::server_url(test)?;
        let pg = orch_testdb::ScratchDatabase::create(&server, "orch_e2e");
        Some(SharedDatabase {
            url: pg.url.clone(),
            _keep: std::sync::Arc::new(Keep::Postgres(pg)),
        })
    }

    /// The URL to pass as `--database`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn is_postgres(&self) -> bool {
        !self.url.starts_with("sqlite://")
    }
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("create a temporary orch home"),
            database: None,
        }
    }

    /// A fresh home whose every command uses `database` (`--database`).
    pub fn on(database: &SharedDatabase) -> Home {
        Home {
            database: Some(database.clone()),
            ..Home::new()
        }
    }

    /// A fresh home on `backend` (its own SQLite file, or a fresh PostgreSQL database), or
    /// `None` when that backend is not available here (PostgreSQL without
    /// `ORCH_TEST_POSTGRES_URL`, outside CI; the reason is printed).
    pub fn with_backend(backend: Backend, test: &str) -> Option<Home> {
        match backend {
            Backend::Sqlite => Some(Home::new()),
            Backend::Postgres => Some(Home::on(&SharedDatabase::postgres(test)?)),
        }
    }

    /// A second home (its own directory, so its own daemon lock and bundles) on this home's
    /// shared database: how several servers share one database.
    pub fn sibling(&self) -> Home {
        Home::on(
            self.database
                .as_ref()
                .expect("siblings share a database: make the first home with Home::on"),
        )
    }

    /// A fresh home in a temporary directory inside `parent` (e.g. inside a project).
    pub fn inside(parent: &Path) -> Home {
        Home {
            dir: tempfile::tempdir_in(parent).expect("create a temporary orch home"),
            database: None,
        }
    }

    /// The home directory (also the working directory of every command, so it is the project).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The database file (the shared SQLite file for a home made with [`Home::on`]).
    pub fn database(&self) -> PathBuf {
        match &self.database {
            Some(shared) => PathBuf::from(
                shared
                    .url()
                    .strip_prefix("sqlite://")
                    .expect("SQL checks need an SQLite database"),
            ),
            None => self.path().join("orch.db"),
        }
    }

    /// `orch --home <home> <args>`, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(ORCH);
        command.arg("--home").arg(self.path());
        if let Some(shared) = &self.database {
            command.arg("--database").arg(shared.url());
        }
        command
            .args(args)
            .current_dir(self.path())
            .env_remove("ORCH_HOME")
            .env_remove("ORCH_DATABASE_URL")
            .env_remove("ORCH_LOG");
        command
    }

    /// Start `orch <args>` in the background.
    pub fn spawn(&self, args: &[&str]) -> Process {
        Process::spawn(self.command(args))
    }

    /// Start `orch <args>` in the background with these extra environment variables.
    pub fn spawn_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        Process::spawn(command)
    }

    /// Start `orch serve --listen 127.0.0.1:0 <args>` in the background (port 0, so tests running
    /// in parallel never fight over a port).
    pub fn serve(&self, args: &[&str]) -> Process {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        self.spawn(&all)
    }

    /// The address a started `orch serve` wrote to `<home>/serve.addr`, once it is there.
    pub fn serve_addr(&self) -> String {
        poll_until("serve.addr", SERVE_DEADLINE, || {
            std::fs::read_to_string(self.path().join("serve.addr"))
                .ok()
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty())
        })
    }

    /// Run `orch serve --workers <workers> --lease 2s --grace 1s --exit-when-idle` to the end and
    /// require exit code 0.
    pub fn serve_until_idle(&self, workers: usize) -> Finished {
        let workers = workers.to_string();
        let finished = self
            .serve(&[
                "--workers",
                &workers,
                "--lease",
                "2s",
                "--grace",
                "1s",
                "--exit-when-idle",
            ])
            .finish(SERVE_DEADLINE);
        finished.expect_code(0, "orch serve --exit-when-idle");
        finished
    }

    /// Submit the workflow `yaml` (written to `<name>.yml` in the home) for the project `project`;
    /// returns the task ids by workflow key.
    pub fn submit(&self, name: &str, yaml: &str, project: &Path) -> BTreeMap<String, i64> {
        let file = self.write(&format!("{name}.yml"), yaml);
        let file = file.to_str().expect("temp paths are UTF-8");
        let project = project.to_str().expect("temp paths are UTF-8");
        let submitted = self.json(&["run", file, "--project", project, "--json"]);
        submitted["tasks"]
            .as_array()
            .expect("`tasks` is a list")
            .iter()
            .map(|t| {
                let key = t["key"].as_str().expect("workflow tasks have keys");
                (key.to_owned(), int(t, "id"))
            })
            .collect()
    }

    /// `orch task get <id> --json`: the task, its spec, runs and events.
    pub fn task(&self, id: i64) -> Value {
        self.json(&["task", "get", &id.to_string(), "--json"])
    }

    /// The status of a task, read from the database (cheap enough to poll).
    pub fn task_status(&self, id: i64) -> String {
        self.query_text(&format!("SELECT status FROM tasks WHERE id = {id}"))
    }

    /// The artifact bundle of a task's attempt: `<home>/runs/<task>/<attempt>`.
    pub fn run_dir(&self, task: i64, attempt: u32) -> PathBuf {
        self.path()
            .join("runs")
            .join(task.to_string())
            .join(attempt.to_string())
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
        self.query_rows(sql)
            .iter()
            .map(|row| (parse_int(&row[0], sql), parse_int(&row[1], sql)))
            .collect()
    }

    /// Run a query returning one text value.
    pub fn query_text(&self, sql: &str) -> String {
        let rows = self.query_rows(sql);
        assert_eq!(rows.len(), 1, "`{sql}` returns one row: {rows:?}");
        rows[0][0].clone()
    }

    /// Run a query returning one integer.
    pub fn query_int(&self, sql: &str) -> i64 {
        parse_int(&self.query_text(sql), sql)
    }

    /// Run a query on whichever database the home uses; every value as text (NULL as empty).
    pub fn query_rows(&self, sql: &str) -> Vec<Vec<String>> {
        if let Some(shared) = self.database.as_ref().filter(|d| d.is_postgres()) {
            return psql(shared.url(), sql);
        }
        self.with_connection(|conn| {
            let mut stmt = conn.prepare(sql)?;
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..columns)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => String::new(),
                                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                                rusqlite::types::ValueRef::Real(x) => x.to_string(),
                                rusqlite::types::ValueRef::Text(t)
                                | rusqlite::types::ValueRef::Blob(t) => {
                                    String::from_utf8_lossy(t).into_owned()
                                }
                            })
                        })
                        .collect::<rusqlite::Result<Vec<String>>>()
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Change the database behind orch's back; returns the rows affected.
    pub fn execute(&self, sql: &str) -> u64 {
        if let Some(shared) = self.database.as_ref().filter(|d| d.is_postgres()) {
            // Count the rows a statement changed through a CTE (`psql -q` prints no count).
            let rows = psql(
                shared.url(),
                &format!("WITH changed AS ({sql} RETURNING 1) SELECT COUNT(*) FROM changed"),
            );
            return parse_int(&rows[0][0], sql) as u64;
        }
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

fn parse_int(text: &str, sql: &str) -> i64 {
    text.parse()
        .unwrap_or_else(|_| panic!("`{sql}` returned `{text}`, not an integer"))
}

/// The events of a task (from `orch task get --json`) whose `kind` is `kind`.
pub fn task_events<'a>(task: &'a Value, kind: &str) -> Vec<&'a Value> {
    task["events"]
        .as_array()
        .expect("`events` is a list")
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// The kinds of a task's events, in order.
pub fn event_kinds(task: &Value) -> Vec<String> {
    task["events"]
        .as_array()
        .expect("`events` is a list")
        .iter()
        .map(|e| e["kind"].as_str().expect("kinds are text").to_owned())
        .collect()
}

/// The `at` time of an event (RFC 3339).
pub fn event_time(event: &Value) -> std::time::SystemTime {
    let at = event["at"]
        .as_str()
        .unwrap_or_else(|| panic!("no `at` in {event}"));
    humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("`at` {at} is not RFC 3339: {e}"))
}

/// Read a file as text, panicking with its path.
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Read a JSON file, panicking with its path and content if it is not JSON.
pub fn read_json(path: &Path) -> Value {
    let text = read_text(path);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

/// The hex SHA-256 of a file, by `sha256sum` (a second opinion on the hashes orch records).
pub fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run sha256sum: {e}"));
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints the hash first")
        .to_owned()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let entries =
            std::fs::read_dir(&next).unwrap_or_else(|e| panic!("list {}: {e}", next.display()));
        for entry in entries {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The workspace a run used, from the `workspace <path> (...)` line of its `logs.txt`.
pub fn workspace_of(run_dir: &Path) -> PathBuf {
    let logs = read_text(&run_dir.join("logs.txt"));
    logs.lines()
        .find_map(|line| {
            let (_, rest) = line.split_once(" workspace ")?;
            let (path, _) = rest.rsplit_once(" (")?;
            Some(PathBuf::from(path))
        })
        .unwrap_or_else(|| {
            panic!(
                "no workspace line in {}/logs.txt:\n{logs}",
                run_dir.display()
            )
        })
}

/// Whether a process with this pid exists and is not a zombie waiting to be reaped.
pub fn process_is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The peak resident set size (`VmHWM`) of a live process, in KiB.
pub fn peak_rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix("VmHWM:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// A git repository in a temporary directory with one commit on `main`, to be a project.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// A repository holding `files` (path, content) in its first commit.
    pub fn new(files: &[(&str, &str)]) -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().expect("create a temporary repository"),
        };
        git(
            repo.path(),
            &["-c", "init.defaultBranch=main", "init", "-q"],
        );
        git(repo.path(), &["config", "user.name", "orch test"]);
        git(repo.path(), &["config", "user.email", "test@localhost"]);
        git(repo.path(), &["config", "commit.gpgsign", "false"]);
        for (name, content) in files {
            let path = repo.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create a directory in the repository");
            }
            std::fs::write(&path, content)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        git(repo.path(), &["add", "-A"]);
        git(
            repo.path(),
            &["commit", "-q", "--allow-empty", "-m", "first commit"],
        );
        repo
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `git <args>` in the repository; its trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git(self.path(), args)
    }

    /// The commit the main checkout has checked out.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// `git status --porcelain` of the main checkout, untracked and ignored files included.
    pub fn status(&self) -> String {
        self.git(&[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--ignored",
        ])
    }
}

/// `git <args>` in `dir`, required to succeed; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
