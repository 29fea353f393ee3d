//! The test's side of the fake: create and change state as GitHub's users would (each change
//! sends the webhook GitHub would), read it back, install Apps, inject faults, count requests.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rand::Rng;
use serde_json::json;

use crate::api::{ensure_label, event_payload};
use crate::state::{
    issue_json, App, CheckRun, Comment, CommitStatus, Fault, FaultKind, Installation, Issue, Repo,
    Review, ReviewComment, SeenRequest, TokenGrant,
};
use crate::{git, Delivery, FakeGitHub};

/// A random token (128 bits, hex).
pub fn random_token() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// An issue as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueView {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub is_pull: bool,
}

/// A comment and every earlier body it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentView {
    pub id: u64,
    pub author: String,
    pub body: String,
    pub edits: Vec<String>,
}

/// A pull request as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullView {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub head: String,
    pub base: String,
    pub draft: bool,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
    pub merge_method: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub head_sha: String,
}

/// A review comment as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewCommentView {
    pub id: u64,
    pub path: String,
    pub line: u64,
    pub body: String,
}

/// A check run to create or update.
#[derive(Debug, Clone, Default)]
pub struct CheckRunSpec {
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
}

impl CheckRunSpec {
    /// A completed run with this conclusion (`success`, `failure`...).
    pub fn completed(name: &str, conclusion: &str) -> CheckRunSpec {
        CheckRunSpec {
            name: name.into(),
            status: "completed".into(),
            conclusion: Some(conclusion.into()),
            ..CheckRunSpec::default()
        }
    }

    /// A run still going.
    pub fn in_progress(name: &str) -> CheckRunSpec {
        CheckRunSpec {
            name: name.into(),
            status: "in_progress".into(),
            ..CheckRunSpec::default()
        }
    }

    /// With an output (title, summary, text: the log excerpt).
    pub fn with_output(mut self, title: &str, summary: &str, text: &str) -> CheckRunSpec {
        self.title = Some(title.into());
        self.summary = Some(summary.into());
        self.text = Some(text.into());
        self
    }
}

fn split(full_name: &str) -> (&str, &str) {
    full_name
        .split_once('/')
        .unwrap_or_else(|| panic!("a repository is named owner/name, not {full_name}"))
}

impl FakeGitHub {
    fn with_repo<T>(&self, full_name: &str, body: impl FnOnce(&mut Repo, &str) -> T) -> T {
        let mut state = self.shared.lock();
        let repo = state
            .repos
            .get_mut(full_name)
            .unwrap_or_else(|| panic!("the fake has no repository {full_name}"));
        body(repo, &self.shared.base_url)
    }

    fn emit(
        &self,
        event: &str,
        full_name: &str,
        sender: &str,
        action: &str,
        extra: serde_json::Value,
    ) {
        let payload = self.with_repo(full_name, |repo, base| {
            event_payload(base, repo, sender, action, extra)
        });
        self.shared.emit(event, payload);
    }

    /// A new personal access token acting as `login`.
    pub fn add_token(&self, login: &str) -> String {
        let token = format!("ghp_{}", random_token());
        self.shared.lock().tokens.insert(
            token.clone(),
            TokenGrant {
                installation: None,
                expires_at: None,
                login: login.into(),
            },
        );
        token
    }

    /// Revokes a token (requests with it get 401).
    pub fn revoke_token(&self, token: &str) {
        self.shared.lock().tokens.remove(token);
    }

    /// Creates `owner/name` with a `main` branch holding one commit; returns its clone URL.
    pub fn create_repo(&self, full_name: &str) -> String {
        self.create_repo_with_branch(full_name, "main")
    }

    /// Creates `owner/name` whose default branch is `default_branch`.
    pub fn create_repo_with_branch(&self, full_name: &str, default_branch: &str) -> String {
        let (owner, name) = split(full_name);
        let bare = self.shared.root.join(owner).join(format!("{name}.git"));
        git::init_bare(&bare, default_branch, &format!("# {name}\n"))
            .expect("create the fake's bare repository");
        let mut state = self.shared.lock();
        let id = state.take_id();
        state.repos.insert(
            full_name.into(),
            Repo {
                id,
                owner: owner.into(),
                name: name.into(),
                default_branch: default_branch.into(),
                bare,
                next_number: 1,
                labels: Default::default(),
                issues: Default::default(),
                comments: Default::default(),
                sub_issues: Default::default(),
                pulls: Default::default(),
                reviews: Vec::new(),
                review_comments: Vec::new(),
                check_runs: Vec::new(),
                statuses: Vec::new(),
                require_review: false,
                collaborators: Default::default(),
            },
        );
        drop(state);
        self.clone_url(full_name)
    }

