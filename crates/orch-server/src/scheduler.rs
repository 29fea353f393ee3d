//! The daemon's duties: stale recovery and backoff timers every tick and automatic merges
//! (singletons), and retention of this home's files hourly. Several daemons may share one database; only the holder of the database lease
//! `scheduler` runs the duties, and every daemon tries to take or renew it each tick, so when the
//! leader dies another takes over within one lease period ([`leader_lease`]).
//!
//! The lease keeps the duties from running twice for nothing; it is not what makes them safe:
//! each duty is a conditional update in one transaction, so two daemons that both believe they
//! lead (a leader stalled past its lease) still never lose or double a task.
//!
//! Retention and automatic merges run as their own tasks, after the first scheduler pass and
//! never in its way: stale recovery and backoff timers never wait for git or the file system.
//! Retention removes only this home's worktrees and bundles (files no other daemon can reach),
//! so every daemon runs it for its own home; it changes nothing in the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orch_store::{Op, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{api, landing, retention, ServeOptions};

/// The name of the database lease the leader holds.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// How often the daemon runs retention.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// How long the `scheduler` lease lasts from each renewal: 3 ticks, at least 2 s. The leader
/// renews every tick, so it loses the lease only when it misses 3 ticks in a row (dead, stopped,
/// or its database writes failing); a live follower then takes over at its next tick. The floor
/// keeps a short tick from making a briefly busy database (a checkpoint, a slow fsync) hand
/// leadership back and forth.
pub fn leader_lease(tick: Duration) -> Duration {
    (tick * 3).max(Duration::from_secs(2))
}

/// Repeated failures of one duty, logged once per step of an exponential backoff (the 1st, 2nd,
/// 4th, 8th... failure in a row) instead of on every tick, with the count; the first success
/// after failures says so.
#[derive(Debug)]
pub struct Complaints {
    what: &'static str,
    failures: u64,
}

impl Complaints {
    /// Complaints about `what` (e.g. "scheduler pass").
    pub fn new(what: &'static str) -> Complaints {
        Complaints { what, failures: 0 }
    }

    /// A failure: logged if it is a step of the backoff. Answers whether it was logged.
    pub fn failed(&mut self, error: &dyn std::fmt::Display) -> bool {
        self.failures += 1;
        let log = self.failures.is_power_of_two();
        if log {
            tracing::error!(
                failures = self.failures,
                "{} failed ({} in a row; the next report after {} more): {error}",
                self.what,
                self.failures,
                self.failures
            );
        }
        log
    }

    /// A success: ends a run of failures (and says so).
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::warn!(
                failures = self.failures,
                "{} works again after {} failure(s)",
                self.what,
                self.failures
            );
            self.failures = 0;
        }
    }
}

/// Whether this daemon leads, shared by its duties and its metrics.
#[derive(Debug, Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    /// Whether this daemon holds the `scheduler` lease (as of its last renewal).
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, leading: bool) {
        self.0.store(leading, Ordering::Relaxed);
    }
}

/// What the scheduler loop needs.
pub(crate) struct Scheduler {
    pub store: Store,
    pub options: ServeOptions,
    /// This daemon's instance id: its name as lease holder.
    pub instance: String,
    pub metrics: Arc<api::ops::Metrics>,
    pub leadership: Leadership,
    pub shutdown: CancellationToken,
    pub workers_stop: CancellationToken,
}

