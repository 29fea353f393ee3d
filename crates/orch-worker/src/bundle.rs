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

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::exec::CommandRecord;
use crate::redact::Redactor;

/// Every log file of a run, in a stable order: orch's log, then each step's command output.
pub fn run_log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join("logs.txt")];
    let mut steps: Vec<PathBuf> = fs::read_dir(dir.join("steps"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    steps.sort_by_key(|p| fs::metadata(p).and_then(|m| m.created()).ok());
    for step in steps {
        let mut outputs: Vec<PathBuf> = fs::read_dir(&step)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("cmd-") && n.ends_with(".log"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        outputs.sort();
        files.extend(outputs);
    }
    files
}

/// Files that are complete or absent: never created empty in advance, always written to a
/// temporary name, flushed to disk and renamed into place, so a run lost at any instant leaves
/// either the whole file or none (never a 0-byte or half-written `result.json`).
pub const COMPLETE_FILES: [&str; 2] = ["result.json", "manifest.json"];

fn is_complete_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| COMPLETE_FILES.iter().any(|c| name == *c))
}

/// Files every run directory has once the run has ended ([`COMPLETE_FILES`] only then; the
/// others from its start).
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

/// Files every step directory has once the step has ended ([`COMPLETE_FILES`] only then).
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
    /// For a failed agent: `not_installed`, `auth_refused`, `rate_limited`, `model_error`,
    /// `stalled`, `timeout`, `crashed`, `failed` or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<String>,
    /// The reviewer's verdict (runs of projects with `[review]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<crate::review::ReviewResult>,
}

/// The JSON Schema of `result.json`, pretty-printed (shipped as `schemas/result.schema.json`).
pub fn result_schema() -> String {
    let schema = schemars::schema_for!(RunResult);
    // Serializing the `Schema` itself (not its `Value`) keeps `$schema`, `title` and `type` first.
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}

/// Check a `result.json` value against the schema; the error says which field is wrong.
///
/// Every violation is reported, one per line, as `at <JSON pointer>: <reason>` (`/` is the
/// document itself, which is where an unknown field is reported, by name).
pub fn validate_result(value: &serde_json::Value) -> Result<(), String> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(&result_schema()).expect("the generated schema is JSON");
        jsonschema::validator_for(&schema).expect("the generated schema is a valid JSON Schema")
    });
    let mut problems = Vec::new();
    for error in validator.iter_errors(value) {
        describe_schema_error(&error, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "result.json does not match its schema:\n{}",
            problems.join("\n")
        ))
    }
}

/// Describe one schema violation as `at <path>: <reason>` lines.
///
/// An optional struct field is `anyOf: [<struct>, null]` in the schema, and the validator's own
/// message for it ("... is not valid under any of the schemas listed in the 'anyOf' keyword")
/// hides which inner field is wrong; so the errors of the branch that got deepest into the value
/// are reported instead, when one got deeper than the `anyOf` itself.
fn describe_schema_error(error: &jsonschema::ValidationError<'_>, problems: &mut Vec<String>) {
    use jsonschema::error::ValidationErrorKind;
    let path = error.instance_path.as_str();
    if let ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } =
        &error.kind
    {
        let depth = |errors: &Vec<jsonschema::ValidationError<'static>>| {
            errors
                .iter()
                .map(|inner| inner.instance_path.as_str().len())
                .max()
                .unwrap_or(0)
        };
        if let Some(deepest) = context.iter().max_by_key(|errors| depth(errors)) {
            if depth(deepest) > path.len() {
                for inner in deepest {
                    describe_schema_error(inner, problems);
                }
                return;
            }
        }
    }
    let path = if path.is_empty() { "/" } else { path };
    problems.push(format!("at {path}: {error}"));
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
    /// Entries of the manifest a crashed earlier attempt at this run wrote, kept verbatim.
    previous_entries: Vec<serde_json::Value>,
    redactions: BTreeMap<String, u64>,
    /// Files the end-of-run scan rewrote (relative): their digests are recomputed.
    rewritten: Vec<String>,
}