    /// The HTTP clone URL (`{url}/git/owner/name.git`; pushes need a token as the password).
    pub fn clone_url(&self, full_name: &str) -> String {
        format!("{}/git/{full_name}.git", self.url())
    }

    /// The bare repository on disk (for `file://` remotes and direct inspection).
    pub fn bare_path(&self, full_name: &str) -> PathBuf {
        self.with_repo(full_name, |repo, _| repo.bare.clone())
    }

    /// Commits `files` onto `branch` (created from the default branch when missing), as a push
    /// would (with its `push` and `synchronize` webhooks); returns the new tip.
    pub fn commit_files(
        &self,
        full_name: &str,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        let (bare, default_branch) = self.with_repo(full_name, |repo, _| {
            (repo.bare.clone(), repo.default_branch.clone())
        });
        let before = crate::git_http::branch_tips(&bare);
        let tip = git::commit_files(&bare, branch, &default_branch, files, message)
            .expect("commit in the fake's repository");
        let after = crate::git_http::branch_tips(&bare);
        crate::git_http::announce_push(&self.shared, full_name, "octocat", &before, &after);
        tip
    }

    /// The tip of a branch of the remote, if it exists.
    pub fn branch_tip(&self, full_name: &str, branch: &str) -> Option<String> {
        git::tip(&self.bare_path(full_name), branch).ok().flatten()
    }

    /// A file's content at the tip of a branch of the remote.
    pub fn file_at(&self, full_name: &str, branch: &str, path: &str) -> Option<String> {
        git::read_file(&self.bare_path(full_name), branch, path).ok()
    }

    /// Creates a label (or changes its colour).
    pub fn create_label(&self, full_name: &str, name: &str, color: &str) {
        let id = self.shared.lock().take_id();
        self.with_repo(full_name, |repo, _| {
            ensure_label(repo, name, id);
            if let Some(label) = repo.labels.get_mut(name) {
                label.color = color.into();
            }
        });
    }

    /// The repository's labels with their colours.
    pub fn labels(&self, full_name: &str) -> Vec<(String, String)> {
        self.with_repo(full_name, |repo, _| {
            repo.labels
                .values()
                .map(|label| (label.name.clone(), label.color.clone()))
                .collect()
        })
    }

    /// Opens an issue as `octocat`; returns its number.
    pub fn create_issue(&self, full_name: &str, title: &str, body: &str, labels: &[&str]) -> u64 {
        let mut state = self.shared.lock();
        let id = state.take_id();
        let label_ids: Vec<u64> = labels.iter().map(|_| state.take_id()).collect();
        drop(state);
        let (number, payload) = self.with_repo(full_name, |repo, base| {
            for (label, label_id) in labels.iter().zip(label_ids) {
                ensure_label(repo, label, label_id);
            }
            let number = repo.take_number();
            let now = SystemTime::now();
            let issue = Issue {
                id,
                number,
                title: title.into(),
                body: Some(body.into()),
                state: "open".into(),
                labels: labels.iter().map(|label| (*label).to_owned()).collect(),
                assignees: Vec::new(),
                author: "octocat".into(),
                is_pull: false,
                created_at: now,
                updated_at: now,
            };
            let value = issue_json(base, repo, &issue);
            repo.issues.insert(number, issue);
            (
                number,
                event_payload(base, repo, "octocat", "opened", json!({ "issue": value })),
            )
        });
        self.shared.emit("issues", payload);
        number
    }

    fn view(issue: &Issue) -> IssueView {
        IssueView {
            id: issue.id,
            number: issue.number,
            title: issue.title.clone(),
            body: issue.body.clone(),
            state: issue.state.clone(),
            labels: issue.labels.clone(),
            assignees: issue.assignees.clone(),
            is_pull: issue.is_pull,
        }
    }

