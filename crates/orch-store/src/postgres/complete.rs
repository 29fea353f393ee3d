//! A run's end: its completion with an outcome, or its worker giving it back. Both start with
//! one round trip that ends the run, locks its task and reads what the decision needs
//! (`end_run_with_facts`).

use std::time::Duration;

use orch_core::{decide, FencingToken, Outcome, RunId, RunState, Status};

use super::apply::{carry_out_knowing, end_run_with_facts, refuse};
use super::PgStore;
use crate::Op;

impl PgStore {
    pub(crate) async fn complete(
        &self,
        run: RunId,
        token: FencingToken,
        outcome: Outcome,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        let state = decide::run_state_after(outcome);
        transact!(self, |tx| async {
            let Some((facts, after)) =
                end_run_with_facts(&tx, run, token, state, reason, &op).await?
            else {
                // A refusal is recorded as an event, so it commits too.
                return Ok(Err(refuse(&tx, run, token, "completion", &op).await?));
            };
            let plan = decide::complete(&facts, run, outcome, reason, op.now, op.jitter_unit)?;
            carry_out_knowing(&tx, &plan, &op, Some(after)).await?;
            self.freed_a_slot(&tx);
            Ok(Ok(plan.status))
        })
    }

    pub(crate) async fn requeue(
        &self,
        run: RunId,
        token: FencingToken,
        delay: Duration,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        transact!(self, |tx| async {
            let Some((facts, after)) =
                end_run_with_facts(&tx, run, token, RunState::Requeued, reason, &op).await?
            else {
                return Ok(Err(refuse(&tx, run, token, "requeue", &op).await?));
            };
            let plan = decide::requeue(&facts, run, delay, reason, op.now)?;
            carry_out_knowing(&tx, &plan, &op, Some(after)).await?;
            self.freed_a_slot(&tx);
            Ok(Ok(plan.status))
        })
    }

    /// Under limits, a run's end may let a queued task through its gate without changing its
    /// status, so the commit wakes the claimers too (without limits, only a task becoming
    /// `queued` does: a NOTIFY per completion would cost every commit a global lock).
    pub(super) fn freed_a_slot(&self, tx: &super::Tx<'_>) {
        if self.limits.get().is_some() {
            tx.wake();
        }
    }
}