impl Bundle {
    /// Create (or reopen, for a run resumed after a crash) `runs_root/<task>/<attempt>/` with
    /// every run file present.
    ///
    /// Reopening keeps every file's content, and the entries and redaction counts of an existing
    /// `manifest.json` are carried over so the next [`Bundle::write_manifest`] does not forget
    /// what ran before the crash.
    pub fn create(
        runs_root: &Path,
        task: i64,
        attempt: u32,
        redactor: Redactor,
    ) -> std::io::Result<Bundle> {
        let root = runs_root.join(task.to_string()).join(attempt.to_string());
        let (previous_entries, redactions) = crate::off_async(|| {
            fs::create_dir_all(&root)?;
            for name in RUN_FILES
                .iter()
                .filter(|name| !COMPLETE_FILES.contains(name))
            {
                create_if_missing(&root.join(name))?;
            }
            std::io::Result::Ok(read_previous_manifest(&root.join("manifest.json")))
        })?;
        Ok(Bundle {
            root,
            redactor,
            entries: Vec::new(),
            previous_entries,
            redactions,
            rewritten: Vec::new(),
        })
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The redactor this bundle writes through.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Redactions made so far through this bundle or noted with [`Bundle::note_redactions`].
    pub fn redactions(&self) -> &BTreeMap<String, u64> {
        &self.redactions
    }

    /// Create `steps/<step>/` with every step file present; returns its path.
    ///
    /// The step name becomes a directory name, so it may hold only ASCII letters, digits, `.`,
    /// `_` and `-`, and may not start with `.`; anything else is refused with `InvalidInput`.
    pub fn step_dir(&self, step: &str) -> std::io::Result<PathBuf> {
        validate_step_name(step)?;
        let dir = self.root.join("steps").join(step);
        crate::off_async(|| {
            fs::create_dir_all(&dir)?;
            for name in STEP_FILES
                .iter()
                .filter(|name| !COMPLETE_FILES.contains(name))
            {
                create_if_missing(&dir.join(name))?;
            }
            std::io::Result::Ok(())
        })?;
        Ok(dir)
    }

    /// Write a JSON file (path relative to the run directory), redacted, atomically.
    ///
    /// Strings are redacted one by one before serializing, so a secret is caught even where JSON
    /// escaping would hide it (a password holding `"` or `\`); the serialized text is then
    /// redacted as a whole too, which catches secrets split between a key and its value
    /// (`"authorization": "Bearer ..."`). Every replacement stays inside a JSON string, so the
    /// file stays valid JSON.
    pub fn write_json<T: Serialize>(&mut self, relative: &str, value: &T) -> std::io::Result<()> {
        let mut value = serde_json::to_value(value).map_err(std::io::Error::other)?;
        self.redact_strings(&mut value);
        let mut text = serde_json::to_vec_pretty(&value).map_err(std::io::Error::other)?;
        text.push(b'\n');
        self.write_bytes(relative, &text)
    }

    /// Write a text or binary file, redacted, atomically.
    pub fn write_bytes(&mut self, relative: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.resolve(relative)?;
        let (redacted, counts) = self.redactor.redact(bytes);
        self.note_redactions(&counts);
        crate::off_async(|| write_atomically(&path, &redacted))
    }

    /// Append to a file (logs, events), redacted.
    ///
    /// Each call is redacted on its own: a secret split between two calls is not seen whole.
    /// Output that arrives in pieces belongs in a [`crate::redact::StreamRedactor`] first.
    pub fn append(&mut self, relative: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.resolve(relative)?;
        let (redacted, counts) = self.redactor.redact(bytes);
        self.note_redactions(&counts);
        crate::off_async(|| {
            let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
            file.write_all(&redacted)
        })
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

    /// The end-of-run scan: every file of the run directory through [`scan_tree`] (what steps
    /// and agents wrote there included), counted with the bundle's redactions; the next
    /// [`Bundle::write_manifest`] recomputes the digests of the files it rewrote.
    pub fn scan_all(&mut self) -> std::io::Result<()> {
        let scan = crate::off_async(|| scan_tree(&self.root, &self.redactor))?;
        self.note_redactions(&scan.counts);
        self.rewritten.extend(scan.changed);
        Ok(())
    }

    /// Write `manifest.json`: every invocation plus the redactions made, by kind.
    ///
    /// Paths inside the run directory are written relative to it, so the bundle can be moved or
    /// uploaded as a whole; paths outside it (a workspace `cwd`) stay absolute.
    pub fn write_manifest(&mut self) -> std::io::Result<()> {
        let entries: Vec<ManifestEntry> = self
            .entries
            .iter()
            .map(|entry| self.relative_entry(entry))
            .collect();
        let mut entries_json = self.previous_entries.clone();
        for entry in &entries {
            entries_json.push(serde_json::to_value(entry).map_err(std::io::Error::other)?);
        }
        let mut entries_json = serde_json::Value::Array(entries_json);
        crate::off_async(|| refresh_digests(&mut entries_json, &self.root, &self.rewritten));
        // Redact the entries (argv may carry a token) before the counts are written, so the
        // manifest's counts include what was found in the manifest itself.
        self.redact_strings(&mut entries_json);
        let manifest = serde_json::json!({
            "entries": entries_json,
            "redactions": self.redactions,
            "written_at": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        });
        self.write_json("manifest.json", &manifest)
    }

    /// Redact every string (and object key) of a JSON value in place, counting what was found.
    fn redact_strings(&mut self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => {
                let (redacted, counts) = self.redactor.redact(text.as_bytes());
                if !counts.is_empty() {
                    self.note_redactions(&counts);
                    // Matches begin and end at ASCII bytes or whole literal values (UTF-8
                    // strings), so the result is still UTF-8 and nothing is lost here.
                    *text = String::from_utf8_lossy(&redacted).into_owned();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.redact_strings(item)),
            Value::Object(object) => {
                let entries = std::mem::take(object);
                for (key, mut item) in entries {
                    let mut key = Value::String(key);
                    self.redact_strings(&mut key);
                    self.redact_strings(&mut item);
                    if let Value::String(key) = key {
                        object.insert(key, item);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// `relative` inside the run directory; refuses absolute paths and `..`, which would write
    /// outside the bundle.
    fn resolve(&self, relative: &str) -> std::io::Result<PathBuf> {
        let path = Path::new(relative);
        let inside = !relative.is_empty()
            && path
                .components()
                .all(|component| matches!(component, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "bundle path `{relative}` must be relative to the run directory, without `..`"
                ),
            ));
        }
        Ok(self.root.join(path))
    }

    /// `entry` with its paths made relative to the run directory where they are inside it.
    fn relative_entry(&self, entry: &ManifestEntry) -> ManifestEntry {
        let mut entry = entry.clone();
        match &mut entry {
            ManifestEntry::Command { record, .. } => {
                record.cwd = self.relative_path(&record.cwd);
                record.stdout.path = self.relative_path(&record.stdout.path);
                record.stderr.path = self.relative_path(&record.stderr.path);
            }
            ManifestEntry::Agent {
                cwd, events_path, ..
            } => {
                *cwd = self.relative_path(cwd);
                *events_path = self.relative_path(events_path);
            }
        }
        entry
    }

    fn relative_path(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.root) {
            Ok(inside) if inside.as_os_str().is_empty() => PathBuf::from("."),
            Ok(inside) => inside.to_path_buf(),
            Err(_) => path.to_path_buf(),
        }
    }
}

/// Create an empty file unless it exists; never truncates (a resumed run keeps its files).
fn create_if_missing(path: &Path) -> std::io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
}

/// Step names become directory names: a small alphabet, and no hidden or `..` directories.
fn validate_step_name(step: &str) -> std::io::Result<()> {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
    if step.is_empty() || step.starts_with('.') || !step.bytes().all(allowed) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!(
                "step name `{step}` is not allowed: use only letters, digits, `.`, `_` and `-`, \
                 not starting with `.`"
            ),
        ));
    }
    Ok(())
}

