//! The forge outbox's sender: [`GitHubWriter`] carries each [`ForgeOp`] to GitHub through
//! `orch-forge`, and [`dispatch_loop`] runs [`dispatch_due`] on the leader, woken when a sync
//! pass enqueued ops and every few seconds for due retries.
//!
//! Every op is safe to send twice (a crash between the forge's answer and the outbox's `done`
//! sends it again): labels and closing are idempotent by nature; the marker comment, the pull
//! request and a published issue are found before they are made (`*_once` of the client); a
//! sub-issue already linked and a pull request already merged are no error.
//!
//! One client per (API base, credential) is kept, so an App's installation token is minted once
//! and refreshed before it expires, and the rate-limit state (a spent quota waits for its
//! reset) is shared by every op to that forge. A refused credential drops the client, so a
//! rotated token file is read again on the next attempt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use orch_core::forge::{marker, ForgeAuth, ForgeOp, ForgeResult, ForgeSettings, RepoSlug};
use orch_forge::{
    ExposeSecret, Forge, ForgeConfig, ForgeError, Label, NewIssue, NewPull, RepoRef, RetryPolicy,
};
use orch_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::forge_outbox::{dispatch_due, ForgeWriter, SendError};

/// How long a write waits when its project has no credentials yet.
const NO_CREDENTIALS_WAIT: Duration = Duration::from_secs(600);

/// The GitHub writer: one cached client per API base and credential.
pub struct GitHubWriter {
    policy: RetryPolicy,
    clients: Mutex<HashMap<String, Forge>>,
}

impl Default for GitHubWriter {
    fn default() -> GitHubWriter {
        GitHubWriter::new(RetryPolicy::default())
    }
}

impl std::fmt::Debug for GitHubWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GitHubWriter")
            .finish_non_exhaustive()
    }
}

/// The cache key of a client: where, and who (the place of the secret, never the secret).
fn client_key(settings: &ForgeSettings) -> Option<String> {
    settings
        .auth
        .as_ref()
        .map(|auth| format!("{}\n{auth:?}", settings.api_base))
}