    /// An issue (or a pull request's issue side).
    pub fn issue(&self, full_name: &str, number: u64) -> Option<IssueView> {
        self.with_repo(full_name, |repo, _| {
            repo.issues.get(&number).map(FakeGitHub::view)
        })
    }

    /// Every issue and pull request, by number.
    pub fn issues(&self, full_name: &str) -> Vec<IssueView> {
        self.with_repo(full_name, |repo, _| {
            repo.issues.values().map(FakeGitHub::view).collect()
        })
    }

    /// The labels of an issue, in the order they were added.
    pub fn issue_labels(&self, full_name: &str, number: u64) -> Vec<String> {
        self.issue(full_name, number)
            .map(|issue| issue.labels)
            .unwrap_or_default()
    }

    /// Adds a label to an issue as `octocat` (the `labeled` webhook follows).
    pub fn label_issue(&self, full_name: &str, number: u64, label: &str) {
        let id = self.shared.lock().take_id();
        let payload = self.with_repo(full_name, |repo, base| {
            ensure_label(repo, label, id);
            let issue = repo.issues.get_mut(&number).expect("the issue exists");
            if !issue.labels.iter().any(|existing| existing == label) {
                issue.labels.push(label.into());
                issue.updated_at = SystemTime::now();
            }
            let issue = issue.clone();
            let value = issue_json(base, repo, &issue);
            let label_value = repo.labels.get(label).map(crate::state::label_json);
            event_payload(
                base,
                repo,
                "octocat",
                "labeled",
                json!({ "issue": value, "label": label_value }),
            )
        });
        self.shared.emit("issues", payload);
    }

    /// Closes or reopens an issue as `octocat`.
    pub fn set_issue_state(&self, full_name: &str, number: u64, state: &str) {
        let payload = self.with_repo(full_name, |repo, base| {
            let issue = repo.issues.get_mut(&number).expect("the issue exists");
            issue.state = state.into();
            issue.updated_at = SystemTime::now();
            let issue = issue.clone();
            let value = issue_json(base, repo, &issue);
            let action = if state == "closed" {
                "closed"
            } else {
                "reopened"
            };
            event_payload(base, repo, "octocat", action, json!({ "issue": value }))
        });
        self.shared.emit("issues", payload);
    }

    /// Gives `login` write access: its comments are a `COLLABORATOR`'s.
    pub fn add_collaborator(&self, full_name: &str, login: &str) {
        self.with_repo(full_name, |repo, _| {
            repo.collaborators.insert(login.to_owned());
        });
    }

    /// Comments on an issue or pull request as `author`; returns the comment's id.
    pub fn add_comment(&self, full_name: &str, number: u64, author: &str, body: &str) -> u64 {
        let id = self.shared.lock().take_id();
        let payload = self.with_repo(full_name, |repo, base| {
            let now = SystemTime::now();
            let comment = Comment {
                id,
                issue: number,
                body: body.into(),
                author: author.into(),
                edits: Vec::new(),
                created_at: now,
                updated_at: now,
            };
            let value = crate::state::comment_json(base, repo, &comment);
            repo.comments.insert(id, comment);
            let issue = repo.issues.get(&number).expect("the issue exists");
            let issue_value = issue_json(base, repo, issue);
            event_payload(
                base,
                repo,
                author,
                "created",
                json!({ "issue": issue_value, "comment": value }),
            )
        });
        self.shared.emit("issue_comment", payload);
        id
    }

    /// The comments of an issue or pull request, oldest first.
    pub fn comments(&self, full_name: &str, number: u64) -> Vec<CommentView> {
        self.with_repo(full_name, |repo, _| {
            repo.comments
                .values()
                .filter(|comment| comment.issue == number)
                .map(|comment| CommentView {
                    id: comment.id,
                    author: comment.author.clone(),
                    body: comment.body.clone(),
                    edits: comment.edits.clone(),
                })
                .collect()
        })
    }

    /// The sub-issue numbers of an issue, in the order they were added.
    pub fn sub_issues(&self, full_name: &str, parent: u64) -> Vec<u64> {
        self.with_repo(full_name, |repo, _| {
            repo.sub_issues.get(&parent).cloned().unwrap_or_default()
        })
    }

