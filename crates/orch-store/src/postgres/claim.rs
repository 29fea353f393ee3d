//! Claiming the next queued task (`FOR UPDATE SKIP LOCKED`), and the fenced requests that keep
//! a run's lease.

use std::time::Duration;

use orch_core::lifecycle::{self, EventKind};
use orch_core::{FencingToken, Run, RunId, Status, TaskId, Timestamp};

use super::apply::{load_run, load_task, refuse};
use super::{fencing, PgStore, Result, Tx};
use crate::fencing::{fingerprint, new_token, token_hash, Holding};
use crate::{Claim, Op};

impl PgStore {
    pub(crate) async fn claim_next(
        &self,
        owner: &str,
        lease: Duration,
        op: Op<'_>,
    ) -> crate::Result<Option<Claim>> {
        transact!(self, |tx| async {
            Ok(Ok(claim_next(&tx, owner, lease, &op).await?))
        })
    }

    pub(crate) async fn heartbeat(
        &self,
        run: RunId,
        token: FencingToken,
        lease: Duration,
        op: Op<'_>,
    ) -> crate::Result<Timestamp> {
        let expires = op.now.after(lease);
        // The common case is one statement in autocommit mode (repeating it is harmless).
        let extended = read!(self, |tx| async {
            let row = tx
                .query_opt(
                    sql!("heartbeat"),
                    &[&run.0, &token_hash(&token), &expires.0, &op.actor],
                )
                .await?;
            Ok(Ok(match row {
                Some(row) => Some(Timestamp(row.try_get(0)?)),
                None => None,
            }))
        })?;
        if let Some(at) = extended {
            return Ok(at);
        }
        transact!(self, |tx| async {
            Ok(Err(refuse(&tx, run, token, "heartbeat", &op).await?))
        })
    }

    pub(crate) async fn check_lease(
        &self,
        run: RunId,
        token: FencingToken,
        what: &str,
        op: Op<'_>,
    ) -> crate::Result<Run> {
        transact!(self, |tx| async {
            if fencing::holding(&tx, run, &token, op.actor).await? == Holding::Active {
                return Ok(Ok(load_run(&tx, run).await?));
            }
            Ok(Err(refuse(&tx, run, token, what, &op).await?))
        })
    }

    pub(crate) async fn is_holder(
        &self,
        run: RunId,
        token: FencingToken,
        actor: &str,
    ) -> crate::Result<bool> {
        read!(self, |tx| async {
            Ok(Ok(
                fencing::holding(&tx, run, &token, actor).await? != Holding::Not
            ))
        })
    }
}

async fn claim_next(
    tx: &Tx<'_>,
    owner: &str,
    lease: Duration,
    op: &Op<'_>,
) -> Result<Option<Claim>> {
    lifecycle::transition(Some(Status::Queued), EventKind::Claim, Status::Running)
        .expect("a queued task may be claimed");
    let expires = op.now.after(lease);
    // A fresh secret per claim; only its hash is stored, only the claim answer carries it, and
    // the claim event names it by its fingerprint.
    let token = new_token();
    let Some(row) = tx
        .query_opt(
            sql!("claim_next"),
            &[
                &op.now.0,
                &owner,
                &expires.0,
                &token_hash(&token),
                &op.actor,
                &fingerprint(&token),
            ],
        )
        .await?
    else {
        return Ok(None);
    };
    let task_id = TaskId(row.try_get(0)?);
    let run_id = RunId(row.try_get(1)?);
    let attempt: i64 = row.try_get(2)?;
    // Three reads, pipelined on the connection.
    let (task, reply, reviews) = tokio::try_join!(
        load_task(tx, task_id),
        super::agents::pending_reply(tx, task_id),
        super::reviews::reviews_of_task(tx, task_id),
    )?;
    let run = crate::rows::claimed_run(run_id, task_id, attempt, owner, expires, op.now);
    let mut dependencies = Vec::with_capacity(task.needs.len());
    for need in &task.needs {
        let dependency = load_task(tx, *need).await?;
        dependencies.push(crate::DependencyRef {
            id: dependency.id,
            project: dependency.project,
            created_at: dependency.created_at,
            status: dependency.status,
        });
    }
    Ok(Some(Claim {
        task,
        run,
        token,
        reply,
        reviews,
        dependencies,
    }))
}
