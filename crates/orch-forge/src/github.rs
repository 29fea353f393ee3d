//! `GitHubClient`: the REST operations issue 12 needs, and one GraphQL query (a pull request's
//! review decision, mergeability and check rollup in one request, which REST spreads over
//! three calls and cannot say at all for the review decision under branch protection).

use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use crate::http::{decode, Call, Http};
use crate::types::*;
use crate::{ForgeConfig, ForgeError};

/// How many pages (of 100) a list reads at most.
const MAX_PAGES: usize = 20;

/// A GitHub (or GitHub Enterprise Server) client; cheap to clone.
#[derive(Clone)]
pub struct GitHubClient {
    http: Arc<Http>,
    me: Arc<OnceCell<String>>,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GitHubClient")
            .field("api_base", &self.http.api_base.as_str())
            .finish_non_exhaustive()
    }
}

/// The pull request overview query: the only GraphQL the client sends.
const PULL_OVERVIEW_QUERY: &str =
    "query OrchPullOverview($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      number state isDraft merged mergeable mergeStateStatus reviewDecision
      headRefName headRefOid baseRefName
      commits(last: 1) { nodes { commit { oid statusCheckRollup { state } } } }
    }
  }
}";

impl GitHubClient {
    pub fn new(config: ForgeConfig) -> Result<GitHubClient, ForgeError> {
        if !matches!(config.api_base.scheme(), "http" | "https") {
            return Err(ForgeError::Config(format!(
                "the forge API base {} is not an http(s) URL",
                config.api_base
            )));
        }
        Ok(GitHubClient {
            http: Arc::new(Http::new(config.api_base, config.auth, config.policy)?),
            me: Arc::new(OnceCell::new()),
        })
    }

