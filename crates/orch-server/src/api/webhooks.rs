//! Webhook intake: `POST /v1/webhooks/tasks` (admin token; a task in the shape `POST /v1/tasks`
//! takes) and `POST /v1/webhooks/github` (no token: an HMAC-SHA256 signature of the body with the
//! shared secret). A replayed delivery id creates nothing and answers with the task it created.
//!
//! GitHub events that create a task: `issues` `opened` or `labeled` when the issue carries the
//! project's trigger label (`[forge] trigger_label`, default [`GITHUB_LABEL`]; one task per
//! issue, however often it is opened or labeled), and
//! `issue_comment` `created` when the comment mentions `@<handle>`: on an issue or pull request
//! linked to a task, a follow-up run of that task (`mentions.rs`), else a new task (one per
//! comment either way; comments from people without write access are refused). The
//! events of a pull request's feedback loop (`check_run`, `check_suite`, `status`,
//! `pull_request`, `pull_request_review`, `pull_request_review_comment`) only nudge the forge
//! poller (`crate::forge_poll`) to read the pull requests back now: 202 `nudged`. Every other
//! event is answered 202 `ignored`.

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use hmac::{Hmac, Mac};
use orch_app::ProjectDir;
use orch_core::{NewTask, Task};
use orch_store::Delivery;
use serde::Deserialize;
use sha2::Sha256;

use super::error::{ApiError, ErrorBody};
use super::json::{from_value, ApiJson};
use super::tasks::{new_task, CreateTask};
use super::ApiState;
use orch_api::TaskView;
pub use orch_api::WebhookOutcome;

/// The actor named in events of tasks created by webhooks.
const ACTOR: &str = "webhook";

/// An issue creates a task only while it carries the trigger label; this one unless the
/// project's `[forge] trigger_label` names another.
pub const GITHUB_LABEL: &str = orch_core::forge::DEFAULT_TRIGGER_LABEL;

/// How the GitHub webhook is set up (from [`crate::ServeOptions`]).
#[derive(Debug, Clone)]
pub struct GithubSettings {
    /// The shared secret; `None`: the route answers 404.
    pub secret: Option<String>,
    /// Comments mentioning `@<handle>` create tasks.
    pub handle: String,
    /// The project GitHub's tasks belong to.
    pub project: Option<PathBuf>,
}

/// Create a task from a webhook, once per delivery id.
#[utoipa::path(post, path = "/v1/webhooks/tasks", tag = "webhooks",
    request_body(content = CreateTask, description = "A task as `POST /v1/tasks` takes it, plus an optional `delivery_id` (string) field"),
    params(("X-Delivery-Id" = Option<String>, Header, description = "Makes the request idempotent: a repeated id creates nothing and answers 200 with the task the first request created")),
    security(("bearer" = [])),
    responses((status = 201, body = TaskView, description = "Created"),
        (status = 200, body = TaskView, description = "A replayed delivery: the task it created"),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn tasks(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let invalid_id = |message: &str| ApiError::Invalid {
        field: Some("delivery_id".to_owned()),
        message: format!("delivery_id: {message}"),
    };
    let in_body = match body.as_object_mut().and_then(|o| o.remove("delivery_id")) {
        None => None,
        Some(serde_json::Value::String(id)) => Some(id),
        Some(_) => return Err(invalid_id("must be a string")),
    };
    let in_header = match headers.get("x-delivery-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| invalid_id("the X-Delivery-Id header is not text"))?
                .to_owned(),
        ),
    };
    let delivery = match (in_header, in_body) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid_id(
                "the X-Delivery-Id header and the delivery_id field differ; send one",
            ))
        }
        (a, b) => a.or(b),
    };
    if delivery.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(invalid_id("must not be empty"));
    }
    let request: CreateTask = from_value(body)?;
    let project = ProjectDir::resolve(&request.project, "project")?;
    let task = new_task(request)?;
    let deliveries: Vec<Delivery> = delivery
        .into_iter()
        .map(|id| Delivery::new("tasks", id))
        .collect();
    let (task, created) = submit_once(&state, &project, &deliveries, task).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(TaskView::from(&task))))
}

