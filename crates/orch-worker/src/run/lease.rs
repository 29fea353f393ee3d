//! The run's lease with the coordinator: the heartbeat kept up for the whole run, giving a run
//! back without using an attempt, and reporting the outcome with retries.

use super::*;

/// Give the run back to be run again after `delay`, without using an attempt.
pub(super) async fn give_back(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: &Claim,
    token: orch_core::FencingToken,
    delay: Duration,
    reason: &str,
) -> RunEnd {
    match coordinator
        .requeue(&settings.name, claim.run.id, token, delay, reason)
        .await
    {
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
) -> Result<orch_core::Status, CoordinatorError> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match coordinator
            .complete(
                &settings.name,
                run,
                token,
                verdict.outcome,
                Some(&verdict.reason),
            )
            .await
        {
            Err(e) if e.is_retryable() && started.elapsed() < COMPLETE_RETRY_FOR => {
                tracing::warn!(run = %run, "could not report the outcome: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
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
