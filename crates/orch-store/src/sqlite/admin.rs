//! What users do to tasks: cancel, retry, unblock, approve, and the notes on a task that change
//! nothing (a merge of its change).

use std::time::Duration;

use orch_core::plan::{Plan, Refusal, TaskFacts};
use orch_core::{decide, EventKind, Status, TaskId};
use rusqlite::Connection;

use super::apply::{carry_out, dependencies, insert_event, task_facts};
use super::{immediate, OwnedOp, Result, SqliteStore};
use crate::Op;

impl SqliteStore {
    /// Load the task's facts, decide with `decide`, apply the plan: one transaction.
    async fn decide_and_apply<D>(
        &self,
        task: TaskId,
        op: Op<'_>,
        decide: D,
    ) -> crate::Result<Status>
    where
        D: FnOnce(&Connection, &TaskFacts) -> Result<Result<Plan, Refusal>> + Send + 'static,
    {
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                let facts = task_facts(&tx, task)?;
                let plan = decide(&tx, &facts)??;
                carry_out(&tx, &plan, &op)?;
                tx.commit()?;
                Ok(plan.status)
            })
            .await;
        self.woke(result)
    }

    pub(crate) async fn cancel(
        &self,
        task: TaskId,
        reason: Option<&str>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        let reason = reason.map(str::to_owned);
        self.decide_and_apply(task, op, move |_, facts| {
            Ok(decide::cancel(facts, reason.as_deref()))
        })
        .await
    }

    pub(crate) async fn retry(
        &self,
        task: TaskId,
        delay: Option<Duration>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        let now = op.now;
        self.decide_and_apply(task, op, move |conn, facts| {
            Ok(decide::retry(facts, &dependencies(conn, task)?, delay, now))
        })
        .await
    }

    pub(crate) async fn unblock(&self, task: TaskId, op: Op<'_>) -> crate::Result<Status> {
        self.decide_and_apply(task, op, move |conn, facts| {
            Ok(decide::unblock(facts, &dependencies(conn, task)?))
        })
        .await
    }

    pub(crate) async fn approve(&self, task: TaskId, op: Op<'_>) -> crate::Result<Status> {
        self.decide_and_apply(task, op, |_, facts| Ok(decide::approve(facts)))
            .await
    }

    pub(crate) async fn judge_approval(
        &self,
        task: TaskId,
        verdict: crate::ApprovalVerdict,
        comment: Option<&str>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        let comment = comment.map(str::to_owned);
        self.decide_and_apply(task, op, move |_, facts| {
            Ok(match verdict {
                crate::ApprovalVerdict::Approve => decide::approve_with(facts, comment.as_deref()),
                crate::ApprovalVerdict::Reject => decide::reject(facts, comment.as_deref()),
            })
        })
        .await
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
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let status = task_facts(&tx, task)?.status;
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
            )?;
            tx.commit()?;
            Ok(status)
        })
        .await
    }
}
