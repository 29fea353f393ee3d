//! The coordinator a worker talks to: the store in-process for embedded workers, and (next) the
//! HTTP API for remote workers. Execution code sees only this.

use std::path::PathBuf;
use std::time::Duration;

use orch_core::{FencingToken, Outcome, ProjectId, RunId, Status, Task};
use orch_store::{Claim, Op, Store, StoreError};

/// Why a coordinator call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The lease is no longer this worker's: stop working on the run.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Anything else (the database, the network).
    #[error(transparent)]
    Other(#[from] StoreError),
}

impl CoordinatorError {
    fn from_store(err: StoreError) -> Self {
        match err {
            StoreError::StaleLease { reason, .. } => CoordinatorError::LeaseLost(reason),
            other => CoordinatorError::Other(other),
        }
    }
}

/// The closed set of coordinators.
#[derive(Debug, Clone)]
pub enum Coordinator {
    /// Embedded: the store of this process.
    Local(Store),
}

impl Coordinator {
    /// Claim the next ready task, if any.
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
        }
    }

    /// The directory of a project.
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
        }
    }

    /// Reload a task (for its current status).
    pub async fn task(&self, task: orch_core::TaskId) -> Result<Task, CoordinatorError> {
        match self {
            Coordinator::Local(store) => Ok(store.task(task).await?),
        }
    }
}
