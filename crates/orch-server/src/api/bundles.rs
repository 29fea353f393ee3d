//! `/v1/worker/runs/{run}/files` and `/v1/worker/runs/{run}/bundle`: a remote worker's run bundle
//! reaches the daemon's `<home>/runs/<task>/<attempt>/`, so every read path (logs, follow,
//! bundle files, `orch task get`) works for remote runs as for embedded ones.
//!
//! Both are fenced: the run must be active and the token its own, else 409 `lease_lost` and the
//! refusal is recorded (SPEC §7). Both are idempotent: an append names its offset and the answer
//! names each file's length, so a repeated append adds nothing; an upload replaces files whole.
//! Both are bounded by `ServeOptions::max_bundle_bytes` per run (413 `bundle_too_large`).
//!
//! A piece that arrives after its run's bundle was uploaded (a request that stalled past the
//! worker's timeout and was sent again) is not applied, so it cannot add to the final files:
//! the daemon remembers the runs it received bundles for in the last [`LATE_PIECES_FOR`]
//! (in memory: after a restart no request from before it can still be in flight).
//!
//! Secrets: whatever a remote worker sends is scanned with the daemon's redactor
//! ([`run_redactor`]: the daemon's admin and worker tokens, the known token formats, and the
//! project's `secret_env` values as the daemon's environment has them) before it is stored, so a
//! worker with a smaller secret list (or a step that wrote into its bundle directory) cannot
//! leave a secret in the daemon's home:
//! - streamed pieces are **masked** (`Redactor::mask`: every byte of a secret becomes `*`, so the
//!   file keeps the length the worker's offsets count on). A secret split across two pieces is
//!   caught because an append is scanned together with the file's stored tail (up to
//!   [`STREAM_CONTEXT`] bytes), and a tail byte that turns out to start a secret is masked in
//!   place; a private key keeps its BEGIN/END lines so a later piece still knows it is inside one.
//! - an uploaded bundle is checked against its sha256 and its `manifest.json` digests **as sent**
//!   (they prove the transfer), then every file is redacted (`[REDACTED:<kind>]`) with
//!   `orch_worker::bundle::scan_finished_bundle`, which **recomputes** the manifest's digests of
//!   the files it rewrote and adds its counts, so the stored manifest matches the stored files.
//! - a completion from a remote worker scans the stored run directory the same way, for a
//!   bundle whose upload never arrived.
//!
//! Crashes: files are replaced by rename and appends are checked against the file's length, so
//! a daemon killed at any point leaves whole files or a prefix of the stream, which the
//! worker's next request completes. An upload is staged beside the run directory
//! (`.upload-<run>-<n>`) and moved in file by file after its checks; leftovers of a killed
//! daemon are removed by the next upload of the same run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderName};
use axum::Json;
use base64::Engine;
use futures_util::StreamExt;
use orch_core::{Run, RunId};
use orch_store::Op;
use orch_worker::bundle::{
    checked_bundle_path, manifest_digests, scan_finished_bundle, sha256_file,
};
use orch_worker::redact::Redactor;
use sha2::Digest;

pub use orch_api::{BundleStored, FileLengths, FilePiece, FilesRequest};

use super::error::{ApiError, ErrorBody};
use super::fencing::{header, lease_error, RunCaller};
use super::json::ApiJson;
use super::ApiState;

/// Bytes of a file's stored tail scanned with each appended piece, so a secret split across
/// pieces is seen whole (a private key block longer than this may be missed while streaming; the
/// uploaded bundle is scanned whole).
pub const STREAM_CONTEXT: u64 = 64 * 1024;

/// The redactor for what a remote worker sends about `run`: the daemon's own tokens, the
/// literal secrets the store knows, the known formats, and the `secret_env` values of the run's
/// project as this daemon's environment has them (its config is read if it can be; a project
/// whose config does not load still gets the rest).
pub(crate) async fn run_redactor(state: &ApiState, run: &Run) -> Redactor {
    let mut values = vec![state.token.to_string(), state.worker_token.to_string()];
    values.extend(state.store.secret_values());
    let project_dir = match state.store.task(run.task).await {
        Ok(task) => state
            .store
            .projects()
            .await
            .ok()
            .and_then(|projects| projects.into_iter().find(|p| p.id == task.project))
            .map(|project| PathBuf::from(project.path)),
        Err(_) => None,
    };
    if let Some(dir) = project_dir {
        if let Ok(config) = orch_worker::project::ProjectConfig::load_merged(&state.home, &dir) {
            values.extend(config.secret_values().into_values());
        }
    }
    Redactor::new(&values)
}

