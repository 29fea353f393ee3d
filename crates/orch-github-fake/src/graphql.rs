//! `POST /graphql`: the one query the client sends (a pull request's overall state); any other
//! query gets a GraphQL error naming what the fake answers.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::Shard;
use crate::pulls::{mergeable, mergeable_state, refresh_head, review_decision, rollup};

#[derive(Debug, Deserialize)]
pub struct Request {
    query: String,
    #[serde(default)]
    variables: Value,
}

pub async fn query(State(shared): Shard, Json(request): Json<Request>) -> Response {
    if !request.query.contains("pullRequest(number:") {
        return Json(json!({
            "errors": [{ "message": "the fake GitHub answers only the pull request overview query" }],
        }))
        .into_response();
    }
    let owner = request.variables["owner"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = request.variables["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let Some(number) = request.variables["number"].as_u64() else {
        return Json(
            json!({ "errors": [{ "message": "Variable $number of type Int! was not provided." }] }),
        )
        .into_response();
    };
    let mut state = shared.lock();
    let Some(repo) = state.repo_mut(&owner, &name) else {
        return Json(json!({
            "data": { "repository": null },
            "errors": [{ "type": "NOT_FOUND", "path": ["repository"],
                         "message": format!("Could not resolve to a Repository with the name '{owner}/{name}'.") }],
        }))
        .into_response();
    };
    refresh_head(repo, number);
    let Some(pull) = repo.pulls.get(&number) else {
        return Json(json!({
            "data": { "repository": { "pullRequest": null } },
            "errors": [{ "type": "NOT_FOUND", "path": ["repository", "pullRequest"],
                         "message": format!("Could not resolve to a PullRequest with the number of {number}.") }],
        }))
        .into_response();
    };
    let state_name = if pull.merged {
        "MERGED"
    } else if pull.state == "open" {
        "OPEN"
    } else {
        "CLOSED"
    };
    let mergeable = match mergeable(repo, pull) {
        Some(true) => "MERGEABLE",
        Some(false) => "CONFLICTING",
        None => "UNKNOWN",
    };
    let rollup = rollup(repo, &pull.head_sha).map(|state| json!({ "state": state }));
    Json(json!({
        "data": { "repository": { "pullRequest": {
            "number": pull.number,
            "state": state_name,
            "isDraft": pull.draft,
            "merged": pull.merged,
            "mergeable": mergeable,
            "mergeStateStatus": mergeable_state(repo, pull).to_uppercase(),
            "reviewDecision": review_decision(repo, number),
            "headRefName": pull.head,
            "headRefOid": pull.head_sha,
            "baseRefName": pull.base,
            "commits": { "nodes": [ { "commit": { "oid": pull.head_sha, "statusCheckRollup": rollup } } ] },
        } } },
    }))
    .into_response()
}