impl GitHubWriter {
    /// A writer whose clients use `policy` (retries, rate-limit waits, token refresh margin).
    pub fn new(policy: RetryPolicy) -> GitHubWriter {
        GitHubWriter {
            policy,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, Forge>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The client for `settings`, built (and its credential read) on first use.
    pub fn client(&self, settings: &ForgeSettings) -> Result<Forge, SendError> {
        let (Some(key), Some(auth)) = (client_key(settings), settings.auth.as_ref()) else {
            // Kept (not refused): writes wait for credentials to be configured.
            return Err(SendError::Retry {
                message: "the project's [forge] has no credentials; set token_file, token_env, \
                          or app_id + private_key_file + installation_id"
                    .to_owned(),
                after: Some(NO_CREDENTIALS_WAIT),
            });
        };
        if let Some(client) = self.clients().get(&key) {
            return Ok(client.clone());
        }
        let auth = match auth {
            ForgeAuth::TokenFile(path) => {
                orch_forge::ForgeAuth::token_from_file(std::path::Path::new(path))
            }
            ForgeAuth::TokenEnv(name) => orch_forge::ForgeAuth::token_from_env(name),
            ForgeAuth::App {
                app_id,
                private_key_file,
                installation_id,
            } => orch_forge::ForgeAuth::app_from_key_file(
                *app_id,
                std::path::Path::new(private_key_file),
                Some(*installation_id),
            ),
        }
        .map_err(send_error)?;
        let config = ForgeConfig::github(auth)
            .with_api_base(&settings.api_base)
            .map_err(send_error)?
            .with_policy(self.policy.clone());
        let client = Forge::github(config).map_err(send_error)?;
        self.clients().insert(key, client.clone());
        Ok(client)
    }

    /// Forget the client of `settings` (its credential was refused: read it again next time).
    fn evict(&self, settings: &ForgeSettings) {
        if let Some(key) = client_key(settings) {
            self.clients().remove(&key);
        }
    }

    /// The token `git push` uses for the project's repository: the configured token (read
    /// now), or a fresh installation token of its GitHub App.
    pub async fn git_token(
        &self,
        settings: &ForgeSettings,
    ) -> Result<orch_worker::workspace::push::ForgeToken, String> {
        if let Some(auth @ (ForgeAuth::TokenFile(_) | ForgeAuth::TokenEnv(_))) = &settings.auth {
            // Read now, never kept: a token replaced in its file is used at once.
            return crate::forge_outbox::read_token(auth)?
                .ok_or_else(|| "the forge token is empty".to_owned());
        }
        let client = self.client(settings).map_err(|e| e.message().to_owned())?;
        let repo = repo_ref(&settings.repo).map_err(|e| e.message().to_owned())?;
        match client.git_token(&repo).await {
            Ok(secret) => Ok(orch_worker::workspace::push::ForgeToken::new(
                secret.expose_secret(),
            )),
            Err(err) => {
                if matches!(err, ForgeError::Unauthorized(_)) {
                    self.evict(settings);
                }
                Err(err.to_string())
            }
        }
    }
}

impl SendError {
    /// What happened, for logs and the outbox.
    pub fn message(&self) -> &str {
        match self {
            SendError::Retry { message, .. } | SendError::Refused(message) => message,
        }
    }
}

fn repo_ref(repo: &RepoSlug) -> Result<RepoRef, SendError> {
    RepoRef::parse(&repo.to_string()).map_err(send_error)
}

/// What the outbox does with a client error: try again later (the network, a 5xx, a rate limit
/// past the client's patience, a credential that may be fixed), or give up (the forge refused
/// the request itself and will again).
pub fn send_error(err: ForgeError) -> SendError {
    let message = err.to_string();
    match err {
        ForgeError::RateLimited { until, .. } => SendError::Retry {
            message,
            after: Some(
                until
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            ),
        },
        ForgeError::Timeout { .. }
        | ForgeError::Transport(_)
        | ForgeError::Server { .. }
        | ForgeError::Unauthorized(_)
        | ForgeError::Config(_) => SendError::Retry {
            message,
            after: None,
        },
        ForgeError::Unexpected { status, .. } if status >= 500 || status == 429 => {
            SendError::Retry {
                message,
                after: None,
            }
        }
        ForgeError::NotFound(_)
        | ForgeError::Forbidden(_)
        | ForgeError::Conflict { .. }
        | ForgeError::Validation(_)
        | ForgeError::Unexpected { .. }
        | ForgeError::Decode { .. }
        | ForgeError::GraphQl(_) => SendError::Refused(message),
    }
}

fn forge_merge_method(method: orch_core::forge::MergeMethod) -> orch_forge::MergeMethod {
    match method {
        orch_core::forge::MergeMethod::Merge => orch_forge::MergeMethod::Merge,
        orch_core::forge::MergeMethod::Squash => orch_forge::MergeMethod::Squash,
        orch_core::forge::MergeMethod::Rebase => orch_forge::MergeMethod::Rebase,
    }
}

/// Carry one op to the forge.
async fn send_op(client: &Forge, repo: &RepoRef, op: &ForgeOp) -> Result<ForgeResult, ForgeError> {
    match op {
        ForgeOp::EnsureLabels { labels } => {
            for label in labels {
                client
                    .ensure_label(
                        repo,
                        &Label {
                            name: label.name.clone(),
                            color: label.color.clone(),
                            description: Some(label.description.clone()),
                        },
                    )
                    .await?;
            }
            Ok(ForgeResult::Nothing)
        }
        ForgeOp::SetLabels { issue, add, remove } => {
            if !add.is_empty() {
                client.add_labels(repo, *issue, add).await?;
            }
            for label in remove.iter().filter(|label| !add.contains(label)) {
                client.remove_label(repo, *issue, label).await?;
            }
            Ok(ForgeResult::Nothing)
        }
        ForgeOp::UpsertMarkerComment { issue, task, body } => {
            let comment = client
                .upsert_marker_comment(repo, *issue, &marker(*task), body)
                .await?;
            Ok(ForgeResult::Comment { id: comment.id })
        }
        ForgeOp::CreatePullRequest {
            head,
            base,
            title,
            body,
            draft,
            ..
        } => {
            let pull = client
                .create_pull_once(
                    repo,
                    &NewPull {
                        title: title.clone(),
                        head: head.clone(),
                        base: base.clone(),
                        body: Some(body.clone()),
                        draft: *draft,
                    },
                )
                .await?;
            Ok(ForgeResult::Pull {
                number: pull.number,
                url: pull.html_url.unwrap_or_default(),
            })
        }
        ForgeOp::AddSubIssue { parent, child } => {
            // The API takes the child's id, not its number.
            let child = client.issue(repo, *child).await?;
            client.add_sub_issue(repo, *parent, child.id).await?;
            Ok(ForgeResult::Nothing)
        }
        ForgeOp::CloseIssue { issue } => {
            client.close_issue(repo, *issue).await?;
            Ok(ForgeResult::Nothing)
        }
        ForgeOp::MergePull {
            pull,
            method,
            head_sha,
        } => {
            let outcome = client
                .merge_pull(
                    repo,
                    *pull,
                    forge_merge_method(*method),
                    head_sha.as_deref(),
                )
                .await?;
            if outcome.merged {
                Ok(ForgeResult::Nothing)
            } else {
                Err(ForgeError::Conflict {
                    status: 405,
                    message: format!("pull request #{pull} was not merged: {}", outcome.message),
                })
            }
        }
        ForgeOp::DeleteBranch { branch } => {
            client.delete_branch(repo, branch).await?;
            Ok(ForgeResult::Nothing)
        }
        ForgeOp::CreateIssue {
            task,
            title,
            body,
            labels,
        } => {
            let issue = client
                .create_issue_once(
                    repo,
                    &NewIssue {
                        title: title.clone(),
                        body: Some(body.clone()),
                        labels: labels.clone(),
                        assignees: Vec::new(),
                    },
                    &marker(*task),
                )
                .await?;
            Ok(ForgeResult::Issue {
                number: issue.number,
                url: issue.html_url,
            })
        }
    }
}

impl ForgeWriter for GitHubWriter {
    async fn send(
        &self,
        repo: &RepoSlug,
        settings: &ForgeSettings,
        op: &ForgeOp,
    ) -> Result<ForgeResult, SendError> {
        let client = self.client(settings)?;
        let repo = repo_ref(repo)?;
        match send_op(&client, &repo, op).await {
            Ok(result) => Ok(result),
            Err(err) => {
                if matches!(err, ForgeError::Unauthorized(_)) {
                    self.evict(settings);
                }
                tracing::warn!(op = op.name(), %repo, "forge write failed: {err}");
                Err(send_error(err))
            }
        }
    }
}

/// How often the dispatcher looks for due retries when nothing woke it.
pub const DISPATCH_TICK: Duration = Duration::from_secs(2);

/// Send the outbox's due ops on the leader until `stop`: a pass when `wake` is notified (a
/// sync pass enqueued ops) and every [`DISPATCH_TICK`]; passes follow each other while they
/// find work. The dispatcher's name (`forge-<instance>`) is stable across restarts, so ops a
/// killed daemon held are taken back at once.
pub async fn dispatch_loop(
    store: Store,
    home: PathBuf,
    writer: Arc<GitHubWriter>,
    owner: String,
    leadership: crate::scheduler::Leadership,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut complaints = crate::scheduler::Complaints::new("forge dispatch pass");
    loop {
        let mut busy = false;
        if leadership.is_leader() {
            let pass = dispatch_due(&store, &home, writer.as_ref(), &owner);
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = pass => outcome,
            };
            match outcome {
                Ok(report) => {
                    complaints.succeeded();
                    busy = report.done + report.retried + report.failed > 0;
                    if report.failed > 0 {
                        tracing::warn!(
                            failed = report.failed,
                            "forge writes given up on; see `orch task get` of their tasks"
                        );
                    }
                }
                Err(e) => {
                    complaints.failed(&e);
                }
            }
        }
        if busy {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(DISPATCH_TICK) => {}
        }
    }
}
