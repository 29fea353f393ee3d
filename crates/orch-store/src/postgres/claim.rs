//! Claiming the next queued task (`FOR UPDATE SKIP LOCKED`), and the fenced requests that keep
//! a run's lease.

use std::time::Duration;

use orch_core::lifecycle::{self, EventKind};
use orch_core::limits::{self, ClaimLimits, Tally};
use orch_core::{FencingToken, Run, RunId, Status, TaskId, Timestamp};

use tokio_postgres::Row;

use super::apply::{load_run, refuse};
use super::rows::task_from_row;
use super::{fencing, PgStore, Result, Tx};
use crate::fencing::{fingerprint, new_token, token_hash, Holding};
use crate::limits::GateWindow;
use crate::rows::{parse, ReviewRow};
use crate::{Claim, DependencyRef, Op, PendingReply, ProjectId, ReviewRecord};

impl PgStore {
    pub(crate) async fn claim_next(
        &self,
        owner: &str,
        lease: Duration,
        op: Op<'_>,
    ) -> crate::Result<Option<Claim>> {
        let claimed = match self.limits.get() {
            // One statement that commits on its own. Its answer lost with the connection is
            // retried like a read: the first claim, if it landed, is a run nobody holds, given
            // back when its lease expires (as after a worker's crash), never a doubled task.
            None => autocommit!(self, |tx| async {
                Ok(Ok(claim_next(&tx, owner, lease, &op, None).await?))
            })?,
            Some(limits) => transact!(self, |tx| async {
                Ok(Ok(claim_gated(&tx, &limits, owner, lease, &op).await?))
            })?,
        };
        let Some((mut claim, has_deps)) = claimed else {
            return Ok(None);
        };
        // A reply or a review is of an earlier run: a first run has neither, and a task
        // without dependencies needs no second read, so most claims are one round trip. The
        // read is retried on its own: a failure here never claims another task.
        if claim.run.attempt > 1 || has_deps {
            let task = claim.task.id;
            (claim.reply, claim.reviews, claim.dependencies) = read!(self, |tx| async {
                let row = tx.query_one(sql!("claim_extras"), &[&task.0]).await?;
                Ok(Ok((
                    claimed_reply(&row)?,
                    claimed_reviews(&row)?,
                    claimed_dependencies(&row)?,
                )))
            })?;
            claim.task.needs = claim.dependencies.iter().map(|d| d.id).collect();
        }
        Ok(Some(claim))
    }

    pub(crate) async fn tally(&self, window: GateWindow) -> crate::Result<Tally> {
        read!(self, |tx| async {
            Ok(Ok(tally(&tx, Some(&window)).await?))
        })
    }

