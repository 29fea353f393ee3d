//! `GET /tasks/{id}`: one task — its spec and steps, the event timeline, each run with its logs
//! (followed live while it runs), the agents' transcripts, `report.md`, `result.json`, the route
//! decision and the review — and its diff with a file list and highlighting, where a click on a
//! line adds a comment; `POST /tasks/{id}/comments` sends them to the agent as one follow-up.
//!
//! Also `GET /tasks/{id}/runs/{attempt}/logs` (the API's log endpoint behind the session, for
//! the page's script) and `GET /assets/view/{name}` (this module's script and stylesheets).
//!
//! Everything read from a bundle was written by a task: it reaches the page escaped, through
//! the templates or through [`super::render`].

use std::path::{Path as FsPath, PathBuf};

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use orch_api::{EventView, TaskView};
use orch_app::diff_comments::{DiffComment, Side};
use orch_core::{Run, RunState, StepAction, Task, TaskId};

use super::auth::{redirect_with_flash, CsrfForm, Session};
use super::render::diff::{self, DiffLimits, RenderedDiff};
use super::render::{markdown, transcript};
use super::{render, Flash, Nav, PageContext, PageError};
use crate::api::logs::LogsQuery;
use crate::api::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tasks/{id}", get(task_page))
        .route("/tasks/{id}/comments", post(send_comments))
        .route("/tasks/{task}/runs/{attempt}/logs", get(run_logs))
        .route("/assets/view/{name}", get(asset))
}

/// Most bytes of a run's logs shown on the page (the end of them); the API has all.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Most bytes of a small bundle file (`result.json`, `route.json`, `review.json`) shown.
const JSON_BYTES: u64 = 64 * 1024;
/// Most bytes of `report.md` read.
const REPORT_BYTES: u64 = markdown::MAX_MARKDOWN_BYTES as u64;
/// Most bytes of one session's `events.jsonl` read.
const EVENTS_BYTES: u64 = 4 * 1024 * 1024;
/// Most bytes of a diff read (what is drawn is capped by [`DiffLimits`]).
const DIFF_BYTES: usize = 8 * 1024 * 1024;

/// One step of the spec.
#[derive(Debug)]
pub struct StepRow {
    /// Its name.
    pub name: String,
    /// `agent` or `exec`.
    pub kind: &'static str,
    /// The agent (with model and profile) or the commands, one per line.
    pub detail: String,
    /// The agent's prompt (agent steps).
    pub prompt: String,
}

/// One event of the timeline: the event as the API shows it (`orch_api::EventView`, the
/// same view `GET /v1/tasks/{id}/events` returns), with its time and data as the page shows them.
#[derive(Debug)]
pub struct EventRow {
    /// The event.
    pub event: EventView,
    /// When, as the page shows times.
    pub at: String,
    /// Its data, as JSON, when it has any.
    pub data: String,
}

/// One agent session of a run.
#[derive(Debug)]
pub struct SessionView {
    /// The step (or `route` / `review` for the router's and reviewer's sessions).
    pub step: String,
    /// The transcript.
    pub transcript: transcript::Transcript,
}

/// One run, with what its bundle holds.
#[derive(Debug)]
pub struct RunSection {
    /// Its attempt.
    pub attempt: u32,
    /// Its state.
    pub state: String,
    /// Who ran it.
    pub owner: String,
    /// When it started.
    pub started: String,
    /// When it ended.
    pub ended: String,
    /// How it ended.
    pub outcome: String,
    /// Still running: the page follows its logs.
    pub active: bool,
    /// The end of its logs.
    pub logs: String,
    /// Whether the logs shown are only their end.
    pub logs_cut: bool,
    /// Its `result.json`, pretty.
    pub result: Option<String>,
    /// Its `report.md` as HTML ([`markdown::render`]).
    pub report: Option<String>,
    /// Its `route.json`, pretty.
    pub route: Option<String>,
    /// Its `review.json`, pretty.
    pub review: Option<String>,
    /// Its agent sessions.
    pub sessions: Vec<SessionView>,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    page: PageContext,
    /// The task as the API shows it (`GET /v1/tasks/{id}`'s view).
    task: TaskView,
    body: String,
    project: String,
    attempts: String,
    created: String,
    updated: String,
    branch: Option<(String, String)>,
    steps: Vec<StepRow>,
    spec_json: String,
    events: Vec<EventRow>,
    runs: Vec<RunSection>,
    diff: Option<RenderedDiff>,
    diff_note: Option<String>,
    can_comment: bool,
}

impl TaskPage {
    /// The paths of the diff's files, for the comment form's file choice.
    fn diff_paths(&self) -> Vec<&str> {
        self.diff
            .as_ref()
            .map(|d| d.files.iter().map(|f| f.path.as_str()).collect())
            .unwrap_or_default()
    }
}