/// GitHub's webhook: `issues` (opened/labeled with the label `orch`) and `issue_comment`
/// (mentioning the handle) create tasks. Authenticated by `X-Hub-Signature-256`, not by a token.
#[utoipa::path(post, path = "/v1/webhooks/github", tag = "webhooks",
    request_body(content = Object, description = "GitHub's event payload, as sent"),
    params(
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=<hex>`: HMAC-SHA256 of the raw body with the shared secret"),
        ("X-GitHub-Event" = String, Header, description = "The event type"),
        ("X-GitHub-Delivery" = String, Header, description = "The delivery's id; a replay creates nothing")),
    security(("github_signature" = [])),
    responses((status = 201, body = WebhookOutcome, description = "A task was created"),
        (status = 200, body = WebhookOutcome, description = "A replay: the task was created before"),
        (status = 202, body = WebhookOutcome, description = "The event creates no task"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "GitHub webhooks are not configured"),
        (status = 422, body = ErrorBody)))]
pub async fn github(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<WebhookOutcome>), ApiError> {
    let settings = &state.github;
    let Some(secret) = settings.secret.as_deref() else {
        return Err(ApiError::NotFound(format!(
            "GitHub webhooks are not configured; set {} for the daemon (the secret entered in \
             the repository's webhook settings)",
            crate::GITHUB_WEBHOOK_SECRET_ENV
        )));
    };
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
        _ => ApiError::Malformed {
            message: rejection.body_text(),
        },
    })?;
    verify_signature(secret, &headers, &body)?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Malformed {
                message: format!("the {name} header is missing; GitHub always sends it"),
            })
    };
    let event = header("x-github-event")?;
    let delivery = header("x-github-delivery")?;
    let payload: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::Malformed {
            message: format!("the body is not valid JSON: {e}"),
        })?;
    if crate::forge_poll::NUDGING_EVENTS.contains(&event.as_str()) {
        crate::forge_poll::nudge();
        return Ok((
            StatusCode::ACCEPTED,
            Json(WebhookOutcome {
                outcome: "nudged".to_owned(),
                task: None,
                reason: None,
            }),
        ));
    }
    // A mention on a linked issue or pull request is a follow-up of its task (`mentions.rs`).
    if event == "issue_comment" {
        if let Some(answer) = super::mentions::follow_up(&state, &payload).await? {
            return Ok(answer);
        }
    }
    // An issue becomes a task exactly once, and is linked to it (`App::submit_issue`).
    let issue = (event == "issues")
        .then(|| super::forge::issue_ref(&payload))
        .flatten();
    let plan = match event.as_str() {
        "issues" => plan_issue(from_value(payload)?, &super::forge::trigger_label(&state)),
        "issue_comment" => plan_comment(from_value(payload)?, &settings.handle),
        other => Err(format!("the event `{other}` creates no task")),
    };
    let (request, key, mut deliveries) = match plan {
        Ok(plan) => plan,
        Err(reason) => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(WebhookOutcome {
                    outcome: "ignored".to_owned(),
                    task: None,
                    reason: Some(reason),
                }),
            ))
        }
    };
    let Some(project) = settings.project.as_deref() else {
        return Err(ApiError::Invalid {
            field: None,
            message: "no project is configured for GitHub's tasks; start `orch serve` with \
                      --github-project DIR (the repository's checkout on this machine)"
                .to_owned(),
        });
    };
    let project = ProjectDir::resolve(&project.to_string_lossy(), "project")?;
    let mut task = new_task(request)?;
    task.spec.key = Some(key);
    if issue.is_some() {
        // An issue with the plan label is planned first (`orch_core::planner`).
        super::forge::plan_if_labelled(&state, &project, &mut task);
    }
    deliveries.insert(0, Delivery::new("github", delivery));
    let (task, created) = match &issue {
        Some(issue) => {
            super::forge::submit_issue(&state, &project, issue, &deliveries, task).await?
        }
        None => submit_once(&state, &project, &deliveries, task).await?,
    };
    let id = task.id;
    let (status, outcome) = if created {
        (StatusCode::CREATED, "created")
    } else {
        (StatusCode::OK, "duplicate")
    };
    Ok((
        status,
        Json(WebhookOutcome {
            outcome: outcome.to_owned(),
            task: Some(id.0),
            reason: None,
        }),
    ))
}

/// Check `X-Hub-Signature-256` against the body, in constant time (`Mac::verify_slice`).
fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let refused = |why: &str| ApiError::SignatureRefused(why.to_owned());
    let header = headers.get("x-hub-signature-256").ok_or_else(|| {
        refused("the X-Hub-Signature-256 header is missing; set the webhook's secret on GitHub")
    })?;
    let signature = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .ok_or_else(|| refused("X-Hub-Signature-256 is not `sha256=<hex>`"))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| ApiError::internal(&e))?;
    mac.update(body);
    mac.verify_slice(&signature).map_err(|_| {
        refused("X-Hub-Signature-256 does not match the body; check the shared secret")
    })
}

/// A task to create, its key, and the ids (besides the delivery's) that make it unique.
pub(crate) type Plan = (CreateTask, String, Vec<Delivery>);

pub(super) fn plan_issue(event: IssuesEvent, trigger_label: &str) -> Result<Plan, String> {
    if !matches!(event.action.as_str(), "opened" | "labeled") {
        return Err(format!("issues `{}` creates no task", event.action));
    }
    if !event.issue.labels.iter().any(|l| l.name == trigger_label) {
        return Err(format!("the issue has no label `{trigger_label}`"));
    }
    let issue = event.issue;
    Ok(issue_task(
        &event.repository.full_name,
        issue.number,
        &issue.title,
        issue.body.unwrap_or_default(),
        issue.html_url.as_deref(),
        issue.labels.into_iter().map(|l| l.name).collect(),
    ))
}

/// The task an issue becomes, whether a webhook delivered it or the poller found it: the same
/// request, key (`github:<repo>#<n>`) and id (`github-issue`/`<repo>#<n>`), so both yield one
/// task.
pub(crate) fn issue_task(
    repo: &str,
    number: u64,
    title: &str,
    body: String,
    html_url: Option<&str>,
    labels: Vec<String>,
) -> Plan {
    let id = format!("{repo}#{number}");
    let mut body = body;
    if let Some(url) = html_url {
        body = format!("{body}\n\n(from {url})").trim().to_owned();
    }
    let request = task_request(title, body, labels);
    (
        request,
        format!("github:{id}"),
        vec![Delivery::new("github-issue", id)],
    )
}

pub(super) fn plan_comment(event: IssueCommentEvent, handle: &str) -> Result<Plan, String> {
    if event.action != "created" {
        return Err(format!("issue_comment `{}` creates no task", event.action));
    }
    if !mentions(&event.comment.body, handle) {
        return Err(format!("the comment does not mention @{handle}"));
    }
    let repo = event.repository.full_name;
    let number = event.issue.number;
    let author = event
        .comment
        .user
        .or(event.sender)
        .map_or_else(|| "someone".to_owned(), |u| u.login);
    let mut body = format!(
        "{author} on {repo}#{number} ({}):\n\n{}",
        event.issue.title, event.comment.body
    );
    if let Some(url) = &event.comment.html_url {
        body = format!("{body}\n\n(from {url})");
    }
    let request = task_request(
        &format!("{repo}#{number}: {}", event.issue.title),
        body,
        event.issue.labels.into_iter().map(|l| l.name).collect(),
    );
    let id = format!("{repo}#{number}/comment-{}", event.comment.id);
    Ok((
        request,
        format!("github:{id}"),
        vec![Delivery::new("github-comment", id)],
    ))
}

/// A task request with GitHub's text; titles longer than a task title may be are shortened.
fn task_request(title: &str, body: String, labels: Vec<String>) -> CreateTask {
    let first_line = title.lines().next().unwrap_or_default().trim();
    let title: String = first_line.chars().take(200).collect();
    CreateTask {
        project: String::new(),
        title,
        body,
        labels,
        priority: 0,
        needs: Vec::new(),
        steps: Vec::new(),
        max_attempts: None,
        requires_approval: false,
        unique_key: None,
        parent: None,
        tools: Vec::new(),
        budget: None,
    }
}

/// Whether `text` mentions `@handle` as a whole word (case-insensitive, as GitHub logins are).
pub(crate) fn mentions(text: &str, handle: &str) -> bool {
    let text = text.to_lowercase();
    let needle = format!("@{}", handle.to_lowercase());
    let is_word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    text.match_indices(&needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// Submit `task` through the application layer unless a delivery id is known; the task and
/// whether it was created now.
async fn submit_once(
    state: &ApiState,
    project: &ProjectDir,
    deliveries: &[Delivery],
    task: NewTask,
) -> Result<(Task, bool), ApiError> {
    let submitted = state
        .app
        .submit_once(project, deliveries, task, ACTOR)
        .await?;
    let task = submitted
        .tasks
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal(&"submit created no task"))?;
    Ok((task, submitted.created))
}

#[derive(Debug, Deserialize)]
pub(super) struct IssuesEvent {
    action: String,
    issue: Issue,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
pub(super) struct IssueCommentEvent {
    action: String,
    issue: Issue,
    comment: Comment,
    repository: Repository,
    #[serde(default)]
    sender: Option<User>,
}

#[derive(Debug, Deserialize)]
struct Issue {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    html_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Label {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Debug, Deserialize)]
struct Comment {
    id: u64,
    body: String,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Debug, Deserialize)]
struct User {
    login: String,
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn a_mention_is_a_whole_word_and_case_insensitive() {
        assert!(mentions("@orch please fix", "orch"));
        assert!(mentions("hey @Orch, look", "orch"));
        assert!(!mentions("hey @orchestra", "orch"));
        assert!(!mentions("mail me at a@orch", "orch"));
        assert!(!mentions("no mention", "orch"));
    }
}
