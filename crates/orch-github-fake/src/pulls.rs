//! Pull requests (create, read, update, merge for real in the bare repository), reviews, review
//! comments, check runs, commit statuses and branch deletion.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::extract::{Extension, OriginalUri, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{event_payload, not_found, paginate, unprocessable, with_repo, Shard};
use crate::git;
use crate::middleware::{error, Caller};
use crate::state::{issue_json, timestamp, user, Issue, Pull, Repo};

/// Reads the head branch's tip into `pull.head_sha` (kept when the branch is gone).
pub fn refresh_head(repo: &mut Repo, number: u64) {
    let bare = repo.bare.clone();
    if let Some(pull) = repo.pulls.get_mut(&number) {
        if let Ok(Some(sha)) = git::tip(&bare, &pull.head) {
            pull.head_sha = sha;
        }
    }
}

/// The combined state of the check runs and statuses on `sha` (GraphQL's `statusCheckRollup`):
/// `None` when there are none.
pub fn rollup(repo: &Repo, sha: &str) -> Option<&'static str> {
    let mut states: Vec<&'static str> = Vec::new();
    for run in repo.check_runs.iter().filter(|run| run.head_sha == sha) {
        states.push(match (run.status.as_str(), run.conclusion.as_deref()) {
            ("completed", Some("success" | "neutral" | "skipped")) => "SUCCESS",
            ("completed", _) => "FAILURE",
            _ => "PENDING",
        });
    }
    for status in latest_statuses(repo, sha) {
        states.push(match status.state.as_str() {
            "success" => "SUCCESS",
            "pending" => "PENDING",
            "error" => "ERROR",
            _ => "FAILURE",
        });
    }
    if states.is_empty() {
        None
    } else if states.contains(&"FAILURE") {
        Some("FAILURE")
    } else if states.contains(&"ERROR") {
        Some("ERROR")
    } else if states.contains(&"PENDING") {
        Some("PENDING")
    } else {
        Some("SUCCESS")
    }
}

/// The latest status of each context on `sha`.
fn latest_statuses<'a>(repo: &'a Repo, sha: &str) -> Vec<&'a crate::state::CommitStatus> {
    let mut latest: Vec<&crate::state::CommitStatus> = Vec::new();
    for status in repo
        .statuses
        .iter()
        .filter(|status| status.sha == sha)
        .rev()
    {
        if !latest.iter().any(|seen| seen.context == status.context) {
            latest.push(status);
        }
    }
    latest
}

/// GraphQL's `reviewDecision`: each reviewer's latest approving or blocking review counts.
pub fn review_decision(repo: &Repo, number: u64) -> Option<&'static str> {
    let mut latest: HashMap<&str, &str> = HashMap::new();
    for review in repo.reviews.iter().filter(|review| review.pull == number) {
        if review.state != "COMMENTED" {
            latest.insert(review.user.as_str(), review.state.as_str());
        }
    }
    if latest.values().any(|state| *state == "CHANGES_REQUESTED") {
        Some("CHANGES_REQUESTED")
    } else if latest.values().any(|state| *state == "APPROVED") {
        Some("APPROVED")
    } else if repo.require_review {
        Some("REVIEW_REQUIRED")
    } else {
        None
    }
}

/// Whether the pull merges cleanly now (`None` once it is closed).
pub fn mergeable(repo: &Repo, pull: &Pull) -> Option<bool> {
    if pull.state != "open" {
        return None;
    }
    if let Some(forced) = pull.mergeable_override {
        return Some(forced);
    }
    git::mergeable(&repo.bare, &pull.base, &pull.head).ok()
}

/// REST's `mergeable_state`.
pub fn mergeable_state(repo: &Repo, pull: &Pull) -> &'static str {
    match mergeable(repo, pull) {
        None => "unknown",
        Some(false) => "dirty",
        Some(true) => {
            if repo.require_review && review_decision(repo, pull.number) != Some("APPROVED") {
                "blocked"
            } else if matches!(
                rollup(repo, &pull.head_sha),
                Some("FAILURE" | "ERROR" | "PENDING")
            ) {
                "unstable"
            } else if pull.draft {
                "draft"
            } else {
                "clean"
            }
        }
    }
}

