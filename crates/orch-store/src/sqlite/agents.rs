//! Agent usage accounting and follow-up replies.

use rusqlite::{params, OptionalExtension};

use orch_core::plan::AgentSession;
use orch_core::{decide, FencingToken, RunId, Status, TaskId};

use super::apply::{carry_out, require_fenced, require_holder, task_facts};
use super::{immediate, OwnedOp, Result, SqliteStore};
use crate::{AgentUsage, Op, PendingReply, UsageRecord, UsageSummary, UsageTotal};

impl SqliteStore {
    pub(crate) async fn record_usage(
        &self,
        run: RunId,
        token: FencingToken,
        records: Vec<UsageRecord>,
        op: Op<'_>,
    ) -> crate::Result<()> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            // Checked first, so an empty report is fenced too.
            if let Err(refused) = require_holder(&tx, run, token, "usage report", &op) {
                tx.commit()?;
                return Err(refused);
            }
            let day = crate::fencing::utc_day(op.now.0);
            let token_hash = crate::fencing::token_hash(&token);
            for record in &records {
                let written = tx
                    .prepare_cached(sql!("upsert_agent_usage"))?
                    .execute(params![
                        run.0,
                        record.step,
                        token_hash,
                        record.agent,
                        record.model,
                        record.session_id,
                        i64::try_from(record.input_tokens).unwrap_or(i64::MAX),
                        i64::try_from(record.output_tokens).unwrap_or(i64::MAX),
                        record.cost_usd.max(0.0),
                        day,
                        op.now.0,
                        op.actor,
                    ])?;
                if let Err(refused) = require_fenced(&tx, written, run, token, "usage report", &op)
                {
                    tx.commit()?;
                    return Err(refused);
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn task_usage(&self, task: TaskId) -> crate::Result<Vec<AgentUsage>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_usage_of_task"))?;
            let rows = stmt.query_map([task.0], |r| {
                Ok(AgentUsage {
                    run: RunId(r.get(0)?),
                    step: r.get(1)?,
                    agent: r.get(2)?,
                    model: r.get(3)?,
                    session_id: r.get(4)?,
                    input_tokens: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                    output_tokens: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                    cost_usd: r.get(7)?,
                    day: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(crate) async fn usage_summary(&self, days: u32) -> crate::Result<UsageSummary> {
        self.call(move |conn| {
            let total = |r: &rusqlite::Row<'_>| -> rusqlite::Result<UsageTotal> {
                Ok(UsageTotal {
                    key: r.get(0)?,
                    sessions: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    input_tokens: u64::try_from(r.get::<_, Option<i64>>(2)?.unwrap_or(0))
                        .unwrap_or(0),
                    output_tokens: u64::try_from(r.get::<_, Option<i64>>(3)?.unwrap_or(0))
                        .unwrap_or(0),
                    cost_usd: r.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
                })
            };
            let by_agent = conn
                .prepare_cached(sql!("select_usage_by_agent"))?
                .query_map([], total)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let by_day = conn
                .prepare_cached(sql!("select_usage_by_day"))?
                .query_map([i64::from(days)], total)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let by_project = conn
                .prepare_cached(sql!("select_usage_by_project"))?
                .query_map([], total)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(UsageSummary {
                by_agent,
                by_day,
                by_project,
            })
        })
        .await
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
    /// recorded with the reply in one transaction.
    pub(crate) async fn reply_once(
        &self,
        task: TaskId,
        message: String,
        delivery: Option<crate::Delivery>,
        op: Op<'_>,
    ) -> crate::Result<Option<Status>> {
        // A follow-up message is a prompt like a spec's: no token in it reaches the database.
        let message = self.secrets.redact_text(&message);
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                if let Some(delivery) = &delivery {
                    let recorded = tx
                        .prepare_cached(sql!("insert_webhook_delivery"))?
                        .execute(params![delivery.source, delivery.id, task.0, op.now.0])?;
                    if recorded == 0 {
                        return Ok(None);
                    }
                }
                let status = reply_in(&tx, task, &message, &op)?;
                tx.commit()?;
                Ok(Some(status))
            })
            .await;
        self.woke(result)
    }
}

/// Reopen a finished task with a follow-up `message` (already redacted) inside `conn`'s
/// transaction: `reply`, and the feedback loop's follow-up runs.
pub(super) fn reply_in(
    conn: &rusqlite::Connection,
    task: TaskId,
    message: &str,
    op: &OwnedOp,
) -> Result<Status> {
    let facts = task_facts(conn, task)?;
    let session: Option<AgentSession> = conn
        .prepare_cached(sql!("select_last_session_of_task"))?
        .query_row([task.0], |r| {
            Ok(AgentSession {
                agent: r.get(0)?,
                step: r.get(1)?,
                session_id: r.get(2)?,
            })
        })
        .optional()?;
    let pending = pending_reply(conn, task)?.map(|p| p.id);
    let plan = decide::reply(&facts, message, session, pending)?;
    carry_out(conn, &plan, op)?;
    Ok(plan.status)
}

/// The reply a claimed run must answer, if any.
pub(super) fn pending_reply(
    conn: &rusqlite::Connection,
    task: TaskId,
) -> Result<Option<PendingReply>> {
    Ok(conn
        .prepare_cached(sql!("select_pending_reply"))?
        .query_row([task.0], |r| {
            Ok(PendingReply {
                id: r.get(0)?,
                message: r.get(1)?,
                agent: r.get(2)?,
                step: r.get(3)?,
                session_id: r.get(4)?,
            })
        })
        .optional()?)
}

/// A successful run answers the task's pending replies.
pub(super) fn answer_replies(conn: &rusqlite::Connection, task: TaskId, run: RunId) -> Result<()> {
    conn.prepare_cached(sql!("answer_replies"))?
        .execute(params![task.0, run.0])?;
    Ok(())
}
