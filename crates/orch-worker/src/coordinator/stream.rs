//! A remote worker's run bundle, mirrored to the daemon: while the run goes on, the files that
//! grow (orch's logs, command output, agent events) are sent by offset and the others (state,
//! context) whole, every [`STREAM_EVERY`]; at the end the whole bundle is uploaded as one tar file
//! checked by its sha256, before the completion.
//!
//! Why the local bundle is tailed rather than every write sent: the bundle is written by several
//! hands (the bundle writer, the command runner's streaming capture with its cap, the agent
//! event recorder), and the local files are the buffer while the daemon is away, so nothing is
//! lost and no step ever waits on the network. The daemon answers each file's length, which is
//! where the next append of it starts, so a repeated or lost request never doubles or drops
//! bytes.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CoordinatorError, Fenced, HttpCoordinator};
use crate::bundle::{checked_bundle_path, is_append_only, sha256_file};

/// How often new output is sent while a run goes on.
pub const STREAM_EVERY: Duration = Duration::from_millis(200);

/// The most file content one streaming request carries (before base64), so a request stays
/// well under the daemon's default body limit of 1 MiB.
const BATCH_BYTES: u64 = 256 * 1024;

/// The streaming of one run's bundle; [`BundleStream::finish`] uploads the whole bundle.
#[derive(Debug)]
pub struct BundleStream {
    inner: Option<Streaming>,
}

#[derive(Debug)]
struct Streaming {
    http: HttpCoordinator,
    fenced: Fenced,
    dir: PathBuf,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl BundleStream {
    /// Nothing to stream: an embedded worker writes its bundle where the daemon reads it.
    pub(super) fn local() -> BundleStream {
        BundleStream { inner: None }
    }

    /// Start mirroring `dir` (the run's bundle directory; it may not exist yet).
    pub(super) fn start(http: HttpCoordinator, fenced: Fenced, dir: PathBuf) -> BundleStream {
        let stop = CancellationToken::new();
        let task = tokio::spawn(stream_loop(
            http.clone(),
            fenced.clone(),
            dir.clone(),
            stop.clone(),
        ));
        BundleStream {
            inner: Some(Streaming {
                http,
                fenced,
                dir,
                stop,
                task,
            }),
        }
    }

    /// Stop streaming without uploading (the lease is lost: the daemon would refuse it).
    pub async fn abandon(self) {
        if let Some(streaming) = self.inner {
            streaming.stop.cancel();
            let _ = streaming.task.await;
        }
    }

    /// Stop streaming and upload the finished bundle, trying again while the daemon cannot be
    /// reached until `deadline`. The daemon accepts the same upload again, so a retry after a
    /// lost answer is safe.
    pub async fn finish(self, deadline: Instant) -> Result<(), CoordinatorError> {
        let Some(streaming) = self.inner else {
            return Ok(());
        };
        streaming.stop.cancel();
        let _ = streaming.task.await;
        let dir = streaming.dir.clone();
        let tar_path = dir.with_file_name(format!(
            ".upload-{}.tar",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("run")
        ));
        let packed = {
            let (dir, tar_path) = (dir.clone(), tar_path.clone());
            tokio::task::spawn_blocking(move || pack(&dir, &tar_path))
                .await
                .map_err(|e| CoordinatorError::Refused(format!("pack the bundle: {e}")))?
        };
        let sha256 = packed.map_err(|e| {
            CoordinatorError::Refused(format!("pack the bundle {}: {e}", dir.display()))
        })?;
        let mut wait = Duration::from_millis(100);
        let result = loop {
            match streaming
                .http
                .upload_bundle(
                    &streaming.fenced.worker,
                    streaming.fenced.run,
                    streaming.fenced.token,
                    &tar_path,
                    &sha256,
                )
                .await
            {
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tracing::warn!(run = %streaming.fenced.run, "could not upload the bundle: {e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                other => break other,
            }
        };
        if let Err(e) = tokio::fs::remove_file(&tar_path).await {
            tracing::warn!(path = %tar_path.display(), "could not remove the packed bundle: {e}");
        }
        result
    }
}

/// What was last sent of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sent {
    /// Append-only files: the daemon's length. Others: unused.
    offset: u64,
    /// Replaced files: the (length, mtime) last sent.
    stamp: Option<(u64, SystemTime)>,
}

/// One piece to send.
struct Piece {
    path: String,
    offset: u64,
    data: Vec<u8>,
    replace: bool,
    stamp: Option<(u64, SystemTime)>,
}

async fn stream_loop(http: HttpCoordinator, fenced: Fenced, dir: PathBuf, stop: CancellationToken) {
    let mut sent: HashMap<String, Sent> = HashMap::new();
    let mut wait = STREAM_EVERY;
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        } else if stop.is_cancelled() {
            return;
        }
        let gathered = {
            let (dir, known) = (dir.clone(), sent.clone());
            tokio::task::spawn_blocking(move || gather(&dir, &known)).await
        };
        let Ok((pieces, full)) = gathered else {
            return;
        };
        more = full;
        if pieces.is_empty() {
            continue;
        }
        let files = pieces
            .iter()
            .map(|p| orch_api::FilePiece {
                path: p.path.clone(),
                offset: p.offset,
                replace: p.replace,
                data: base64::engine::general_purpose::STANDARD.encode(&p.data),
            })
            .collect();
        match http
            .send_files(&fenced.worker, fenced.run, fenced.token, files)
            .await
        {
            Ok(lengths) => {
                wait = STREAM_EVERY;
                for piece in pieces {
                    let entry = sent.entry(piece.path.clone()).or_default();
                    if piece.replace {
                        entry.stamp = piece.stamp;
                    }
                    if let Some(length) = lengths.get(&piece.path) {
                        entry.offset = *length;
                    }
                }
            }
            Err(e) if e.is_retryable() => {
                // The local files keep everything; the next pass sends it.
                tracing::debug!(run = %fenced.run, "could not stream the bundle: {e}");
                more = false;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                // A lost lease stops the run elsewhere; a refusal (too large) will not change.
                tracing::warn!(run = %fenced.run, "stopped streaming the bundle: {e}");
                return;
            }
        }
    }
}

