//! Exec steps: pre-exec validation and the process runner.
//!
//! Validation refuses, before anything runs, shell entrypoints (unless the project allows them)
//! and destructive tools whose path arguments resolve outside the workspace. The runner starts
//! each command in its own process group with a cleared environment plus an allowlist, streams
//! stdout and stderr through the secret redactor into capped files, and on timeout or
//! cancellation sends SIGTERM to the whole group, then SIGKILL after a grace period.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use orch_core::Command;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::process::Child;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::redact::{Redactor, StreamRedactor};

mod validate;

use validate::{check_command, workspace_root};

/// Rules for running commands.
#[derive(Debug, Clone)]
pub struct ExecPolicy {
    /// Allow `sh -c`, `bash -c`, `pwsh`, ... (project setting `allow_shell`).
    pub allow_shell: bool,
    /// Names of environment variables passed through from orch's own environment.
    pub env_allowlist: Vec<String>,
    /// Most bytes kept of each of stdout and stderr; the rest is counted and dropped.
    pub output_cap_bytes: u64,
    /// Time between SIGTERM and SIGKILL when a command is stopped.
    pub kill_grace: Duration,
    /// Timeout for commands that set none.
    pub default_timeout: Option<Duration>,
    /// A directory where each running command's process group id is recorded (and removed when
    /// it ends), so a restarted daemon can kill what a crashed one left behind.
    pub process_registry: Option<PathBuf>,
}

impl Default for ExecPolicy {
    fn default() -> Self {
        ExecPolicy {
            allow_shell: false,
            env_allowlist: Vec::new(),
            output_cap_bytes: 16 * 1024 * 1024,
            kill_grace: Duration::from_secs(5),
            default_timeout: None,
            process_registry: None,
        }
    }
}

/// A command refused before anything ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command {index} (`{argv}`) refused: {reason}")]
pub struct ValidationError {
    /// Index of the command in its step (0-based).
    pub index: usize,
    /// The command line, for the message.
    pub argv: String,
    /// Why, and what to do instead.
    pub reason: String,
}

/// Check every command of a step before running any of them.
///
/// Paths are resolved against the command's working directory without running anything: `.` and
/// `..` are applied, and symbolic links that exist are followed, so `link-to-root/etc` is seen as
/// `/etc`. Paths that do not exist yet are fine as long as they stay inside the workspace.
pub fn validate(
    commands: &[Command],
    workspace: &Path,
    policy: &ExecPolicy,
) -> Result<(), ValidationError> {
    let root = workspace_root(workspace);
    for (index, command) in commands.iter().enumerate() {
        check_command(command, &root, policy).map_err(|reason| ValidationError {
            index,
            argv: shell_words::join(&command.argv),
            reason,
        })?;
    }
    Ok(())
}
/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitRecord {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// It was stopped because it ran past its timeout.
    pub timed_out: bool,
    /// It was stopped because the run was cancelled (lease lost, shutdown).
    pub cancelled: bool,
}

impl ExitRecord {
    /// Exited 0 on its own.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled
    }
}

/// One captured output stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamRecord {
    /// The file it was written to.
    pub path: PathBuf,
    /// Bytes the command wrote in all.
    pub bytes_seen: u64,
    /// Bytes kept in the file (after redaction, at most the cap).
    pub bytes_kept: u64,
    /// The cap cut the stream (noted at the end of the file too).
    pub truncated: bool,
    /// SHA-256 of the file as stored, hex.
    pub sha256: String,
}

/// Everything the manifest records about one command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRecord {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// Names (never values) of the environment variables it got.
    pub env_names: Vec<String>,
    /// Start, ms since the epoch.
    pub started_at_ms: i64,
    /// End, ms since the epoch.
    pub ended_at_ms: i64,
    /// How it ended.
    pub exit: ExitRecord,
    /// Its stdout.
    pub stdout: StreamRecord,
    /// Its stderr.
    pub stderr: StreamRecord,
    /// Secret redactions made in its output: kind -> count.
    pub redactions: BTreeMap<String, u64>,
}

