//! orch workers: claim a run, prepare its workspace, run its steps under policy and sandbox, and
//! write the artifact bundle; heartbeat all along and stop at once when the lease is lost.
//!
//! Architecture invariant: worker code talks to a [`Coordinator`] (the store in-process for
//! embedded workers, the daemon's HTTP API for remote ones) and never runs SQL itself.

pub mod bundle;
pub mod coordinator;
pub mod exec;
pub mod project;
pub mod redact;
pub mod review;
pub mod route;
pub mod run;
pub mod sandbox;
pub mod task_lock;
pub mod task_tree;
pub mod worker;
pub mod workspace;

pub use coordinator::{Coordinator, CoordinatorError, HttpCoordinator};
pub use run::{execute, RunEnd, WorkerSettings};
pub use worker::{run_workers, run_workers_checked};

/// Run blocking file-system work from async code without stalling the runtime: on the
/// multi-threaded runtime (`orch serve`, `orch worker`) through `block_in_place`, which hands this
/// thread's other tasks to another thread first; elsewhere (a current-thread runtime in tests, or
/// no runtime) inline.
pub fn off_async<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
