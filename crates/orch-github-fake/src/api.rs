//! The router, and the REST routes for repositories, issues, labels, comments and sub-issues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Extension, OriginalUri, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::middleware::{error, Caller};
use crate::state::{comment_json, issue_json, label_json, Comment, Issue, Label, Repo};
use crate::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    let repo = "/repos/{owner}/{repo}";
    Router::new()
        .route("/user", get(get_user))
        .route(repo, get(get_repo))
        .route(
            &format!("{repo}/installation"),
            get(crate::app::repo_installation),
        )
        .route(
            &format!("{repo}/issues"),
            get(list_issues).post(create_issue),
        )
        .route(
            &format!("{repo}/issues/{{number}}"),
            get(get_issue).patch(update_issue),
        )
        .route(
            &format!("{repo}/issues/{{number}}/comments"),
            get(list_comments).post(create_comment),
        )
        .route(
            &format!("{repo}/issues/comments/{{id}}"),
            get(get_comment).patch(update_comment),
        )
        .route(
            &format!("{repo}/issues/{{number}}/labels"),
            get(issue_labels)
                .post(add_labels)
                .put(set_labels)
                .delete(clear_labels),
        )
        .route(
            &format!("{repo}/issues/{{number}}/labels/{{name}}"),
            axum::routing::delete(remove_label),
        )
        .route(
            &format!("{repo}/issues/{{number}}/sub_issues"),
            get(list_sub_issues).post(add_sub_issue),
        )
        .route(
            &format!("{repo}/labels"),
            get(list_labels).post(create_label),
        )
        .route(&format!("{repo}/labels/{{name}}"), get(get_label))
        .route(
            &format!("{repo}/pulls"),
            get(crate::pulls::list).post(crate::pulls::create),
        )
        .route(
            &format!("{repo}/pulls/{{number}}"),
            get(crate::pulls::get).patch(crate::pulls::update),
        )
        .route(
            &format!("{repo}/pulls/{{number}}/merge"),
            put(crate::pulls::merge),
        )
        .route(
            &format!("{repo}/pulls/{{number}}/reviews"),
            get(crate::pulls::reviews),
        )
        .route(
            &format!("{repo}/pulls/{{number}}/comments"),
            get(crate::pulls::review_comments),
        )
        .route(
            &format!("{repo}/commits/{{reference}}/check-runs"),
            get(crate::pulls::check_runs),
        )
        .route(
            &format!("{repo}/commits/{{reference}}/status"),
            get(crate::pulls::combined_status),
        )
        .route(
            &format!("{repo}/git/refs/heads/{{*branch}}"),
            axum::routing::delete(crate::pulls::delete_branch),
        )
        .route("/graphql", post(crate::graphql::query))
        .route("/app", get(crate::app::get_app))
        .route(
            "/app/installations/{id}/access_tokens",
            post(crate::app::access_token),
        )
        .route("/git/{owner}/{*rest}", any(crate::git_http::serve))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            crate::middleware::around,
        ))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
        .with_state(shared)
}

pub type Shard = State<Arc<Shared>>;

pub fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

pub fn unprocessable(message: impl Into<String>) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// Runs `body` on the repository, or answers 404.
pub fn with_repo(
    shared: &Shared,
    owner: &str,
    name: &str,
    body: impl FnOnce(&mut Repo, &str) -> Response,
) -> Response {
    let mut state = shared.lock();
    match state.repo_mut(owner, name) {
        Some(repo) => body(repo, &shared.base_url),
        None => not_found(),
    }
}