/// Why a command could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started.
    #[error("could not start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// Writing the output files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Where one command's output goes.
#[derive(Debug, Clone)]
pub struct OutputPaths {
    /// stdout file (created; parent directories must exist).
    pub stdout: PathBuf,
    /// stderr file.
    pub stderr: PathBuf,
}

/// Run one (already validated) command in `workspace`, capturing its output into `out`.
///
/// `extra_env` is added to the allowlisted environment (task ids, secrets the project marked).
/// Returns when the command and its whole process group are gone.
pub async fn run_command(
    command: &Command,
    workspace: &Path,
    out: &OutputPaths,
    extra_env: &BTreeMap<String, String>,
    redactor: &Redactor,
    policy: &ExecPolicy,
    cancel: CancellationToken,
) -> Result<CommandRecord, ExecError> {
    let Some(program) = command.argv.first() else {
        return Err(ExecError::Spawn {
            program: String::new(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the command's argv is empty"),
        });
    };
    let workspace = std::path::absolute(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    let cwd = normalize_lexically(&workspace.join(command.cwd.as_deref().unwrap_or("")));
    if !cwd.is_dir() {
        return Err(ExecError::Spawn {
            program: program.clone(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("its working directory {} is not a directory", cwd.display()),
            ),
        });
    }
    let env = command_env(command, extra_env, policy);
    let stdout_file = create_output(&out.stdout).await?;
    let stderr_file = create_output(&out.stderr).await?;

    let mut process = tokio::process::Command::new(program);
    process
        .args(&command.argv[1..])
        .current_dir(&cwd)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started_at_ms = now_ms();
    let mut child = process
        .spawn()
        .map_err(|source| spawn_error(program, source))?;
    let leader = child
        .id()
        .expect("a child that was never waited for still has its pid");
    let group = Pid::from_raw(i32::try_from(leader).expect("pids fit in an i32"));
    // From here on, leaving early (an error, or the caller dropping this future) kills the group.
    let mut guard = GroupGuard { group, armed: true };
    // Recorded so that a daemon restarting after a kill -9 can stop what this one left running.
    let registered = policy
        .process_registry
        .as_ref()
        .map(|dir| dir.join(group.as_raw().to_string()));
    if let Some(path) = &registered {
        if let Err(error) = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| std::fs::write(path, b""))
        {
            tracing::warn!(%error, "could not record the process group in {}", path.display());
        }
    }

    let drain_stop = CancellationToken::new();
    let stdout = child.stdout.take().expect("stdout was set to a pipe");
    let stderr = child.stderr.take().expect("stderr was set to a pipe");
    let cap = policy.output_cap_bytes;
    let stdout_task = tokio::spawn(capture(
        stdout,
        stdout_file,
        out.stdout.clone(),
        redactor.stream(),
        cap,
        drain_stop.clone(),
    ));
    let stderr_task = tokio::spawn(capture(
        stderr,
        stderr_file,
        out.stderr.clone(),
        redactor.stream(),
        cap,
        drain_stop.clone(),
    ));

    let timeout = command.timeout.or(policy.default_timeout);
    let (status, stopped) =
        wait_or_stop(&mut child, group, timeout, policy.kill_grace, &cancel).await;
    // The leader is reaped; whatever it left behind in its group (`sleep 1000 &`) goes now, also
    // so that nothing keeps the output pipes open.
    signal_group(group, Signal::SIGKILL);
    guard.armed = false;
    if let Some(path) = &registered {
        let _ = std::fs::remove_file(path);
    }
    let status = status.map_err(|source| ExecError::Io {
        context: format!("wait for `{program}`"),
        source,
    })?;

    let readers = async { tokio::join!(stdout_task, stderr_task) };
    tokio::pin!(readers);
    let (stdout_joined, stderr_joined) = tokio::select! {
        joined = &mut readers => joined,
        () = tokio::time::sleep(READER_DRAIN_LIMIT) => {
            // Only a process that left the group (`setsid`) can still hold a pipe open now.
            tracing::warn!(
                program = %program,
                "output pipes still open after the process group was killed; closing them"
            );
            drain_stop.cancel();
            (&mut readers).await
        }
    };
    let stdout = joined_capture(stdout_joined)?;
    let stderr = joined_capture(stderr_joined)?;
    let ended_at_ms = now_ms();

    let mut redactions = stdout.redactions;
    for (kind, count) in stderr.redactions {
        *redactions.entry(kind).or_default() += count;
    }
    Ok(CommandRecord {
        argv: command.argv.clone(),
        cwd,
        env_names: env.into_keys().collect(),
        started_at_ms,
        ended_at_ms,
        exit: ExitRecord {
            code: status.code(),
            signal: status.signal(),
            timed_out: stopped == Some(Stop::TimedOut),
            cancelled: stopped == Some(Stop::Cancelled),
        },
        stdout: stdout.record,
        stderr: stderr.record,
        redactions,
    })
}

/// Variables every command gets from orch's own environment, besides the project's allowlist.
const BASE_ENV: [&str; 7] = ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER"];

/// Bytes read from an output pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Buffer in front of each output file.
const WRITE_BUFFER: usize = 64 * 1024;

/// How often a stopped group is checked for members left during the grace period.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// How long the output readers may still run once the whole group is gone. Pipes close when the
/// group dies, so only a process that left the group and kept a pipe makes this limit matter.
const READER_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Why a command was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    TimedOut,
    Cancelled,
}

