//! The worker loop: claim, run, report, repeat, with graceful shutdown.
//!
//! Shutdown: when `shutdown` fires, no new run is claimed; running steps get `grace` to finish,
//! then they are stopped and their runs requeued (without using an attempt), so nothing is lost.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::coordinator::{Coordinator, CoordinatorError};
use crate::run::{execute, RunEnd, WorkerSettings};

/// How often an idle worker looks for work.
pub const IDLE_POLL: Duration = Duration::from_millis(20);

/// Run `slots` workers named `<name>-1`, `<name>-2`, ... until `shutdown` fires and their runs
/// are finished or requeued.
pub async fn run_workers(
    coordinator: Coordinator,
    settings: WorkerSettings,
    slots: usize,
    shutdown: CancellationToken,
    grace: Duration,
) {
    if let Err(e) = run_workers_checked(coordinator, settings, slots, shutdown, grace).await {
        tracing::error!("the workers stopped: {e}");
    }
}

/// [`run_workers`], ending early with the reason when the daemon refuses the worker's token
/// ([`CoordinatorError::Unauthorized`]): retrying could never succeed, so every slot stops
/// (running runs get `grace`, as at shutdown).
pub async fn run_workers_checked(
    coordinator: Coordinator,
    settings: WorkerSettings,
    slots: usize,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), CoordinatorError> {
    let mut set = JoinSet::new();
    for slot in 1..=slots.max(1) {
        let mut settings = settings.clone();
        settings.name = format!("{}-{slot}", settings.name);
        set.spawn(worker_loop(
            coordinator.clone(),
            settings,
            shutdown.clone(),
            grace,
        ));
    }
    let mut refused = None;
    while let Some(result) = set.join_next().await {
        match result {
            Ok(Some(e)) => refused = refused.or(Some(e)),
            Ok(None) => {}
            Err(e) => tracing::error!("a worker task ended abnormally: {e}"),
        }
    }
    refused.map_or(Ok(()), Err)
}

async fn worker_loop(
    coordinator: Coordinator,
    settings: WorkerSettings,
    shutdown: CancellationToken,
    grace: Duration,
) -> Option<CoordinatorError> {
    let mut failures = 0u32;
    let mut watch = coordinator.watch_work();
    while !shutdown.is_cancelled() {
        // A claim over HTTP waits on the daemon for a few seconds; shutdown does not wait for it.
        // (If the daemon had already claimed a run for it, that run is recovered when its lease
        // expires.)
        let claimed = tokio::select! {
            () = shutdown.cancelled() => break,
            claimed = coordinator.claim(&settings.name, settings.lease) => claimed,
        };
        let claim = match claimed {
            Ok(claim) => {
                failures = 0;
                claim
            }
            Err(e @ CoordinatorError::Unauthorized(_)) => {
                shutdown.cancel();
                return Some(e);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = IDLE_POLL * 2u32.saturating_pow(failures.min(6));
                // Logged once per doubling of the failures in a row, not on every retry.
                if failures.is_power_of_two() {
                    tracing::warn!(worker = %settings.name, failures, "claim failed: {e}; retrying in {wait:?}");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let Some(claim) = claim else {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = coordinator.wait_for_work(&mut watch, IDLE_POLL) => continue,
            }
        };
        let task = claim.task.id;
        tracing::info!(worker = %settings.name, task = %task, attempt = claim.run.attempt, "claimed");
        let stop = CancellationToken::new();
        // After shutdown, the run gets `grace` to finish before it is stopped and requeued.
        let watcher = {
            let (stop, shutdown) = (stop.clone(), shutdown.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
                stop.cancel();
            })
        };
        let end = execute(&coordinator, &settings, claim, stop).await;
        watcher.abort();
        match end {
            RunEnd::Reported(outcome) => {
                tracing::info!(worker = %settings.name, task = %task, ?outcome, "reported")
            }
            RunEnd::Requeued => {
                tracing::info!(worker = %settings.name, task = %task, "requeued at shutdown")
            }
            RunEnd::LeaseLost => {
                tracing::warn!(worker = %settings.name, task = %task, "lease lost")
            }
            RunEnd::Parked => {
                tracing::info!(worker = %settings.name, task = %task, "parked: awaiting input")
            }
        }
    }
    None
}
