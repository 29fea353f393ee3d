//! `GET /v1/runs/{task}/{attempt}/logs`: a run's `logs.txt` and its commands' output, as text,
//! as JSON lines matching a search (`format=json&q=&limit=&offset=`), or followed live over SSE
//! (`follow=1`) as the files grow.
//!
//! The files were redacted when the worker wrote them, so they are served as they are.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
pub use orch_api::{LogChunk, LogLine, LogSearch};
use orch_core::TaskId;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::ApiState;

/// How often a followed run's files are checked for new output.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);
/// The most bytes sent per file and check while following, so a burst of output is sent in
/// pieces rather than read into memory at once.
const CHUNK: u64 = 256 * 1024;
/// The default and the largest `limit` of a search.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

/// How to return the logs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// `1` or `true`: stream the files as they grow (SSE) until the run has ended.
    pub follow: Option<String>,
    /// `text` (default) or `json` (matching lines, with `q`, `limit`, `offset`).
    pub format: Option<String>,
    /// Only lines containing this text (case-insensitive); `json` only.
    pub q: Option<String>,
    /// At most this many lines (default 1000, at most 10000); `json` only.
    pub limit: Option<usize>,
    /// Skip this many matching lines first; `json` only.
    pub offset: Option<usize>,
}

/// A run's logs: text, JSON lines matching `q`, or followed live.
#[utoipa::path(get, path = "/v1/runs/{task}/{attempt}/logs", tag = "runs",
    params(("task" = i64, Path, description = "The task"),
        ("attempt" = u32, Path, description = "The attempt, from 1"), LogsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/plain`, a `LogSearch` with `format=json`, or a \
            `text/event-stream` of `log` events (`{file, text}`) and one `end` event with `follow=1`"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(state): State<ApiState>,
    path: Result<Path<(i64, u32)>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((task, attempt)) = path?;
    let Query(query) = query?;
    state.store.task(TaskId(task)).await?;
    let dir = state
        .home
        .join("runs")
        .join(task.to_string())
        .join(attempt.to_string());
    let follow = match query.follow.as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => {
            return Err(ApiError::Invalid {
                field: Some("follow".to_owned()),
                message: format!("follow: expected 1 or 0, got {other:?}"),
            })
        }
    };
    if follow {
        return Ok(follow_logs(state, task, attempt, dir).into_response());
    }
    if !dir.is_dir() {
        return Err(ApiError::NotFound(format!(
            "task {task} has no attempt {attempt} (yet); follow=1 waits for it"
        )));
    }
    match query.format.as_deref().unwrap_or("text") {
        "text" => {
            let text = tokio::task::spawn_blocking(move || read_all(&dir))
                .await
                .map_err(|e| ApiError::internal(&e))?
                .map_err(|e| ApiError::internal(&e))?;
            Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        "json" => {
            let needle = query.q.unwrap_or_default().to_lowercase();
            let offset = query.offset.unwrap_or(0);
            let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
            let search = tokio::task::spawn_blocking(move || search(&dir, &needle, offset, limit))
                .await
                .map_err(|e| ApiError::internal(&e))?
                .map_err(|e| ApiError::internal(&e))?;
            Ok(Json(search).into_response())
        }
        other => Err(ApiError::Invalid {
            field: Some("format".to_owned()),
            message: format!("format: expected text or json, got {other:?}"),
        }),
    }
}

fn relative(dir: &FsPath, file: &FsPath) -> String {
    file.strip_prefix(dir).unwrap_or(file).display().to_string()
}

fn read_lossy(file: &FsPath) -> std::io::Result<String> {
    match std::fs::read(file) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Every non-empty log file, each under a `==> name <==` header (as `orch task logs` prints).
fn read_all(dir: &FsPath) -> std::io::Result<String> {
    let mut text = String::new();
    for file in orch_worker::bundle::run_log_files(dir) {
        let content = read_lossy(&file)?;
        if content.is_empty() {
            continue;
        }
        text.push_str(&format!("==> {} <==\n", relative(dir, &file)));
        text.push_str(&content);
        if !content.ends_with('\n') {
            text.push('\n');
        }
    }
    Ok(text)
}

fn search(dir: &FsPath, needle: &str, offset: usize, limit: usize) -> std::io::Result<LogSearch> {
    let mut total = 0;
    let mut lines = Vec::new();
    for file in orch_worker::bundle::run_log_files(dir) {
        let content = read_lossy(&file)?;
        for (index, line) in content.lines().enumerate() {
            if !line.to_lowercase().contains(needle) {
                continue;
            }
            if total >= offset && lines.len() < limit {
                lines.push(LogLine {
                    file: relative(dir, &file),
                    line: index + 1,
                    text: line.to_owned(),
                });
            }
            total += 1;
        }
    }
    Ok(LogSearch {
        total,
        offset,
        lines,
    })
}

/// New bytes of every log file since the last pass: `(file, text)` pairs.
fn read_new(dir: &FsPath, offsets: &mut HashMap<PathBuf, u64>) -> Vec<(String, String)> {
    let mut chunks = Vec::new();
    for file in orch_worker::bundle::run_log_files(dir) {
        let seen = offsets.get(&file).copied().unwrap_or(0);
        let Ok(mut handle) = std::fs::File::open(&file) else {
            continue;
        };
        let len = handle.metadata().map_or(0, |m| m.len());
        if len <= seen {
            continue;
        }
        let mut bytes = Vec::new();
        let read = handle.seek(SeekFrom::Start(seen)).and_then(|_| {
            (&mut handle)
                .take((len - seen).min(CHUNK))
                .read_to_end(&mut bytes)
        });
        if let Err(e) = read {
            tracing::warn!(path = %file.display(), "could not read a log file: {e}");
            continue;
        }
        offsets.insert(file.clone(), seen + bytes.len() as u64);
        chunks.push((
            relative(dir, &file),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    chunks
}

/// Whether the attempt's run has ended (or the task can no longer start it).
async fn attempt_over(state: &ApiState, task: i64, attempt: u32) -> bool {
    match state.store.runs(TaskId(task)).await {
        Ok(runs) => match runs.iter().find(|r| r.attempt == attempt) {
            Some(run) => run.ended_at.is_some(),
            // Not started: over only if the task has finished without it.
            None => state
                .store
                .task(TaskId(task))
                .await
                .map_or(true, |t| t.status.is_finished()),
        },
        Err(_) => true,
    }
}

/// Follow the files until the run has ended and everything it wrote has been sent.
fn follow_logs(
    state: ApiState,
    task: i64,
    attempt: u32,
    dir: PathBuf,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let stop = state.feed.stop_token();
    let pending: Vec<SseEvent> = Vec::new();
    let offsets: HashMap<PathBuf, u64> = HashMap::new();
    let events = stream::unfold(
        (state, dir, offsets, pending, false),
        move |(state, dir, mut offsets, mut pending, done)| {
            let stop = stop.clone();
            async move {
                loop {
                    if let Some(event) = pending.pop() {
                        return Some((Ok(event), (state, dir, offsets, pending, done)));
                    }
                    if done || stop.is_cancelled() {
                        return None;
                    }
                    // Checked before reading, so output written just before the end is sent.
                    let over = attempt_over(&state, task, attempt).await;
                    let (read_dir, mut read_offsets) = (dir.clone(), std::mem::take(&mut offsets));
                    let (chunks, read_offsets) = tokio::task::spawn_blocking(move || {
                        let chunks = read_new(&read_dir, &mut read_offsets);
                        (chunks, read_offsets)
                    })
                    .await
                    .unwrap_or_default();
                    offsets = read_offsets;
                    let more = !chunks.is_empty();
                    // `pending` is popped from the back: push the end first, then the chunks
                    // in reverse.
                    if over && !more {
                        pending.push(SseEvent::default().event("end").data("{}"));
                        let event = pending.pop().expect("just pushed");
                        return Some((Ok(event), (state, dir, offsets, pending, true)));
                    }
                    for (file, text) in chunks.into_iter().rev() {
                        let data =
                            serde_json::to_string(&LogChunk { file, text }).unwrap_or_default();
                        pending.push(SseEvent::default().event("log").data(data));
                    }
                    if !more {
                        tokio::select! {
                            () = stop.cancelled() => return None,
                            () = tokio::time::sleep(FOLLOW_EVERY) => {}
                        }
                    }
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
