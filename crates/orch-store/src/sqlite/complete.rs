//! A run's end: its completion with an outcome, or its worker giving it back.

use std::time::Duration;

use orch_core::{decide, FencingToken, Outcome, RunId, RunState, Status};
use rusqlite::Connection;

use super::apply::{carry_out, end_run, refuse, task_facts};
use super::{immediate, OwnedOp, Result, SqliteStore};
use crate::Op;

impl SqliteStore {
    pub(crate) async fn complete(
        &self,
        run: RunId,
        token: FencingToken,
        outcome: Outcome,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        let reason = reason.map(str::to_owned);
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                let result = complete(&tx, run, token, outcome, reason.as_deref(), &op);
                // A refusal is recorded as an event, so it commits too.
                tx.commit()?;
                result
            })
            .await;
        self.woke(result)
    }

    pub(crate) async fn requeue(
        &self,
        run: RunId,
        token: FencingToken,
        delay: Duration,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        let reason = reason.map(str::to_owned);
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                let Some(task) =
                    end_run(&tx, run, token, RunState::Requeued, reason.as_deref(), &op)?
                else {
                    let err = refuse(&tx, run, token, "requeue", &op)?;
                    tx.commit()?;
                    return Err(err.into());
                };
                let plan = decide::requeue(
                    &task_facts(&tx, task)?,
                    run,
                    delay,
                    reason.as_deref(),
                    op.now,
                )?;
                carry_out(&tx, &plan, &op)?;
                tx.commit()?;
                Ok(plan.status)
            })
            .await;
        self.woke(result)
    }
}

fn complete(
    conn: &Connection,
    run: RunId,
    token: FencingToken,
    outcome: Outcome,
    reason: Option<&str>,
    op: &OwnedOp,
) -> Result<Status> {
    let state = decide::run_state_after(outcome);
    let Some(task) = end_run(conn, run, token, state, reason, op)? else {
        return Err(refuse(conn, run, token, "completion", op)?.into());
    };
    let plan = decide::complete(
        &task_facts(conn, task)?,
        run,
        outcome,
        reason,
        op.now,
        op.jitter_unit,
    )?;
    carry_out(conn, &plan, op)?;
    Ok(plan.status)
}