impl Scheduler {
    /// Leadership, stale recovery and backoff timers every tick; retention and automatic merges
    /// in their own tasks once
    /// the first pass is done. With `exit_when_idle`, stops the workers once no task can run.
    pub(crate) async fn run(self) {
        let lease = leader_lease(self.options.tick);
        let actor = format!("scheduler-{}", self.instance);
        let mut leading_until: Option<Instant> = None;
        let mut lease_complaints = Complaints::new("renewing the scheduler lease");
        let mut pass_complaints = Complaints::new("scheduler pass");
        let mut count_complaints = Complaints::new("counting tasks");
        let mut idle_passes = 0;
        let mut retention: Option<tokio::task::JoinHandle<()>> = None;
        let stop = CancellationToken::new();
        let mut auto_merge: Option<tokio::task::JoinHandle<()>> = None;
        let merges_stop = CancellationToken::new();
        let mut cron = crate::cron::CronDuty::new(
            self.store.clone(),
            &self.options.home,
            format!("cron-{}", self.instance),
        );
        let mut forge_sync: Option<tokio::task::JoinHandle<()>> = None;
        let mut forge_poll: Option<tokio::task::JoinHandle<()>> = None;
        // One forge client per credential, shared by the outbox's writer and the poller.
        let forge_clients = Arc::new(crate::forge_writer::GitHubWriter::default());
        loop {
            // Leadership: take, take over or renew the lease; a failed renewal keeps it only
            // until the lease it already holds runs out.
            let asked = Instant::now();
            let was_leading = self.leadership.is_leader();
            match self
                .store
                .hold_lease(SCHEDULER_LEASE, &self.instance, lease, Op::now(&actor))
                .await
            {
                Ok(held) => {
                    lease_complaints.succeeded();
                    leading_until = held.then_some(asked + lease);
                }
                Err(e) => {
                    lease_complaints.failed(&e);
                }
            }
            let leading = leading_until.is_some_and(|until| Instant::now() < until);
            if leading != was_leading {
                if leading {
                    tracing::info!(instance = %self.instance, "this daemon leads now: it runs stale recovery, backoff timers and automatic merges");
                } else {
                    tracing::warn!(instance = %self.instance, "this daemon no longer leads; another daemon on the database holds the scheduler lease");
                }
            }
            self.leadership.set(leading);
            self.metrics.set_leader(leading);
            if leading {
                match self.store.tick(Op::now("scheduler")).await {
                    Ok(report) => {
                        pass_complaints.succeeded();
                        self.metrics.leases_expired(report.recovered.len());
                        for r in &report.recovered {
                            tracing::warn!(task = %r.task, run = %r.run, status = %r.status, "lease expired; run lost");
                        }
                    }
                    Err(e) => {
                        pass_complaints.failed(&e);
                    }
                }
                // Info requests past their deadline send their tasks to `needs_review`.
                match self.store.expire_info_requests(Op::now("scheduler")).await {
                    Ok(expired) => {
                        for task in &expired {
                            tracing::warn!(task = %task, "info request unanswered in time; the task needs review");
                        }
                    }
                    Err(e) => tracing::warn!("could not expire info requests: {e}"),
                }
                cron.pass().await;
            }
            // Retention starts after the first pass, so a restart recovers expired leases first.
            if retention.is_none() && !self.options.exit_when_idle {
                retention = Some(tokio::spawn(retention_loop(
                    self.store.clone(),
                    self.options.clone(),
                    stop.clone(),
                )));
            }
            if auto_merge.is_none() {
                auto_merge = Some(tokio::spawn(auto_merge_loop(
                    self.store.clone(),
                    self.options.clone(),
                    self.leadership.clone(),
                    merges_stop.clone(),
                )));
            }
            if forge_sync.is_none() {
                forge_sync = Some(tokio::spawn(crate::forge_outbox::sync_loop(
                    self.store.clone(),
                    self.options.home.clone(),
                    self.options.tick,
                    self.instance.clone(),
                    forge_clients.clone(),
                    self.leadership.clone(),
                    stop.clone(),
                )));
            }
            if forge_poll.is_none() {
                forge_poll = Some(tokio::spawn(crate::forge_poll::poll_loop(
                    self.store.clone(),
                    self.options.home.clone(),
                    forge_clients.clone(),
                    self.options.github_handle.clone(),
                    self.leadership.clone(),
                    stop.clone(),
                )));
            }
            if self.options.exit_when_idle {
                match self.store.status_counts().await {
                    Ok(counts) => {
                        count_complaints.succeeded();
                        use orch_core::Status::*;
                        let active: u64 = [Queued, Running, RetryWait, Waiting, AwaitingInput]
                            .iter()
                            .filter_map(|s| counts.get(s))
                            .sum();
                        idle_passes = if active == 0 { idle_passes + 1 } else { 0 };
                        if idle_passes >= 2 {
                            // The last automatic merges land before the daemon exits.
                            merges_stop.cancel();
                            if let Some(merges) = auto_merge.take() {
                                if let Err(e) = merges.await {
                                    tracing::error!("automatic merges ended abnormally: {e}");
                                }
                            }
                            self.workers_stop.cancel();
                        }
                    }
                    Err(e) => {
                        count_complaints.failed(&e);
                    }
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = self.workers_stop.cancelled() => break,
                () = tokio::time::sleep(self.options.tick) => {}
            }
        }
        stop.cancel();
        merges_stop.cancel();
        if let Some(merges) = auto_merge {
            if let Err(e) = merges.await {
                tracing::error!("automatic merges ended abnormally: {e}");
            }
        }
        if let Some(forge_sync) = forge_sync {
            if let Err(e) = forge_sync.await {
                tracing::error!("the forge sync ended abnormally: {e}");
            }
        }
        if let Some(forge_poll) = forge_poll {
            if let Err(e) = forge_poll.await {
                tracing::error!("the forge poller ended abnormally: {e}");
            }
        }
        if let Some(retention) = retention {
            if let Err(e) = retention.await {
                tracing::error!("retention ended abnormally: {e}");
            }
        }
        // A clean stop hands leadership over at once instead of after the lease.
        if self.leadership.is_leader() {
            self.leadership.set(false);
            self.metrics.set_leader(false);
            if let Err(e) = self
                .store
                .release_lease(SCHEDULER_LEASE, &self.instance)
                .await
            {
                tracing::warn!("could not hand the scheduler lease over (another daemon takes it when it expires): {e}");
            }
        }
    }
}

/// Events of the log the automatic merges look at per pass.
const AUTO_MERGE_EVENTS_PER_PASS: u64 = 5_000;

/// Automatic merges of finished tasks (`merge:` in a workflow), every tick, on the leader only
/// and in their own task, so git work never holds up recovery. Each pass reads a bounded part
/// of the event log; when stopped, a daemon that exits when idle reads it to the end first, so
/// what finished is landed before it exits.
async fn auto_merge_loop(
    store: Store,
    options: ServeOptions,
    leadership: Leadership,
    stop: CancellationToken,
) {
    let mut auto_merge = landing::AutoMerge::default();
    let mut complaints = Complaints::new("automatic merge pass");
    loop {
        let stopping = stop.is_cancelled();
        if leadership.is_leader() || (stopping && options.exit_when_idle) {
            let budget = (!stopping).then_some(AUTO_MERGE_EVENTS_PER_PASS);
            match auto_merge.pass(&store, &options.home, budget).await {
                Ok(_) => complaints.succeeded(),
                Err(e) => {
                    complaints.failed(&e);
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(options.tick) => {}
        }
    }
}

/// Retention of this home's worktrees and bundles, hourly, on every daemon (each home's files
/// are its own).
async fn retention_loop(store: Store, options: ServeOptions, stop: CancellationToken) {
    let mut complaints = Complaints::new("retention pass");
    let mut bundle_complaints = Complaints::new("bundle retention pass");
    loop {
        {
            match retention::collect(
                &store,
                &options.home,
                options.retention,
                orch_store::wall_clock(),
                false,
            )
            .await
            {
                Ok(report) => {
                    complaints.succeeded();
                    for (task, path, why) in &report.removed {
                        tracing::info!(task = %task, path = %path.display(), "removed the workspace: {why}");
                    }
                }
                Err(e) => {
                    complaints.failed(&e);
                }
            }
            match retention::collect_bundles(
                &store,
                &options.home,
                options.bundle_retention,
                orch_store::wall_clock(),
                false,
            )
            .await
            {
                Ok(report) => {
                    bundle_complaints.succeeded();
                    for (task, path, why) in &report.removed {
                        tracing::info!(task = %task, path = %path.display(), "removed: {why}");
                    }
                }
                Err(e) => {
                    bundle_complaints.failed(&e);
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETENTION_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_at_each_doubling() {
        let mut complaints = Complaints::new("test");
        let logged: Vec<u64> = (1..=20)
            .filter(|_| complaints.failed(&"disk full"))
            .collect();
        assert_eq!(logged, vec![1, 2, 4, 8, 16]);
    }

    #[test]
    fn the_lease_is_three_ticks_but_never_under_two_seconds() {
        assert_eq!(
            leader_lease(Duration::from_millis(100)),
            Duration::from_secs(2)
        );
        assert_eq!(leader_lease(Duration::from_secs(1)), Duration::from_secs(3));
    }
}
