//! The artifact bundle of a run, at fixed paths (SPEC §6):
//!
//! ```text
//! runs/<task>/<attempt>/
//!   job.json state.json result.json context.json report.md patch.diff logs.txt manifest.json
//!   steps/<step>/
//!     result.json report.md patch.diff logs.txt stdout.log stderr.log events.jsonl
//! ```
//!
//! Every file exists from the start (empty until written). Nothing reaches disk before the
//! secret scanner has redacted it; JSON and text files are replaced atomically (write a
//! temporary file, then rename) so a crash never leaves half a file.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::exec::CommandRecord;
use crate::redact::Redactor;

/// Files every run directory has.
pub const RUN_FILES: [&str; 8] = [
    "job.json",
    "state.json",
    "result.json",
    "context.json",
    "report.md",
    "patch.diff",
    "logs.txt",
    "manifest.json",
];

/// Files every step directory has.
pub const STEP_FILES: [&str; 7] = [
    "result.json",
    "report.md",
    "patch.diff",
    "logs.txt",
    "stdout.log",
    "stderr.log",
    "events.jsonl",
];

/// How a run or a step ended, as `result.json` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// It did what it should.
    Succeeded,
    /// It failed.
    Failed,
    /// A human must look.
    NeedsReview,
    /// It was stopped (lease lost, shutdown, cancel).
    Cancelled,
    /// It did not run because an earlier step failed.
    Skipped,
}

/// Token usage and cost.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// `result.json`, for a whole run (`kind: run`) or one step (`kind: step`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "orch result")]
pub struct RunResult {
    /// `run` or `step`.
    pub kind: String,
    /// The task's number.
    pub task: i64,
    /// The attempt (run) number, from 1.
    pub attempt: u32,
    /// The step's name (for `kind: step`).
    pub step: Option<String>,
    /// How it ended.
    pub status: ResultStatus,
    /// One or two sentences on what happened.
    pub summary: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339.
    pub ended_at: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Exit code of the last command (exec steps).
    pub exit_code: Option<i32>,
    /// Files changed in the workspace, relative to it.
    pub changed_files: Vec<String>,
    /// The commit made after the steps, if any.
    pub commit: Option<String>,
    /// Agent usage (agent steps; summed for a run).
    pub usage: Option<Usage>,
    /// Agent session id (agent steps).
    pub session_id: Option<String>,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// The JSON Schema of `result.json`, pretty-printed (shipped as `schemas/result.schema.json`).
pub fn result_schema() -> String {
    todo!("bundle::result_schema")
}

/// Check a `result.json` value against the schema; the error says which field is wrong.
pub fn validate_result(value: &serde_json::Value) -> Result<(), String> {
    let _ = value;
    todo!("bundle::validate_result")
}

/// One invocation as `manifest.json` lists it: a command, or an agent session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ManifestEntry {
    /// An exec command.
    Command {
        /// The step it belongs to.
        step: String,
        /// The command's record (paths are relative to the run directory).
        #[serde(flatten)]
        record: CommandRecord,
    },
    /// An agent session.
    Agent {
        /// The step.
        step: String,
        /// The agent's name.
        agent: String,
        /// The argv it was started with (empty for in-process agents like `sim`).
        argv: Vec<String>,
        /// Working directory.
        cwd: PathBuf,
        /// Start, ms since the epoch.
        started_at_ms: i64,
        /// End, ms since the epoch.
        ended_at_ms: i64,
        /// Succeeded or not.
        success: bool,
        /// `steps/<step>/events.jsonl` and its size and sha256.
        events_path: PathBuf,
        /// Size of the events file.
        events_bytes: u64,
        /// SHA-256 of the events file, hex.
        events_sha256: String,
    },
}

/// A run's bundle directory, open for writing.
#[derive(Debug)]
pub struct Bundle {
    root: PathBuf,
    redactor: Redactor,
    entries: Vec<ManifestEntry>,
    redactions: std::collections::BTreeMap<String, u64>,
}

impl Bundle {
    /// Create (or reopen, for a run resumed after a crash) `runs_root/<task>/<attempt>/` with
    /// every run file present.
    pub fn create(runs_root: &Path, task: i64, attempt: u32, redactor: Redactor) -> std::io::Result<Bundle> {
        let _ = (runs_root, task, attempt, redactor);
        todo!("Bundle::create")
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The redactor this bundle writes through.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Create `steps/<step>/` with every step file present; returns its path.
    pub fn step_dir(&self, step: &str) -> std::io::Result<PathBuf> {
        let _ = step;
        todo!("Bundle::step_dir")
    }

    /// Write a JSON file (path relative to the run directory), redacted, atomically.
    pub fn write_json<T: Serialize>(&mut self, relative: &str, value: &T) -> std::io::Result<()> {
        let _ = (relative, value);
        todo!("Bundle::write_json")
    }

    /// Write a text or binary file, redacted, atomically.
    pub fn write_bytes(&mut self, relative: &str, bytes: &[u8]) -> std::io::Result<()> {
        let _ = (relative, bytes);
        todo!("Bundle::write_bytes")
    }

    /// Append to a file (logs, events), redacted.
    pub fn append(&mut self, relative: &str, bytes: &[u8]) -> std::io::Result<()> {
        let _ = (relative, bytes);
        todo!("Bundle::append")
    }

    /// Add an invocation to the manifest (written by [`Bundle::write_manifest`]).
    pub fn record(&mut self, entry: ManifestEntry) {
        self.entries.push(entry);
    }

    /// Count redactions made elsewhere (e.g. while capturing command output), by kind.
    pub fn note_redactions(&mut self, counts: &std::collections::BTreeMap<String, u64>) {
        for (kind, n) in counts {
            *self.redactions.entry(kind.clone()).or_default() += n;
        }
    }

    /// Write `manifest.json`: every invocation plus the redactions made, by kind.
    pub fn write_manifest(&mut self) -> std::io::Result<()> {
        todo!("Bundle::write_manifest")
    }
}
