//! Stale recovery: runs whose leases expired or whose worker restarted are lost, and
//! `retry_wait` tasks whose backoff elapsed go back to the queue.

use orch_core::{decide, RunId, RunState, TaskId};

use super::apply::{carry_out, task_facts};
use super::{PgStore, Result, Tx};
use crate::{Op, Recovered};

impl PgStore {
    pub(crate) async fn recover_expired(&self, op: Op<'_>) -> crate::Result<Vec<Recovered>> {
        transact!(self, |tx| async {
            let expired = tx.ids(sql!("select_expired_runs"), &[&op.now.0]).await?;
            Ok(Ok(lose_runs(
                &tx,
                expired,
                "its lease expired without a heartbeat",
                &op,
            )
            .await?))
        })
    }

    pub(crate) async fn release_owner(
        &self,
        prefix: &str,
        op: Op<'_>,
    ) -> crate::Result<Vec<Recovered>> {
        transact!(self, |tx| async {
            let runs = tx
                .ids(sql!("select_active_runs_of_owner"), &[&prefix])
                .await?;
            Ok(Ok(lose_runs(&tx, runs, "its worker restarted", &op).await?))
        })
    }

    pub(crate) async fn promote_due(&self, op: Op<'_>) -> crate::Result<Vec<TaskId>> {
        transact!(self, |tx| async {
            let due = tx.ids(sql!("select_due_retries"), &[&op.now.0]).await?;
            let mut promoted = Vec::with_capacity(due.len());
            for id in due {
                let task = TaskId(id);
                // Another server may have promoted it since the select: skip it then.
                if task_facts(&tx, task).await?.status != orch_core::Status::RetryWait {
                    continue;
                }
                carry_out(&tx, &decide::retry_due(task)?, &op).await?;
                promoted.push(task);
            }
            Ok(Ok(promoted))
        })
    }
}

/// Mark these active runs lost and send their tasks to `retry_wait` (or `needs_review`). A run
/// another server ended meanwhile is skipped (the update is conditional on `active`).
async fn lose_runs(tx: &Tx<'_>, runs: Vec<i64>, why: &str, op: &Op<'_>) -> Result<Vec<Recovered>> {
    let mut recovered = Vec::with_capacity(runs.len());
    for run_id in runs {
        let run = RunId(run_id);
        let Some(row) = tx
            .query_opt(
                sql!("end_active_run_of_task_by_run"),
                &[&run.0, &RunState::Lost.as_str(), &op.now.0, &why],
            )
            .await?
        else {
            continue;
        };
        let task = TaskId(row.try_get(0)?);
        let plan = decide::lose(
            &task_facts(tx, task).await?,
            run,
            why,
            op.now,
            op.jitter_unit,
        )?;
        carry_out(tx, &plan, op).await?;
        recovered.push(Recovered {
            run,
            task,
            status: plan.status,
        });
    }
    Ok(recovered)
}
