//! The actions: add a task or a workflow, cancel, retry, unblock, approve (with a comment),
//! reply to an agent, kill a live session. Each is a POST taking [`CsrfForm`] (session, CSRF
//! token, origin checked), calls `orch-app` under the session's actor, and answers with a 303
//! back to the page it came from (`back`, a local path) carrying a flash message: what was
//! done, or why it was refused (the state does not allow it, the input is wrong).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use orch_app::{AppError, ProjectDir, WorkflowText};
use orch_core::{
    CancelReason, CommandDraft, NewTask, ReplyMessage, RetryPolicy, Status, StepDraft, TaskDraft,
    TaskId, TaskSpec,
};
use serde::Deserialize;

use super::auth::{is_local_path, redirect_with_flash, CsrfForm, Session};
use super::{Flash, Nav, PageContext, PageError};
use crate::api::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/new", get(new_form).post(add_task))
        .route("/new/workflow", post(add_workflow))
        .route("/tasks/{id}/cancel", post(cancel))
        .route("/tasks/{id}/retry", post(retry))
        .route("/tasks/{id}/unblock", post(unblock))
        .route("/tasks/{id}/approve", post(approve))
        .route("/tasks/{id}/reply", post(reply))
        .route("/tasks/{id}/kill", post(kill))
}

/// The fields every action form has besides `csrf`.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    /// Where to go afterwards (a local path; default the board).
    #[serde(default)]
    pub back: Option<String>,
    /// Approve: the approver's comment. Reply: the message. Cancel: the reason.
    #[serde(default)]
    pub text: Option<String>,
}

fn back(form: &ActionForm) -> &str {
    form.back
        .as_deref()
        .filter(|b| is_local_path(b))
        .unwrap_or("/")
}

fn done(form: &ActionForm, message: String) -> Response {
    redirect_with_flash(back(form), Flash { ok: true, message })
}

fn refused(form: &ActionForm, message: String) -> Response {
    redirect_with_flash(back(form), Flash { ok: false, message })
}

/// An action's outcome: the new status said as done, a refusal said as refused, a failure of
/// ours as an error page (logged under the request id).
fn answer(form: &ActionForm, id: TaskId, verb: &str, result: Result<Status, AppError>) -> Response {
    match result {
        Ok(status) => done(form, format!("Task {id} {verb}; it is {status} now.")),
        Err(e) if e.is_refusal() => refused(form, format!("Not done: {e}")),
        Err(e) => PageError::internal(&e).into_response(),
    }
}

fn task_id(raw: &str) -> Result<TaskId, PageError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(TaskId)
        .ok_or_else(|| PageError::NotFound(format!("`{raw}` is not a task number")))
}

/// Text from a form, `None` when blank.
fn text(form: &ActionForm) -> Option<String> {
    form.text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    CsrfForm { session, form }: CsrfForm<ActionForm>,
) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let reason = match CancelReason::parse(text(&form)) {
        Ok(reason) => reason,
        Err(e) => return refused(&form, format!("Not done: {e}")),
    };
    let result = state.app.cancel(id, reason.as_ref(), &session.actor).await;
    answer(&form, id, "cancelled", result)
}

async fn retry(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    CsrfForm { session, form }: CsrfForm<ActionForm>,
) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let result = state.app.retry(id, None, &session.actor).await;
    answer(&form, id, "retried", result)
}

async fn unblock(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    CsrfForm { session, form }: CsrfForm<ActionForm>,
) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let result = state.app.unblock(id, &session.actor).await;
    answer(&form, id, "unblocked", result)
}

async fn approve(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    CsrfForm { session, form }: CsrfForm<ActionForm>,
) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let comment = match text(&form)
        .map(|c| orch_app::ApprovalComment::parse(&c, "comment"))
        .transpose()
    {
        Ok(comment) => comment,
        Err(e) => return refused(&form, format!("Not done: {e}")),
    };
    let result = state
        .app
        .judge_approval(
            id,
            orch_store::ApprovalVerdict::Approve,
            comment.as_ref(),
            &session.actor,
        )
        .await;
    answer(&form, id, "approved", result)
}

async fn reply(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    CsrfForm { session, form }: CsrfForm<ActionForm>,
) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let message = match ReplyMessage::parse(form.text.clone().unwrap_or_default()) {
        Ok(message) => message,
        Err(e) => return refused(&form, format!("Not done: {e}")),
    };
    let result = state.app.reply(id, &message, &session.actor).await;
    answer(&form, id, "got your reply", result)
}

/// End a task's live (tmux) agent session and cancel the task, through the one app action
/// (`orch_app::App::kill_live_session`) that `orch task kill` and the API use too.
async fn kill(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    CsrfForm { session, form }: CsrfForm<ActionForm>,
) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let sessions = crate::live_sessions::TmuxSessions::of_home(&state.home);
    let reason = CancelReason::parse(Some(
        "its live session was ended from the dashboard".to_owned(),
    ))
    .ok()
    .flatten();
    let result = state
        .app
        .kill_live_session(
            id,
            std::sync::Arc::new(sessions),
            reason.as_ref(),
            &session.actor,
        )
        .await;
    if let Err(e @ AppError::Session(_)) = result {
        return refused(&form, format!("Not done: {e}"));
    }
    answer(
        &form,
        id,
        "had its live session ended and was cancelled",
        result,
    )
}

