//! Claiming the next queued task, and the fenced requests that keep a run's lease.

use std::time::Duration;

use orch_core::lifecycle::{self, EventKind};
use orch_core::{FencingToken, Run, RunId, Status, TaskId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use super::apply::{insert_event, load_run, load_task, refuse};
use super::{any_row, fencing, immediate, OwnedOp, Result, SqliteStore};
use crate::{Claim, Op};

impl SqliteStore {
    pub(crate) async fn claim_next(
        &self,
        owner: &str,
        lease: Duration,
        op: Op<'_>,
    ) -> crate::Result<Option<Claim>> {
        let owner = owner.to_owned();
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            // Idle workers poll; a read first keeps an empty queue from taking the write lock.
            if !any_row(conn, sql!("any_queued"), 0)? {
                return Ok(None);
            }
            let tx = immediate(conn)?;
            let claim = claim_next(&tx, &owner, lease, &op)?;
            tx.commit()?;
            Ok(claim)
        })
        .await
    }

    pub(crate) async fn heartbeat(
        &self,
        run: RunId,
        token: FencingToken,
        lease: Duration,
        op: Op<'_>,
    ) -> crate::Result<Timestamp> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let expires = op.now.after(lease);
            // The common case is one statement in autocommit mode.
            let extended: Option<i64> = conn
                .prepare_cached(sql!("heartbeat"))?
                .query_row(
                    params![
                        run.0,
                        crate::fencing::token_hash(&token),
                        expires.0,
                        op.actor
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(at) = extended {
                return Ok(Timestamp(at));
            }
            let tx = immediate(conn)?;
            let err = refuse(&tx, run, token, "heartbeat", &op)?;
            tx.commit()?;
            Err(err.into())
        })
        .await
    }

    pub(crate) async fn check_lease(
        &self,
        run: RunId,
        token: FencingToken,
        what: &str,
        op: Op<'_>,
    ) -> crate::Result<Run> {
        let what = what.to_owned();
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            if fencing::holding(conn, run, &token, &op.actor)? == crate::fencing::Holding::Active {
                return load_run(conn, run);
            }
            let tx = immediate(conn)?;
            let err = refuse(&tx, run, token, &what, &op)?;
            tx.commit()?;
            Err(err.into())
        })
        .await
    }

    pub(crate) async fn is_holder(
        &self,
        run: RunId,
        token: FencingToken,
        actor: &str,
    ) -> crate::Result<bool> {
        let actor = actor.to_owned();
        self.call(move |conn| {
            Ok(fencing::holding(conn, run, &token, &actor)? != crate::fencing::Holding::Not)
        })
        .await
    }
}

fn claim_next(
    conn: &Connection,
    owner: &str,
    lease: Duration,
    op: &OwnedOp,
) -> Result<Option<Claim>> {
    let Some((task_id, attempt)) = conn
        .prepare_cached(sql!("claim_next"))?
        .query_row([op.now.0], |r| Ok((TaskId(r.get(0)?), r.get::<_, i64>(1)?)))
        .optional()?
    else {
        return Ok(None);
    };
    let expires = op.now.after(lease);
    // A fresh secret per claim; only its hash is stored, only the claim answer carries it.
    let token = crate::fencing::new_token();
    let run_id = conn.prepare_cached(sql!("insert_run"))?.query_row(
        params![
            task_id.0,
            attempt,
            owner,
            expires.0,
            op.now.0,
            crate::fencing::token_hash(&token)
        ],
        |r| Ok(RunId(r.get(0)?)),
    )?;
    lifecycle::transition(Some(Status::Queued), EventKind::Claim, Status::Running).map_err(
        |source| crate::StoreError::Transition {
            task: task_id,
            source,
        },
    )?;
    // A fingerprint, never the secret: it tells this claim's token apart in refusals.
    let data = serde_json::json!({
        "owner": owner, "attempt": attempt, "token": crate::fencing::fingerprint(&token),
    });
    insert_event(
        conn,
        task_id,
        Some(run_id),
        op,
        EventKind::Claim,
        Some(Status::Queued),
        Status::Running,
        None,
        Some(&data),
    )?;
    let task = load_task(conn, task_id)?;
    let run = crate::rows::claimed_run(run_id, task_id, attempt, owner, expires, op.now);
    let reply = super::agents::pending_reply(conn, task.id)?;
    let reviews = super::reviews::reviews_of_task(conn, task.id)?;
    let dependencies = task
        .needs
        .iter()
        .map(|need| {
            load_task(conn, *need).map(|dependency| crate::DependencyRef {
                id: dependency.id,
                project: dependency.project,
                created_at: dependency.created_at,
                status: dependency.status,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Claim {
        task,
        run,
        token,
        reply,
        reviews,
        dependencies,
    }))
}