    pub(crate) async fn usage_by_day(
        &self,
        since: String,
    ) -> crate::Result<Vec<crate::DailyUsage>> {
        read!(self, |tx| async {
            let rows = tx
                .query(sql!("select_usage_by_day_project_agent"), &[&since])
                .await?;
            let mut usage = Vec::with_capacity(rows.len());
            for r in rows {
                usage.push(crate::limits::daily_usage(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    r.try_get(6)?,
                ));
            }
            Ok(Ok(usage))
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

/// The claim under limits. Gated claims take turns under one advisory lock, taken before
/// anything is counted: in READ COMMITTED every statement after it sees the previous holder's
/// commit, so two claimers can never both count 1/2 running and both claim. Then: count what
/// runs (and what was spent today), take the best queued task no limit holds back, and note on
/// each one passed over why it waits.
async fn claim_gated(
    tx: &Tx<'_>,
    limits: &ClaimLimits,
    owner: &str,
    lease: Duration,
    op: &Op<'_>,
) -> Result<Option<(Claim, bool)>> {
    tx.query_one(sql!("lock_claim_limits"), &[&crate::limits::LOCK_KEY])
        .await?;
    let window = crate::limits::window(limits);
    let tally = tally(tx, limits.has_budgets().then_some(&window)).await?;
    let rows = tx
        .query(sql!("select_queued_gates"), &[&crate::limits::CANDIDATES])
        .await?;
    let mut candidates = Vec::with_capacity(rows.len());
    let mut reasons = std::collections::HashMap::new();
    for row in rows {
        let id = TaskId(row.try_get(0)?);
        let project: String = row.try_get(1)?;
        let spec: String = row.try_get(2)?;
        reasons.insert(id, row.try_get::<_, Option<String>>(3)?);
        candidates.push((id, crate::limits::gates_of(&project, &spec)));
    }
    let pick = limits::pick(limits, &tally, &candidates, &window.day.day);
    for (id, reason) in &pick.waiting {
        if reasons.get(id).and_then(Option::as_deref) != Some(reason.as_str()) {
            tx.execute(sql!("set_wait_reason"), &[&id.0, reason])
                .await?;
        }
    }
    match pick.chosen {
        Some(chosen) => claim_next(tx, owner, lease, op, Some(chosen)).await,
        None => Ok(None),
    }
}

/// What runs now and, given a day window, what was spent in it.
async fn tally(tx: &Tx<'_>, window: Option<&GateWindow>) -> Result<Tally> {
    let mut tally = Tally::default();
    for row in tx.query(sql!("select_running_gates"), &[]).await? {
        let project: String = row.try_get(0)?;
        let spec: String = row.try_get(1)?;
        tally.add_running(&crate::limits::gates_of(&project, &spec));
    }
    let Some(window) = window else {
        return Ok(tally);
    };
    let bounds: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&window.wall_start, &window.wall_end];
    for row in tx
        .query(sql!("select_runs_by_project_between"), &bounds)
        .await?
    {
        let spend = tally.spent_projects.entry(row.try_get(0)?).or_default();
        spend.runs = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
    }
    for (query, by_agent) in [
        (sql!("select_usage_by_project_between"), false),
        (sql!("select_usage_by_agent_between"), true),
    ] {
        for row in tx.query(query, &bounds).await? {
            let key: String = row.try_get(0)?;
            let spend = if by_agent {
                let spend = tally.spent_agents.entry(key).or_default();
                spend.runs = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
                spend
            } else {
                tally.spent_projects.entry(key).or_default()
            };
            crate::limits::add_usage(
                spend,
                row.try_get(2)?,
                row.try_get::<_, Option<i64>>(3)?.unwrap_or(0),
                row.try_get::<_, Option<f64>>(4)?.unwrap_or(0.0),
            );
        }
    }
    Ok(tally)
}

/// Claim the best queued task, or `chosen` (a gated claim's pick), in one statement: the task
/// becomes `running`, its run opens, the claim is logged, and the task comes back in the same
/// answer, with whether it has dependencies. What else the worker needs (its pending reply,
/// reviews and dependencies) is read after the claim (`PgStore::claim_next`).
async fn claim_next(
    tx: &Tx<'_>,
    owner: &str,
    lease: Duration,
    op: &Op<'_>,
    chosen: Option<TaskId>,
) -> Result<Option<(Claim, bool)>> {
    lifecycle::transition(Some(Status::Queued), EventKind::Claim, Status::Running)
        .expect("a queued task may be claimed");
    let expires = op.now.after(lease);
    // A fresh secret per claim; only its hash is stored, only the claim answer carries it, and
    // the claim event names it by its fingerprint.
    let token = new_token();
    let token_hash = token_hash(&token);
    let fingerprint = fingerprint(&token);
    let row = match chosen {
        None => {
            tx.query_opt(
                concat!(sql!("claim_pick_next"), sql!("claim_rest")),
                &[
                    &op.now.0,
                    &owner,
                    &expires.0,
                    &token_hash,
                    &op.actor,
                    &fingerprint,
                ],
            )
            .await?
        }
        Some(chosen) => {
            tx.query_opt(
                concat!(sql!("claim_pick_task"), sql!("claim_rest")),
                &[
                    &op.now.0,
                    &owner,
                    &expires.0,
                    &token_hash,
                    &op.actor,
                    &fingerprint,
                    &chosen.0,
                ],
            )
            .await?
        }
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let task = task_from_row(&row)?;
    let run_id = RunId(row.try_get("current_run")?);
    let attempt: i64 = row.try_get("attempt")?;
    let run = crate::rows::claimed_run(run_id, task.id, attempt, owner, expires, op.now);
    let claim = Claim {
        reply: None,
        reviews: Vec::new(),
        dependencies: Vec::new(),
        task,
        run,
        token,
    };
    Ok(Some((claim, row.try_get("has_deps")?)))
}

/// The pending reply of a claim's extras (`claim_extras`).
fn claimed_reply(row: &Row) -> Result<Option<PendingReply>> {
    let Some(id) = row.try_get("reply_id")? else {
        return Ok(None);
    };
    Ok(Some(PendingReply {
        id,
        message: row.try_get("reply_message")?,
        agent: row.try_get("reply_agent")?,
        step: row.try_get("reply_step")?,
        session_id: row.try_get("reply_session")?,
    }))
}

/// The reviews of a claim's answer, oldest run first: parallel arrays, NULL when none.
fn claimed_reviews(row: &Row) -> Result<Vec<ReviewRecord>> {
    let runs: Vec<i64> = row
        .try_get::<_, Option<_>>("review_runs")?
        .unwrap_or_default();
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let rounds: Vec<i64> = row.try_get("review_rounds")?;
    let verdicts: Vec<String> = row.try_get("review_verdicts")?;
    let reasons: Vec<String> = row.try_get("review_reasons")?;
    let escalated: Vec<bool> = row.try_get("review_escalated")?;
    let mut reviews = Vec::with_capacity(runs.len());
    for ((((run_id, round), verdict), reasons), escalated) in runs
        .into_iter()
        .zip(rounds)
        .zip(verdicts)
        .zip(reasons)
        .zip(escalated)
    {
        reviews.push(
            ReviewRow {
                run_id,
                round,
                verdict,
                reasons,
                escalated,
            }
            .into_review()?,
        );
    }
    Ok(reviews)
}

/// The dependencies of a claim's answer, in `needs` (id) order: parallel arrays, NULL when none.
fn claimed_dependencies(row: &Row) -> Result<Vec<DependencyRef>> {
    let ids: Vec<i64> = row.try_get::<_, Option<_>>("dep_ids")?.unwrap_or_default();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let projects: Vec<i64> = row.try_get("dep_projects")?;
    let created: Vec<i64> = row.try_get("dep_created")?;
    let statuses: Vec<String> = row.try_get("dep_statuses")?;
    let mut dependencies = Vec::with_capacity(ids.len());
    for (((id, project), created_at), status) in
        ids.into_iter().zip(projects).zip(created).zip(statuses)
    {
        dependencies.push(DependencyRef {
            id: TaskId(id),
            project: ProjectId(project),
            created_at: Timestamp(created_at),
            status: parse(&status)?,
        });
    }
    Ok(dependencies)
}