/// Scan the stored bundle of a completed remote run (its upload may never have arrived, and
/// streamed pieces were only masked piece by piece). Failures are logged: the completion stands.
pub(crate) async fn scan_stored_run(state: &ApiState, run: RunId) {
    let Ok(stored) = state.store.run(run).await else {
        return;
    };
    let redactor = run_redactor(state, &stored).await;
    let dir = state
        .home
        .join("runs")
        .join(stored.task.0.to_string())
        .join(stored.attempt.to_string());
    let lock = state.bundle_lock.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        // Bundle writers are serialized by this lock (see `files`).
        let _writers = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if dir.is_dir() {
            scan_finished_bundle(&dir, &redactor).map(drop)
        } else {
            Ok(())
        }
    })
    .await;
    match scanned {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(run = %run, "could not scan the run's bundle: {e}"),
        Err(e) => tracing::error!(run = %run, "could not scan the run's bundle: {e}"),
    }
}

/// How long after an upload late pieces of its run are recognised: longer than any request of
/// a worker may take.
const LATE_PIECES_FOR: Duration = Duration::from_secs(120);

/// Runs whose bundles were uploaded recently, oldest first; guarded by `ApiState::bundle_lock`.
#[derive(Debug, Default)]
pub struct Uploaded {
    runs: VecDeque<(RunId, Instant)>,
}

impl Uploaded {
    fn forget_old(&mut self) {
        while self
            .runs
            .front()
            .is_some_and(|(_, at)| at.elapsed() > LATE_PIECES_FOR)
        {
            self.runs.pop_front();
        }
    }

    fn contains(&mut self, run: RunId) -> bool {
        self.forget_old();
        self.runs.iter().any(|(r, _)| *r == run)
    }

    fn insert(&mut self, run: RunId) {
        self.forget_old();
        self.runs.push_back((run, Instant::now()));
    }
}

/// The header with the uploaded tar's SHA-256.
const X_ORCH_BUNDLE_SHA256: HeaderName = HeaderName::from_static("x-orch-bundle-sha256");

/// The run's bundle directory on the daemon, if the caller holds the run's active lease.
async fn fenced_dir(
    state: &ApiState,
    run: RunId,
    caller: &RunCaller,
    what: &str,
) -> Result<(Run, PathBuf), ApiError> {
    let stored = state
        .store
        .check_lease(run, caller.token, what, Op::now(&caller.worker))
        .await
        .map_err(|e| lease_error(state, e))?;
    let dir = state
        .home
        .join("runs")
        .join(stored.task.0.to_string())
        .join(stored.attempt.to_string());
    Ok((stored, dir))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::BundleTooLarge(format!(
        "the run's bundle would be larger than the daemon's limit of {limit} bytes; raise it \
         with `orch serve --max-bundle-size`, or lower the project's output_cap_bytes"
    ))
}

/// Append to (or replace) files of a running run's bundle.
#[utoipa::path(post, path = "/v1/worker/runs/{run}/files", tag = "worker",
    request_body = FilesRequest, security(("bearer" = [])),
    params(("run" = i64, Path, description = "The run's id"), super::workers::RunCallerHeaders),
    responses(
        (status = 200, description = "Applied; each file's length now", body = FileLengths),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 403, description = "`not_lease_holder`: not the run's owner with its token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the run is no longer active", body = ErrorBody),
        (status = 413, description = "`bundle_too_large`: over the per-run limit", body = ErrorBody),
        (status = 422, description = "A bad path or data", body = ErrorBody),
    ))]
