//! Review verdicts: recorded by the worker for its run (fenced), handed to later claims (read
//! back right after the claim, `claim_extras.sql`).

use orch_core::{FencingToken, RunId};

use super::apply::{require_fenced, require_holder};
use super::PgStore;
use crate::fencing::token_hash;
use crate::{Op, ReviewRecord, StoreError};

impl PgStore {
    pub(crate) async fn record_review(
        &self,
        run: RunId,
        token: FencingToken,
        review: ReviewRecord,
        op: Op<'_>,
    ) -> crate::Result<()> {
        let reasons = serde_json::to_string(&review.reasons)
            .map_err(|e| StoreError::Corrupt(format!("review reasons: {e}")))?;
        transact!(self, |tx| async {
            if let Err(refused) = require_holder(&tx, run, token, "review report", &op).await? {
                return Ok(Err(refused));
            }
            let written = tx
                .execute(
                    sql!("upsert_review"),
                    &[
                        &run.0,
                        &token_hash(&token),
                        &i64::from(review.round),
                        &review.verdict.as_str(),
                        &reasons,
                        &review.escalated,
                        &op.now.0,
                        &op.actor,
                    ],
                )
                .await?;
            require_fenced(&tx, written, run, token, "review report", &op).await
        })
    }
}
