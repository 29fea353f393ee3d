//! The fake's state: repositories with their issues, labels, comments, pulls, reviews, checks and
//! statuses, the tokens it accepts, the faults it injects and the requests it saw.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

/// One repository. Issues and pulls share the number space, like on GitHub.
#[derive(Debug, Clone)]
pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    /// The bare repository that is this repo's remote.
    pub bare: PathBuf,
    pub next_number: u64,
    pub labels: BTreeMap<String, Label>,
    pub issues: BTreeMap<u64, Issue>,
    pub comments: BTreeMap<u64, Comment>,
    /// Parent issue number → sub-issue numbers, in the order they were added.
    pub sub_issues: BTreeMap<u64, Vec<u64>>,
    pub pulls: BTreeMap<u64, Pull>,
    pub reviews: Vec<Review>,
    pub review_comments: Vec<ReviewComment>,
    pub check_runs: Vec<CheckRun>,
    pub statuses: Vec<CommitStatus>,
    /// When set, the GraphQL `reviewDecision` is `REVIEW_REQUIRED` until an approval.
    pub require_review: bool,
    /// Logins with write access: their comments are `COLLABORATOR`'s (the owner's `OWNER`'s,
    /// everyone else's `NONE`).
    pub collaborators: std::collections::BTreeSet<String>,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn take_number(&mut self) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        number
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub description: Option<String>,
}

/// An issue (a pull request's issue side has `is_pull: true`).
#[derive(Debug, Clone)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub state: String,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub author: String,
    pub is_pull: bool,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub author: String,
    /// Every earlier body, oldest first: a test can see a comment was edited in place.
    pub edits: Vec<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub id: u64,
    pub number: u64,
    pub head: String,
    pub base: String,
    pub draft: bool,
    /// `open` or `closed`; a merged pull is `closed` with `merged`.
    pub state: String,
    pub merged: bool,
    pub merge_commit_sha: Option<String>,
    pub merge_method: Option<String>,
    /// A test's override of the computed mergeability.
    pub mergeable_override: Option<bool>,
    /// The head's tip when last seen (kept once the branch is deleted).
    pub head_sha: String,
}

#[derive(Debug, Clone)]
pub struct Review {
    pub id: u64,
    pub pull: u64,
    pub user: String,
    /// `APPROVED`, `CHANGES_REQUESTED` or `COMMENTED`.
    pub state: String,
    pub body: String,
    pub commit_id: String,
    pub submitted_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct ReviewComment {
    pub id: u64,
    pub pull: u64,
    pub review: Option<u64>,
    pub user: String,
    pub path: String,
    pub line: u64,
    pub body: String,
    pub commit_id: String,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    pub head_sha: String,
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// When completed: `success`, `failure`, `neutral`, `cancelled`, `skipped`, `timed_out`,
    /// `action_required`.
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommitStatus {
    pub id: u64,
    pub sha: String,
    pub context: String,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

/// A GitHub App known to the fake.
#[derive(Debug, Clone)]
pub struct App {
    pub public_key_pem: String,
    /// How long installation tokens live.
    pub token_lifetime: Duration,
}

#[derive(Debug, Clone)]
pub struct Installation {
    pub id: u64,
    pub app_id: u64,
    pub account: String,
    /// `owner/name` of each repository the installation covers.
    pub repos: Vec<String>,
}

/// A token the fake accepts.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub installation: Option<u64>,
    pub expires_at: Option<SystemTime>,
    /// The login requests with this token act as.
    pub login: String,
}

/// A failure to inject.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// 403 with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset`.
    PrimaryRateLimit { reset_at: SystemTime },
    /// 403 (or 429) naming the secondary rate limit, with `Retry-After` when given.
    SecondaryRateLimit {
        retry_after: Option<u64>,
        status: u16,
    },
    /// A server error (500, 502, 503...).
    ServerError { status: u16 },
    /// Answer normally, but only after this delay.
    Delay { delay: Duration },
    /// Answer normally, but say the quota is spent (`X-RateLimit-Remaining: 0`) until
    /// `reset_at`.
    SpendQuota { reset_at: SystemTime },
    /// A GraphQL rate limit: 200 with a `RATE_LIMITED` error, the quota spent until `reset_at`.
    GraphQlRateLimit { reset_at: SystemTime },
    /// Do what the request asks, then lose the answer: reply `status` instead (a write that
    /// happened although the client saw a failure).
    LoseAnswer { status: u16 },
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    /// How many more requests it hits; `None` = every request until `until`.
    pub remaining: Option<u32>,
    pub until: Option<SystemTime>,
    /// Only requests whose route (`GET /repos/{owner}/{repo}`) is this one.
    pub route: Option<String>,
}

/// One request the fake saw.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// The matched route, e.g. `GET /repos/{owner}/{repo}/issues`.
    pub route: String,
    pub path: String,
    pub status: u16,
    pub at: SystemTime,
}

