//! The run's lease with the coordinator: the heartbeat kept up for the whole run, giving a run
//! back without using an attempt, and reporting the outcome with retries.

use super::*;

/// Give the run back to be run again after `delay`, without using an attempt; retried like a
/// completion while the machine or the daemon cannot take it.
pub(super) async fn give_back(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: &Claim,
    token: orch_core::FencingToken,
    delay: Duration,
    reason: &str,
    lost: &AtomicBool,
) -> RunEnd {
    let sent = deliver(claim.run.id, "give the run back", lost, || {
        coordinator.requeue(&settings.name, claim.run.id, token, delay, reason)
    })
    .await;
    match sent {
        Ok(_) => RunEnd::Requeued,
        Err(CoordinatorError::LeaseLost(_)) => RunEnd::LeaseLost,
        Err(e) => {
            tracing::error!(task = %claim.task.id, "could not requeue: {e}; the lease will expire and recovery will requeue it");
            RunEnd::Requeued
        }
    }
}

/// How long a worker keeps trying to deliver a result to a daemon it cannot reach.
pub(super) const COMPLETE_RETRY_FOR: Duration = Duration::from_secs(120);

/// Report the outcome, trying again with backoff while the coordinator is unreachable: a
/// completion the daemon already accepted is accepted again, so sending it twice is safe.
pub(super) async fn complete(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    run: orch_core::RunId,
    token: orch_core::FencingToken,
    verdict: &Verdict,
    lost: &AtomicBool,
) -> Result<orch_core::Status, CoordinatorError> {
    deliver(run, "report the outcome", lost, || {
        coordinator.complete(
            &settings.name,
            run,
            token,
            verdict.outcome,
            Some(&verdict.reason),
        )
    })
    .await
}

/// Send a run's final request until it is taken, with backoff. An unreachable daemon is tried
/// for [`COMPLETE_RETRY_FOR`]; a fault of the machine (a full disk, the database unavailable)
/// for as long as the run's heartbeat keeps its lease (`lost` unset), so the outcome is kept and
/// delivered once the machine recovers. Failures are logged once per backoff step.
pub(super) async fn deliver<T, F, Fut>(
    run: orch_core::RunId,
    what: &str,
    lost: &AtomicBool,
    mut send: F,
) -> Result<T, CoordinatorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CoordinatorError>>,
{
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut failures = 0u64;
    loop {
        match send().await {
            Err(e)
                if e.is_retryable()
                    && !lost.load(Ordering::SeqCst)
                    && (e.machine_fault().is_some() || started.elapsed() < COMPLETE_RETRY_FOR) =>
            {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(run = %run, failures, "could not {what}: {e}; retrying (every {wait:?} at most)");
                }
                tokio::time::sleep(wait).await;
                let cap = if e.machine_fault().is_some() {
                    Duration::from_secs(1)
                } else {
                    Duration::from_secs(5)
                };
                wait = (wait * 2).min(cap);
            }
            Err(e) if lost.load(Ordering::SeqCst) && e.is_retryable() => {
                return Err(CoordinatorError::LeaseLost(format!(
                    "the lease was lost while trying to {what}: {e}"
                )))
            }
            other => {
                if failures > 0 {
                    tracing::info!(run = %run, failures, "delivered after {failures} failed attempt(s) to {what}");
                }
                return other;
            }
        }
    }
}

pub(super) async fn heartbeat_loop(
    coordinator: Coordinator,
    settings: WorkerSettings,
    run: orch_core::RunId,
    token: orch_core::FencingToken,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
) {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(settings.heartbeat_every) => {}
        }
        match coordinator
            .heartbeat(&settings.name, run, token, settings.lease)
            .await
        {
            Ok(()) => last_ok = Instant::now(),
            Err(CoordinatorError::LeaseLost(reason)) => {
                tracing::warn!(run = %run, "{reason}");
                lost.store(true, Ordering::SeqCst);
                cancel.cancel();
                return;
            }
            Err(e) => {
                // Fencing: once the lease may have expired, someone else may own the run.
                if last_ok.elapsed() >= settings.lease {
                    tracing::error!(run = %run, "heartbeats failing for a whole lease ({e}); stopping the run");
                    lost.store(true, Ordering::SeqCst);
                    cancel.cancel();
                    return;
                }
                tracing::warn!(run = %run, "heartbeat failed: {e}; retrying");
            }
        }
    }
}
