//! Agent usage accounting and follow-up replies.

use orch_core::plan::AgentSession;
use orch_core::{decide, FencingToken, RunId, Status, TaskId};

use super::apply::{carry_out, require_fenced, require_holder, task_facts};
use super::{PgStore, Result, Tx};
use crate::fencing::{token_hash, utc_day};
use crate::{AgentUsage, Op, PendingReply, UsageRecord, UsageSummary, UsageTotal};

impl PgStore {
    pub(crate) async fn record_usage(
        &self,
        run: RunId,
        token: FencingToken,
        records: Vec<UsageRecord>,
        op: Op<'_>,
    ) -> crate::Result<()> {
        let day = utc_day(op.now.0);
        let token_hash = token_hash(&token);
        transact!(self, |tx| async {
            // Checked first, so an empty report is fenced too.
            if let Err(refused) = require_holder(&tx, run, token, "usage report", &op).await? {
                return Ok(Err(refused));
            }
            for record in &records {
                let written = tx
                    .execute(
                        sql!("upsert_agent_usage"),
                        &[
                            &run.0,
                            &record.step,
                            &token_hash,
                            &record.agent,
                            &record.model,
                            &record.session_id,
                            &i64::try_from(record.input_tokens).unwrap_or(i64::MAX),
                            &i64::try_from(record.output_tokens).unwrap_or(i64::MAX),
                            &record.cost_usd.max(0.0),
                            &day,
                            &op.now.0,
                            &op.actor,
                        ],
                    )
                    .await?;
                if let Err(refused) =
                    require_fenced(&tx, written, run, token, "usage report", &op).await?
                {
                    return Ok(Err(refused));
                }
            }
            Ok(Ok(()))
        })
    }

    pub(crate) async fn task_usage(&self, task: TaskId) -> crate::Result<Vec<AgentUsage>> {
        read!(self, |tx| async {
            let rows = tx.query(sql!("select_usage_of_task"), &[&task.0]).await?;
            let usage = rows
                .iter()
                .map(|r| {
                    Ok(AgentUsage {
                        run: RunId(r.try_get(0)?),
                        step: r.try_get(1)?,
                        agent: r.try_get(2)?,
                        model: r.try_get(3)?,
                        session_id: r.try_get(4)?,
                        input_tokens: u64::try_from(r.try_get::<_, i64>(5)?).unwrap_or(0),
                        output_tokens: u64::try_from(r.try_get::<_, i64>(6)?).unwrap_or(0),
                        cost_usd: r.try_get(7)?,
                        day: r.try_get(8)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Ok(usage))
        })
    }

    pub(crate) async fn usage_summary(&self, days: u32) -> crate::Result<UsageSummary> {
        let total = |r: &tokio_postgres::Row| -> Result<UsageTotal> {
            Ok(UsageTotal {
                key: r.try_get(0)?,
                sessions: u64::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0),
                input_tokens: u64::try_from(r.try_get::<_, Option<i64>>(2)?.unwrap_or(0))
                    .unwrap_or(0),
                output_tokens: u64::try_from(r.try_get::<_, Option<i64>>(3)?.unwrap_or(0))
                    .unwrap_or(0),
                cost_usd: r.try_get::<_, Option<f64>>(4)?.unwrap_or(0.0),
            })
        };
        read!(self, |tx| async {
            let by_agent = tx
                .query(sql!("select_usage_by_agent"), &[])
                .await?
                .iter()
                .map(total)
                .collect::<Result<_>>()?;
            let by_day = tx
                .query(sql!("select_usage_by_day"), &[&i64::from(days)])
                .await?
                .iter()
                .map(total)
                .collect::<Result<_>>()?;
            let by_project = tx
                .query(sql!("select_usage_by_project"), &[])
                .await?
                .iter()
                .map(total)
                .collect::<Result<_>>()?;
            Ok(Ok(UsageSummary {
                by_agent,
                by_day,
                by_project,
            }))
        })
    }

    pub(crate) async fn reply(
        &self,
        task: TaskId,
        message: String,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        Ok(self
            .reply_once(task, message, None, op)
            .await?
            .unwrap_or(Status::Queued))
    }

    /// [`Self::reply`] unless `delivery` was recorded before (then `None`); the delivery is
    /// recorded with the reply in one transaction (its primary key settles a race).
    pub(crate) async fn reply_once(
        &self,
        task: TaskId,
        message: String,
        delivery: Option<crate::Delivery>,
        op: Op<'_>,
    ) -> crate::Result<Option<Status>> {
        // A follow-up message is a prompt like a spec's: no token in it reaches the database.
        let message = self.secrets.redact_text(&message);
        transact!(self, |tx| async {
            if let Some(delivery) = &delivery {
                let recorded = tx
                    .execute(
                        sql!("insert_webhook_delivery"),
                        &[&delivery.source, &delivery.id, &task.0, &op.now.0],
                    )
                    .await?;
                if recorded == 0 {
                    return Ok(Ok(None));
                }
            }
            Ok(Ok(Some(reply_in(&tx, task, &message, &op).await?)))
        })
    }
}

/// Reopen a finished task with a follow-up `message` (already redacted) inside `tx`: `reply`,
/// and the feedback loop's follow-up runs.
pub(super) async fn reply_in(
    tx: &Tx<'_>,
    task: TaskId,
    message: &str,
    op: &Op<'_>,
) -> Result<Status> {
    let facts = task_facts(tx, task).await?;
    let session = match tx
        .query_opt(sql!("select_last_session_of_task"), &[&task.0])
        .await?
    {
        Some(r) => Some(AgentSession {
            agent: r.try_get(0)?,
            step: r.try_get(1)?,
            session_id: r.try_get(2)?,
        }),
        None => None,
    };
    let pending = pending_reply(tx, task).await?.map(|p| p.id);
    let plan = decide::reply(&facts, message, session, pending)?;
    carry_out(tx, &plan, op).await?;
    Ok(plan.status)
}

/// The reply a claimed run must answer, if any.
pub(super) async fn pending_reply(tx: &Tx<'_>, task: TaskId) -> Result<Option<PendingReply>> {
    let Some(r) = tx
        .query_opt(sql!("select_pending_reply"), &[&task.0])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(PendingReply {
        id: r.try_get(0)?,
        message: r.try_get(1)?,
        agent: r.try_get(2)?,
        step: r.try_get(3)?,
        session_id: r.try_get(4)?,
    }))
}