pub fn pull_json(base: &str, repo: &Repo, pull: &Pull) -> Value {
    let issue = repo.issues.get(&pull.number);
    let base_sha = git::tip(&repo.bare, &pull.base)
        .ok()
        .flatten()
        .unwrap_or_default();
    json!({
        "id": pull.id,
        "node_id": format!("PR_{}", pull.id),
        "number": pull.number,
        "title": issue.map(|issue| issue.title.clone()),
        "body": issue.and_then(|issue| issue.body.clone()),
        "state": pull.state,
        "draft": pull.draft,
        "merged": pull.merged,
        "mergeable": mergeable(repo, pull),
        "mergeable_state": mergeable_state(repo, pull),
        "merge_commit_sha": pull.merge_commit_sha,
        "user": user(issue.map_or("ghost", |issue| issue.author.as_str())),
        "head": {
            "ref": pull.head,
            "sha": pull.head_sha,
            "label": format!("{}:{}", repo.owner, pull.head),
            "repo": { "full_name": repo.full_name() },
        },
        "base": {
            "ref": pull.base,
            "sha": base_sha,
            "label": format!("{}:{}", repo.owner, pull.base),
            "repo": { "full_name": repo.full_name() },
        },
        "url": format!("{base}/repos/{}/pulls/{}", repo.full_name(), pull.number),
        "html_url": format!("{base}/{}/pull/{}", repo.full_name(), pull.number),
        "created_at": issue.map(|issue| timestamp(issue.created_at)),
        "updated_at": issue.map(|issue| timestamp(issue.updated_at)),
    })
}

/// `owner:branch` or `branch` → `branch` when the owner is the repository's.
fn head_branch(repo: &Repo, head: &str) -> Result<String, String> {
    match head.split_once(':') {
        Some((owner, branch)) if owner == repo.owner => Ok(branch.to_owned()),
        Some((owner, _)) => Err(format!(
            "forks are not supported by the fake (head owner {owner})"
        )),
        None => Ok(head.to_owned()),
    }
}