/// A webhook delivery the fake made.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: String,
    pub id: String,
    pub payload: Value,
    pub status: Option<u16>,
}

#[derive(Debug, Default)]
pub struct State {
    pub next_id: u64,
    pub repos: BTreeMap<String, Repo>,
    pub apps: HashMap<u64, App>,
    pub installations: BTreeMap<u64, Installation>,
    pub tokens: HashMap<String, TokenGrant>,
    pub faults: VecDeque<Fault>,
    pub requests: Vec<SeenRequest>,
    pub deliveries: Vec<Delivery>,
    pub webhook: Option<(String, String)>,
}

impl State {
    pub fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&format!("{owner}/{name}"))
    }

    pub fn repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repo> {
        self.repos.get_mut(&format!("{owner}/{name}"))
    }

    /// The first fault that hits a request on `route` now, consumed by one.
    pub fn take_fault(&mut self, route: &str, now: SystemTime) -> Option<FaultKind> {
        self.faults.retain(|fault| {
            fault.remaining != Some(0) && fault.until.is_none_or(|until| now < until)
        });
        let fault = self
            .faults
            .iter_mut()
            .find(|fault| fault.route.as_deref().is_none_or(|only| only == route))?;
        if let Some(remaining) = fault.remaining.as_mut() {
            *remaining -= 1;
        }
        Some(fault.kind.clone())
    }
}

/// How `login` relates to the repository, as GitHub says in `author_association`.
pub fn association(repo: &Repo, login: &str) -> &'static str {
    if login == repo.owner {
        "OWNER"
    } else if repo.collaborators.contains(login) {
        "COLLABORATOR"
    } else {
        "NONE"
    }
}

pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

pub fn user(login: &str) -> Value {
    json!({ "login": login, "type": if login.ends_with("[bot]") { "Bot" } else { "User" } })
}

pub fn label_json(label: &Label) -> Value {
    json!({
        "id": label.id,
        "name": label.name,
        "color": label.color,
        "description": label.description,
        "default": false,
    })
}

pub fn issue_json(base: &str, repo: &Repo, issue: &Issue) -> Value {
    let labels: Vec<Value> = issue
        .labels
        .iter()
        .filter_map(|name| repo.labels.get(name))
        .map(label_json)
        .collect();
    let mut value = json!({
        "id": issue.id,
        "node_id": format!("I_{}", issue.id),
        "number": issue.number,
        "title": issue.title,
        "body": issue.body,
        "state": issue.state,
        "labels": labels,
        "assignees": issue.assignees.iter().map(|login| user(login)).collect::<Vec<_>>(),
        "user": user(&issue.author),
        "url": format!("{base}/repos/{}/issues/{}", repo.full_name(), issue.number),
        "html_url": format!("{base}/{}/issues/{}", repo.full_name(), issue.number),
        "created_at": timestamp(issue.created_at),
        "updated_at": timestamp(issue.updated_at),
    });
    if issue.is_pull {
        value["pull_request"] = json!({
            "url": format!("{base}/repos/{}/pulls/{}", repo.full_name(), issue.number),
            "html_url": format!("{base}/{}/pull/{}", repo.full_name(), issue.number),
        });
    }
    value
}

pub fn comment_json(base: &str, repo: &Repo, comment: &Comment) -> Value {
    json!({
        "id": comment.id,
        "body": comment.body,
        "user": user(&comment.author),
        "author_association": association(repo, &comment.author),
        "html_url": format!("{base}/{}/issues/{}#issuecomment-{}", repo.full_name(), comment.issue, comment.id),
        "created_at": timestamp(comment.created_at),
        "updated_at": timestamp(comment.updated_at),
    })
}
