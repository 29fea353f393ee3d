//! What users do to tasks: cancel, retry, unblock, approve.

use std::time::Duration;

use orch_core::{decide, EventKind, Status, TaskId};

use super::apply::{carry_out, dependencies, insert_event, task_facts};
use super::PgStore;
use crate::Op;

impl PgStore {
    pub(crate) async fn cancel(
        &self,
        task: TaskId,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        transact!(self, |tx| async {
            let plan = decide::cancel(&task_facts(&tx, task).await?, reason)?;
            carry_out(&tx, &plan, &op).await?;
            Ok(Ok(plan.status))
        })
    }

    pub(crate) async fn retry(
        &self,
        task: TaskId,
        delay: Option<Duration>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        transact!(self, |tx| async {
            let facts = task_facts(&tx, task).await?;
            let plan = decide::retry(&facts, &dependencies(&tx, task).await?, delay, op.now)?;
            carry_out(&tx, &plan, &op).await?;
            Ok(Ok(plan.status))
        })
    }

    pub(crate) async fn unblock(&self, task: TaskId, op: Op<'_>) -> crate::Result<Status> {
        transact!(self, |tx| async {
            let facts = task_facts(&tx, task).await?;
            let plan = decide::unblock(&facts, &dependencies(&tx, task).await?)?;
            carry_out(&tx, &plan, &op).await?;
            Ok(Ok(plan.status))
        })
    }

    pub(crate) async fn approve(&self, task: TaskId, op: Op<'_>) -> crate::Result<Status> {
        self.judge_approval(task, crate::ApprovalVerdict::Approve, None, op)
            .await
    }

    pub(crate) async fn judge_approval(
        &self,
        task: TaskId,
        verdict: crate::ApprovalVerdict,
        comment: Option<&str>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        transact!(self, |tx| async {
            let facts = task_facts(&tx, task).await?;
            let plan = match verdict {
                crate::ApprovalVerdict::Approve => decide::approve_with(&facts, comment)?,
                crate::ApprovalVerdict::Reject => decide::reject(&facts, comment)?,
            };
            carry_out(&tx, &plan, &op).await?;
            Ok(Ok(plan.status))
        })
    }

    pub(crate) async fn record_note(
        &self,
        task: TaskId,
        kind: EventKind,
        reason: String,
        data: serde_json::Value,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        if !kind.is_note() {
            return Err(crate::StoreError::Invalid {
                field: "kind".to_owned(),
                reason: format!("`{kind}` changes a task's status; only notes can be recorded"),
            });
        }
        transact!(self, |tx| async {
            // The task's row lock (FOR UPDATE in its facts) orders the note after any change.
            let status = task_facts(&tx, task).await?.status;
            insert_event(
                &tx,
                task,
                None,
                &op,
                kind,
                Some(status),
                status,
                Some(&reason),
                Some(&data),
            )
            .await?;
            Ok(Ok(status))
        })
    }
}
