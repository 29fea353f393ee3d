//! orch's forge client: the operations on GitHub that issues-as-tasks and pull-requests-out
//! need, behind a closed enum ([`Forge`]) so another forge (GitLab) can be added as a variant.
//!
//! - **Where**: [`ForgeConfig::api_base`], `https://api.github.com` by default; a GitHub
//!   Enterprise Server's `https://HOST/api/v3`, or a test's fake (`orch-github-fake`).
//! - **Who**: [`ForgeAuth::Token`] (read by the caller from a file or an environment variable
//!   through [`ForgeAuth::token_from_file`] / [`ForgeAuth::token_from_env`], never from argv),
//!   or [`ForgeAuth::App`]: a JWT (RS256) signed with the App's private key, exchanged for an
//!   installation token (the installation found from the repository when not given), cached and
//!   replaced [`RetryPolicy::token_refresh_margin`] before it expires (at the latest half-way
//!   through its life), and once more if the forge refuses it.
//! - **Rate limits**: a 403/429 with `Retry-After` waits that long; with
//!   `X-RateLimit-Remaining: 0` it waits until `X-RateLimit-Reset`; a secondary limit without
//!   `Retry-After` waits [`RetryPolicy::secondary_rate_limit_wait`], doubled each time. A success
//!   that spends the quota makes the next request wait for the reset instead of failing. A wait
//!   longer than [`RetryPolicy::max_rate_limit_wait`] is [`ForgeError::RateLimited`].
//! - **Conditional requests**: GET answers with an `ETag` or `Last-Modified` are cached (bounded)
//!   and revalidated with `If-None-Match` / `If-Modified-Since`; a 304 is the cached body (and
//!   costs no quota on GitHub).
//! - **Retries**: see [`http`]'s docs: transient failures of idempotent requests are retried
//!   with exponential backoff and jitter; creating an issue, comment or pull request is never
//!   blindly repeated: the `*_once` operations ([`Forge::create_issue_once`],
//!   [`Forge::upsert_marker_comment`], [`Forge::create_pull_once`]) look for their result first.
//! - **GraphQL**: one query, [`Forge::pull_overview`] (review decision, mergeability, check
//!   rollup of a pull request in one request); everything else is REST.
//!
//! Errors are [`ForgeError`]; credentials never appear in them, in `Debug` output or in logs.

mod auth;
mod error;
mod github;
pub mod http;
mod types;

use url::Url;

pub use auth::{AppCredentials, ForgeAuth};
pub use error::ForgeError;
pub use github::GitHubClient;
pub use http::RetryPolicy;
pub use secrecy::{ExposeSecret, SecretString};
pub use types::*;

/// GitHub's public API.
pub const GITHUB_API: &str = "https://api.github.com";

/// Where the forge is and how to authenticate.
#[derive(Debug, Clone)]
pub struct ForgeConfig {
    pub api_base: Url,
    pub auth: ForgeAuth,
    pub policy: RetryPolicy,
}

impl ForgeConfig {
    /// GitHub's public API with this credential and the default policy.
    pub fn github(auth: ForgeAuth) -> ForgeConfig {
        ForgeConfig {
            api_base: Url::parse(GITHUB_API).expect("GitHub's API URL parses"),
            auth,
            policy: RetryPolicy::default(),
        }
    }

