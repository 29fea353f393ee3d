//! The HTTP coordinator: a remote worker's view of the daemon, through its `/v1/worker` routes
//! and the worker token.
//!
//! The project checkout: a claim names the project's name and its path on the daemon's machine;
//! the worker uses the path mapped to that name (`orch worker --project NAME=PATH`), else the
//! same path. It never reads the daemon's files. Worktrees stay in the worker's own home; the
//! run's bundle is written there too and mirrored to the daemon (`stream.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch_api::{ClaimedRun, OutcomeRequest};
use orch_core::{
    FencingToken, Lease, Outcome, ProjectId, Run, RunId, RunState, Status, Task, TaskId, TaskSpec,
    Timestamp, WorkflowId,
};
use orch_store::Claim;

use super::CoordinatorError;

/// How long a claim waits on the daemon for work before answering "nothing". Short enough that
/// a daemon shutting down is not held up long by waiting claims.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// How long any one request may take beyond the time the daemon is asked to wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's API, as a worker uses it.
#[derive(Debug, Clone)]
pub struct HttpCoordinator {
    client: reqwest::Client,
    /// `http://host:port`, without a trailing slash.
    base: String,
    token: Arc<str>,
    /// Project directories named by claims. A `std` mutex: it is held only to read or insert
    /// one entry, never across an await.
    projects: Arc<Mutex<HashMap<ProjectId, PathBuf>>>,
    /// Local checkouts by project name (`--project NAME=PATH`), used instead of the daemon's path.
    checkouts: Arc<HashMap<String, PathBuf>>,
}