/// Kills the process group when dropped while armed: nothing a command started outlives an early
/// return or a caller that drops the future (tokio reaps the dropped leader itself).
struct GroupGuard {
    group: Pid,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.group, Signal::SIGKILL);
        }
    }
}

fn signal_group(group: Pid, signal: Signal) {
    match killpg(group, signal) {
        // The group is already gone.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => {
            let group = group.as_raw();
            tracing::warn!(group, %signal, %error, "could not signal a command's process group");
        }
    }
}

/// Some live process of the group still exists. Zombies do not count: they are dead and only
/// wait for their parent (often pid 1, which may never reap them) to collect them.
fn group_exists(group: Pid) -> bool {
    if matches!(killpg(group, None), Err(Errno::ESRCH)) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| matches!(process_group_and_state(pid), Some((pgrp, state)) if pgrp == group.as_raw() && state != 'Z'))
}

/// A process's group and state letter from `/proc/<pid>/stat`.
fn process_group_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields after its last `)` are
    // `state ppid pgrp ...`.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((pgrp, state))
}

/// Kill every process group holding a process of one of `runs` (by `ORCH_RUN_ID`) whose
/// `ORCH_BUNDLE` lies under `runs_dir` (this home's, so another home's run with the same number
/// is never touched). This catches what the registry cannot: a command started in the instant
/// between its spawn and its registration when the daemon died. Returns the groups killed.
pub fn kill_processes_of_runs(runs_dir: &Path, runs: &[i64]) -> Vec<i32> {
    if runs.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let bundle_prefix = format!("ORCH_BUNDLE={}/", runs_dir.display());
    let mut killed = Vec::new();
    for pid in procs
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Some((group, state)) = process_group_and_state(pid) else {
            continue;
        };
        if state == 'Z' || killed.contains(&group) || group <= 1 {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        let in_home = vars.iter().any(|v| v.starts_with(bundle_prefix.as_bytes()));
        let run = vars
            .iter()
            .find_map(|v| v.strip_prefix(b"ORCH_RUN_ID="))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
        if in_home && run.is_some_and(|r| runs.contains(&r)) {
            signal_group(Pid::from_raw(group), Signal::SIGKILL);
            killed.push(group);
        }
    }
    killed
}