    /// Every pull request, by number.
    pub fn pulls(&self, full_name: &str) -> Vec<PullView> {
        self.with_repo(full_name, |repo, _| {
            let numbers: Vec<u64> = repo.pulls.keys().copied().collect();
            for number in numbers {
                crate::pulls::refresh_head(repo, number);
            }
            repo.pulls
                .values()
                .map(|pull| {
                    let issue = repo.issues.get(&pull.number);
                    PullView {
                        number: pull.number,
                        title: issue.map(|issue| issue.title.clone()).unwrap_or_default(),
                        body: issue.and_then(|issue| issue.body.clone()),
                        head: pull.head.clone(),
                        base: pull.base.clone(),
                        draft: pull.draft,
                        state: pull.state.clone(),
                        merged: pull.merged,
                        merge_method: pull.merge_method.clone(),
                        merge_commit_sha: pull.merge_commit_sha.clone(),
                        head_sha: pull.head_sha.clone(),
                    }
                })
                .collect()
        })
    }

    /// One pull request.
    pub fn pull(&self, full_name: &str, number: u64) -> Option<PullView> {
        self.pulls(full_name)
            .into_iter()
            .find(|pull| pull.number == number)
    }

    /// Submits a review (`APPROVED`, `CHANGES_REQUESTED` or `COMMENTED`) on the pull's head as
    /// `user`; returns its id.
    pub fn add_review(
        &self,
        full_name: &str,
        pull: u64,
        user: &str,
        state: &str,
        body: &str,
    ) -> u64 {
        assert!(
            matches!(state, "APPROVED" | "CHANGES_REQUESTED" | "COMMENTED"),
            "a review is APPROVED, CHANGES_REQUESTED or COMMENTED, not {state}"
        );
        let id = self.shared.lock().take_id();
        let payload = self.with_repo(full_name, |repo, base| {
            crate::pulls::refresh_head(repo, pull);
            let head_sha = repo
                .pulls
                .get(&pull)
                .expect("the pull exists")
                .head_sha
                .clone();
            let review = Review {
                id,
                pull,
                user: user.into(),
                state: state.into(),
                body: body.into(),
                commit_id: head_sha,
                submitted_at: SystemTime::now(),
            };
            let review_value = crate::pulls::review_json(&review);
            repo.reviews.push(review);
            let pull_value = crate::pulls::pull_json(
                base,
                repo,
                repo.pulls.get(&pull).expect("the pull exists"),
            );
            event_payload(
                base,
                repo,
                user,
                "submitted",
                json!({ "review": review_value, "pull_request": pull_value }),
            )
        });
        self.shared.emit("pull_request_review", payload);
        id
    }

    /// A review comment at `(path, line)` of the pull's head, as `user` (part of `review`
    /// when given); returns its id.
    pub fn add_review_comment(
        &self,
        full_name: &str,
        pull: u64,
        review: Option<u64>,
        user: &str,
        (path, line): (&str, u64),
        body: &str,
    ) -> u64 {
        let id = self.shared.lock().take_id();
        let payload = self.with_repo(full_name, |repo, base| {
            crate::pulls::refresh_head(repo, pull);
            let head_sha = repo
                .pulls
                .get(&pull)
                .expect("the pull exists")
                .head_sha
                .clone();
            let comment = ReviewComment {
                id,
                pull,
                review,
                user: user.into(),
                path: path.into(),
                line,
                body: body.into(),
                commit_id: head_sha,
                created_at: SystemTime::now(),
            };
            let value = crate::pulls::review_comment_json(&comment);
            repo.review_comments.push(comment);
            let pull_value = crate::pulls::pull_json(
                base,
                repo,
                repo.pulls.get(&pull).expect("the pull exists"),
            );
            event_payload(
                base,
                repo,
                user,
                "created",
                json!({ "comment": value, "pull_request": pull_value }),
            )
        });
        self.shared.emit("pull_request_review_comment", payload);
        id
    }

    /// The review comments of a pull.
    pub fn review_comments(&self, full_name: &str, pull: u64) -> Vec<ReviewCommentView> {
        self.with_repo(full_name, |repo, _| {
            repo.review_comments
                .iter()
                .filter(|comment| comment.pull == pull)
                .map(|comment| ReviewCommentView {
                    id: comment.id,
                    path: comment.path.clone(),
                    line: comment.line,
                    body: comment.body.clone(),
                })
                .collect()
        })
    }

