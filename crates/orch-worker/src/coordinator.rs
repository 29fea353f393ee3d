//! The coordinator a worker talks to: the store in-process for embedded workers, and the
//! daemon's HTTP API for remote workers (`orch worker`). Execution code sees only this.

mod http;
mod info;
mod plan;
mod stream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::{FencingToken, Outcome, ProjectId, RunId, Status};
use orch_store::{Claim, Op, Store, StoreError, WorkWatch};

pub use http::HttpCoordinator;
pub use stream::{BundleStream, STREAM_EVERY};

/// Who asks about which run, for requests made after the call that started them (bundle
/// streaming): the worker's name, the run and its secret token.
#[derive(Debug, Clone)]
pub(crate) struct Fenced {
    worker: std::sync::Arc<str>,
    run: RunId,
    token: FencingToken,
}

/// Why a coordinator call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The lease is no longer this worker's: stop working on the run.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// The daemon could not be reached, or answered that it cannot serve now (5xx): worth
    /// trying again.
    #[error("the server is unreachable: {0}")]
    Unreachable(String),
    /// The daemon refused the request (a wrong token, a bad request): trying again will not help.
    #[error("the server refused the request: {0}")]
    Refused(String),
    /// The daemon does not accept the worker's token (401, or 403 outside a run): no request
    /// will succeed until the worker is given the right one, so the worker stops.
    #[error("the server refused the worker token: {0}")]
    Unauthorized(String),
    /// Anything else (the database).
    #[error(transparent)]
    Other(#[from] StoreError),
}

impl CoordinatorError {
    /// The same request may succeed later (the daemon is restarting, the network is back, the
    /// disk has space again).
    pub fn is_retryable(&self) -> bool {
        match self {
            CoordinatorError::Unreachable(_) => true,
            CoordinatorError::Other(e) => {
                e.machine_fault().is_some()
                    || matches!(
                        e,
                        StoreError::Database {
                            retryable: true,
                            ..
                        }
                    )
            }
            CoordinatorError::LeaseLost(_)
            | CoordinatorError::Refused(_)
            | CoordinatorError::Unauthorized(_) => false,
        }
    }

    /// The fault of the machine behind this error (here or, answered 507/503, at the daemon).
    pub fn machine_fault(&self) -> Option<orch_core::fault::MachineFault> {
        match self {
            CoordinatorError::Other(e) => e.machine_fault(),
            CoordinatorError::Unreachable(message) => {
                orch_core::fault::MachineFault::classify(message)
            }
            CoordinatorError::LeaseLost(_)
            | CoordinatorError::Refused(_)
            | CoordinatorError::Unauthorized(_) => None,
        }
    }

    fn from_store(err: StoreError) -> Self {
        match err {
            StoreError::StaleLease { reason, .. } | StoreError::NotLeaseHolder { reason, .. } => {
                CoordinatorError::LeaseLost(reason)
            }
            other => CoordinatorError::Other(other),
        }
    }
}

/// The closed set of coordinators.
#[derive(Debug, Clone)]
pub enum Coordinator {
    /// Embedded: the store of this process.
    Local(Store),
    /// Remote: the daemon's `/v1/worker` API.
    Http(HttpCoordinator),
}

