//! `@orch` mentions in GitHub's `issue_comment` webhook (issue 12): a comment mentioning the
//! handle on an issue or pull request linked to a task starts a follow-up run of that task with
//! the comment as its prompt, once per comment id (`orch_app::App::mention`). Comments from
//! people without write access (`author_association`, `orch_core::forge::mention`) are refused,
//! linked or not. On an unlinked issue the webhook goes on as before (a new task). A mention on
//! a task that has not finished is `deferred`: the forge poller starts its follow-up once it
//! has (`crate::forge_mentions`).

use axum::http::StatusCode;
use axum::Json;
use orch_app::{AppError, ProjectDir};
use orch_core::forge::mention::{follow_up_message, may_direct};
use orch_core::forge::RepoSlug;
use orch_core::ReplyMessage;
use orch_store::StoreError;
use serde_json::Value;

use super::error::ApiError;
use super::webhooks::{mentions, WebhookOutcome};
use super::ApiState;

/// The answer to an `issue_comment` delivery if the mention rules decide it (refused, or a
/// follow-up of a linked task); `None`: go on as for any comment.
pub(super) async fn follow_up(
    state: &ApiState,
    payload: &Value,
) -> Result<Option<(StatusCode, Json<WebhookOutcome>)>, ApiError> {
    let settings = &state.github;
    let comment = &payload["comment"];
    let text = comment["body"].as_str().unwrap_or_default();
    if payload["action"] != "created" || !mentions(text, &settings.handle) {
        return Ok(None);
    }
    if let Err(reason) = may_direct(comment["author_association"].as_str()) {
        return Ok(Some(ignored(None, reason)));
    }
    let (Some(project), Some(repo), Some(number), Some(comment_id)) = (
        settings.project.as_deref(),
        payload["repository"]["full_name"]
            .as_str()
            .and_then(|name| RepoSlug::parse(name).ok()),
        payload["issue"]["number"].as_u64(),
        comment["id"].as_u64(),
    ) else {
        return Ok(None);
    };
    let project = ProjectDir::resolve(&project.to_string_lossy(), "project")?;
    let kind = if payload["issue"]["pull_request"].is_object() {
        "pull request"
    } else {
        "issue"
    };
    let author = comment["user"]["login"].as_str().unwrap_or("someone");
    let message = ReplyMessage::parse(follow_up_message(
        author,
        &format!("{kind} {repo}#{number}"),
        text,
        comment["html_url"].as_str(),
    ))?;
    match state
        .app
        .mention(&project, &repo, (number, comment_id), &message, "webhook")
        .await
    {
        Ok(None) => Ok(None),
        Ok(Some(mentioned)) => {
            let (status, outcome) = match mentioned.status {
                Some(_) => (StatusCode::CREATED, "replied"),
                None => (StatusCode::OK, "duplicate"),
            };
            Ok(Some((
                status,
                Json(WebhookOutcome {
                    outcome: outcome.to_owned(),
                    task: Some(mentioned.task.0),
                    reason: None,
                }),
            )))
        }
        // Nothing is recorded: the poller reads the comment again until the task has finished
        // and starts the follow-up then, once (`crate::forge_mentions`).
        Err(AppError::Store(
            StoreError::Transition { task, .. } | StoreError::Conflict { task, .. },
        )) => {
            crate::forge_poll::nudge();
            Ok(Some((
                StatusCode::ACCEPTED,
                Json(WebhookOutcome {
                    outcome: "deferred".to_owned(),
                    task: Some(task.0),
                    reason: Some(format!(
                        "task {task} is not finished; its follow-up starts once it is (the \
                         forge poller reads the comment again)"
                    )),
                }),
            )))
        }
        Err(e) => Err(e.into()),
    }
}

fn ignored(task: Option<i64>, reason: String) -> (StatusCode, Json<WebhookOutcome>) {
    (
        StatusCode::ACCEPTED,
        Json(WebhookOutcome {
            outcome: "ignored".to_owned(),
            task,
            reason: Some(reason),
        }),
    )
}
