//! The cron pass of the scheduler leader: every tick, each enabled job's due slots fire through
//! the application layer (with the daemon's submission check), at the calendar clock
//! (`orch_store::calendar_clock`, which tests move). Several daemons may run it at once (a
//! stalled leader); the store's one firing row per (job, slot) keeps a slot from firing twice.

use std::sync::Arc;

use orch_app::App;
use orch_store::Store;

use crate::scheduler::Complaints;
use crate::submit_check::ConfigCheck;

/// The leader's cron duty.
pub(crate) struct CronDuty {
    app: App,
    actor: String,
    complaints: Complaints,
    /// Job failures already logged: a job that cannot be ticked (its stored schedule no longer
    /// parses) is reported once per distinct error, not every tick.
    reported: std::collections::BTreeSet<(String, String)>,
}

impl CronDuty {
    /// Cron for the daemon of `home` over `store`, acting as `actor`.
    pub(crate) fn new(store: Store, home: &std::path::Path, actor: String) -> CronDuty {
        CronDuty {
            app: App::new(store).with_check(Arc::new(ConfigCheck::new(home))),
            actor,
            complaints: Complaints::new("cron pass"),
            reported: std::collections::BTreeSet::new(),
        }
    }

    /// One pass (what it submits wakes idle claimers through the store).
    pub(crate) async fn pass(&mut self) {
        match self
            .app
            .tick_jobs(orch_store::calendar_clock(), &self.actor)
            .await
        {
            Ok(tick) => {
                self.complaints.succeeded();
                for (job, firing) in &tick.fired {
                    match (&firing.task, &firing.error) {
                        (Some(task), _) => {
                            tracing::info!(job = %job, task = %task, slot = firing.slot.0, kind = firing.kind.as_str(), "cron job fired")
                        }
                        (None, Some(error)) => {
                            tracing::warn!(job = %job, slot = firing.slot.0, "cron job fired but its submission was refused: {error}")
                        }
                        (None, None) => {
                            tracing::info!(job = %job, slot = firing.slot.0, "cron job fired (nothing to submit)")
                        }
                    }
                }
                for job in &tick.skipped {
                    tracing::info!(job = %job, "cron job: slots missed while no scheduler ran are skipped (policy skip)");
                }
                for failure in &tick.failed {
                    if self.reported.insert(failure.clone()) {
                        let (job, error) = failure;
                        tracing::warn!(job = %job, "cron job could not be ticked (reported once): {error}");
                    }
                }
            }
            Err(e) => {
                self.complaints.failed(&e);
            }
        }
    }
}