    fn call<'a>(
        &self,
        method: Method,
        repo: &'a RepoRef,
        rest: &[&str],
        body: Option<Value>,
    ) -> Call<'a> {
        let mut segments = vec!["repos", repo.owner.as_str(), repo.name.as_str()];
        segments.extend_from_slice(rest);
        let url = self.http.url(&segments);
        let idempotent = method != Method::POST;
        Call {
            what: format!("{method} {}", url.path()),
            method,
            url,
            body,
            idempotent,
            repo: Some(repo),
            as_app: false,
        }
    }

    /// The login this client acts as (a user's login, or `<app-slug>[bot]`).
    pub async fn whoami(&self) -> Result<String, ForgeError> {
        self.me
            .get_or_try_init(|| async {
                let as_app = self.http.is_app();
                let url = self.http.url(&[if as_app { "app" } else { "user" }]);
                let call = Call {
                    what: format!("GET {}", url.path()),
                    method: Method::GET,
                    url,
                    body: None,
                    idempotent: true,
                    repo: None,
                    as_app,
                };
                let value: Value = self.http.json(&call).await?;
                let name = if as_app {
                    value["slug"].as_str().map(|slug| format!("{slug}[bot]"))
                } else {
                    value["login"].as_str().map(str::to_owned)
                };
                name.ok_or_else(|| ForgeError::Decode {
                    what: call.what,
                    reason: "no login".into(),
                })
            })
            .await
            .cloned()
    }

    /// The token `git push` uses (never put in argv or a URL): the configured token, or a
    /// fresh installation token of the App's installation on `repo`.
    pub async fn git_token(&self, repo: &RepoRef) -> Result<secrecy::SecretString, ForgeError> {
        self.http.git_credential(repo).await
    }

    /// The repository (default branch, clone URL).
    pub async fn repository(&self, repo: &RepoRef) -> Result<Repository, ForgeError> {
        self.http
            .json(&self.call(Method::GET, repo, &[], None))
            .await
    }

    pub async fn issue(&self, repo: &RepoRef, number: u64) -> Result<Issue, ForgeError> {
        self.http
            .json(&self.call(Method::GET, repo, &["issues", &number.to_string()], None))
            .await
    }

    /// Issues (not pull requests) matching the query, newest first.
    pub async fn list_issues(
        &self,
        repo: &RepoRef,
        query: &IssueQuery,
    ) -> Result<Vec<Issue>, ForgeError> {
        let mut call = self.call(Method::GET, repo, &["issues"], None);
        {
            let mut pairs = call.url.query_pairs_mut();
            pairs.append_pair("state", query.state.as_str());
            if !query.labels.is_empty() {
                pairs.append_pair("labels", &query.labels.join(","));
            }
            if let Some(since) = query.since {
                pairs.append_pair(
                    "since",
                    &humantime::format_rfc3339_seconds(since).to_string(),
                );
            }
        }
        let issues: Vec<Issue> = self.http.pages(call, MAX_PAGES).await?;
        Ok(issues
            .into_iter()
            .filter(|issue| !issue.is_pull_request())
            .collect())
    }

    /// Opens an issue. Not retried once sent (a retry could open two); see
    /// [`GitHubClient::create_issue_once`].
    pub async fn create_issue(&self, repo: &RepoRef, new: &NewIssue) -> Result<Issue, ForgeError> {
        let body = serde_json::to_value(new).expect("a new issue serializes");
        self.http
            .json(&self.call(Method::POST, repo, &["issues"], Some(body)))
            .await
    }

    /// Opens an issue whose body holds `marker`, unless one by this client already does (found
    /// among the newest issues with the same labels); after a failure that may have opened it,
    /// looks again before retrying.
    pub async fn create_issue_once(
        &self,
        repo: &RepoRef,
        new: &NewIssue,
        marker: &str,
    ) -> Result<Issue, ForgeError> {
        require_marker(new.body.as_deref().unwrap_or_default(), marker)?;
        let me = self.whoami().await?;
        let find = || async {
            let mut call = self.call(Method::GET, repo, &["issues"], None);
            {
                let mut pairs = call.url.query_pairs_mut();
                pairs.append_pair("state", "all");
                pairs.append_pair("creator", &me);
                if !new.labels.is_empty() {
                    pairs.append_pair("labels", &new.labels.join(","));
                }
            }
            let issues: Vec<Issue> = self.http.pages(call, 1).await?;
            Ok::<_, ForgeError>(issues.into_iter().find(|issue| {
                !issue.is_pull_request()
                    && issue.user.as_ref().is_some_and(|user| user.login == me)
                    && issue
                        .body
                        .as_deref()
                        .is_some_and(|body| body.contains(marker))
            }))
        };
        self.once(find, || self.create_issue(repo, new)).await
    }

    /// Runs `create` unless `find` finds its result; retries a `create` that may have
    /// happened only after `find` says it did not.
    async fn once<T, Find, FindFuture, Create, CreateFuture>(
        &self,
        find: Find,
        create: Create,
    ) -> Result<T, ForgeError>
    where
        Find: Fn() -> FindFuture,
        FindFuture: std::future::Future<Output = Result<Option<T>, ForgeError>>,
        Create: Fn() -> CreateFuture,
        CreateFuture: std::future::Future<Output = Result<T, ForgeError>>,
    {
        if let Some(found) = find().await? {
            return Ok(found);
        }
        let mut attempt = 0;
        loop {
            match create().await {
                Err(err) if err.maybe_applied() && attempt < self.http.policy.max_retries => {
                    tracing::debug!(%err, "a create may have happened; looking before retrying");
                    attempt += 1;
                    if let Some(found) = find().await? {
                        return Ok(found);
                    }
                }
                other => return other,
            }
        }
    }

    pub async fn update_issue(
        &self,
        repo: &RepoRef,
        number: u64,
        update: &IssueUpdate,
    ) -> Result<Issue, ForgeError> {
        let body = serde_json::to_value(update).expect("an issue update serializes");
        self.http
            .json(&self.call(
                Method::PATCH,
                repo,
                &["issues", &number.to_string()],
                Some(body),
            ))
            .await
    }

    pub async fn close_issue(&self, repo: &RepoRef, number: u64) -> Result<Issue, ForgeError> {
        self.update_issue(
            repo,
            number,
            &IssueUpdate {
                state: Some(IssueState::Closed),
                ..IssueUpdate::default()
            },
        )
        .await
    }

    /// Creates the label unless it exists (an existing label keeps its colour).
    pub async fn ensure_label(&self, repo: &RepoRef, label: &Label) -> Result<Label, ForgeError> {
        match self
            .http
            .json(&self.call(Method::GET, repo, &["labels", &label.name], None))
            .await
        {
            Ok(found) => return Ok(found),
            Err(ForgeError::NotFound(_)) => {}
            Err(err) => return Err(err),
        }
        let mut call = self.call(
            Method::POST,
            repo,
            &["labels"],
            Some(json!({
                "name": label.name,
                "color": label.color.trim_start_matches('#'),
                "description": label.description,
            })),
        );
        // Creating a label twice is refused as `already_exists`, which is what we want.
        call.idempotent = true;
        match self.http.json(&call).await {
            Err(ForgeError::Validation(message)) if message.contains("already_exists") => {
                self.http
                    .json(&self.call(Method::GET, repo, &["labels", &label.name], None))
                    .await
            }
            other => other,
        }
    }

    /// Adds labels to an issue or pull request (creating unknown ones); returns its labels.
    pub async fn add_labels(
        &self,
        repo: &RepoRef,
        number: u64,
        labels: &[String],
    ) -> Result<Vec<Label>, ForgeError> {
        let mut call = self.call(
            Method::POST,
            repo,
            &["issues", &number.to_string(), "labels"],
            Some(json!({ "labels": labels })),
        );
        // Adding a label twice leaves one.
        call.idempotent = true;
        self.http.json(&call).await
    }

    /// Removes a label; a label the issue does not have is no error.
    pub async fn remove_label(
        &self,
        repo: &RepoRef,
        number: u64,
        label: &str,
    ) -> Result<(), ForgeError> {
        match self
            .http
            .send(&self.call(
                Method::DELETE,
                repo,
                &["issues", &number.to_string(), "labels", label],
                None,
            ))
            .await
        {
            Ok(_) | Err(ForgeError::NotFound(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Replaces all labels of an issue or pull request.
    pub async fn set_labels(
        &self,
        repo: &RepoRef,
        number: u64,
        labels: &[String],
    ) -> Result<Vec<Label>, ForgeError> {
        self.http
            .json(&self.call(
                Method::PUT,
                repo,
                &["issues", &number.to_string(), "labels"],
                Some(json!({ "labels": labels })),
            ))
            .await
    }

    /// The comments of an issue or pull request, oldest first.
    pub async fn list_comments(
        &self,
        repo: &RepoRef,
        number: u64,
    ) -> Result<Vec<Comment>, ForgeError> {
        self.http
            .pages(
                self.call(
                    Method::GET,
                    repo,
                    &["issues", &number.to_string(), "comments"],
                    None,
                ),
                MAX_PAGES,
            )
            .await
    }

    /// The comments of an issue or pull request updated at or after `since` (all of them
    /// without), oldest first: what the poller reads for `@orch` mentions.
    pub async fn list_comments_since(
        &self,
        repo: &RepoRef,
        number: u64,
        since: Option<std::time::SystemTime>,
    ) -> Result<Vec<Comment>, ForgeError> {
        let mut call = self.call(
            Method::GET,
            repo,
            &["issues", &number.to_string(), "comments"],
            None,
        );
        if let Some(since) = since {
            call.url.query_pairs_mut().append_pair(
                "since",
                &humantime::format_rfc3339_seconds(since).to_string(),
            );
        }
        self.http.pages(call, MAX_PAGES).await
    }

    /// Comments. Not retried once sent; see [`GitHubClient::upsert_marker_comment`].
    pub async fn create_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        body: &str,
    ) -> Result<Comment, ForgeError> {
        self.http
            .json(&self.call(
                Method::POST,
                repo,
                &["issues", &number.to_string(), "comments"],
                Some(json!({ "body": body })),
            ))
            .await
    }

    pub async fn update_comment(
        &self,
        repo: &RepoRef,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, ForgeError> {
        self.http
            .json(&self.call(
                Method::PATCH,
                repo,
                &["issues", "comments", &comment_id.to_string()],
                Some(json!({ "body": body })),
            ))
            .await
    }

    /// The comment holding `marker` (e.g. `<!-- orch:task 12 -->`) written by this client's own
    /// identity; a marker copied into someone else's comment is ignored.
    pub async fn find_marker_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        marker: &str,
    ) -> Result<Option<Comment>, ForgeError> {
        let me = self.whoami().await?;
        let comments = self.list_comments(repo, number).await?;
        Ok(comments.into_iter().find(|comment| {
            comment.user.as_ref().is_some_and(|user| user.login == me)
                && comment.body.contains(marker)
        }))
    }

    /// Edits the marker comment in place, or writes it if there is none (exactly one comment,
    /// also across a failure that may have written it).
    pub async fn upsert_marker_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<Comment, ForgeError> {
        require_marker(body, marker)?;
        if let Some(existing) = self.find_marker_comment(repo, number, marker).await? {
            if existing.body == body {
                return Ok(existing);
            }
            return self.update_comment(repo, existing.id, body).await;
        }
        self.once(
            || self.find_marker_comment(repo, number, marker),
            || self.create_comment(repo, number, body),
        )
        .await
    }

    /// Makes `sub_issue_id` (the child's id, not its number) a sub-issue of `parent`; already
    /// being one is no error.
    pub async fn add_sub_issue(
        &self,
        repo: &RepoRef,
        parent: u64,
        sub_issue_id: u64,
    ) -> Result<(), ForgeError> {
        let mut call = self.call(
            Method::POST,
            repo,
            &["issues", &parent.to_string(), "sub_issues"],
            Some(json!({ "sub_issue_id": sub_issue_id })),
        );
        call.idempotent = true;
        match self.http.send(&call).await {
            Ok(_) => Ok(()),
            Err(ForgeError::Validation(message)) => {
                let children = self.list_sub_issues(repo, parent).await?;
                if children.iter().any(|child| child.id == sub_issue_id) {
                    Ok(())
                } else {
                    Err(ForgeError::Validation(message))
                }
            }
            Err(err) => Err(err),
        }
    }

    pub async fn list_sub_issues(
        &self,
        repo: &RepoRef,
        parent: u64,
    ) -> Result<Vec<Issue>, ForgeError> {
        self.http
            .pages(
                self.call(
                    Method::GET,
                    repo,
                    &["issues", &parent.to_string(), "sub_issues"],
                    None,
                ),
                MAX_PAGES,
            )
            .await
    }

    /// Opens a pull request. Not retried once sent; see [`GitHubClient::create_pull_once`].
    pub async fn create_pull(
        &self,
        repo: &RepoRef,
        new: &NewPull,
    ) -> Result<PullRequest, ForgeError> {
        let body = serde_json::to_value(new).expect("a new pull serializes");
        self.http
            .json(&self.call(Method::POST, repo, &["pulls"], Some(body)))
            .await
    }

    /// Opens a pull request for `new.head` unless one is open already (then that one is
    /// returned), also across a failure that may have opened it.
    pub async fn create_pull_once(
        &self,
        repo: &RepoRef,
        new: &NewPull,
    ) -> Result<PullRequest, ForgeError> {
        let head = new.head.rsplit(':').next().unwrap_or(&new.head).to_owned();
        let find = || async {
            let open = self
                .list_pulls_by_head(repo, &head, StateFilter::Open)
                .await?;
            Ok::<_, ForgeError>(open.into_iter().find(|pull| pull.base.branch == new.base))
        };
        match self.once(find, || self.create_pull(repo, new)).await {
            // A concurrent writer won: use its pull request.
            Err(ForgeError::Validation(message)) if message.contains("already exists") => {
                find().await?.ok_or(ForgeError::Validation(message))
            }
            other => other,
        }
    }

    pub async fn pull(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, ForgeError> {
        self.http
            .json(&self.call(Method::GET, repo, &["pulls", &number.to_string()], None))
            .await
    }

    /// The pull requests whose head is `branch` (of the repository's owner).
    pub async fn list_pulls_by_head(
        &self,
        repo: &RepoRef,
        branch: &str,
        state: StateFilter,
    ) -> Result<Vec<PullRequest>, ForgeError> {
        let mut call = self.call(Method::GET, repo, &["pulls"], None);
        call.url
            .query_pairs_mut()
            .append_pair("state", state.as_str())
            .append_pair("head", &format!("{}:{branch}", repo.owner));
        self.http.pages(call, MAX_PAGES).await
    }

    pub async fn update_pull(
        &self,
        repo: &RepoRef,
        number: u64,
        update: &PullUpdate,
    ) -> Result<PullRequest, ForgeError> {
        let body = serde_json::to_value(update).expect("a pull update serializes");
        self.http
            .json(&self.call(
                Method::PATCH,
                repo,
                &["pulls", &number.to_string()],
                Some(body),
            ))
            .await
    }

    /// Merges; with `expected_head`, only if the head is still that commit. A pull that is
    /// already merged answers `merged: true` (a retried merge is not an error).
    pub async fn merge_pull(
        &self,
        repo: &RepoRef,
        number: u64,
        method: MergeMethod,
        expected_head: Option<&str>,
    ) -> Result<MergeOutcome, ForgeError> {
        let mut body = json!({ "merge_method": method });
        if let Some(sha) = expected_head {
            body["sha"] = json!(sha);
        }
        match self
            .http
            .json(&self.call(
                Method::PUT,
                repo,
                &["pulls", &number.to_string(), "merge"],
                Some(body),
            ))
            .await
        {
            Err(ForgeError::Conflict {
                status: 405,
                message,
            }) => {
                let pull = self.pull(repo, number).await?;
                if pull.merged {
                    Ok(MergeOutcome {
                        sha: pull.merge_commit_sha,
                        merged: true,
                        message: "the pull request was merged already".into(),
                    })
                } else {
                    Err(ForgeError::Conflict {
                        status: 405,
                        message,
                    })
                }
            }
            other => other,
        }
    }

    pub async fn reviews(&self, repo: &RepoRef, number: u64) -> Result<Vec<Review>, ForgeError> {
        self.http
            .pages(
                self.call(
                    Method::GET,
                    repo,
                    &["pulls", &number.to_string(), "reviews"],
                    None,
                ),
                MAX_PAGES,
            )
            .await
    }

    /// The comments on lines of the pull's diff (path, line, body).
    pub async fn review_comments(
        &self,
        repo: &RepoRef,
        number: u64,
    ) -> Result<Vec<ReviewComment>, ForgeError> {
        self.http
            .pages(
                self.call(
                    Method::GET,
                    repo,
                    &["pulls", &number.to_string(), "comments"],
                    None,
                ),
                MAX_PAGES,
            )
            .await
    }

    /// The check runs of a commit (a sha or a branch), at most the first 100.
    pub async fn check_runs(
        &self,
        repo: &RepoRef,
        reference: &str,
    ) -> Result<Vec<CheckRun>, ForgeError> {
        #[derive(Deserialize)]
        struct CheckRuns {
            check_runs: Vec<CheckRun>,
        }
        let mut call = self.call(
            Method::GET,
            repo,
            &["commits", reference, "check-runs"],
            None,
        );
        call.url.query_pairs_mut().append_pair("per_page", "100");
        let runs: CheckRuns = self.http.json(&call).await?;
        Ok(runs.check_runs)
    }

    /// The combined commit status of a commit (a sha or a branch).
    pub async fn combined_status(
        &self,
        repo: &RepoRef,
        reference: &str,
    ) -> Result<CombinedStatus, ForgeError> {
        self.http
            .json(&self.call(Method::GET, repo, &["commits", reference, "status"], None))
            .await
    }

    /// Deletes a branch; a branch already gone is no error.
    pub async fn delete_branch(&self, repo: &RepoRef, branch: &str) -> Result<(), ForgeError> {
        let mut segments = vec!["git", "refs", "heads"];
        segments.extend(branch.split('/'));
        match self
            .http
            .send(&self.call(Method::DELETE, repo, &segments, None))
            .await
        {
            Ok(_) | Err(ForgeError::NotFound(_)) => Ok(()),
            Err(ForgeError::Validation(message))
                if message.contains("Reference does not exist") =>
            {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// A pull request's state, review decision, mergeability and check rollup (GraphQL).
    pub async fn pull_overview(
        &self,
        repo: &RepoRef,
        number: u64,
    ) -> Result<PullOverview, ForgeError> {
        let url = self.http.graphql_url();
        let call = Call {
            what: format!("GraphQL pull request overview of {repo}#{number}"),
            method: Method::POST,
            url,
            body: Some(json!({
                "query": PULL_OVERVIEW_QUERY,
                "variables": { "owner": repo.owner, "name": repo.name, "number": number },
            })),
            // A query changes nothing.
            idempotent: true,
            repo: Some(repo),
            as_app: false,
        };
        let answer = self.http.send(&call).await?;
        parse_overview(&call.what, &answer.body)
    }
}

fn require_marker(body: &str, marker: &str) -> Result<(), ForgeError> {
    if marker.trim().is_empty() || !body.contains(marker) {
        return Err(ForgeError::Config(format!(
            "the body must hold its marker `{marker}` so it can be found again"
        )));
    }
    Ok(())
}

fn parse_overview(what: &str, body: &[u8]) -> Result<PullOverview, ForgeError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Rollup {
        state: RollupState,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Commit {
        status_check_rollup: Option<Rollup>,
    }
    #[derive(Deserialize)]
    struct CommitNode {
        commit: Commit,
    }
    #[derive(Deserialize)]
    struct Commits {
        nodes: Vec<CommitNode>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Pull {
        number: u64,
        state: PullState,
        is_draft: bool,
        mergeable: Mergeable,
        merge_state_status: String,
        review_decision: Option<ReviewDecision>,
        head_ref_name: String,
        head_ref_oid: String,
        base_ref_name: String,
        commits: Commits,
    }
    let value: Value = decode(what, body)?;
    if let Some(errors) = value["errors"]
        .as_array()
        .filter(|errors| !errors.is_empty())
    {
        let messages: Vec<&str> = errors
            .iter()
            .filter_map(|error| error["message"].as_str())
            .collect();
        let message = messages.join("; ");
        if errors.iter().any(|error| error["type"] == "NOT_FOUND") {
            return Err(ForgeError::NotFound(format!("{what}: {message}")));
        }
        return Err(ForgeError::GraphQl(format!("{what}: {message}")));
    }
    let pull: Pull = serde_json::from_value(value["data"]["repository"]["pullRequest"].clone())
        .map_err(|err| ForgeError::Decode {
            what: what.to_owned(),
            reason: err.to_string(),
        })?;
    let checks = pull
        .commits
        .nodes
        .last()
        .and_then(|node| node.commit.status_check_rollup.as_ref())
        .map(|rollup| rollup.state);
    Ok(PullOverview {
        number: pull.number,
        state: pull.state,
        is_draft: pull.is_draft,
        mergeable: pull.mergeable,
        merge_state_status: pull.merge_state_status,
        review_decision: pull.review_decision,
        head_ref_name: pull.head_ref_name,
        head_sha: pull.head_ref_oid,
        base_ref_name: pull.base_ref_name,
        checks,
    })
}
