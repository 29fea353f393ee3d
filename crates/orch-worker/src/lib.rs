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
pub mod worker;
pub mod workspace;

pub use coordinator::{Coordinator, CoordinatorError, HttpCoordinator};
pub use run::{execute, RunEnd, WorkerSettings};
pub use worker::{run_workers, run_workers_checked};