/// Kill the process groups recorded in `registry` by runs of a daemon that died (kill -9 leaves
/// its commands running), then forget them. A group is killed only if one of its live members
/// carries `ORCH_RUN_ID` in its environment, so a recycled group id of an unrelated process is
/// never touched. Returns the groups killed.
pub fn kill_orphaned_groups(registry: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(registry) else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(group) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let ours = std::fs::read_dir("/proc").ok().is_some_and(|procs| {
            procs
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| matches!(process_group_and_state(*pid), Some((pgrp, state)) if pgrp == group && state != 'Z'))
                .any(|pid| {
                    std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var.starts_with(b"ORCH_RUN_ID=")))
                })
        });
        if ours {
            signal_group(Pid::from_raw(group), Signal::SIGKILL);
            killed.push(group);
        }
        let _ = std::fs::remove_file(entry.path());
    }
    killed
}

/// Wait for the leader to exit; on timeout or cancellation, stop the whole group first.
async fn wait_or_stop(
    child: &mut Child,
    group: Pid,
    timeout: Option<Duration>,
    grace: Duration,
    cancel: &CancellationToken,
) -> (io::Result<ExitStatus>, Option<Stop>) {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let stop = tokio::select! {
        // An exit that is ready counts even if the deadline passed at the same time.
        biased;
        status = child.wait() => return (status, None),
        () = cancel.cancelled() => Stop::Cancelled,
        () = sleep_until_deadline(deadline) => Stop::TimedOut,
    };
    (stop_group(child, group, grace).await, Some(stop))
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM to the whole group, then SIGKILL once the grace period is over or the group is gone;
/// returns the leader's status (it is always reaped).
async fn stop_group(child: &mut Child, group: Pid, grace: Duration) -> io::Result<ExitStatus> {
    signal_group(group, Signal::SIGTERM);
    let grace_deadline = Instant::now() + grace;
    let leader = tokio::select! {
        status = child.wait() => Some(status?),
        () = tokio::time::sleep_until(grace_deadline) => None,
    };
    if leader.is_some() {
        // The rest of the group gets what is left of the grace period to clean up too.
        while group_exists(group) && Instant::now() < grace_deadline {
            tokio::time::sleep(GROUP_POLL.min(grace_deadline - Instant::now())).await;
        }
    }
    signal_group(group, Signal::SIGKILL);
    match leader {
        Some(status) => Ok(status),
        None => child.wait().await,
    }
}

fn command_env(
    command: &Command,
    extra_env: &BTreeMap<String, String>,
    policy: &ExecPolicy,
) -> BTreeMap<String, OsString> {
    let mut env = BTreeMap::new();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(policy.env_allowlist.iter().map(String::as_str))
    {
        // Reading orch's own environment is the point here: exactly these names pass through.
        if let Some(value) = std::env::var_os(name) {
            env.insert(name.to_owned(), value);
        }
    }
    // The command's own variables win over orch's, which win over the inherited ones.
    for (name, value) in extra_env.iter().chain(&command.env) {
        env.insert(name.clone(), OsString::from(value));
    }
    env
}

fn spawn_error(program: &str, source: io::Error) -> ExecError {
    let source = if source.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{source}; check that `{program}` is installed and on the PATH commands get, or \
                 give its full path"
            ),
        )
    } else {
        source
    };
    ExecError::Spawn {
        program: program.to_owned(),
        source,
    }
}