/// Entries and redaction counts of the `manifest.json` a crashed attempt left, if readable.
///
/// An empty or half-written manifest (it is written atomically, so only a foreign edit could
/// cause the latter) counts as no manifest: losing old entries beats refusing to resume.
fn read_previous_manifest(path: &Path) -> (Vec<serde_json::Value>, BTreeMap<String, u64>) {
    #[derive(Deserialize)]
    struct PreviousManifest {
        #[serde(default)]
        entries: Vec<serde_json::Value>,
        #[serde(default)]
        redactions: BTreeMap<String, u64>,
    }
    fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<PreviousManifest>(&bytes).ok())
        .map(|previous| (previous.entries, previous.redactions))
        .unwrap_or_default()
}

/// Replace `path` with `bytes` so that a crash of any process leaves either the old or the new
/// file, whole: write a temporary file in the same directory (rename is atomic only within a
/// file system), then rename it over the target.
///
/// No fsync except for [`COMPLETE_FILES`]: like the database (`synchronous = NORMAL`), bundles
/// are safe against a crash of orch (the data is in the kernel's page cache) but not promised
/// against a power cut. An fsync per file made a no-op task cost tens of milliseconds (see
/// docs/benchmarks.md); the two results per run and step are worth it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // The first write of a file replaces its empty placeholder: written in place, since there
    // is no old content to protect, and a new inode per file is what bundles cost most (ext4
    // inode allocation dominated a no-op run's profile). A reader may briefly see a prefix of a
    // file's first content, never a mix of two versions.
    let complete = is_complete_file(path);
    if !complete && fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        let mut file = OpenOptions::new().write(true).open(path)?;
        return file.write_all(bytes);
    }
    let temporary = temporary_beside(path);
    let written = (|| {
        if complete {
            // Flushed before the rename: a result is never published half-written.
            write_synced(&temporary, bytes)?;
        } else {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)?;
            file.write_all(bytes)?;
        }
        fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        // Best effort: the write already failed, and that is the error worth reporting.
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(())
}

