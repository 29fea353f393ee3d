//! Exec steps: pre-exec validation (policy) and the process runner.
//!
//! Validation is a fast first check, not the wall: just before each command runs it refuses
//! shell entrypoints (unless the project allows them) and obviously destructive tools whose path
//! arguments resolve outside the workspace, with a clear reason. What enforces the boundary is
//! the OS sandbox the command runs in (`ExecPolicy::sandbox`, see `orch_process::sandbox`): a
//! tool the validator does not know is still confined. The runner starts each command through
//! `orch_process::Spawn` (its own process group, a cleared environment plus an allowlist, the
//! registry), streams stdout and stderr through the secret redactor into capped files, and on
//! timeout or cancellation sends SIGTERM to the whole group, then SIGKILL after a grace period.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orch_core::Command;
use orch_process::{Io, Sandbox, Spawn};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
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
    /// How each command is confined (the step's policy, built by the run).
    pub sandbox: Sandbox,
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
            sandbox: Sandbox::Off,
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

pub use orch_process::{kill_orphaned_groups, kill_processes_of_runs};

/// Check every command of a step (tests and tools; a run checks each command just before it
/// runs, with [`validate_command`], so an earlier command's effects are seen).
///
/// Paths are resolved against the command's working directory without running anything: `.` and
/// `..` are applied, and symbolic links that exist are followed, so `link-to-root/etc` is seen as
/// `/etc`. Paths that do not exist yet are fine as long as they stay inside the workspace.
pub fn validate(
    commands: &[Command],
    workspace: &Path,
    policy: &ExecPolicy,
) -> Result<(), ValidationError> {
    for (index, command) in commands.iter().enumerate() {
        validate_command(index, command, workspace, policy)?;
    }
    Ok(())
}

/// Check one command (number `index` of its step) against the policy, just before it runs.
pub fn validate_command(
    index: usize,
    command: &Command,
    workspace: &Path,
    policy: &ExecPolicy,
) -> Result<(), ValidationError> {
    let root = workspace_root(workspace);
    check_command(command, &root, policy).map_err(|reason| ValidationError {
        index,
        argv: shell_words::join(&command.argv),
        reason,
    })
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

    let started_at_ms = now_ms();
    let mut running = Spawn::new(program)
        .args(&command.argv[1..])
        .cwd(&cwd)
        .envs(&env)
        .stdio(Io::Null, Io::Piped, Io::Piped)
        .registry(policy.process_registry.clone())
        .sandbox(policy.sandbox.clone())
        .start()
        .map_err(|error| spawn_error(program, error))?;
    // From here on, leaving early (an error, or the caller dropping this future) kills the
    // group: `running` does that when dropped.
    let child = &mut running.child;

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
    let (status, stopped) = wait_or_stop(&mut running, timeout, policy.kill_grace, &cancel).await;
    // The leader is reaped; whatever it left behind in its group (`sleep 1000 &`) goes now, also
    // so that nothing keeps the output pipes open.
    running.finish();
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
/// `HOME`, `TMPDIR` and the XDG directories are never orch's: the run gives each task its own.
const BASE_ENV: [&str; 5] = ["PATH", "LANG", "LC_ALL", "TERM", "USER"];

/// Bytes read from an output pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Buffer in front of each output file.
const WRITE_BUFFER: usize = 64 * 1024;

/// How long the output readers may still run once the whole group is gone. Pipes close when the
/// group dies, so only a process that left the group and kept a pipe makes this limit matter.
const READER_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Why a command was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    TimedOut,
    Cancelled,
}

/// Wait for the leader to exit; on timeout or cancellation, stop the whole group first.
async fn wait_or_stop(
    running: &mut orch_process::Running,
    timeout: Option<Duration>,
    grace: Duration,
    cancel: &CancellationToken,
) -> (io::Result<ExitStatus>, Option<Stop>) {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let stop = tokio::select! {
        // An exit that is ready counts even if the deadline passed at the same time.
        biased;
        status = running.child.wait() => return (status, None),
        () = cancel.cancelled() => Stop::Cancelled,
        () = sleep_until_deadline(deadline) => Stop::TimedOut,
    };
    (running.stop(grace).await, Some(stop))
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The `PATH` commands get (orch's own, passed through), to find where their programs live.
pub fn command_path(_policy: &ExecPolicy) -> Option<String> {
    std::env::var("PATH").ok()
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

fn spawn_error(program: &str, error: orch_process::SpawnError) -> ExecError {
    let source = match error {
        orch_process::SpawnError::Start { source, .. } => source,
        sandbox @ orch_process::SpawnError::Sandbox { .. } => io::Error::other(sandbox.to_string()),
    };
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
