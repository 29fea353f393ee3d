//! Running one claimed task to the end and delivering its outcome (held and retried while the
//! lease is kept, so a fault of the machine never loses it).

#[allow(clippy::wildcard_imports)]
use super::*;
/// Run one claimed task to the end and report it. `stop` asks the run to stop now (shutdown
/// after the grace period); a stopped run that still holds its lease is requeued.
pub async fn execute(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: Claim,
    stop: CancellationToken,
) -> RunEnd {
    let run = claim.run.id;
    let token = claim.token;
    let cancel = stop.child_token();
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat_loop(
        coordinator.clone(),
        settings.clone(),
        run,
        token,
        cancel.clone(),
        Arc::clone(&lost),
    ));
    let bundle_dir = settings
        .home
        .join("runs")
        .join(claim.task.id.0.to_string())
        .join(claim.run.attempt.to_string());
    // Held until the run has reported (dropped when `execute` returns): no two runs of a task
    // ever share its worktree at once.
    let _task_lock =
        match crate::task_lock::acquire(&settings.home, claim.task.id, run, settings.lease).await {
            Ok(lock) => lock,
            Err(e) => {
                heartbeat.abort();
                let _ = heartbeat.await;
                tracing::warn!(task = %claim.task.id, run = %run, "{e}");
                return give_back(
                    coordinator,
                    settings,
                    &claim,
                    token,
                    settings.lease,
                    &e.to_string(),
                    &lost,
                )
                .await;
            }
        };
    let bundle_stream = coordinator.stream_bundle(&settings.name, run, token, &bundle_dir);
    let mut park = None;
    let verdict = run_task(coordinator, settings, &claim, cancel.clone(), &mut park).await;
    // The heartbeat keeps the lease until the outcome is delivered: a full disk or an
    // unreachable daemon may hold the delivery up.
    let end = deliver_outcome(
        coordinator,
        settings,
        &claim,
        verdict,
        bundle_stream,
        &stop,
        &lost,
        park,
    )
    .await;
    heartbeat.abort();
    let _ = heartbeat.await;
    end
}

/// Hand a finished run's bundle and outcome over: requeued at shutdown or when the machine, not
/// the task, made it fail; completed otherwise.
#[allow(clippy::too_many_arguments)] // the run's parts, each used once; `park` is the verdict's
async fn deliver_outcome(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: &Claim,
    verdict: Verdict,
    bundle_stream: crate::coordinator::BundleStream,
    stop: &CancellationToken,
    lost: &AtomicBool,
    park: Option<orch_store::NewInfoRequest>,
) -> RunEnd {
    let (run, token) = (claim.run.id, claim.token);
    if lost.load(Ordering::SeqCst) {
        bundle_stream.abandon().await;
        tracing::warn!(task = %claim.task.id, run = %run, "lease lost; the result is not reported");
        return RunEnd::LeaseLost;
    }
    // The bundle reaches the daemon before the outcome, so whoever sees the task finished finds
    // its bundle. One that cannot be delivered does not hold the outcome back.
    match bundle_stream
        .finish(tokio::time::Instant::now() + COMPLETE_RETRY_FOR)
        .await
    {
        Ok(()) => {}
        Err(CoordinatorError::LeaseLost(_)) => return RunEnd::LeaseLost,
        Err(e) => {
            tracing::error!(task = %claim.task.id, "could not upload the run bundle: {e}; reporting the outcome without it")
        }
    }
    if stop.is_cancelled() {
        return give_back(
            coordinator,
            settings,
            claim,
            token,
            Duration::ZERO,
            "the worker shut down before the run finished",
            lost,
        )
        .await;
    }
    if let Some(request) = park {
        return park_run(coordinator, settings, claim, &request, lost).await;
    }
    if let Some((agent, delay)) = &verdict.requeue_after {
        if let Some(agent) = agent {
            settings.pause_agent(agent, *delay);
        }
        return give_back(
            coordinator,
            settings,
            claim,
            token,
            *delay,
            &verdict.reason,
            lost,
        )
        .await;
    }
    // A run the machine made fail (a full disk, an I/O error) goes back without spending the
    // task's attempt.
    if verdict.outcome == Outcome::Failed {
        if let Some(fault) = orch_core::fault::MachineFault::classify(&verdict.reason) {
            tracing::warn!(task = %claim.task.id, "{}: the run is given back without spending an attempt", fault.describe());
            return give_back(
                coordinator,
                settings,
                claim,
                token,
                fault.requeue_delay(),
                &fault.requeue_reason(&verdict.reason),
                lost,
            )
            .await;
        }
    }
    match complete(coordinator, settings, run, token, &verdict, lost).await {
        Ok(_) => RunEnd::Reported(verdict.outcome),
        Err(CoordinatorError::LeaseLost(_)) => RunEnd::LeaseLost,
        Err(e) => {
            tracing::error!(task = %claim.task.id, "could not report the outcome: {e}; the lease will expire and the task run again");
            RunEnd::LeaseLost
        }
    }
}

/// A step asked for values: the run ends and its task waits in `awaiting_input` (no slot
/// held); delivered with retries like a completion.
async fn park_run(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: &Claim,
    request: &orch_store::NewInfoRequest,
    lost: &AtomicBool,
) -> RunEnd {
    let (run, token) = (claim.run.id, claim.token);
    let sent = deliver(run, "park the run with its info request", lost, || {
        coordinator.request_input(&settings.name, run, token, request)
    })
    .await;
    match sent {
        Ok(id) => {
            tracing::info!(task = %claim.task.id, run = %run, request = id, "the run parked: its task awaits input");
            RunEnd::Parked
        }
        Err(CoordinatorError::LeaseLost(_)) => RunEnd::LeaseLost,
        Err(e) => {
            tracing::error!(task = %claim.task.id, "could not park the run: {e}; the lease will expire and the task run again (it asks again)");
            RunEnd::LeaseLost
        }
    }
}
