//! Review verdicts: recorded by the worker for its run (fenced), handed to later claims.

use orch_core::{FencingToken, RunId, TaskId};
use rusqlite::{params, Connection};

use super::apply::{require_fenced, require_holder};
use super::{immediate, OwnedOp, Result, SqliteStore};
use crate::rows::ReviewRow;
use crate::{Op, ReviewRecord, StoreError};

impl SqliteStore {
    pub(crate) async fn record_review(
        &self,
        run: RunId,
        token: FencingToken,
        review: ReviewRecord,
        op: Op<'_>,
    ) -> crate::Result<()> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            if let Err(refused) = require_holder(&tx, run, token, "review report", &op) {
                tx.commit()?;
                return Err(refused);
            }
            let reasons = serde_json::to_string(&review.reasons)
                .map_err(|e| StoreError::Corrupt(format!("review reasons: {e}")))?;
            let written = tx.prepare_cached(sql!("upsert_review"))?.execute(params![
                run.0,
                crate::fencing::token_hash(&token),
                i64::from(review.round),
                review.verdict.as_str(),
                reasons,
                review.escalated,
                op.now.0,
                op.actor,
            ])?;
            if let Err(refused) = require_fenced(&tx, written, run, token, "review report", &op) {
                tx.commit()?;
                return Err(refused);
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

/// The recorded reviews of a task, oldest run first.
pub(super) fn reviews_of_task(conn: &Connection, task: TaskId) -> Result<Vec<ReviewRecord>> {
    let mut stmt = conn.prepare_cached(sql!("select_reviews_of_task"))?;
    let rows = stmt
        .query_map([task.0], |r| {
            Ok(ReviewRow {
                run_id: r.get(0)?,
                round: r.get(1)?,
                verdict: r.get(2)?,
                reasons: r.get(3)?,
                escalated: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .map(ReviewRow::into_review)
        .collect::<crate::Result<_>>()?)
}