/// One page of `items` as GitHub pages (`per_page`, `page`, a `Link` header to the next page).
pub fn paginate(
    base: &str,
    uri: &axum::http::Uri,
    query: &HashMap<String, String>,
    items: Vec<Value>,
) -> Response {
    let per_page = query
        .get("per_page")
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = query
        .get("page")
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = Json(Value::Array(slice)).into_response();
    if page * per_page < total {
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .filter(|(key, _)| key.as_str() != "page")
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        pairs.push(("page".into(), (page + 1).to_string()));
        pairs.sort();
        let encoded: Vec<String> = pairs
            .iter()
            .map(|(key, value)| format!("{key}={}", encode(value)))
            .collect();
        let next = format!("<{base}{}?{}>; rel=\"next\"", uri.path(), encoded.join("&"));
        if let Ok(value) = HeaderValue::from_str(&next) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub fn repository_json(base: &str, repo: &Repo) -> Value {
    json!({
        "id": repo.id,
        "name": repo.name,
        "full_name": repo.full_name(),
        "owner": { "login": repo.owner },
        "private": false,
        "default_branch": repo.default_branch,
        "clone_url": format!("{base}/git/{}.git", repo.full_name()),
        "html_url": format!("{base}/{}", repo.full_name()),
    })
}

async fn get_user(Extension(caller): Extension<Caller>) -> Response {
    Json(crate::state::user(&caller.login)).into_response()
}

async fn get_repo(State(shared): Shard, Path((owner, name)): Path<(String, String)>) -> Response {
    with_repo(&shared, &owner, &name, |repo, base| {
        Json(repository_json(base, repo)).into_response()
    })
}

async fn list_issues(
    State(shared): Shard,
    Path((owner, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let since = match query
        .get("since")
        .map(|since| humantime::parse_rfc3339_weak(since))
    {
        Some(Ok(since)) => Some(since),
        Some(Err(_)) => return unprocessable("since must be an ISO 8601 timestamp"),
        None => None,
    };
    let state_filter = query.get("state").map_or("open", String::as_str).to_owned();
    let wanted: Vec<String> = query
        .get("labels")
        .map(|labels| {
            labels
                .split(',')
                .map(|label| label.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let creator = query.get("creator").cloned();
    let ascending = query
        .get("direction")
        .is_some_and(|direction| direction == "asc");
    let by_updated = query.get("sort").is_some_and(|sort| sort == "updated");
    let shared2 = shared.clone();
    with_repo(&shared, &owner, &name, |repo, base| {
        let mut issues: Vec<&Issue> = repo
            .issues
            .values()
            .filter(|issue| state_filter == "all" || issue.state == state_filter)
            .filter(|issue| wanted.iter().all(|label| issue.labels.contains(label)))
            .filter(|issue| since.is_none_or(|since| issue.updated_at >= since))
            .filter(|issue| {
                creator
                    .as_ref()
                    .is_none_or(|creator| issue.author == *creator)
            })
            .collect();
        issues.sort_by_key(|issue| {
            (
                if by_updated {
                    issue.updated_at
                } else {
                    issue.created_at
                },
                issue.number,
            )
        });
        if !ascending {
            issues.reverse();
        }
        let items = issues
            .iter()
            .map(|issue| issue_json(base, repo, issue))
            .collect();
        paginate(&shared2.base_url, &uri, &query, items)
    })
}

#[derive(Debug, Deserialize)]
struct NewIssue {
    title: String,
    body: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    assignees: Vec<String>,
}

async fn create_issue(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    Json(new): Json<NewIssue>,
) -> Response {
    if new.title.trim().is_empty() {
        return unprocessable("Validation Failed: title is missing");
    }
    let (response, payload) = {
        let mut state = shared.lock();
        let id = state.take_id();
        let mut label_ids = Vec::new();
        for _ in &new.labels {
            label_ids.push(state.take_id());
        }
        let Some(repo) = state.repo_mut(&owner, &name) else {
            return not_found();
        };
        for (label, id) in new.labels.iter().zip(label_ids) {
            ensure_label(repo, label, id);
        }
        let number = repo.take_number();
        let now = SystemTime::now();
        let issue = Issue {
            id,
            number,
            title: new.title,
            body: new.body,
            state: "open".into(),
            labels: new.labels,
            assignees: new.assignees,
            author: caller.login.clone(),
            is_pull: false,
            created_at: now,
            updated_at: now,
        };
        let value = issue_json(&shared.base_url, repo, &issue);
        repo.issues.insert(number, issue);
        let payload = event_payload(
            &shared.base_url,
            repo,
            &caller.login,
            "opened",
            json!({ "issue": value }),
        );
        ((StatusCode::CREATED, Json(value)).into_response(), payload)
    };
    shared.emit("issues", payload);
    response
}

/// A webhook payload: `action`, the repository, the sender and `extra`'s fields.
pub fn event_payload(base: &str, repo: &Repo, sender: &str, action: &str, extra: Value) -> Value {
    let mut payload = json!({
        "action": action,
        "repository": repository_json(base, repo),
        "sender": crate::state::user(sender),
    });
    if let (Some(target), Value::Object(fields)) = (payload.as_object_mut(), extra) {
        target.extend(fields);
    }
    payload
}

/// Creates a label with a default colour when the repository lacks it (GitHub does so when an
/// issue is given an unknown label).
pub fn ensure_label(repo: &mut Repo, name: &str, id: u64) {
    repo.labels.entry(name.to_owned()).or_insert_with(|| Label {
        id,
        name: name.to_owned(),
        color: "ededed".into(),
        description: None,
    });
}

async fn get_issue(
    State(shared): Shard,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, base| {
        match repo.issues.get(&number) {
            Some(issue) => Json(issue_json(base, repo, issue)).into_response(),
            None => not_found(),
        }
    })
}

#[derive(Debug, Deserialize)]
struct IssuePatch {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    labels: Option<Vec<String>>,
}

async fn update_issue(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(patch): Json<IssuePatch>,
) -> Response {
    if let Some(state) = &patch.state {
        if state != "open" && state != "closed" {
            return unprocessable(format!(
                "Validation Failed: state must be open or closed, not {state}"
            ));
        }
    }
    let mut events = Vec::new();
    let response = {
        let mut state = shared.lock();
        let ids: Vec<u64> = (0..patch.labels.as_ref().map_or(0, Vec::len))
            .map(|_| state.take_id())
            .collect();
        let Some(repo) = state.repo_mut(&owner, &name) else {
            return not_found();
        };
        if let Some(labels) = &patch.labels {
            for (label, id) in labels.iter().zip(ids) {
                ensure_label(repo, label, id);
            }
        }
        let Some(issue) = repo.issues.get_mut(&number) else {
            return not_found();
        };
        let mut action = "edited";
        if let Some(title) = patch.title {
            issue.title = title;
        }
        if let Some(body) = patch.body {
            issue.body = Some(body);
        }
        if let Some(new_state) = patch.state {
            if new_state != issue.state {
                action = if new_state == "closed" {
                    "closed"
                } else {
                    "reopened"
                };
            }
            issue.state = new_state;
        }
        if let Some(labels) = patch.labels {
            issue.labels = labels;
        }
        issue.updated_at = SystemTime::now();
        let issue = issue.clone();
        let value = issue_json(&shared.base_url, repo, &issue);
        events.push(event_payload(
            &shared.base_url,
            repo,
            &caller.login,
            action,
            json!({ "issue": value }),
        ));
        Json(value).into_response()
    };
    for payload in events {
        shared.emit("issues", payload);
    }
    response
}

async fn list_comments(
    State(shared): Shard,
    Path((owner, name, number)): Path<(String, String, u64)>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = shared.base_url.clone();
    with_repo(&shared, &owner, &name, |repo, _| {
        if !repo.issues.contains_key(&number) {
            return not_found();
        }
        // `since`: only comments updated at or after it (GitHub's filter).
        let since = match query.get("since").map(|t| humantime::parse_rfc3339(t)) {
            None => None,
            Some(Ok(since)) => Some(since),
            Some(Err(_)) => return crate::api::unprocessable("since is not an ISO 8601 time"),
        };
        let items = repo
            .comments
            .values()
            .filter(|comment| comment.issue == number)
            .filter(|comment| since.is_none_or(|since| comment.updated_at >= since))
            .map(|comment| comment_json(&base, repo, comment))
            .collect();
        paginate(&base, &uri, &query, items)
    })
}

#[derive(Debug, Deserialize)]
struct CommentBody {
    body: String,
}

async fn create_comment(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(new): Json<CommentBody>,
) -> Response {
    let (response, payload) = {
        let mut state = shared.lock();
        let id = state.take_id();
        let Some(repo) = state.repo_mut(&owner, &name) else {
            return not_found();
        };
        let Some(issue) = repo.issues.get(&number).cloned() else {
            return not_found();
        };
        let now = SystemTime::now();
        let comment = Comment {
            id,
            issue: number,
            body: new.body,
            author: caller.login.clone(),
            edits: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let value = comment_json(&shared.base_url, repo, &comment);
        repo.comments.insert(id, comment);
        let issue_value = issue_json(&shared.base_url, repo, &issue);
        let payload = event_payload(
            &shared.base_url,
            repo,
            &caller.login,
            "created",
            json!({ "issue": issue_value, "comment": value }),
        );
        ((StatusCode::CREATED, Json(value)).into_response(), payload)
    };
    shared.emit("issue_comment", payload);
    response
}

async fn get_comment(
    State(shared): Shard,
    Path((owner, name, id)): Path<(String, String, u64)>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, base| {
        match repo.comments.get(&id) {
            Some(comment) => Json(comment_json(base, repo, comment)).into_response(),
            None => not_found(),
        }
    })
}

async fn update_comment(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, id)): Path<(String, String, u64)>,
    Json(new): Json<CommentBody>,
) -> Response {
    let (response, payload) = {
        let mut state = shared.lock();
        let Some(repo) = state.repo_mut(&owner, &name) else {
            return not_found();
        };
        let Some(comment) = repo.comments.get_mut(&id) else {
            return not_found();
        };
        let previous = std::mem::replace(&mut comment.body, new.body);
        comment.edits.push(previous);
        comment.updated_at = SystemTime::now();
        let comment = comment.clone();
        let value = comment_json(&shared.base_url, repo, &comment);
        let issue_value = repo
            .issues
            .get(&comment.issue)
            .map(|issue| issue_json(&shared.base_url, repo, issue))
            .unwrap_or(Value::Null);
        let payload = event_payload(
            &shared.base_url,
            repo,
            &caller.login,
            "edited",
            json!({ "issue": issue_value, "comment": value }),
        );
        (Json(value).into_response(), payload)
    };
    shared.emit("issue_comment", payload);
    response
}

fn labels_of(repo: &Repo, number: u64) -> Option<Value> {
    let issue = repo.issues.get(&number)?;
    Some(Value::Array(
        issue
            .labels
            .iter()
            .filter_map(|label| repo.labels.get(label))
            .map(label_json)
            .collect(),
    ))
}

async fn issue_labels(
    State(shared): Shard,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, _| {
        match labels_of(repo, number) {
            Some(labels) => Json(labels).into_response(),
            None => not_found(),
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LabelNames {
    Wrapped { labels: Vec<String> },
    Bare(Vec<String>),
}

impl LabelNames {
    fn names(self) -> Vec<String> {
        match self {
            LabelNames::Wrapped { labels } | LabelNames::Bare(labels) => labels,
        }
    }
}

/// Changes an issue's labels with `change` and answers with the labels; one `labeled` or
/// `unlabeled` webhook per label that came or went.
fn change_labels(
    shared: &Shared,
    caller: &Caller,
    owner: &str,
    name: &str,
    number: u64,
    names: &[String],
    change: impl FnOnce(&mut Vec<String>),
) -> Response {
    let mut events = Vec::new();
    let response = {
        let mut state = shared.lock();
        let ids: Vec<u64> = names.iter().map(|_| state.take_id()).collect();
        let Some(repo) = state.repo_mut(owner, name) else {
            return not_found();
        };
        if !repo.issues.contains_key(&number) {
            return not_found();
        }
        for (label, id) in names.iter().zip(ids) {
            ensure_label(repo, label, id);
        }
        let issue = repo.issues.get_mut(&number).expect("checked above");
        let before = issue.labels.clone();
        change(&mut issue.labels);
        let mut seen = std::collections::HashSet::new();
        issue.labels.retain(|label| seen.insert(label.clone()));
        if issue.labels != before {
            issue.updated_at = SystemTime::now();
        }
        let after = issue.labels.clone();
        let issue = issue.clone();
        let value = issue_json(&shared.base_url, repo, &issue);
        for added in after.iter().filter(|label| !before.contains(label)) {
            let label = repo
                .labels
                .get(added)
                .map(label_json)
                .unwrap_or(Value::Null);
            events.push(event_payload(
                &shared.base_url,
                repo,
                &caller.login,
                "labeled",
                json!({ "issue": value, "label": label }),
            ));
        }
        for removed in before.iter().filter(|label| !after.contains(label)) {
            let label = repo
                .labels
                .get(removed)
                .map(label_json)
                .unwrap_or(Value::Null);
            events.push(event_payload(
                &shared.base_url,
                repo,
                &caller.login,
                "unlabeled",
                json!({ "issue": value, "label": label }),
            ));
        }
        Json(labels_of(repo, number).unwrap_or(Value::Null)).into_response()
    };
    for payload in events {
        shared.emit("issues", payload);
    }
    response
}

async fn add_labels(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(labels): Json<LabelNames>,
) -> Response {
    let names = labels.names();
    let added = names.clone();
    change_labels(
        &shared,
        &caller,
        &owner,
        &name,
        number,
        &names,
        move |labels| labels.extend(added),
    )
}

async fn set_labels(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(labels): Json<LabelNames>,
) -> Response {
    let names = labels.names();
    let set = names.clone();
    change_labels(
        &shared,
        &caller,
        &owner,
        &name,
        number,
        &names,
        move |labels| *labels = set,
    )
}

async fn clear_labels(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Response {
    let response = change_labels(&shared, &caller, &owner, &name, number, &[], Vec::clear);
    if response.status().is_success() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        response
    }
}

async fn remove_label(
    State(shared): Shard,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number, label)): Path<(String, String, u64, String)>,
) -> Response {
    let present = shared
        .lock()
        .repo(&owner, &name)
        .and_then(|repo| repo.issues.get(&number))
        .map(|issue| issue.labels.contains(&label));
    match present {
        None => not_found(),
        Some(false) => error(StatusCode::NOT_FOUND, "Label does not exist"),
        Some(true) => change_labels(
            &shared,
            &caller,
            &owner,
            &name,
            number,
            &[],
            move |labels| labels.retain(|existing| *existing != label),
        ),
    }
}

async fn list_sub_issues(
    State(shared): Shard,
    Path((owner, name, number)): Path<(String, String, u64)>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = shared.base_url.clone();
    with_repo(&shared, &owner, &name, |repo, _| {
        if !repo.issues.contains_key(&number) {
            return not_found();
        }
        let items = repo
            .sub_issues
            .get(&number)
            .into_iter()
            .flatten()
            .filter_map(|child| repo.issues.get(child))
            .map(|issue| issue_json(&base, repo, issue))
            .collect();
        paginate(&base, &uri, &query, items)
    })
}

#[derive(Debug, Deserialize)]
struct SubIssue {
    sub_issue_id: u64,
    #[serde(default)]
    replace_parent: bool,
}

async fn add_sub_issue(
    State(shared): Shard,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Json(request): Json<SubIssue>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, base| {
        if !repo.issues.contains_key(&number) {
            return not_found();
        }
        // The API takes the sub-issue's id, not its number.
        let Some(child) = repo
            .issues
            .values()
            .find(|issue| issue.id == request.sub_issue_id)
            .map(|issue| issue.number)
        else {
            return unprocessable(
                "Validation Failed: sub_issue_id is not an issue of this repository",
            );
        };
        if child == number {
            return unprocessable("Validation Failed: an issue cannot be its own sub-issue");
        }
        let current_parent = repo
            .sub_issues
            .iter()
            .find(|(_, children)| children.contains(&child))
            .map(|(parent, _)| *parent);
        match current_parent {
            Some(parent) if parent == number => {
                return unprocessable(
                    "Validation Failed: the issue is already a sub-issue of this issue",
                );
            }
            Some(parent) if !request.replace_parent => {
                return unprocessable(format!(
                    "Validation Failed: the issue already has a parent (#{parent})"
                ));
            }
            Some(parent) => {
                if let Some(children) = repo.sub_issues.get_mut(&parent) {
                    children.retain(|existing| *existing != child);
                }
            }
            None => {}
        }
        repo.sub_issues.entry(number).or_default().push(child);
        let parent = repo.issues.get(&number).expect("checked above");
        (StatusCode::CREATED, Json(issue_json(base, repo, parent))).into_response()
    })
}

async fn list_labels(
    State(shared): Shard,
    Path((owner, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = shared.base_url.clone();
    with_repo(&shared, &owner, &name, |repo, _| {
        let items = repo.labels.values().map(label_json).collect();
        paginate(&base, &uri, &query, items)
    })
}

#[derive(Debug, Deserialize)]
struct NewLabel {
    name: String,
    color: Option<String>,
    description: Option<String>,
}

async fn create_label(
    State(shared): Shard,
    Path((owner, name)): Path<(String, String)>,
    Json(new): Json<NewLabel>,
) -> Response {
    let color = new
        .color
        .unwrap_or_else(|| "ededed".into())
        .trim_start_matches('#')
        .to_owned();
    if color.len() != 6 || !color.chars().all(|c| c.is_ascii_hexdigit()) {
        return unprocessable(format!(
            "Validation Failed: color {color} is not a 6-digit hex colour"
        ));
    }
    let mut state = shared.lock();
    let id = state.take_id();
    let Some(repo) = state.repo_mut(&owner, &name) else {
        return not_found();
    };
    if repo.labels.contains_key(&new.name) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "message": "Validation Failed",
                "errors": [{ "resource": "Label", "code": "already_exists", "field": "name" }],
            })),
        )
            .into_response();
    }
    let label = Label {
        id,
        name: new.name.clone(),
        color,
        description: new.description,
    };
    let value = label_json(&label);
    repo.labels.insert(new.name, label);
    (StatusCode::CREATED, Json(value)).into_response()
}

async fn get_label(
    State(shared): Shard,
    Path((owner, name, label)): Path<(String, String, String)>,
) -> Response {
    with_repo(&shared, &owner, &name, |repo, _| {
        match repo.labels.get(&label) {
            Some(label) => Json(label_json(label)).into_response(),
            None => not_found(),
        }
    })
}
