//! Exec steps: pre-exec validation and the process runner.
//!
//! Validation refuses, before anything runs, shell entrypoints (unless the project allows them)
//! and destructive tools whose path arguments resolve outside the workspace. The runner starts
//! each command in its own process group with a cleared environment plus an allowlist, streams
//! stdout and stderr through the secret redactor into capped files, and on timeout or
//! cancellation sends SIGTERM to the whole group, then SIGKILL after a grace period.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::Command;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::redact::Redactor;

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
}

impl Default for ExecPolicy {
    fn default() -> Self {
        ExecPolicy {
            allow_shell: false,
            env_allowlist: Vec::new(),
            output_cap_bytes: 16 * 1024 * 1024,
            kill_grace: Duration::from_secs(5),
            default_timeout: None,
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
pub fn validate(commands: &[Command], workspace: &Path, policy: &ExecPolicy) -> Result<(), ValidationError> {
    let _ = (commands, workspace, policy);
    todo!("exec::validate")
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
    let _ = (command, workspace, out, extra_env, redactor, policy, cancel);
    todo!("exec::run_command")
}