pub async fn list(
    State(shared): Shard,
    Path((owner, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base_url = shared.base_url.clone();
    with_repo(&shared, &owner, &name, |repo, _| {
        let state_filter = query.get("state").map_or("open", String::as_str);
        let head = match query.get("head").map(|head| head_branch(repo, head)) {
            Some(Ok(head)) => Some(head),
            // GitHub answers an empty list for another owner's head.
            Some(Err(_)) => return paginate(&base_url, &uri, &query, Vec::new()),
            None => None,
        };
        let numbers: Vec<u64> = repo
            .pulls
            .values()
            .filter(|pull| state_filter == "all" || pull.state == state_filter)
            .filter(|pull| head.as_ref().is_none_or(|head| pull.head == *head))
            .filter(|pull| query.get("base").is_none_or(|base| pull.base == *base))
            .map(|pull| pull.number)
            .rev()
            .collect();
        for number in &numbers {
            refresh_head(repo, *number);
        }
        let items = numbers
            .iter()
            .filter_map(|number| repo.pulls.get(number))
            .map(|pull| pull_json(&base_url, repo, pull))
            .collect();
        paginate(&base_url, &uri, &query, items)
    })
}

#[derive(Debug, Deserialize)]
pub struct NewPull {
    title: String,
    head: String,
    base: String,
    body: Option<String>,
    #[serde(default)]
    draft: bool,
}

pub async fn create(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    Json(new): Json<NewPull>,
) -> Response {
    let (response, payload) = {
        let mut state = shared.lock();
        let id = state.take_id();
        let issue_id = state.take_id();
        let Some(repo) = state.repo_mut(&owner, &name) else {
            return not_found();
        };
        let head = match head_branch(repo, &new.head) {
            Ok(head) => head,
            Err(message) => return unprocessable(format!("Validation Failed: {message}")),
        };
        let (Ok(Some(head_sha)), Ok(Some(base_sha))) =
            (git::tip(&repo.bare, &head), git::tip(&repo.bare, &new.base))
        else {
            return unprocessable(format!(
                "Validation Failed: the head {head} or the base {} is not a branch of {}",
                new.base,
                repo.full_name()
            ));
        };
        if head_sha == base_sha {
            return unprocessable(format!(
                "Validation Failed: No commits between {} and {head}",
                new.base
            ));
        }
        if repo
            .pulls
            .values()
            .any(|pull| pull.state == "open" && pull.head == head && pull.base == new.base)
        {
            return unprocessable(format!(
                "Validation Failed: A pull request already exists for {}:{head}.",
                repo.owner
            ));
        }
        let number = repo.take_number();
        let now = SystemTime::now();
        repo.issues.insert(
            number,
            Issue {
                id: issue_id,
                number,
                title: new.title,
                body: new.body,
                state: "open".into(),
                labels: Vec::new(),
                assignees: Vec::new(),
                author: caller.login.clone(),
                is_pull: true,
                created_at: now,
                updated_at: now,
            },
        );
        let pull = Pull {
            id,
            number,
            head,
            base: new.base,
            draft: new.draft,
            state: "open".into(),
            merged: false,
            merge_commit_sha: None,
            merge_method: None,
            mergeable_override: None,
            head_sha,
        };
        let value = pull_json(&shared.base_url, repo, &pull);
        repo.pulls.insert(number, pull);
        let payload = event_payload(
            &shared.base_url,
            repo,
            &caller.login,
            "opened",
            json!({ "number": number, "pull_request": value }),
        );
        ((StatusCode::CREATED, Json(value)).into_response(), payload)
    };
    shared.emit("pull_request", payload);
    response
}

pub async fn get(
    State(shared): Shard,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, base| {
        refresh_head(repo, number);
        match repo.pulls.get(&number) {
            Some(pull) => Json(pull_json(base, repo, pull)).into_response(),
            None => not_found(),
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct PullPatch {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    base: Option<String>,
}

pub async fn update(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(patch): Json<PullPatch>,
) -> Response {
    let (response, payload) = {
        let mut state = shared.lock();
        let Some(repo) = state.repo_mut(&owner, &name) else {
            return not_found();
        };
        refresh_head(repo, number);
        let Some(mut pull) = repo.pulls.get(&number).cloned() else {
            return not_found();
        };
        let mut action = "edited";
        if let Some(new_state) = &patch.state {
            match new_state.as_str() {
                "open" | "closed" if pull.merged => {
                    return unprocessable("Validation Failed: the pull request is merged")
                }
                "open" | "closed" => {
                    if *new_state != pull.state {
                        action = if new_state == "closed" {
                            "closed"
                        } else {
                            "reopened"
                        };
                    }
                    pull.state = new_state.clone();
                }
                other => {
                    return unprocessable(format!(
                        "Validation Failed: state must be open or closed, not {other}"
                    ))
                }
            }
        }
        if let Some(base) = patch.base {
            pull.base = base;
        }
        let issue = repo.issues.get_mut(&number).expect("a pull has its issue");
        if let Some(title) = patch.title {
            issue.title = title;
        }
        if let Some(body) = patch.body {
            issue.body = Some(body);
        }
        issue.state = pull.state.clone();
        issue.updated_at = SystemTime::now();
        let value = pull_json(&shared.base_url, repo, &pull);
        repo.pulls.insert(number, pull);
        let payload = event_payload(
            &shared.base_url,
            repo,
            &caller.login,
            action,
            json!({ "number": number, "pull_request": value }),
        );
        (Json(value).into_response(), payload)
    };
    shared.emit("pull_request", payload);
    response
}

#[derive(Debug, Deserialize)]
pub struct MergeRequest {
    merge_method: Option<String>,
    sha: Option<String>,
    commit_title: Option<String>,
}

/// Issue numbers a pull's body closes (`Closes #N`, `Fixes #N`, `Resolves #N`), like GitHub.
fn closing_references(body: &str) -> Vec<u64> {
    let lower = body.to_lowercase();
    let mut numbers = Vec::new();
    for keyword in [
        "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
    ] {
        let needle = format!("{keyword} #");
        for (at, _) in lower.match_indices(&needle) {
            let before = lower[..at].chars().next_back();
            if before.is_some_and(char::is_alphanumeric) {
                continue;
            }
            let digits: String = lower[at + needle.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(number) = digits.parse() {
                numbers.push(number);
            }
        }
    }
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

pub async fn merge(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(request): Json<MergeRequest>,
) -> Response {
    let mut events = Vec::new();
    let response = {
        let mut state = shared.lock();
        let Some(repo) = state.repo_mut(&owner, &name) else {
            return not_found();
        };
        refresh_head(repo, number);
        let Some(pull) = repo.pulls.get(&number).cloned() else {
            return not_found();
        };
        let method = request.merge_method.unwrap_or_else(|| "merge".into());
        if !matches!(method.as_str(), "merge" | "squash" | "rebase") {
            return unprocessable(format!(
                "Validation Failed: merge_method must be merge, squash or rebase, not {method}"
            ));
        }
        if pull.merged || pull.state != "open" {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is not mergeable",
            );
        }
        if pull.draft {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is still a draft",
            );
        }
        if request
            .sha
            .as_ref()
            .is_some_and(|sha| *sha != pull.head_sha)
        {
            return error(
                StatusCode::CONFLICT,
                "Head branch was modified. Review and try the merge again.",
            );
        }
        if pull.mergeable_override == Some(false) {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is not mergeable",
            );
        }
        let title = request.commit_title.unwrap_or_else(|| {
            let issue_title = repo
                .issues
                .get(&number)
                .map_or(String::new(), |issue| issue.title.clone());
            format!("{issue_title} (#{number})")
        });
        let merged = match git::merge(&repo.bare, &pull.base, &pull.head, &method, &title) {
            Ok(Some(sha)) => sha,
            Ok(None) => {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Pull Request is not mergeable (conflicts)",
                )
            }
            Err(err) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the fake could not merge: {err:#}"),
                )
            }
        };
        let now = SystemTime::now();
        let pull_entry = repo.pulls.get_mut(&number).expect("checked above");
        pull_entry.state = "closed".into();
        pull_entry.merged = true;
        pull_entry.merge_commit_sha = Some(merged.clone());
        pull_entry.merge_method = Some(method);
        let body = {
            let issue = repo.issues.get_mut(&number).expect("a pull has its issue");
            issue.state = "closed".into();
            issue.updated_at = now;
            issue.body.clone().unwrap_or_default()
        };
        let pull_value = pull_json(
            &shared.base_url,
            repo,
            repo.pulls.get(&number).expect("checked above"),
        );
        events.push((
            "pull_request",
            event_payload(
                &shared.base_url,
                repo,
                &caller.login,
                "closed",
                json!({ "number": number, "pull_request": pull_value }),
            ),
        ));
        // Merging into the default branch closes the issues the body names, like GitHub.
        if pull.base == repo.default_branch {
            for closed in closing_references(&body) {
                if let Some(issue) = repo
                    .issues
                    .get_mut(&closed)
                    .filter(|issue| !issue.is_pull && issue.state == "open")
                {
                    issue.state = "closed".into();
                    issue.updated_at = now;
                    let issue = issue.clone();
                    let value = issue_json(&shared.base_url, repo, &issue);
                    events.push((
                        "issues",
                        event_payload(
                            &shared.base_url,
                            repo,
                            &caller.login,
                            "closed",
                            json!({ "issue": value }),
                        ),
                    ));
                }
            }
        }
        Json(
            json!({ "sha": merged, "merged": true, "message": "Pull Request successfully merged" }),
        )
        .into_response()
    };
    for (event, payload) in events {
        shared.emit(event, payload);
    }
    response
}

pub fn review_json(review: &crate::state::Review) -> Value {
    json!({
        "id": review.id,
        "user": user(&review.user),
        "body": review.body,
        "state": review.state,
        "commit_id": review.commit_id,
        "submitted_at": timestamp(review.submitted_at),
    })
}

pub fn review_comment_json(comment: &crate::state::ReviewComment) -> Value {
    json!({
        "id": comment.id,
        "pull_request_review_id": comment.review,
        "user": user(&comment.user),
        "path": comment.path,
        "line": comment.line,
        "body": comment.body,
        "commit_id": comment.commit_id,
        "created_at": timestamp(comment.created_at),
        "updated_at": timestamp(comment.created_at),
    })
}

pub async fn reviews(
    State(shared): Shard,
    Path((owner, name, number)): Path<(String, String, u64)>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = shared.base_url.clone();
    with_repo(&shared, &owner, &name, |repo, _| {
        if !repo.pulls.contains_key(&number) {
            return not_found();
        }
        let items = repo
            .reviews
            .iter()
            .filter(|review| review.pull == number)
            .map(review_json)
            .collect();
        paginate(&base, &uri, &query, items)
    })
}

pub async fn review_comments(
    State(shared): Shard,
    Path((owner, name, number)): Path<(String, String, u64)>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = shared.base_url.clone();
    with_repo(&shared, &owner, &name, |repo, _| {
        if !repo.pulls.contains_key(&number) {
            return not_found();
        }
        let items = repo
            .review_comments
            .iter()
            .filter(|comment| comment.pull == number)
            .map(review_comment_json)
            .collect();
        paginate(&base, &uri, &query, items)
    })
}

/// A branch name or a sha → the commit, for the check and status routes.
fn commit_of(repo: &Repo, reference: &str) -> Option<String> {
    git::resolve(&repo.bare, reference).ok()
}

pub fn check_run_json(run: &crate::state::CheckRun) -> Value {
    json!({
        "id": run.id,
        "name": run.name,
        "head_sha": run.head_sha,
        "status": run.status,
        "conclusion": run.conclusion,
        "output": { "title": run.title, "summary": run.summary, "text": run.text },
        "details_url": format!("https://ci.invalid/runs/{}", run.id),
        "html_url": format!("https://ci.invalid/runs/{}", run.id),
    })
}

pub async fn check_runs(
    State(shared): Shard,
    Path((owner, name, reference)): Path<(String, String, String)>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, _| {
        let Some(sha) = commit_of(repo, &reference) else {
            return unprocessable(format!("No commit found for SHA: {reference}"));
        };
        let runs: Vec<Value> = repo
            .check_runs
            .iter()
            .filter(|run| run.head_sha == sha)
            .map(check_run_json)
            .collect();
        Json(json!({ "total_count": runs.len(), "check_runs": runs })).into_response()
    })
}

pub async fn combined_status(
    State(shared): Shard,
    Path((owner, name, reference)): Path<(String, String, String)>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, _| {
        let Some(sha) = commit_of(repo, &reference) else {
            return unprocessable(format!("No commit found for SHA: {reference}"));
        };
        let statuses = latest_statuses(repo, &sha);
        let state =
            if statuses.is_empty() || statuses.iter().any(|status| status.state == "pending") {
                "pending"
            } else if statuses
                .iter()
                .any(|status| status.state == "failure" || status.state == "error")
            {
                "failure"
            } else {
                "success"
            };
        let values: Vec<Value> = statuses
            .iter()
            .map(|status| {
                json!({
                    "id": status.id,
                    "context": status.context,
                    "state": status.state,
                    "description": status.description,
                    "target_url": status.target_url,
                })
            })
            .collect();
        Json(json!({ "state": state, "sha": sha, "total_count": values.len(), "statuses": values }))
            .into_response()
    })
}

pub async fn delete_branch(
    State(shared): Shard,
    Path((owner, name, branch)): Path<(String, String, String)>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, _| {
        if branch == repo.default_branch {
            return unprocessable("Validation Failed: the default branch cannot be deleted");
        }
        match git::tip(&repo.bare, &branch) {
            Ok(Some(_)) => match git::git(
                &repo.bare,
                &["update-ref", "-d", &format!("refs/heads/{branch}")],
            ) {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")),
            },
            _ => unprocessable("Reference does not exist"),
        }
    })
}
