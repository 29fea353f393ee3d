//! Stale recovery: runs whose leases expired or whose worker restarted are lost, and
//! `retry_wait` tasks whose backoff elapsed go back to the queue.

use orch_core::{decide, RunId, RunState, TaskId};
use rusqlite::{params, Connection, OptionalExtension};

use super::apply::{carry_out, task_facts};
use super::{any_row, immediate, query_ids, OwnedOp, Result, SqliteStore};
use crate::{Op, Recovered};

impl SqliteStore {
    pub(crate) async fn recover_expired(&self, op: Op<'_>) -> crate::Result<Vec<Recovered>> {
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                // A cheap read first: most passes find nothing and should not take the write lock.
                if !any_row(conn, sql!("select_expired_runs"), op.now.0)? {
                    return Ok(Vec::new());
                }
                let tx = immediate(conn)?;
                let expired = query_ids(&tx, sql!("select_expired_runs"), op.now.0)?;
                let recovered =
                    lose_runs(&tx, expired, "its lease expired without a heartbeat", &op)?;
                tx.commit()?;
                Ok(recovered)
            })
            .await;
        self.woke(result)
    }

    pub(crate) async fn release_owner(
        &self,
        prefix: &str,
        op: Op<'_>,
    ) -> crate::Result<Vec<Recovered>> {
        let prefix = prefix.to_owned();
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                let runs: Vec<i64> = {
                    let mut stmt = tx.prepare_cached(sql!("select_active_runs_of_owner"))?;
                    let ids = stmt
                        .query_map([&prefix], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<i64>>>()?;
                    ids
                };
                let recovered = lose_runs(&tx, runs, "its worker restarted", &op)?;
                tx.commit()?;
                Ok(recovered)
            })
            .await;
        self.woke(result)
    }

    pub(crate) async fn promote_due(&self, op: Op<'_>) -> crate::Result<Vec<TaskId>> {
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                if !any_row(conn, sql!("select_due_retries"), op.now.0)? {
                    return Ok(Vec::new());
                }
                let tx = immediate(conn)?;
                let due: Vec<i64> = query_ids(&tx, sql!("select_due_retries"), op.now.0)?;
                let mut promoted = Vec::with_capacity(due.len());
                for id in due {
                    let task = TaskId(id);
                    carry_out(&tx, &decide::retry_due(task)?, &op)?;
                    promoted.push(task);
                }
                tx.commit()?;
                Ok(promoted)
            })
            .await;
        self.woke(result)
    }
}

/// Mark these active runs lost and send their tasks to `retry_wait` (or `needs_review`).
fn lose_runs(conn: &Connection, runs: Vec<i64>, why: &str, op: &OwnedOp) -> Result<Vec<Recovered>> {
    let mut recovered = Vec::with_capacity(runs.len());
    for run_id in runs {
        let run = RunId(run_id);
        let Some(task) = conn
            .prepare_cached(sql!("end_active_run_of_task_by_run"))?
            .query_row(
                params![run.0, RunState::Lost.as_str(), op.now.0, why],
                |r| r.get(0),
            )
            .optional()?
            .map(TaskId)
        else {
            continue;
        };
        let plan = decide::lose(&task_facts(conn, task)?, run, why, op.now, op.jitter_unit)?;
        carry_out(conn, &plan, op)?;
        recovered.push(Recovered {
            run,
            task,
            status: plan.status,
        });
    }
    Ok(recovered)
}
