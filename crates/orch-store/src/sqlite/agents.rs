//! Agent usage accounting and follow-up replies.

use rusqlite::{params, OptionalExtension};

use orch_core::{EventKind, FencingToken, RunId, Status, TaskId};

use super::{fencing, immediate, move_task, refuse, task_brief, OwnedOp, SqliteStore};
use crate::{
    AgentUsage, Op, PendingReply, Result, StoreError, UsageRecord, UsageSummary, UsageTotal,
};

impl SqliteStore {
    pub(crate) async fn record_usage(
        &self,
        run: RunId,
        token: FencingToken,
        records: Vec<UsageRecord>,
        op: Op<'_>,
    ) -> Result<()> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            // Checked first, so an empty report is fenced too.
            if fencing::holding(&tx, run, &token, &op.actor)? != fencing::Holding::Active {
                let err = refuse(&tx, run, token, "usage report", &op)?;
                tx.commit()?;
                return Err(err);
            }
            let day = utc_day(op.now.0);
            let token_hash = fencing::token_hash(&token);
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
                if written == 0 {
                    let err = refuse(&tx, run, token, "usage report", &op)?;
                    tx.commit()?;
                    return Err(err);
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn task_usage(&self, task: TaskId) -> Result<Vec<AgentUsage>> {
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

    pub(crate) async fn usage_summary(&self, days: u32) -> Result<UsageSummary> {
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
            Ok(UsageSummary { by_agent, by_day })
        })
        .await
    }

    pub(crate) async fn reply(&self, task: TaskId, message: String, op: Op<'_>) -> Result<Status> {
        // A follow-up message is a prompt like a spec's: no token in it reaches the database.
        let (message, _) =
            orch_core::redact::Redactor::new(&self.secret_values()).redact_text(&message);
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let brief = task_brief(&tx, task)?;
            if !orch_core::lifecycle::can(brief.status, EventKind::Reply) {
                return Err(StoreError::Conflict {
                    task,
                    status: brief.status,
                    message: "cannot reply: the task has not finished; reply once it is done, failed, needs_review or cancelled".into(),
                });
            }
            let session: Option<(String, String, String)> = tx
                .prepare_cached(sql!("select_last_session_of_task"))?
                .query_row([task.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((agent, step, session_id)) = session else {
                return Err(StoreError::Conflict {
                    task,
                    status: brief.status,
                    message: "cannot reply: no agent session of this task was recorded, so there is nothing to resume; use `orch task retry` to run it again".into(),
                });
            };
            // A reply not yet answered (its run failed) is still owed: the new message joins it,
            // so one resumed session hears both and neither is dropped.
            match pending_reply(&tx, task)? {
                Some(pending) => {
                    tx.prepare_cached(sql!("append_to_reply"))?
                        .execute(params![pending.id, message])?;
                }
                None => {
                    tx.prepare_cached(sql!("insert_reply"))?.execute(params![
                        task.0, message, agent, step, session_id, op.now.0
                    ])?;
                }
            }
            tx.prepare_cached(sql!("set_task_attempts"))?.execute(params![task.0, 0_i64])?;
            let shown: String = message.chars().take(120).collect();
            move_task(
                &tx,
                task,
                brief.status,
                EventKind::Reply,
                Status::Queued,
                Some(&format!("reply: {shown}")),
                None,
                None,
                &op,
            )?;
            tx.commit()?;
            Ok(Status::Queued)
        })
        .await
    }
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

/// `YYYY-MM-DD` in UTC for a millisecond timestamp.
fn utc_day(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    let text = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
    )
    .to_string();
    text.chars().take(10).collect()
}