    /// Reports a check run on a commit (a sha or a branch's tip); returns its id.
    pub fn add_check_run(&self, full_name: &str, reference: &str, spec: CheckRunSpec) -> u64 {
        let id = self.shared.lock().take_id();
        let payload = self.with_repo(full_name, |repo, base| {
            let head_sha =
                git::resolve(&repo.bare, reference).expect("the reference names a commit");
            let run = CheckRun {
                id,
                head_sha,
                name: spec.name,
                status: spec.status,
                conclusion: spec.conclusion,
                title: spec.title,
                summary: spec.summary,
                text: spec.text,
            };
            let action = if run.status == "completed" {
                "completed"
            } else {
                "created"
            };
            let value = crate::pulls::check_run_json(&run);
            repo.check_runs.push(run);
            event_payload(base, repo, "ci[bot]", action, json!({ "check_run": value }))
        });
        self.shared.emit("check_run", payload);
        id
    }

    /// Changes a check run (e.g. completes it).
    pub fn update_check_run(&self, full_name: &str, id: u64, spec: CheckRunSpec) {
        let payload = self.with_repo(full_name, |repo, base| {
            let run = repo
                .check_runs
                .iter_mut()
                .find(|run| run.id == id)
                .expect("the check run exists");
            run.name = spec.name;
            run.status = spec.status;
            run.conclusion = spec.conclusion;
            run.title = spec.title;
            run.summary = spec.summary;
            run.text = spec.text;
            let action = if run.status == "completed" {
                "completed"
            } else {
                "created"
            };
            let value = crate::pulls::check_run_json(run);
            event_payload(base, repo, "ci[bot]", action, json!({ "check_run": value }))
        });
        self.shared.emit("check_run", payload);
    }

    /// Reports a commit status (`error`, `failure`, `pending`, `success`); returns its id.
    pub fn add_status(
        &self,
        full_name: &str,
        reference: &str,
        context: &str,
        state: &str,
        description: &str,
    ) -> u64 {
        let id = self.shared.lock().take_id();
        let payload = self.with_repo(full_name, |repo, base| {
            let sha = git::resolve(&repo.bare, reference).expect("the reference names a commit");
            repo.statuses.push(CommitStatus {
                id,
                sha: sha.clone(),
                context: context.into(),
                state: state.into(),
                description: Some(description.into()),
                target_url: None,
            });
            event_payload(
                base,
                repo,
                "ci[bot]",
                state,
                json!({ "sha": sha, "context": context, "state": state, "description": description }),
            )
        });
        if let Some(object) = payload.as_object() {
            let mut payload = serde_json::Value::Object(object.clone());
            // Status events have no action.
            if let Some(fields) = payload.as_object_mut() {
                fields.remove("action");
            }
            self.shared.emit("status", payload);
        }
        id
    }

    /// Forces a pull's mergeability (`None`: computed with git again).
    pub fn set_mergeable(&self, full_name: &str, pull: u64, mergeable: Option<bool>) {
        self.with_repo(full_name, |repo, _| {
            repo.pulls
                .get_mut(&pull)
                .expect("the pull exists")
                .mergeable_override = mergeable;
        });
    }

    /// Whether an approval is required (GraphQL `reviewDecision` is `REVIEW_REQUIRED` until one).
    pub fn set_require_review(&self, full_name: &str, required: bool) {
        self.with_repo(full_name, |repo, _| repo.require_review = required);
    }

    /// Closes a pull without merging it, as a maintainer would in the UI (the `closed` webhook
    /// follows).
    pub fn close_pull(&self, full_name: &str, pull: u64) {
        self.with_repo(full_name, |repo, _| {
            let entry = repo.pulls.get_mut(&pull).expect("the pull exists");
            entry.state = "closed".into();
            if let Some(issue) = repo.issues.get_mut(&pull) {
                issue.state = "closed".into();
                issue.updated_at = SystemTime::now();
            }
        });
        let payload = self.with_repo(full_name, |repo, base| {
            let value = crate::pulls::pull_json(
                base,
                repo,
                repo.pulls.get(&pull).expect("the pull exists"),
            );
            json!({ "number": pull, "pull_request": value })
        });
        self.emit("pull_request", full_name, "octocat", "closed", payload);
    }