/// The agents the add-task form offers (an empty choice: route automatically).
pub const AGENTS: &[&str] = &["sim", "claude", "codex", "opencode", "gemini"];

/// The add-task form's fields, kept to show the form again with an error.
#[derive(Debug, Default, Deserialize)]
pub struct NewTaskForm {
    /// The project's directory.
    #[serde(default)]
    pub project: String,
    /// The title.
    #[serde(default)]
    pub title: String,
    /// The body (the agent's prompt).
    #[serde(default)]
    pub body: String,
    /// The agent; empty: routed.
    #[serde(default)]
    pub agent: String,
    /// Commands, one per line (split into arguments like a shell would, never run by one).
    #[serde(default)]
    pub commands: String,
    /// Labels, comma-separated.
    #[serde(default)]
    pub labels: String,
    /// Ids of tasks it needs, comma- or space-separated.
    #[serde(default)]
    pub needs: String,
    /// `on` when it waits for an approval.
    #[serde(default)]
    pub requires_approval: Option<String>,
}

/// The add-workflow form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct NewWorkflowForm {
    /// The project's directory.
    #[serde(default)]
    pub project: String,
    /// The workflow file's text.
    #[serde(default)]
    pub yaml: String,
}

#[derive(Template)]
#[template(path = "new.html")]
struct NewPage<'a> {
    page: PageContext,
    projects: Vec<String>,
    agents: &'a [&'a str],
    task: NewTaskForm,
    workflow: NewWorkflowForm,
    error: Option<String>,
    workflow_error: Option<String>,
}

async fn projects(state: &ApiState) -> Result<Vec<String>, PageError> {
    let mut projects = state.store.projects().await?;
    projects.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    Ok(projects.into_iter().map(|p| p.path).collect())
}

async fn new_page(
    state: &ApiState,
    session: &Session,
    task: NewTaskForm,
    workflow: NewWorkflowForm,
    error: Option<String>,
    workflow_error: Option<String>,
) -> Response {
    let projects = match projects(state).await {
        Ok(projects) => projects,
        Err(e) => return e.into_response(),
    };
    let mut task = task;
    let mut workflow = workflow;
    if task.project.is_empty() {
        task.project = projects.first().cloned().unwrap_or_default();
    }
    if workflow.project.is_empty() {
        workflow.project = projects.first().cloned().unwrap_or_default();
    }
    let page = NewPage {
        page: PageContext::new(session, "Add a task", Nav::New),
        projects,
        agents: AGENTS,
        task,
        workflow,
        error,
        workflow_error,
    };
    let status = if page.error.is_some() || page.workflow_error.is_some() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    super::render_with_status(status, &page, page.page.flash.is_some())
}

/// `GET /new`: the add-task form.
async fn new_form(session: Session, State(state): State<ApiState>) -> Response {
    new_page(
        &state,
        &session,
        NewTaskForm::default(),
        NewWorkflowForm::default(),
        None,
        None,
    )
    .await
}

/// The task a filled-in form describes, or what is wrong with it.
pub fn task_from_form(form: &NewTaskForm) -> Result<NewTask, String> {
    let commands: Vec<&str> = form
        .commands
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let agent = form.agent.trim();
    if !agent.is_empty() && !commands.is_empty() {
        return Err(
            "give an agent or commands, not both (add a second task that needs this one)"
                .to_owned(),
        );
    }
    let mut steps = Vec::new();
    if !commands.is_empty() {
        let mut drafts = Vec::with_capacity(commands.len());
        for (n, line) in commands.iter().enumerate() {
            let argv =
                shell_words::split(line).map_err(|e| format!("commands, line {}: {e}", n + 1))?;
            drafts.push(CommandDraft {
                argv,
                env: Default::default(),
                cwd: None,
                timeout: None,
            });
        }
        steps.push(StepDraft {
            name: None,
            exec: Some(drafts),
            agent: None,
            prompt: None,
            model: None,
            profile: None,
            timeout: None,
            network: None,
        });
    } else if !agent.is_empty() {
        steps.push(StepDraft {
            name: None,
            exec: None,
            agent: Some(agent.to_owned()),
            prompt: None,
            model: None,
            profile: None,
            timeout: None,
            network: None,
        });
    }
    let labels = form
        .labels
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let mut needs = Vec::new();
    for raw in form
        .needs
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
    {
        let id = raw
            .trim_start_matches('#')
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("needs: `{raw}` is not a task number"))?;
        needs.push(TaskId(id));
    }
    let draft = TaskDraft {
        key: None,
        title: form.title.trim().to_owned(),
        body: form.body.clone(),
        labels,
        priority: 0,
        steps,
        max_attempts: None,
        retry: RetryPolicy::default(),
        timeout: None,
        requires_approval: form.requires_approval.is_some(),
        unique_key: None,
        tools: Vec::new(),
        budget: None,
    };
    let spec = TaskSpec::parse(draft).map_err(|e| e.to_string())?;
    Ok(NewTask {
        spec,
        needs_in_batch: Vec::new(),
        needs_existing: needs,
        parent: None,
        parent_in_batch: None,
    })
}