/// The pieces to send from `dir` given what was sent, up to [`BATCH_BYTES`]; `true` when more
/// is waiting.
fn gather(dir: &Path, sent: &HashMap<String, Sent>) -> (Vec<Piece>, bool) {
    let mut pieces = Vec::new();
    let mut budget = BATCH_BYTES;
    let mut full = false;
    let files = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file());
    for entry in files {
        let Some(relative) = relative_name(dir, entry.path()) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let len = meta.len();
        let known = sent.get(&relative).copied().unwrap_or_default();
        if budget == 0 {
            full = true;
            break;
        }
        if is_append_only(&relative) && len >= known.offset {
            if len == known.offset {
                continue;
            }
            let take = (len - known.offset).min(budget);
            let Ok(data) = read_range(entry.path(), known.offset, take) else {
                continue;
            };
            budget -= data.len() as u64;
            full |= known.offset + take < len;
            pieces.push(Piece {
                path: relative,
                offset: known.offset,
                data,
                replace: false,
                stamp: None,
            });
        } else {
            let stamp = meta.modified().ok().map(|modified| (len, modified));
            if stamp.is_some() && stamp == known.stamp {
                continue;
            }
            // A whole file goes in one piece; one larger than a batch waits for the upload.
            if len > budget {
                full |= len <= BATCH_BYTES;
                continue;
            }
            let Ok(data) = std::fs::read(entry.path()) else {
                continue;
            };
            budget -= data.len() as u64;
            pieces.push(Piece {
                path: relative,
                offset: 0,
                data,
                replace: true,
                stamp,
            });
        }
    }
    (pieces, full)
}

/// `path` relative to `dir` with `/` separators, if it is a bundle file (not a temporary one).
fn relative_name(dir: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(dir).ok()?.to_str()?.to_owned();
    checked_bundle_path(&relative).ok()?;
    Some(relative)
}

fn read_range(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Seek;
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(len).read_to_end(&mut data)?;
    Ok(data)
}

/// Write the bundle files under `dir` into a tar file at `tar_path`; returns its sha256.
fn pack(dir: &Path, tar_path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::create(tar_path)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    for entry in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
    {
        if let Some(relative) = relative_name(dir, entry.path()) {
            builder.append_path_with_name(entry.path(), &relative)?;
        }
    }
    builder.into_inner()?.into_inner()?.sync_all()?;
    sha256_file(tar_path)
}