    /// Another API base (GitHub Enterprise Server's `https://HOST/api/v3`, a test's fake).
    pub fn with_api_base(mut self, api_base: &str) -> Result<ForgeConfig, ForgeError> {
        self.api_base = Url::parse(api_base).map_err(|err| {
            ForgeError::Config(format!(
                "the forge API base `{api_base}` is not a URL ({err}); e.g. https://github.example.com/api/v3"
            ))
        })?;
        Ok(self)
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> ForgeConfig {
        self.policy = policy;
        self
    }
}

/// A forge: today GitHub (and GitHub Enterprise Server).
#[derive(Debug, Clone)]
pub enum Forge {
    GitHub(GitHubClient),
}

impl Forge {
    /// A GitHub client.
    pub fn github(config: ForgeConfig) -> Result<Forge, ForgeError> {
        Ok(Forge::GitHub(GitHubClient::new(config)?))
    }
}

/// Each operation of [`Forge`] calls the variant's client.
macro_rules! delegate {
    ($( $(#[$meta:meta])* fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        impl Forge {
            $(
                $(#[$meta])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, ForgeError> {
                    match self {
                        Forge::GitHub(client) => client.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    /// The login the client acts as (a user, or `<app-slug>[bot]`).
    fn whoami(&self) -> String;
    /// The token `git push` uses: the token, or a fresh App installation token.
    fn git_token(&self, repo: &RepoRef) -> SecretString;
    /// The repository (default branch, clone URL).
    fn repository(&self, repo: &RepoRef) -> Repository;
    fn issue(&self, repo: &RepoRef, number: u64) -> Issue;
    /// Issues (not pull requests) by labels, state and `since`, newest first.
    fn list_issues(&self, repo: &RepoRef, query: &IssueQuery) -> Vec<Issue>;
    /// Opens an issue (not retried once sent).
    fn create_issue(&self, repo: &RepoRef, new: &NewIssue) -> Issue;
    /// Opens an issue whose body holds `marker` unless this client opened one already.
    fn create_issue_once(&self, repo: &RepoRef, new: &NewIssue, marker: &str) -> Issue;
    fn update_issue(&self, repo: &RepoRef, number: u64, update: &IssueUpdate) -> Issue;
    fn close_issue(&self, repo: &RepoRef, number: u64) -> Issue;
    /// Creates the label unless it exists.
    fn ensure_label(&self, repo: &RepoRef, label: &Label) -> Label;
    fn add_labels(&self, repo: &RepoRef, number: u64, labels: &[String]) -> Vec<Label>;
    /// Removes a label (absent is fine).
    fn remove_label(&self, repo: &RepoRef, number: u64, label: &str) -> ();
    fn set_labels(&self, repo: &RepoRef, number: u64, labels: &[String]) -> Vec<Label>;
    fn list_comments(&self, repo: &RepoRef, number: u64) -> Vec<Comment>;
    /// Comments updated since a time (all without one).
    fn list_comments_since(&self, repo: &RepoRef, number: u64, since: Option<std::time::SystemTime>) -> Vec<Comment>;
    /// Comments (not retried once sent).
    fn create_comment(&self, repo: &RepoRef, number: u64, body: &str) -> Comment;
    fn update_comment(&self, repo: &RepoRef, comment_id: u64, body: &str) -> Comment;
    /// This client's comment holding `marker`.
    fn find_marker_comment(&self, repo: &RepoRef, number: u64, marker: &str) -> Option<Comment>;
    /// Edits the marker comment in place, or writes it once.
    fn upsert_marker_comment(&self, repo: &RepoRef, number: u64, marker: &str, body: &str) -> Comment;
    /// Adds a sub-issue by the child's id (already one is fine).
    fn add_sub_issue(&self, repo: &RepoRef, parent: u64, sub_issue_id: u64) -> ();
    fn list_sub_issues(&self, repo: &RepoRef, parent: u64) -> Vec<Issue>;
    /// Opens a pull request (not retried once sent).
    fn create_pull(&self, repo: &RepoRef, new: &NewPull) -> PullRequest;
    /// Opens a pull request unless one is open for the head already.
    fn create_pull_once(&self, repo: &RepoRef, new: &NewPull) -> PullRequest;
    fn pull(&self, repo: &RepoRef, number: u64) -> PullRequest;
    fn list_pulls_by_head(&self, repo: &RepoRef, branch: &str, state: StateFilter) -> Vec<PullRequest>;
    fn update_pull(&self, repo: &RepoRef, number: u64, update: &PullUpdate) -> PullRequest;
    /// Merges (merge, squash or rebase), optionally only if the head is `expected_head`.
    fn merge_pull(&self, repo: &RepoRef, number: u64, method: MergeMethod, expected_head: Option<&str>) -> MergeOutcome;
    fn reviews(&self, repo: &RepoRef, number: u64) -> Vec<Review>;
    fn review_comments(&self, repo: &RepoRef, number: u64) -> Vec<ReviewComment>;
    fn check_runs(&self, repo: &RepoRef, reference: &str) -> Vec<CheckRun>;
    fn combined_status(&self, repo: &RepoRef, reference: &str) -> CombinedStatus;
    /// Deletes a branch (already gone is fine).
    fn delete_branch(&self, repo: &RepoRef, branch: &str) -> ();
    /// Review decision, mergeability and check rollup in one GraphQL query.
    fn pull_overview(&self, repo: &RepoRef, number: u64) -> PullOverview;
}