pub async fn files(
    State(state): State<ApiState>,
    UrlPath(run): UrlPath<i64>,
    caller: RunCaller,
    ApiJson(request): ApiJson<FilesRequest>,
) -> Result<Json<FileLengths>, ApiError> {
    let mut pieces = Vec::with_capacity(request.files.len());
    for (index, piece) in request.files.into_iter().enumerate() {
        let invalid = |message: String| ApiError::Invalid {
            field: Some(format!("files[{index}]")),
            message: format!("files[{index}]: {message}"),
        };
        let path = checked_bundle_path(&piece.path).map_err(invalid)?;
        if piece.replace && piece.offset != 0 {
            return Err(invalid("a replacing piece must have offset 0".to_owned()));
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(piece.data.as_bytes())
            .map_err(|e| invalid(format!("data is not base64: {e}")))?;
        pieces.push((piece.path, path, piece.offset, piece.replace, data));
    }
    let (stored, dir) = fenced_dir(&state, RunId(run), &caller, "files").await?;
    let redactor = run_redactor(&state, &stored).await;
    let limit = state.max_bundle_bytes;
    let lock = state.bundle_lock.clone();
    let lengths = tokio::task::spawn_blocking(move || {
        // Serializes writers of bundle files, so two copies of one append (a retry racing
        // the original) cannot both see the old length. A `std` mutex: it is held only in this
        // blocking task, never across an await.
        let mut uploaded = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let late = uploaded.contains(stored.id);
        let mut used = dir_size(&dir);
        let mut lengths = BTreeMap::new();
        for (name, relative, offset, replace, data) in pieces {
            let target = dir.join(&relative);
            let current = fs::metadata(&target).map_or(0, |m| m.len());
            if late {
                lengths.insert(name, current);
                continue;
            }
            let added = if replace {
                (data.len() as u64).saturating_sub(current)
            } else {
                (offset + data.len() as u64).saturating_sub(current)
            };
            if used + added > limit {
                return Err(too_large(limit));
            }
            let length = write_piece(&target, current, offset, replace, &data, &redactor)
                .map_err(|e| ApiError::internal(&format!("write {}: {e}", target.display())))?;
            used += added;
            lengths.insert(name, length);
        }
        Ok(lengths)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(FileLengths { files: lengths }))
}

/// Apply one piece, secrets masked; returns the file's length after it.
fn write_piece(
    target: &Path,
    current: u64,
    offset: u64,
    replace: bool,
    data: &[u8],
    redactor: &Redactor,
) -> std::io::Result<u64> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    if replace {
        replace_file(target, &redactor.mask(data).0)?;
        return Ok(data.len() as u64);
    }
    if offset > current {
        // A gap: something before it never arrived; the worker resends from `current`.
        return Ok(current);
    }
    let skip = usize::try_from(current - offset).unwrap_or(usize::MAX);
    if skip < data.len() {
        append_masked(target, current, &data[skip..], redactor)?;
        return Ok(offset + data.len() as u64);
    }
    Ok(current)
}

/// Append `new` to the file at `target` (now `current` bytes long), scanned together with the
/// stored tail: masking keeps lengths, so a tail byte that turns out to begin a secret is
/// overwritten in place and the file ends `new.len()` bytes longer.
fn append_masked(
    target: &Path,
    current: u64,
    new: &[u8],
    redactor: &Redactor,
) -> std::io::Result<()> {
    use std::io::{Read, SeekFrom};
    use std::os::unix::fs::FileExt;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(target)?;
    let tail_start = current.saturating_sub(STREAM_CONTEXT);
    let mut combined = Vec::with_capacity(new.len() + (current - tail_start) as usize);
    file.seek(SeekFrom::Start(tail_start))?;
    (&mut file)
        .take(current - tail_start)
        .read_to_end(&mut combined)?;
    let tail_len = combined.len();
    combined.extend_from_slice(new);
    let (masked, _) = redactor.mask(&combined);
    if masked[..tail_len] != combined[..tail_len] {
        file.write_all_at(&masked[..tail_len], tail_start)?;
    }
    file.write_all_at(&masked[tail_len..], tail_start + tail_len as u64)
}

/// Replace `target` with `data` by rename, so readers see the old file or the new one.
fn replace_file(target: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = target.with_file_name(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    // Flushed before the rename: a file is complete or absent, even across a power cut.
    let written = orch_worker::bundle::write_synced(&temporary, data)
        .and_then(|()| fs::rename(&temporary, target));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Upload a run's finished bundle: a tar file of the run directory's files. Checked against
/// `X-Orch-Bundle-Sha256` and, for every command output and agent event file, against the sha256
/// in the bundle's own `manifest.json`; then stored, replacing what streaming sent.
#[utoipa::path(put, path = "/v1/worker/runs/{run}/bundle", tag = "worker",
    request_body(content = Vec<u8>, content_type = "application/x-tar",
        description = "A tar file of the run directory's files, paths relative to it"),
    security(("bearer" = [])),
    params(
        ("run" = i64, Path, description = "The run's id"),
        ("x-orch-fencing-token" = String, Header, description = "The run's fencing token"),
        ("x-orch-worker" = String, Header, description = "The worker's name"),
        ("x-orch-bundle-sha256" = String, Header, description = "The body's sha256, hex"),
    ),
    responses(
        (status = 200, description = "Stored (again, for a repeated upload)", body = BundleStored),
        (status = 401, description = "No token or a wrong one", body = ErrorBody),
        (status = 403, description = "`not_lease_holder`: not the run's owner with its token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the run is no longer active", body = ErrorBody),
        (status = 413, description = "`bundle_too_large`: over the per-run limit", body = ErrorBody),
        (status = 422, description = "`bundle_invalid`: a digest does not match, or not a tar of files", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): State<ApiState>,
    UrlPath(run): UrlPath<i64>,
    caller: RunCaller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BundleStored>, ApiError> {
    let expected = header(&headers, &X_ORCH_BUNDLE_SHA256)?
        .trim()
        .to_ascii_lowercase();
    let (stored, dir) = fenced_dir(&state, RunId(run), &caller, "bundle upload").await?;
    let limit = state.max_bundle_bytes;
    let task_dir = dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.clone());
    fs::create_dir_all(&task_dir).map_err(|e| ApiError::internal(&e))?;
    remove_leftovers(&task_dir, stored.id);
    let staging = task_dir.join(format!(
        ".upload-{}-{:016x}",
        stored.id.0,
        rand::random::<u64>()
    ));
    let redactor = run_redactor(&state, &stored).await;
    let result = receive(
        body,
        Staged {
            staging: &staging,
            limit,
            expected: &expected,
            dir: &dir,
            run: stored.id,
            redactor,
        },
        state.bundle_lock.clone(),
    )
    .await;
    let _ = fs::remove_dir_all(&staging);
    let _ = fs::remove_file(staging.with_extension("tar"));
    result.map(Json)
}

/// Leftovers of uploads of `run` that a killed daemon did not clean up.
fn remove_leftovers(task_dir: &Path, run: RunId) {
    let prefix = format!(".upload-{}-", run.0);
    for entry in fs::read_dir(task_dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// Where and how an upload is received.
struct Staged<'a> {
    staging: &'a Path,
    limit: u64,
    expected: &'a str,
    dir: &'a Path,
    run: RunId,
    redactor: Redactor,
}

async fn receive(
    body: Body,
    staged: Staged<'_>,
    lock: std::sync::Arc<std::sync::Mutex<Uploaded>>,
) -> Result<BundleStored, ApiError> {
    let Staged {
        staging,
        limit,
        expected,
        dir,
        run,
        redactor,
    } = staged;
    let tar_path = staging.with_extension("tar");
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tar_path)
        .map_err(|e| ApiError::internal(&e))?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::Malformed {
            message: format!("the body could not be read: {e}"),
        })?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|e| ApiError::internal(&e))?;
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        return Err(ApiError::BundleInvalid(format!(
            "the body's sha256 is {actual}, not the {expected} sent in x-orch-bundle-sha256 (a \
             truncated or altered upload); send it again"
        )));
    }
    file.rewind().map_err(|e| ApiError::internal(&e))?;
    let (staging, dir) = (staging.to_owned(), dir.to_owned());
    tokio::task::spawn_blocking(move || {
        let files = unpack(file, &staging)?;
        // The digests prove the transfer, so they are checked on the bytes as sent; the scan
        // then rewrites files holding secrets and recomputes their digests in the manifest.
        check_manifest(&staging)?;
        scan_finished_bundle(&staging, &redactor)
            .map_err(|e| ApiError::internal(&format!("scan the uploaded bundle: {e}")))?;
        let mut uploaded = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut bytes = 0;
        for relative in &files {
            let (from, to) = (staging.join(relative), dir.join(relative));
            let moved = to
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| {
                    bytes += fs::metadata(&from)?.len();
                    fs::rename(&from, &to)
                });
            moved.map_err(|e| ApiError::internal(&format!("store {}: {e}", to.display())))?;
        }
        uploaded.insert(run);
        Ok(BundleStored {
            files: files.len() as u64,
            bytes,
        })
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
}

/// Unpack the tar into `staging`: regular files at checked paths only. Returns their paths.
pub(super) fn unpack(file: impl std::io::Read, staging: &Path) -> Result<Vec<PathBuf>, ApiError> {
    let invalid = |message: String| ApiError::BundleInvalid(message);
    let mut archive = tar::Archive::new(file);
    let mut files = Vec::new();
    let (mut unpacked, mut directories) = (BTreeSet::new(), BTreeSet::new());
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("the body is not a tar file: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("the body is not a tar file: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| invalid(format!("a member's name: {e}")))?
            .to_string_lossy()
            .into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular => {}
            tar::EntryType::Directory => continue,
            other => {
                return Err(invalid(format!(
                    "`{name}` is a {other:?}; a bundle holds regular files only"
                )))
            }
        }
        let relative = checked_bundle_path(&name).map_err(invalid)?;
        // Two members at one path, or a path that is a file in one member and a directory in
        // another, would fail later as an internal error; they are the sender's mistake.
        let clash = !unpacked.insert(relative.clone())
            || directories.contains(&relative)
            || relative
                .ancestors()
                .skip(1)
                .any(|dir| unpacked.contains(dir));
        if clash {
            return Err(invalid(format!(
                "`{name}` is in the bundle twice, or as a file and a directory"
            )));
        }
        directories.extend(relative.ancestors().skip(1).map(Path::to_path_buf));
        if name.ends_with('/') {
            return Err(invalid(format!(
                "`{name}` is a regular file named like a directory"
            )));
        }
        let target = staging.join(&relative);
        let internal = |e: std::io::Error| ApiError::internal(&format!("unpack {name}: {e}"));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(internal)?;
        }
        let mut out = fs::File::create(&target).map_err(internal)?;
        // A member that cannot be read to its end (a truncated tar) is the sender's mistake; a
        // file that cannot be written here is ours.
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match std::io::Read::read(&mut entry, &mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(invalid(format!("`{name}` cannot be read: {e}"))),
            };
            std::io::Write::write_all(&mut out, &buffer[..read]).map_err(internal)?;
        }
        // A result or manifest is flushed before `receive` renames it into the run directory:
        // complete or absent even across a power cut (the rename alone covers a crash).
        if orch_worker::bundle::COMPLETE_FILES
            .iter()
            .any(|complete| relative.file_name().is_some_and(|n| n == *complete))
        {
            out.sync_all().map_err(internal)?;
        }
        files.push(relative);
    }
    Ok(files)
}

/// Every file `manifest.json` gives a sha256 for must have it.
fn check_manifest(staging: &Path) -> Result<(), ApiError> {
    let Ok(bytes) = fs::read(staging.join("manifest.json")) else {
        return Ok(());
    };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        // An empty manifest (a run that ended before any step) has nothing to check.
        return Ok(());
    };
    for (path, expected) in manifest_digests(&manifest) {
        let Ok(relative) = checked_bundle_path(&path) else {
            continue;
        };
        let actual = sha256_file(&staging.join(&relative)).map_err(|e| {
            ApiError::BundleInvalid(format!("manifest.json names {path}, which is missing: {e}"))
        })?;
        if actual != expected {
            return Err(ApiError::BundleInvalid(format!(
                "{path} has sha256 {actual}, but manifest.json says {expected}"
            )));
        }
    }
    Ok(())
}