impl Coordinator {
    /// Claim the next ready task, if any. Over HTTP this waits (long poll) a few seconds for one.
    pub async fn claim(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, CoordinatorError> {
        match self {
            Coordinator::Local(store) => store
                .claim_next(worker, lease, Op::now(worker))
                .await
                .map_err(CoordinatorError::from_store),
            Coordinator::Http(http) => http.claim(worker, lease).await,
        }
    }

    /// A claimer's watch on work becoming ready, for [`Coordinator::wait_for_work`]; taken
    /// before its first claim.
    pub fn watch_work(&self) -> WorkWatch {
        match self {
            Coordinator::Local(store) => store.watch_work(),
            Coordinator::Http(_) => WorkWatch::default(),
        }
    }

    /// Wait at most `timeout` for work to become ready: embedded, the store wakes it early
    /// (PostgreSQL: any process's NOTIFY), and at once if that happened since `watch` last
    /// started to look; remote claims long-poll instead, so this only sleeps.
    pub async fn wait_for_work(&self, watch: &mut WorkWatch, timeout: Duration) {
        match self {
            Coordinator::Local(store) => store.wait_for_work(watch, timeout).await,
            Coordinator::Http(_) => tokio::time::sleep(timeout).await,
        }
    }

    /// Extend the lease; `LeaseLost` means stop now.
    pub async fn heartbeat(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), CoordinatorError> {
        match self {
            Coordinator::Local(store) => store
                .heartbeat(run, token, lease, Op::now(worker))
                .await
                .map(|_| ())
                .map_err(CoordinatorError::from_store),
            Coordinator::Http(http) => http.heartbeat(worker, run, token, lease).await,
        }
    }

    /// Record the usage of the run's agent sessions (fenced by the run's token).
    pub async fn record_usage(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        records: &[orch_store::UsageRecord],
    ) -> Result<(), CoordinatorError> {
        match self {
            Coordinator::Local(store) => store
                .record_usage(run, token, records.to_vec(), Op::now(worker))
                .await
                .map_err(CoordinatorError::from_store),
            Coordinator::Http(http) => http.record_usage(worker, run, token, records).await,
        }
    }

    /// Record the run's review verdict (fenced by the run's token), before its completion.
    pub async fn record_review(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        review: &orch_store::ReviewRecord,
    ) -> Result<(), CoordinatorError> {
        match self {
            Coordinator::Local(store) => store
                .record_review(run, token, review.clone(), Op::now(worker))
                .await
                .map_err(CoordinatorError::from_store),
            Coordinator::Http(http) => http.record_review(worker, run, token, review).await,
        }
    }

    /// Report how the run ended.
    pub async fn complete(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> Result<Status, CoordinatorError> {
        match self {
            Coordinator::Local(store) => store
                .complete(run, token, outcome, reason, Op::now(worker))
                .await
                .map_err(CoordinatorError::from_store),
            Coordinator::Http(http) => http.complete(worker, run, token, outcome, reason).await,
        }
    }

    /// Give the run back to be run again after `delay`, without using up an attempt.
    pub async fn requeue(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        delay: Duration,
        reason: &str,
    ) -> Result<Status, CoordinatorError> {
        match self {
            Coordinator::Local(store) => store
                .requeue(run, token, delay, Some(reason), Op::now(worker))
                .await
                .map_err(CoordinatorError::from_store),
            Coordinator::Http(http) => http.requeue(worker, run, token, delay, reason).await,
        }
    }

    /// Start getting the run's bundle (written under `dir`) to the daemon. Embedded workers
    /// write it where the daemon reads it, so there is nothing to do; a remote worker streams
    /// its logs and events while the run goes on and uploads the whole bundle at the end
    /// ([`BundleStream::finish`], before the completion).
    pub fn stream_bundle(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        dir: &Path,
    ) -> BundleStream {
        match self {
            Coordinator::Local(_) => BundleStream::local(),
            Coordinator::Http(http) => BundleStream::start(
                http.clone(),
                Fenced {
                    worker: worker.into(),
                    run,
                    token,
                },
                dir.to_owned(),
            ),
        }
    }

    /// What a parent's steps see of its children (`context.json`'s `children`): an embedded
    /// worker reads them and their bundles here; a remote worker asks the daemon (fenced by the
    /// run's token), which reads them in its home.
    pub async fn children_context(
        &self,
        worker: &str,
        claim: &orch_store::Claim,
        home: &std::path::Path,
    ) -> Result<Vec<serde_json::Value>, CoordinatorError> {
        match self {
            Coordinator::Local(store) => {
                let children = store
                    .children(claim.task.id)
                    .await
                    .map_err(CoordinatorError::from_store)?;
                Ok(crate::task_tree::children_context(home, &children))
            }
            Coordinator::Http(http) => {
                #[derive(serde::Deserialize)]
                struct Children {
                    children: Vec<serde_json::Value>,
                }
                let response = http
                    .post_about_run(
                        worker,
                        claim.run.id,
                        claim.token,
                        "children",
                        serde_json::json!({}),
                    )
                    .await?;
                let children: Children = response.json().await.map_err(|e| {
                    CoordinatorError::Refused(format!("read the task's children: {e}"))
                })?;
                Ok(children.children)
            }
        }
    }

    /// The directory of a project. A remote worker uses the path given for the project's name
    /// with `orch worker --project NAME=PATH`, else the same absolute path as on the daemon's
    /// machine (the claim names both); it never reads the daemon's files.
    pub async fn project_dir(&self, project: ProjectId) -> Result<PathBuf, CoordinatorError> {
        match self {
            Coordinator::Local(store) => {
                let projects = store.projects().await?;
                projects
                    .into_iter()
                    .find(|p| p.id == project)
                    .map(|p| PathBuf::from(p.path))
                    .ok_or_else(|| {
                        CoordinatorError::Other(StoreError::Corrupt(format!(
                            "project {project} does not exist"
                        )))
                    })
            }
            Coordinator::Http(http) => http.project_dir(project),
        }
    }
}