async fn task_page(
    session: Session,
    State(state): State<ApiState>,
    path: Result<Path<i64>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = path else {
        return PageError::NotFound("a task's page is /tasks/<number>".to_owned()).into_response();
    };
    match load(&state, TaskId(id), session).await {
        Ok(page) => render(&page, &page.page),
        Err(e) => e.into_response(),
    }
}

async fn load(state: &ApiState, id: TaskId, session: Session) -> Result<TaskPage, PageError> {
    let task = state.store.task(id).await?;
    let runs = state.store.runs(id).await?;
    let events = state.store.events(id).await?;
    let project = state
        .store
        .projects()
        .await?
        .into_iter()
        .find(|p| p.id == task.project)
        .map(|p| p.name)
        .unwrap_or_default();
    let branch = crate::landing::branch(&state.store, &state.home, &task).await;
    let (diff, diff_note) = load_diff(state, &task, &runs).await;
    let home = state.home.clone();
    let run_rows: Vec<(u32, RunState, String, String, String, String, bool)> =
        runs.iter().rev().map(run_summary).collect();
    let task_id = id.0;
    let sections = tokio::task::spawn_blocking(move || {
        run_rows
            .into_iter()
            .map(|row| run_section(&home, task_id, row))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| PageError::internal(&e))?;
    let has_agent = task
        .spec
        .steps
        .iter()
        .any(|s| matches!(s.action, StepAction::Agent { .. }));
    let can_comment = has_agent
        && diff.as_ref().is_some_and(|d| !d.files.is_empty())
        && matches!(
            task.status,
            orch_core::Status::Done
                | orch_core::Status::Failed
                | orch_core::Status::NeedsReview
                | orch_core::Status::Cancelled
        );
    let title = task.spec.title.to_string();
    let page = PageContext::new(&session, format!("#{} {}", id.0, title), Nav::None);
    Ok(TaskPage {
        page,
        task: TaskView::from(&task),
        body: task.spec.body.clone(),
        project,
        attempts: format!("{} of {}", task.attempts_used, task.spec.retry.max_attempts),
        created: super::format_time(task.created_at),
        updated: super::format_time(task.updated_at),
        branch,
        steps: steps(&task),
        spec_json: serde_json::to_string_pretty(&task.spec).unwrap_or_default(),
        events: events
            .iter()
            .map(|e| EventRow {
                event: EventView::from(e),
                at: super::format_time(e.at),
                data: match &e.data {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::Object(map) if map.is_empty() => String::new(),
                    data => data.to_string(),
                },
            })
            .collect(),
        runs: sections,
        diff,
        diff_note,
        can_comment,
    })
}

fn steps(task: &Task) -> Vec<StepRow> {
    task.spec
        .steps
        .iter()
        .map(|step| match &step.action {
            StepAction::Exec { commands } => StepRow {
                name: step.name.clone(),
                kind: "exec",
                detail: commands
                    .iter()
                    .map(|c| c.argv.join(" "))
                    .collect::<Vec<_>>()
                    .join("\n"),
                prompt: String::new(),
            },
            StepAction::Agent {
                agent,
                prompt,
                model,
                profile,
            } => {
                let mut detail = agent.clone();
                if let Some(model) = model {
                    detail.push_str(&format!(" · model {model}"));
                }
                if let Some(profile) = profile {
                    detail.push_str(&format!(" · profile {profile}"));
                }
                StepRow {
                    name: step.name.clone(),
                    kind: "agent",
                    detail,
                    prompt: prompt.clone(),
                }
            }
        })
        .collect()
}

/// The task's change: `orch task diff` when this daemon can find it, else the latest run's
/// `patch.diff` from its bundle; a note says why there is none.
async fn load_diff(
    state: &ApiState,
    task: &Task,
    runs: &[Run],
) -> (Option<RenderedDiff>, Option<String>) {
    if runs.is_empty() {
        return (
            None,
            Some("No run yet: the diff appears once the task has run.".to_owned()),
        );
    }
    let patch = match crate::landing::diff(&state.store, &state.home, task.id).await {
        Ok(patch) => Some(patch),
        Err(e) => {
            tracing::debug!(task = task.id.0, "no diff from the workspace: {e}");
            None
        }
    };
    let patch = match patch {
        Some(patch) => patch,
        None => {
            let attempt = runs.last().map_or(1, |r| r.attempt);
            let file = bundle_dir(&state.home, task.id.0, attempt).join("patch.diff");
            match tokio::task::spawn_blocking(move || read_head(&file, DIFF_BYTES as u64)).await {
                Ok(Some((bytes, _))) => bytes,
                _ => Vec::new(),
            }
        }
    };
    let cut = patch.len() > DIFF_BYTES;
    let patch = if cut {
        &patch[..DIFF_BYTES]
    } else {
        &patch[..]
    };
    if patch.is_empty() {
        return (
            None,
            Some("No change: the task's branch has no diff.".to_owned()),
        );
    }
    let bytes = patch.to_vec();
    match tokio::task::spawn_blocking(move || diff::render(&bytes, DiffLimits::default())).await {
        Ok(mut rendered) => {
            if cut && rendered.truncated.is_none() {
                rendered.truncated = Some(
                    "diff truncated: larger than 8 MB; `orch task diff` prints the whole change."
                        .to_owned(),
                );
            }
            (Some(rendered), None)
        }
        Err(e) => (None, Some(format!("The diff could not be drawn: {e}"))),
    }
}

fn run_summary(run: &Run) -> (u32, RunState, String, String, String, String, bool) {
    (
        run.attempt,
        run.state,
        run.lease.owner.clone(),
        super::format_time(run.started_at),
        run.ended_at.map(super::format_time).unwrap_or_default(),
        run.outcome.clone().unwrap_or_default(),
        run.state == RunState::Active,
    )
}

fn bundle_dir(home: &FsPath, task: i64, attempt: u32) -> PathBuf {
    home.join("runs")
        .join(task.to_string())
        .join(attempt.to_string())
}

/// The first `max` bytes of a regular file (not following a symlink), and whether there was
/// more; `None` when it is missing or not a file.
fn read_head(path: &FsPath, max: u64) -> Option<(Vec<u8>, bool)> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_end(&mut bytes)
        .ok()?;
    Some((bytes, meta.len() > max))
}

