//! Governance in the dashboard: answering a task's open info request from the inbox
//! (`POST /tasks/{id}/answer`; secret keys typed into password fields, values never shown
//! again, not even in the flash message) and the cron jobs page (`GET /jobs`: each job with its
//! next firing and last one; enable, disable and run now). Every action goes through `orch-app`
//! under the session's actor, like the other actions.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::auth::{is_local_path, redirect_with_flash, CsrfForm, Session};
use super::{render, Flash, Nav, PageContext, PageError};
use crate::api::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tasks/{id}/answer", post(answer))
        .route("/jobs", get(jobs_page))
        .route("/jobs/{name}/enable", post(enable))
        .route("/jobs/{name}/disable", post(disable))
        .route("/jobs/{name}/run", post(run_now))
}

/// The prefix of an answer form's value fields: `value.KEY`.
const VALUE_FIELD: &str = "value.";

/// A key an open info request asks for, as the inbox's answer form shows it.
#[derive(Debug, Clone)]
pub struct AskField {
    /// The key (the variable the step gets).
    pub name: String,
    /// Typed into a password field; never shown again.
    pub secret: bool,
    /// The content of a file (the step gets a path).
    pub file: bool,
    /// May be left empty.
    pub optional: bool,
    /// What the step said about it.
    pub description: Option<String>,
}

/// The keys of every open info request, by task.
pub async fn open_asks(state: &ApiState) -> Result<BTreeMap<i64, Vec<AskField>>, PageError> {
    let mut asks = BTreeMap::new();
    for request in state.store.open_info_requests().await? {
        let fields = request
            .keys
            .iter()
            .map(|k| AskField {
                name: k.name.clone(),
                secret: k.secret || k.file,
                file: k.file,
                optional: k.optional,
                description: k.description.clone(),
            })
            .collect();
        asks.insert(request.task.0, fields);
    }
    Ok(asks)
}

fn back_to(form: &BTreeMap<String, String>) -> String {
    form.get("back")
        .filter(|b| is_local_path(b))
        .cloned()
        .unwrap_or_else(|| "/inbox".to_owned())
}

async fn answer(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    CsrfForm { session, form }: CsrfForm<BTreeMap<String, String>>,
) -> Response {
    let back = back_to(&form);
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return PageError::NotFound(format!("`{id}` is not a task number")).into_response();
    };
    // Empty fields are left out: an optional key need not be answered.
    let values: Vec<orch_app::AnswerInput> = form
        .iter()
        .filter_map(|(field, value)| {
            let key = field.strip_prefix(VALUE_FIELD)?;
            (!value.is_empty()).then(|| orch_app::AnswerInput {
                key: key.to_owned(),
                value: value.clone(),
                secret: false,
            })
        })
        .collect();
    let task = orch_core::TaskId(id);
    match state.app.answer_input(task, values, &session.actor).await {
        Ok(status) => {
            let message = format!("Task {task} answered; it is {status} now.");
            redirect_with_flash(&back, Flash { ok: true, message })
        }
        Err(e) if e.is_refusal() => {
            let message = format!("Not answered: {e}");
            redirect_with_flash(&back, Flash { ok: false, message })
        }
        Err(e) => PageError::internal(&e).into_response(),
    }
}

/// One job's row: the job as `GET /v1/jobs` shows it, with its columns as the page words them.
#[derive(Debug)]
pub struct JobRow {
    job: orch_api::JobView,
    submits: String,
    next: String,
    last: String,
}

impl From<orch_api::JobView> for JobRow {
    fn from(job: orch_api::JobView) -> Self {
        JobRow {
            submits: match job.target.as_str() {
                "workflow" => "a workflow".to_owned(),
                _ => format!("task: {}", job.title),
            },
            next: job.next_local.clone().unwrap_or_else(|| "-".to_owned()),
            last: match &job.last_firing {
                Some(f) => match (f.task, &f.error) {
                    (Some(task), _) => format!("task {task}"),
                    (None, Some(error)) => format!("refused: {error}"),
                    (None, None) => "nothing submitted".to_owned(),
                },
                None => "-".to_owned(),
            },
            job,
        }
    }
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    page: PageContext,
    jobs: Vec<JobRow>,
}

async fn load_jobs(state: &ApiState) -> Result<Vec<JobRow>, PageError> {
    let now = orch_store::calendar_clock();
    let views = state.app.job_views(now).await?;
    Ok(views.into_iter().map(JobRow::from).collect())
}

async fn jobs_page(session: Session, State(state): State<ApiState>) -> Response {
    match load_jobs(&state).await {
        Ok(jobs) => {
            let page = JobsPage {
                page: PageContext::new(&session, "Jobs", Nav::Jobs),
                jobs,
            };
            render(&page, &page.page)
        }
        Err(e) => e.into_response(),
    }
}

fn job_done(result: Result<String, orch_app::AppError>) -> Response {
    match result {
        Ok(message) => redirect_with_flash("/jobs", Flash { ok: true, message }),
        Err(e) if e.is_refusal() => redirect_with_flash(
            "/jobs",
            Flash {
                ok: false,
                message: format!("Not done: {e}"),
            },
        ),
        Err(e) => PageError::internal(&e).into_response(),
    }
}

async fn set_enabled(state: &ApiState, name: &str, enabled: bool) -> Response {
    let now = orch_store::calendar_clock();
    let verb = if enabled { "enabled" } else { "disabled" };
    let result = state.app.set_job_enabled(name, enabled, now).await;
    job_done(result.map(|job| format!("Job {} {verb}.", job.name)))
}

async fn enable(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    _form: CsrfForm<BTreeMap<String, String>>,
) -> Response {
    set_enabled(&state, &name, true).await
}

async fn disable(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    _form: CsrfForm<BTreeMap<String, String>>,
) -> Response {
    set_enabled(&state, &name, false).await
}

async fn run_now(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    CsrfForm { session, .. }: CsrfForm<BTreeMap<String, String>>,
) -> Response {
    let now = orch_store::calendar_clock();
    let result = state.app.run_job(&name, now, &session.actor).await;
    job_done(result.map(|firing| match firing {
        Some(firing) => match (firing.task, firing.error) {
            (Some(task), _) => format!("Job {name} fired: task {task}."),
            (None, Some(error)) => {
                format!("Job {name} fired but its submission was refused: {error}")
            }
            (None, None) => format!("Job {name} fired; it had nothing to submit."),
        },
        None => format!("Job {name} fired at this very moment already; try again."),
    }))
}