/// `POST /new`: add a task.
async fn add_task(
    State(state): State<ApiState>,
    CsrfForm { session, form }: CsrfForm<NewTaskForm>,
) -> Response {
    let again = |form: NewTaskForm, error: String| {
        let state = state.clone();
        let session = session.clone();
        async move {
            new_page(
                &state,
                &session,
                form,
                NewWorkflowForm::default(),
                Some(error),
                None,
            )
            .await
        }
    };
    let project = match ProjectDir::resolve(form.project.trim(), "project") {
        Ok(project) => project,
        Err(e) => return again(form, e.to_string()).await,
    };
    let task = match task_from_form(&form) {
        Ok(task) => task,
        Err(e) => return again(form, e).await,
    };
    match state.app.submit(&project, vec![task], &session.actor).await {
        Ok(submitted) => {
            let ids: Vec<String> = submitted.tasks.iter().map(|t| t.id.to_string()).collect();
            let mut message = format!("Added task {}.", ids.join(", "));
            for warning in &submitted.warnings {
                message.push(' ');
                message.push_str(warning);
            }
            redirect_with_flash("/", Flash { ok: true, message })
        }
        Err(e) if e.is_refusal() => again(form, e.to_string()).await,
        Err(e) => PageError::internal(&e).into_response(),
    }
}

/// `POST /new/workflow`: submit a workflow file's text.
async fn add_workflow(
    State(state): State<ApiState>,
    CsrfForm { session, form }: CsrfForm<NewWorkflowForm>,
) -> Response {
    let again = |form: NewWorkflowForm, error: String| {
        let state = state.clone();
        let session = session.clone();
        async move {
            new_page(
                &state,
                &session,
                NewTaskForm::default(),
                form,
                None,
                Some(error),
            )
            .await
        }
    };
    let project = match ProjectDir::resolve(form.project.trim(), "project") {
        Ok(project) => project,
        Err(e) => return again(form, e.to_string()).await,
    };
    let text = WorkflowText {
        file: "workflow.yml",
        text: &form.yaml,
    };
    match state
        .app
        .submit_workflow(&project, text, &session.actor)
        .await
    {
        Ok(submitted) => {
            let ids: Vec<String> = submitted.tasks.iter().map(|t| t.id.to_string()).collect();
            let workflow = submitted.tasks.first().and_then(|t| t.workflow);
            let mut message = format!(
                "Submitted the workflow{}: tasks {}.",
                workflow.map(|w| format!(" {w}")).unwrap_or_default(),
                ids.join(", ")
            );
            for warning in &submitted.warnings {
                message.push(' ');
                message.push_str(warning);
            }
            let to = workflow.map_or_else(|| "/".to_owned(), |w| format!("/?workflow={w}"));
            redirect_with_flash(&to, Flash { ok: true, message })
        }
        Err(e) if e.is_refusal() => again(form, e.to_string()).await,
        Err(e) => PageError::internal(&e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(agent: &str, commands: &str) -> NewTaskForm {
        NewTaskForm {
            title: "t".to_owned(),
            agent: agent.to_owned(),
            commands: commands.to_owned(),
            ..NewTaskForm::default()
        }
    }

    #[test]
    fn commands_are_split_into_argv_and_never_given_to_a_shell() {
        let task = task_from_form(&form("", "echo 'a b' c\n\n  true  ")).unwrap();
        let json = serde_json::to_value(&task.spec.steps).unwrap();
        assert_eq!(
            json[0]["commands"][0]["argv"],
            serde_json::json!(["echo", "a b", "c"])
        );
        assert_eq!(json[0]["commands"][1]["argv"], serde_json::json!(["true"]));
        assert!(task_from_form(&form("", "echo 'unclosed")).is_err());
        assert!(task_from_form(&form("sim", "true")).is_err());
    }

    #[test]
    fn labels_needs_and_an_agent_step() {
        let mut f = form("sim", "");
        f.labels = "a, b,,".to_owned();
        f.needs = "#3, 4 5".to_owned();
        f.requires_approval = Some("on".to_owned());
        let task = task_from_form(&f).unwrap();
        assert_eq!(task.spec.labels, vec!["a", "b"]);
        assert_eq!(task.needs_existing, vec![TaskId(3), TaskId(4), TaskId(5)]);
        assert!(task.spec.requires_approval);
        assert_eq!(task.spec.steps.len(), 1);
        f.needs = "x".to_owned();
        assert!(task_from_form(&f)
            .unwrap_err()
            .contains("not a task number"));
        // No title: the core's own message.
        assert!(task_from_form(&NewTaskForm::default()).is_err());
    }
}