async fn create_output(path: &Path) -> Result<tokio::fs::File, ExecError> {
    tokio::fs::File::create(path)
        .await
        .map_err(|source| ExecError::Io {
            context: format!("create {}", path.display()),
            source,
        })
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// `a/./b/../c` -> `a/c`, without looking at the filesystem (for the recorded cwd).
fn normalize_lexically(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// What one reader task learned about its stream.
struct StreamCapture {
    record: StreamRecord,
    redactions: BTreeMap<String, u64>,
}

fn joined_capture(
    joined: Result<Result<StreamCapture, ExecError>, tokio::task::JoinError>,
) -> Result<StreamCapture, ExecError> {
    match joined {
        Ok(capture) => capture,
        // A panic in the redactor is a bug; let it surface as one.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(ExecError::Io {
            context: "capture a command's output".into(),
            source: io::Error::other(error),
        }),
    }
}

/// An output file that keeps at most `cap` bytes and hashes what it stores.
struct CappedFile {
    writer: BufWriter<tokio::fs::File>,
    path: PathBuf,
    hasher: Sha256,
    kept: u64,
    cap: u64,
    /// Some output did not fit.
    truncated: bool,
}

impl CappedFile {
    /// Write what fits under the cap; the rest is dropped.
    async fn write_capped(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let room = self.cap.saturating_sub(self.kept);
        let fits = usize::try_from(room).map_or(bytes.len(), |room| room.min(bytes.len()));
        self.truncated |= fits < bytes.len();
        self.write_uncapped(&bytes[..fits]).await?;
        self.kept += fits as u64;
        Ok(())
    }

    async fn write_uncapped(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.hasher.update(bytes);
        self.writer
            .write_all(bytes)
            .await
            .map_err(|source| self.io_error("write", source))
    }

    fn io_error(&self, what: &str, source: io::Error) -> ExecError {
        ExecError::Io {
            context: format!("{what} {}", self.path.display()),
            source,
        }
    }
}

/// Read one output pipe to its end (or until `stop`), redact it, and store at most `cap` bytes.
///
/// Past the cap the pipe is still read, so the command never blocks on a full pipe, but the bytes
/// are only counted; memory stays at a few buffers whatever the command writes. The redactor only
/// sees what may still be stored: redacted bytes are what gets cut at the cap, so a secret split
/// by the cap is never stored in part.
async fn capture(
    mut pipe: impl AsyncRead + Unpin,
    file: tokio::fs::File,
    path: PathBuf,
    mut redactor: StreamRedactor,
    cap: u64,
    stop: CancellationToken,
) -> Result<StreamCapture, ExecError> {
    let mut stored = CappedFile {
        writer: BufWriter::with_capacity(WRITE_BUFFER, file),
        path,
        hasher: Sha256::new(),
        kept: 0,
        cap,
        truncated: false,
    };
    let mut seen: u64 = 0;
    let mut buffer = vec![0; READ_CHUNK];
    loop {
        let read = tokio::select! {
            read = pipe.read(&mut buffer) => read,
            () = stop.cancelled() => break,
        };
        let length = match read {
            Ok(0) => break,
            Ok(length) => length,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(stored.io_error("read the command's output for", source)),
        };
        seen += length as u64;
        if !stored.truncated {
            let redacted = redactor.push(&buffer[..length]);
            stored.write_capped(&redacted).await?;
        }
    }
    if !stored.truncated {
        let rest = redactor.finish();
        stored.write_capped(&rest).await?;
    }
    if stored.truncated {
        // Redaction changes lengths a little, so "dropped" compares what was stored with what
        // the command wrote.
        let note = format!(
            "\n[orch: output truncated after {} bytes; {} bytes dropped]\n",
            stored.kept,
            seen.saturating_sub(stored.kept)
        );
        stored.write_uncapped(note.as_bytes()).await?;
    }
    stored
        .writer
        .flush()
        .await
        .map_err(|source| stored.io_error("write", source))?;
    Ok(StreamCapture {
        redactions: redactor.counts().clone(),
        record: StreamRecord {
            path: stored.path,
            bytes_seen: seen,
            bytes_kept: stored.kept,
            truncated: stored.truncated,
            sha256: hex::encode(stored.hasher.finalize()),
        },
    })
}
