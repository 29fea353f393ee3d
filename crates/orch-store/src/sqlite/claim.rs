//! Claiming the next queued task, and the fenced requests that keep a run's lease.

use std::time::Duration;

use orch_core::lifecycle::{self, EventKind};
use orch_core::limits::{self, ClaimLimits, Tally};
use orch_core::{FencingToken, Run, RunId, Status, TaskId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use super::apply::{insert_event, load_run, load_task, refuse};
use super::{any_row, fencing, immediate, OwnedOp, Result, SqliteStore};
use crate::limits::GateWindow;
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
        let limits = self.limits.get();
        self.call(move |conn| {
            // Idle workers poll; a read first keeps an empty queue from taking the write lock.
            if !any_row(conn, sql!("any_queued"), 0)? {
                return Ok(None);
            }
            let tx = immediate(conn)?;
            let claim = match limits {
                None => claim_next(&tx, &owner, lease, &op)?,
                // `BEGIN IMMEDIATE` holds the write lock from the first count to the claim.
                Some(limits) => claim_gated(&tx, &limits, &owner, lease, &op)?,
            };
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
    open_run(conn, task_id, attempt, owner, lease, op)
}

/// The claim under limits: count what runs (and what was spent today), take the best queued
/// task no limit holds back, and note on each one passed over why it waits.
fn claim_gated(
    conn: &Connection,
    limits: &ClaimLimits,
    owner: &str,
    lease: Duration,
    op: &OwnedOp,
) -> Result<Option<Claim>> {
    let window = crate::limits::window(limits);
    let tally = tally(conn, limits.has_budgets().then_some(&window))?;
    let mut candidates = Vec::new();
    let mut reasons = std::collections::HashMap::new();
    {
        let mut stmt = conn.prepare_cached(sql!("select_queued_gates"))?;
        let mut rows = stmt.query([crate::limits::CANDIDATES])?;
        while let Some(row) = rows.next()? {
            let id = TaskId(row.get(0)?);
            let project: String = row.get(1)?;
            let spec: String = row.get(2)?;
            reasons.insert(id, row.get::<_, Option<String>>(3)?);
            candidates.push((id, crate::limits::gates_of(&project, &spec)));
        }
    }
    let pick = limits::pick(limits, &tally, &candidates, &window.day.day);
    for (id, reason) in &pick.waiting {
        if reasons.get(id).and_then(Option::as_deref) != Some(reason.as_str()) {
            conn.prepare_cached(sql!("set_wait_reason"))?
                .execute(params![id.0, reason])?;
        }
    }
    let Some(chosen) = pick.chosen else {
        return Ok(None);
    };
    let Some((task_id, attempt)) = conn
        .prepare_cached(sql!("claim_task"))?
        .query_row(params![op.now.0, chosen.0], |r| {
            Ok((TaskId(r.get(0)?), r.get::<_, i64>(1)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    open_run(conn, task_id, attempt, owner, lease, op)
}

/// What runs now and, given a day window, what was spent in it.
pub(super) fn tally(conn: &Connection, window: Option<&GateWindow>) -> Result<Tally> {
    let mut tally = Tally::default();
    {
        let mut stmt = conn.prepare_cached(sql!("select_running_gates"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let project: String = row.get(0)?;
            let spec: String = row.get(1)?;
            tally.add_running(&crate::limits::gates_of(&project, &spec));
        }
    }
    let Some(window) = window else {
        return Ok(tally);
    };
    let bounds = params![window.wall_start, window.wall_end];
    let mut stmt = conn.prepare_cached(sql!("select_runs_by_project_between"))?;
    let mut rows = stmt.query(bounds)?;
    while let Some(row) = rows.next()? {
        let spend = tally.spent_projects.entry(row.get(0)?).or_default();
        spend.runs = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
    }
    for (query, by_agent) in [
        (sql!("select_usage_by_project_between"), false),
        (sql!("select_usage_by_agent_between"), true),
    ] {
        let mut stmt = conn.prepare_cached(query)?;
        let mut rows = stmt.query(bounds)?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let spend = if by_agent {
                let spend = tally.spent_agents.entry(key).or_default();
                spend.runs = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
                spend
            } else {
                tally.spent_projects.entry(key).or_default()
            };
            crate::limits::add_usage(
                spend,
                row.get(2)?,
                row.get::<_, Option<i64>>(3)?.unwrap_or(0),
                row.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
            );
        }
    }
    Ok(tally)
}

impl SqliteStore {
    pub(crate) async fn tally(&self, window: GateWindow) -> crate::Result<Tally> {
        self.call(move |conn| tally(conn, Some(&window))).await
    }

    pub(crate) async fn usage_by_day(
        &self,
        since: String,
    ) -> crate::Result<Vec<crate::DailyUsage>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_usage_by_day_project_agent"))?;
            let rows = stmt.query_map([since], |r| {
                Ok(crate::limits::daily_usage(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

/// Open the run of a task just marked running, log the claim and load what the worker needs.
fn open_run(
    conn: &Connection,
    task_id: TaskId,
    attempt: i64,
    owner: &str,
    lease: Duration,
    op: &OwnedOp,
) -> Result<Option<Claim>> {
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
    // A reply or a review is of an earlier run: a first run has neither.
    let (reply, reviews) = if attempt > 1 {
        (
            super::agents::pending_reply(conn, task.id)?,
            super::reviews::reviews_of_task(conn, task.id)?,
        )
    } else {
        (None, Vec::new())
    };
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