/// Create `path` (which must not exist) with `bytes` and flush it to disk before returning, so
/// that a rename or link of it afterwards publishes a complete file even across a power cut.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A fresh hidden name beside `path` for a file that will be renamed over it.
fn temporary_beside(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()))
}

/// `relative` as a path inside a run directory, checked: relative, no `..`, no hidden
/// components (temporary files of atomic writes start with `.`), at most 16 components. Used
/// for paths that cross the network (a remote worker's streamed files and uploaded bundle).
pub fn checked_bundle_path(relative: &str) -> Result<PathBuf, String> {
    let path = Path::new(relative);
    let mut depth = 0;
    for component in path.components() {
        match component {
            Component::Normal(name)
                if !name.to_string_lossy().starts_with('.') && !name.is_empty() =>
            {
                depth += 1
            }
            _ => {
                return Err(format!(
                    "`{relative}` is not a file path inside a run directory (relative, without \
                     `..` or hidden names)"
                ))
            }
        }
    }
    if depth == 0 || depth > 16 {
        return Err(format!(
            "`{relative}` is not a file path inside a run directory"
        ));
    }
    Ok(path.to_path_buf())
}

/// Files that only grow while a run goes on (orch's logs, command output, agent events), so a
/// remote worker streams them by offset; every other bundle file is replaced whole.
pub fn is_append_only(relative: &str) -> bool {
    relative.ends_with(".log") || relative.ends_with(".jsonl") || relative.ends_with("logs.txt")
}

/// The `(path, sha256)` pairs a `manifest.json` promises: each command's stdout and stderr and
/// each agent session's events, paths relative to the run directory.
pub fn manifest_digests(manifest: &serde_json::Value) -> Vec<(String, String)> {
    let mut digests = Vec::new();
    let entries = manifest["entries"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for entry in entries {
        for stream in ["stdout", "stderr"] {
            if let (Some(path), Some(sha)) = (
                entry[stream]["path"].as_str(),
                entry[stream]["sha256"].as_str(),
            ) {
                digests.push((path.to_owned(), sha.to_owned()));
            }
        }
        if let (Some(path), Some(sha)) = (
            entry["events_path"].as_str(),
            entry["events_sha256"].as_str(),
        ) {
            digests.push((path.to_owned(), sha.to_owned()));
        }
    }
    digests
}

/// What [`scan_tree`] found and changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeScan {
    /// Redactions made, by kind.
    pub counts: BTreeMap<String, u64>,
    /// Files rewritten, relative to the scanned directory, `/`-separated.
    pub changed: Vec<String>,
}