impl HttpCoordinator {
    /// A coordinator for the daemon at `base` (`http://127.0.0.1:7700` or `https://...`),
    /// sending `token` (the worker token from `<home>/worker-token` on the daemon's machine).
    /// `ca_pem` adds a trusted certificate (PEM) for a daemon whose certificate is self-signed or
    /// from a private CA.
    pub fn new(
        base: &str,
        token: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<HttpCoordinator, CoordinatorError> {
        let url = reqwest::Url::parse(base)
            .map_err(|e| CoordinatorError::Refused(format!("the server URL `{base}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CoordinatorError::Refused(format!(
                "the server URL `{base}` must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder().connect_timeout(REQUEST_TIMEOUT);
        if let Some(pem) = ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                CoordinatorError::Refused(format!("the CA certificate is not PEM: {e}"))
            })?;
            if certificates.is_empty() {
                return Err(CoordinatorError::Refused(
                    "the CA certificate file holds no certificate".to_owned(),
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| CoordinatorError::Refused(format!("build the HTTP client: {e}")))?;
        Ok(HttpCoordinator {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().into(),
            projects: Arc::default(),
            checkouts: Arc::default(),
        })
    }

    /// Use these local checkouts (by project name) instead of the paths the daemon names.
    pub fn with_checkouts(mut self, checkouts: HashMap<String, PathBuf>) -> HttpCoordinator {
        self.checkouts = Arc::new(checkouts);
        self
    }

    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<reqwest::Response, CoordinatorError> {
        let request = self.client.post(format!("{}{path}", self.base)).json(&body);
        self.send(request, &format!("POST {path}"), timeout).await
    }

    /// POST to `/v1/worker/runs/{run}/{action}` as `worker`, with the run's fencing token in
    /// its header (never in the URL).
    pub(super) async fn post_about_run(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        action: &str,
        body: serde_json::Value,
    ) -> Result<reqwest::Response, CoordinatorError> {
        let path = format!("/v1/worker/runs/{run}/{action}");
        let request = self.client.post(format!("{}{path}", self.base)).json(&body);
        self.send(
            fenced(request, worker, token),
            &format!("POST {path}"),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// Send `request` with the token; a refusal becomes the matching [`CoordinatorError`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, CoordinatorError> {
        let response = request
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| CoordinatorError::Unreachable(format!("{what}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<orch_api::ErrorBody>(&text)
            .map(|body| body.error.message)
            .unwrap_or(text);
        let message = format!("{what}: {status}: {message}");
        Err(match status.as_u16() {
            // 403 on a run is `not_lease_holder`: the daemon does not take this worker for the
            // run's holder, so working on is as pointless as after `lease_lost`.
            409 => CoordinatorError::LeaseLost(message),
            403 if path_is_about_a_run(what) => CoordinatorError::LeaseLost(message),
            401 | 403 => CoordinatorError::Unauthorized(message),
            408 | 429 | 500.. => CoordinatorError::Unreachable(message),
            _ => CoordinatorError::Refused(message),
        })
    }

    /// Append to (or replace) files of the run's bundle on the daemon; the answer is each
    /// file's length there, which is where the next append of it starts.
    pub(super) async fn send_files(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        files: Vec<orch_api::FilePiece>,
    ) -> Result<HashMap<String, u64>, CoordinatorError> {
        let body = json(&orch_api::FilesRequest { files })?;
        let response = self
            .post_about_run(worker, run, token, "files", body)
            .await?;
        let lengths: orch_api::FileLengths = response
            .json()
            .await
            .map_err(|e| CoordinatorError::Refused(format!("read the answer: {e}")))?;
        Ok(lengths.files.into_iter().collect())
    }

    /// Upload the finished bundle (a tar file) of the run; `sha256` is the tar's digest.
    pub(super) async fn upload_bundle(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        tar: &std::path::Path,
        sha256: &str,
    ) -> Result<(), CoordinatorError> {
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| CoordinatorError::Refused(format!("open {}: {e}", tar.display())))?;
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let path = format!("/v1/worker/runs/{run}/bundle");
        let request = fenced(
            self.client.put(format!("{}{path}", self.base)),
            worker,
            token,
        )
        .header("x-orch-bundle-sha256", sha256)
        .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::from(file));
        // A second per MiB on top of the usual allowance: bundles can be large.
        let timeout = REQUEST_TIMEOUT + Duration::from_secs(size / (1024 * 1024));
        self.send(request, &format!("PUT {path}"), timeout)
            .await
            .map(drop)
    }

    /// Long-poll the daemon for the next ready task.
    pub(super) async fn claim(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, CoordinatorError> {
        let body = json(&orch_api::ClaimRequest {
            worker: worker.to_owned(),
            lease_ms: millis(lease),
            wait_ms: millis(CLAIM_WAIT),
        })?;
        let response = self
            .post("/v1/worker/claim", body, CLAIM_WAIT + REQUEST_TIMEOUT)
            .await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let wire: ClaimedRun = response
            .json()
            .await
            .map_err(|e| CoordinatorError::Refused(format!("read the claim: {e}")))?;
        let name = wire.project_name.clone();
        let (claim, mut dir) = into_claim(wire)?;
        if let Some(local) = self.checkouts.get(&name).cloned() {
            dir = local;
        }
        self.projects
            .lock()
            .expect("no code panics while holding the projects lock")
            .insert(claim.task.project, dir);
        Ok(Some(claim))
    }

    pub(super) async fn heartbeat(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), CoordinatorError> {
        let body = json(&orch_api::HeartbeatRequest {
            lease_ms: millis(lease),
        })?;
        self.post_about_run(worker, run, token, "heartbeat", body)
            .await
            .map(drop)
    }

    pub(super) async fn record_usage(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        records: &[orch_store::UsageRecord],
    ) -> Result<(), CoordinatorError> {
        let body = json(&orch_api::UsageReport {
            records: records
                .iter()
                .map(|r| orch_api::UsageRecordView {
                    step: r.step.clone(),
                    agent: r.agent.clone(),
                    model: r.model.clone(),
                    session_id: r.session_id.clone(),
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cost_usd: r.cost_usd,
                })
                .collect(),
        })?;
        self.post_about_run(worker, run, token, "usage", body)
            .await
            .map(drop)
    }

    pub(super) async fn record_review(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        review: &orch_store::ReviewRecord,
    ) -> Result<(), CoordinatorError> {
        let body = json(&orch_api::ReviewReport {
            review: orch_api::ReviewView {
                round: review.round,
                verdict: review.verdict.as_str().to_owned(),
                reasons: review.reasons.clone(),
                escalated: review.escalated,
            },
        })?;
        self.post_about_run(worker, run, token, "review", body)
            .await
            .map(drop)
    }

    pub(super) async fn complete(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> Result<Status, CoordinatorError> {
        let outcome = match outcome {
            Outcome::Succeeded => OutcomeRequest::Succeeded,
            Outcome::Failed => OutcomeRequest::Failed,
            Outcome::FailedPermanently => OutcomeRequest::FailedPermanently,
            Outcome::NeedsReview => OutcomeRequest::NeedsReview,
        };
        let body = json(&orch_api::CompleteRequest {
            outcome,
            reason: reason.map(str::to_owned),
        })?;
        let response = self
            .post_about_run(worker, run, token, "complete", body)
            .await?;
        read_status(response).await
    }

    pub(super) async fn requeue(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        delay: Duration,
        reason: &str,
    ) -> Result<Status, CoordinatorError> {
        let body = json(&orch_api::RequeueRequest {
            delay_ms: millis(delay),
            reason: reason.to_owned(),
        })?;
        let response = self
            .post_about_run(worker, run, token, "requeue", body)
            .await?;
        read_status(response).await
    }

    /// The directory the claim of a task of `project` named.
    pub(super) fn project_dir(&self, project: ProjectId) -> Result<PathBuf, CoordinatorError> {
        self.projects
            .lock()
            .expect("no code panics while holding the projects lock")
            .get(&project)
            .cloned()
            .ok_or_else(|| {
                CoordinatorError::Refused(format!("project {project} was named by no claim"))
            })
    }
}

/// `request` with the headers that say who asks about a run: the worker's name and the run's
/// fencing token.
fn fenced(
    request: reqwest::RequestBuilder,
    worker: &str,
    token: FencingToken,
) -> reqwest::RequestBuilder {
    request
        .header("x-orch-worker", worker)
        .header("x-orch-fencing-token", token.expose_hex())
}

/// Whether the request described as `what` (`POST /v1/worker/runs/7/complete`) is about a run.
fn path_is_about_a_run(what: &str) -> bool {
    what.contains("/v1/worker/runs/")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

async fn read_status(response: reqwest::Response) -> Result<Status, CoordinatorError> {
    let body: orch_api::RunStatusResponse = response
        .json()
        .await
        .map_err(|e| CoordinatorError::Refused(format!("read the answer: {e}")))?;
    Status::from_str(&body.status)
        .map_err(|e| CoordinatorError::Refused(format!("the answer's status: {e}")))
}

/// The request body for `value`.
pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, CoordinatorError> {
    serde_json::to_value(value)
        .map_err(|e| CoordinatorError::Refused(format!("encode the request: {e}")))
}

/// The claim in the daemon's answer, and the project's directory.
fn into_claim(wire: ClaimedRun) -> Result<(Claim, PathBuf), CoordinatorError> {
    let refused = |what: &str, e: &dyn std::fmt::Display| {
        CoordinatorError::Refused(format!("the claim's {what}: {e}"))
    };
    let status = Status::from_str(&wire.task.status).map_err(|e| refused("task status", &e))?;
    let token = FencingToken::parse(&wire.token).map_err(|e| refused("fencing token", &e))?;
    let spec: TaskSpec =
        serde_json::from_value(wire.task.spec).map_err(|e| refused("task spec", &e))?;
    let task = Task {
        id: TaskId(wire.task.id),
        project: ProjectId(wire.task.project),
        workflow: wire.task.workflow.map(WorkflowId),
        parent: wire.task.parent.map(TaskId),
        spec,
        status,
        status_reason: None,
        attempts_used: wire.task.attempts_used,
        run_count: wire.task.run_count,
        needs: wire.task.needs.into_iter().map(TaskId).collect(),
        not_before: None,
        current_run: Some(RunId(wire.run)),
        created_at: Timestamp(wire.task.created_at),
        updated_at: Timestamp(wire.task.updated_at),
    };
    let dependencies = wire
        .dependencies
        .into_iter()
        .map(|dependency| {
            Ok(orch_store::DependencyRef {
                id: TaskId(dependency.id),
                project: ProjectId(dependency.project),
                created_at: Timestamp(dependency.created_at),
                status: Status::from_str(&dependency.status)
                    .map_err(|e| refused("dependency status", &e))?,
            })
        })
        .collect::<Result<Vec<_>, CoordinatorError>>()?;
    let reviews = wire
        .reviews
        .into_iter()
        .map(|review| {
            Ok(orch_store::ReviewRecord {
                round: review.round,
                verdict: review
                    .verdict
                    .parse()
                    .map_err(|e: String| refused("review verdict", &e))?,
                reasons: review.reasons,
                escalated: review.escalated,
            })
        })
        .collect::<Result<Vec<_>, CoordinatorError>>()?;
    let run = Run {
        id: RunId(wire.run),
        task: task.id,
        attempt: wire.attempt,
        lease: Lease {
            owner: wire.owner,
            expires_at: Timestamp(wire.lease_expires_at),
        },
        state: RunState::Active,
        started_at: Timestamp(wire.started_at),
        ended_at: None,
        outcome: None,
    };
    Ok((
        Claim {
            task,
            run,
            token,
            reply: wire.reply.map(|reply| orch_store::PendingReply {
                id: reply.id,
                message: reply.message,
                agent: reply.agent,
                step: reply.step,
                session_id: reply.session_id,
            }),
            reviews,
            dependencies,
        },
        PathBuf::from(wire.project_dir),
    ))
}