    /// Registers a GitHub App with its public key; installation tokens live `token_lifetime`.
    pub fn register_app(&self, app_id: u64, public_key_pem: &str, token_lifetime: Duration) {
        self.shared.lock().apps.insert(
            app_id,
            App {
                public_key_pem: public_key_pem.into(),
                token_lifetime,
            },
        );
    }

    /// Installs an App on repositories; returns the installation's id.
    pub fn install_app(&self, app_id: u64, account: &str, repos: &[&str]) -> u64 {
        let mut state = self.shared.lock();
        let id = state.take_id();
        state.installations.insert(
            id,
            Installation {
                id,
                app_id,
                account: account.into(),
                repos: repos.iter().map(|repo| (*repo).to_owned()).collect(),
            },
        );
        id
    }

    /// How many installation tokens the fake issued.
    pub fn installation_tokens_issued(&self) -> usize {
        self.shared
            .lock()
            .tokens
            .values()
            .filter(|grant| grant.installation.is_some())
            .count()
    }

    /// Expires every installation token now (requests with them get 401).
    pub fn expire_installation_tokens(&self) {
        let now = SystemTime::now();
        for grant in self.shared.lock().tokens.values_mut() {
            if grant.installation.is_some() {
                grant.expires_at = Some(now);
            }
        }
    }

    /// The next `count` requests on `route` are carried out but answered `status`, as if the
    /// answer was lost on the way.
    pub fn lose_answers(&self, route: &str, count: u32, status: u16) {
        self.inject(Fault {
            kind: FaultKind::LoseAnswer { status },
            remaining: Some(count),
            until: None,
            route: Some(route.into()),
        });
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// The next `count` requests get a primary rate limit answer resetting at `reset_at`.
    pub fn fail_primary_rate_limit(&self, count: u32, reset_at: SystemTime) {
        self.inject(Fault {
            kind: FaultKind::PrimaryRateLimit { reset_at },
            remaining: Some(count),
            until: None,
            route: None,
        });
    }

    /// The next request is answered, saying the quota is spent until `reset_at`.
    pub fn spend_quota(&self, reset_at: SystemTime) {
        self.inject(Fault {
            kind: FaultKind::SpendQuota { reset_at },
            remaining: Some(1),
            until: None,
            route: None,
        });
    }

    /// Every request gets a primary rate limit answer until `reset_at`.
    pub fn primary_rate_limit_until(&self, reset_at: SystemTime) {
        self.inject(Fault {
            kind: FaultKind::PrimaryRateLimit { reset_at },
            remaining: None,
            until: Some(reset_at),
            route: None,
        });
    }

    /// The next `count` requests get a secondary rate limit answer (403), with `Retry-After`
    /// when given.
    pub fn fail_secondary_rate_limit(&self, count: u32, retry_after: Option<u64>) {
        self.inject(Fault {
            kind: FaultKind::SecondaryRateLimit {
                retry_after,
                status: 403,
            },
            remaining: Some(count),
            until: None,
            route: None,
        });
    }

    /// The next `count` requests get `status` (500, 502, 503...).
    pub fn fail_server_error(&self, count: u32, status: u16) {
        self.inject(Fault {
            kind: FaultKind::ServerError { status },
            remaining: Some(count),
            until: None,
            route: None,
        });
    }

    /// The next `count` requests are answered only after `delay`.
    pub fn delay_next(&self, count: u32, delay: Duration) {
        self.inject(Fault {
            kind: FaultKind::Delay { delay },
            remaining: Some(count),
            until: None,
            route: None,
        });
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Every request seen, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests hit `route` (`GET /repos/{owner}/{repo}/issues/{number}`).
    pub fn request_count(&self, route: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|seen| seen.route == route)
            .count()
    }

    /// How many requests were answered `status`.
    pub fn status_count(&self, status: u16) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|seen| seen.status == status)
            .count()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Sends every later event to `url`, signed with `secret`.
    pub fn send_webhooks_to(&self, url: &str, secret: &str) {
        self.shared.lock().webhook = Some((url.into(), secret.into()));
    }

    /// The webhook events made so far (sent or, with no URL set, only recorded).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// The `X-Hub-Signature-256` value GitHub would send for `body`.
    pub fn sign(secret: &str, body: &[u8]) -> String {
        crate::webhooks::signature(secret, body)
    }
}