/// Scan every regular file under `dir` (hidden ones and whatever a step or agent wrote there
/// included; symbolic links are not followed) and redact in place, by atomic rewrite, anything
/// the stream redactor would have caught. Files without secrets are only read.
///
/// This is the last word on a bundle: the writers redact as they go, but a step can write into
/// the bundle directory itself, and a secret value can be learned after a file was written.
pub fn scan_tree(dir: &Path, redactor: &Redactor) -> std::io::Result<TreeScan> {
    let mut scan = TreeScan::default();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        if !entry.file_type().is_file() {
            continue;
        }
        let counts = scan_file(entry.path(), redactor)?;
        if counts.is_empty() {
            continue;
        }
        for (kind, n) in counts {
            *scan.counts.entry(kind).or_default() += n;
        }
        if let Ok(relative) = entry.path().strip_prefix(dir) {
            scan.changed
                .push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(scan)
}

/// Redact one file in place if it holds a secret; returns what was found. Read in chunks through
/// a stream redactor (bounded memory); written only when something was found.
fn scan_file(path: &Path, redactor: &Redactor) -> std::io::Result<BTreeMap<String, u64>> {
    use std::io::Read;
    let pass = |mut sink: Option<&mut fs::File>| -> std::io::Result<BTreeMap<String, u64>> {
        let mut file = fs::File::open(path)?;
        let mut stream = redactor.stream();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let read = file.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            let out = stream.push(&chunk[..read]);
            if let Some(sink) = sink.as_deref_mut() {
                sink.write_all(&out)?;
            }
        }
        let out = stream.finish();
        if let Some(sink) = sink {
            sink.write_all(&out)?;
        }
        Ok(stream.counts().clone())
    };
    let counts = pass(None)?;
    if counts.is_empty() {
        return Ok(counts);
    }
    let temporary = temporary_beside(path);
    let written = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        pass(Some(&mut out))?;
        fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(counts)
}

/// After [`scan_tree`] rewrote files, the sha256 (and size) a manifest promises for them are
/// those of the redacted files: recompute them for every entry whose file `changed`.
pub fn refresh_digests(manifest_entries: &mut serde_json::Value, dir: &Path, changed: &[String]) {
    let Some(entries) = manifest_entries.as_array_mut() else {
        return;
    };
    let current = |path: &str| -> Option<(String, u64)> {
        if !changed.iter().any(|c| c == path) {
            return None;
        }
        let file = dir.join(checked_bundle_path(path).ok()?);
        Some((sha256_file(&file).ok()?, fs::metadata(&file).ok()?.len()))
    };
    for entry in entries {
        for stream in ["stdout", "stderr"] {
            let path = entry[stream]["path"].as_str().map(str::to_owned);
            if let Some((sha, len)) = path.as_deref().and_then(current) {
                entry[stream]["sha256"] = sha.into();
                entry[stream]["bytes_kept"] = len.into();
            }
        }
        let path = entry["events_path"].as_str().map(str::to_owned);
        if let Some((sha, len)) = path.as_deref().and_then(current) {
            entry["events_sha256"] = sha.into();
            entry["events_bytes"] = len.into();
        }
    }
}

/// Scan a finished bundle directory (the daemon's copy of an uploaded bundle) with
/// [`scan_tree`], then make its `manifest.json` agree: digests of rewritten files recomputed,
/// the redactions added to its counts. Returns the scan.
pub fn scan_finished_bundle(dir: &Path, redactor: &Redactor) -> std::io::Result<TreeScan> {
    let scan = scan_tree(dir, redactor)?;
    if scan.changed.is_empty() {
        return Ok(scan);
    }
    let path = dir.join("manifest.json");
    let Ok(mut manifest) = fs::read(&path)
        .map_err(|_| ())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|_| ()))
    else {
        // No manifest (a run that ended before any step): nothing promises a digest.
        return Ok(scan);
    };
    refresh_digests(&mut manifest["entries"], dir, &scan.changed);
    if !manifest["redactions"].is_object() {
        manifest["redactions"] = serde_json::json!({});
    }
    for (kind, n) in &scan.counts {
        let before = manifest["redactions"][kind].as_u64().unwrap_or(0);
        manifest["redactions"][kind] = (before + n).into();
    }
    let mut text = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    text.push(b'\n');
    write_atomically(&path, &text)?;
    Ok(scan)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}