/// The last `max` bytes of a regular file, from a line start, and whether there was more.
fn read_tail(path: &FsPath, max: u64) -> Option<(Vec<u8>, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut file = std::fs::File::open(path).ok()?;
    let start = meta.len().saturating_sub(max);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    if start > 0 {
        if let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            bytes.drain(..=newline);
        }
    }
    Some((bytes, start > 0))
}

fn read_text(path: &FsPath, max: u64) -> Option<String> {
    let (bytes, _) = read_head(path, max)?;
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

fn read_pretty_json(path: &FsPath) -> Option<String> {
    let text = read_text(path, JSON_BYTES)?;
    Some(
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text),
    )
}

fn run_section(
    home: &FsPath,
    task: i64,
    (attempt, state, owner, started, ended, outcome, active): (
        u32,
        RunState,
        String,
        String,
        String,
        String,
        bool,
    ),
) -> RunSection {
    let dir = bundle_dir(home, task, attempt);
    let mut logs = String::new();
    let mut logs_cut = false;
    let files = orch_worker::bundle::run_log_files(&dir);
    let per_file = LOG_TAIL_BYTES / files.len().max(1) as u64;
    for file in &files {
        let Some((bytes, cut)) = read_tail(file, per_file.max(4096)) else {
            continue;
        };
        if bytes.is_empty() {
            continue;
        }
        logs_cut |= cut;
        let name = file
            .strip_prefix(&dir)
            .unwrap_or(file)
            .display()
            .to_string();
        logs.push_str(&format!("==> {name} <==\n"));
        logs.push_str(&String::from_utf8_lossy(&bytes));
        if !logs.ends_with('\n') {
            logs.push('\n');
        }
    }
    let mut sessions = Vec::new();
    let mut session_dirs: Vec<(String, PathBuf)> = std::fs::read_dir(dir.join("steps"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    session_dirs.sort_by_key(|(_, p)| std::fs::metadata(p).and_then(|m| m.created()).ok());
    for extra in ["route", "review"] {
        session_dirs.push((extra.to_owned(), dir.join(extra)));
    }
    for (step, step_dir) in session_dirs {
        let Some((bytes, _)) = read_head(&step_dir.join("events.jsonl"), EVENTS_BYTES) else {
            continue;
        };
        if bytes.is_empty() {
            continue;
        }
        sessions.push(SessionView {
            step,
            transcript: transcript::render(&bytes),
        });
    }
    RunSection {
        attempt,
        state: state.to_string(),
        owner,
        started,
        ended,
        outcome,
        active,
        logs,
        logs_cut,
        result: read_pretty_json(&dir.join("result.json")),
        report: read_text(&dir.join("report.md"), REPORT_BYTES)
            .filter(|t| !t.trim().is_empty())
            .map(|t| markdown::render(&t)),
        route: read_pretty_json(&dir.join("route.json")),
        review: read_pretty_json(&dir.join("review.json")),
        sessions,
    }
}

/// The comments of the form: repeated `path`, `line`, `side`, `comment` fields (a `path`
/// starts the next comment), and an optional `message` for a general remark.
fn parse_comments(fields: &[(String, String)]) -> Result<(Vec<DiffComment>, String), String> {
    #[derive(Default)]
    struct Draft {
        path: String,
        line: String,
        side: String,
        comment: String,
    }
    let mut drafts: Vec<Draft> = Vec::new();
    let mut message = String::new();
    for (name, value) in fields {
        match name.as_str() {
            "path" => drafts.push(Draft {
                path: value.clone(),
                ..Draft::default()
            }),
            "line" | "side" | "comment" => {
                let Some(draft) = drafts.last_mut() else {
                    return Err(format!("the form's `{name}` comes before any `path`"));
                };
                let slot = match name.as_str() {
                    "line" => &mut draft.line,
                    "side" => &mut draft.side,
                    _ => &mut draft.comment,
                };
                *slot = value.clone();
            }
            "message" => message = value.clone(),
            _ => {}
        }
    }
    let mut comments = Vec::new();
    for draft in drafts {
        // A comment box left empty is not a comment (the no-script form always sends one).
        if draft.comment.trim().is_empty() && draft.line.trim().is_empty() {
            continue;
        }
        let line: u32 = draft.line.trim().parse().map_err(|_| {
            format!(
                "line: `{}` is not a line number; give the line of {} to comment on",
                draft.line, draft.path
            )
        })?;
        let side = Side::parse(draft.side.trim()).map_err(|e| e.to_string())?;
        comments.push(
            DiffComment::parse(&draft.path, line, side, &draft.comment)
                .map_err(|e| e.to_string())?,
        );
    }
    Ok((comments, message))
}

async fn send_comments(
    State(state): State<ApiState>,
    path: Result<Path<i64>, PathRejection>,
    form: CsrfForm<Vec<(String, String)>>,
) -> Response {
    let Ok(Path(id)) = path else {
        return PageError::NotFound("a task's page is /tasks/<number>".to_owned()).into_response();
    };
    let back = format!("/tasks/{id}");
    let (comments, message) = match parse_comments(&form.form) {
        Ok(parsed) => parsed,
        Err(reason) => {
            return redirect_with_flash(
                &back,
                Flash {
                    ok: false,
                    message: format!("Nothing was sent: {reason}."),
                },
            )
        }
    };
    let extra = (!message.trim().is_empty()).then_some(message.as_str());
    match state
        .app
        .comment_on_diff(TaskId(id), &comments, extra, &form.session.actor)
        .await
    {
        Ok(status) => redirect_with_flash(
            &back,
            Flash {
                ok: true,
                message: format!(
                    "Sent {} comment(s) to the agent; task {id} is {status} for its follow-up run.",
                    comments.len()
                ),
            },
        ),
        Err(e) if e.is_refusal() => redirect_with_flash(
            &back,
            Flash {
                ok: false,
                message: format!("Nothing was sent: {e}"),
            },
        ),
        Err(e) => PageError::internal(&e).into_response(),
    }
}

async fn run_logs(
    _session: Session,
    state: State<ApiState>,
    path: Result<Path<(i64, u32)>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    match crate::api::logs::logs(state, path, query).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// This module's embedded files: the script of the task, workflow and usage pages, their
/// styles, and the highlighting classes' colours (made from syntect's theme once).
async fn asset(Path(name): Path<String>) -> Response {
    let (content_type, body): (&'static str, &'static str) = match name.as_str() {
        "view.js" => (
            "text/javascript; charset=utf-8",
            include_str!("assets/view.js"),
        ),
        "view.css" => ("text/css; charset=utf-8", include_str!("assets/view.css")),
        "highlight.css" => ("text/css; charset=utf-8", diff::stylesheet()),
        _ => return PageError::NotFound(format!("no asset named `{name}`")).into_response(),
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn comments_are_read_in_order_and_blank_ones_skipped() {
        let (comments, message) = parse_comments(&pairs(&[
            ("csrf", "x"),
            ("path", "src/a.rs"),
            ("line", "3"),
            ("side", "new"),
            ("comment", "rename"),
            ("path", "src/b.rs"),
            ("line", "7"),
            ("side", "old"),
            ("comment", "keep"),
            ("path", "src/a.rs"),
            ("line", ""),
            ("comment", ""),
            ("message", "overall fine"),
        ]))
        .unwrap();
        assert_eq!(comments.len(), 2);
        assert_eq!((comments[1].path(), comments[1].line()), ("src/b.rs", 7));
        assert_eq!(comments[1].side(), Side::Old);
        assert_eq!(message, "overall fine");
    }

    #[test]
    fn bad_comments_say_what_is_wrong() {
        let err =
            parse_comments(&pairs(&[("path", "a"), ("line", "x"), ("comment", "c")])).unwrap_err();
        assert!(err.contains("`x` is not a line number"), "{err}");
        let err = parse_comments(&pairs(&[("line", "1")])).unwrap_err();
        assert!(err.contains("before any `path`"), "{err}");
        let err =
            parse_comments(&pairs(&[("path", "a"), ("line", "2"), ("comment", " ")])).unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }
}
