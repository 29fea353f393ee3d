//! What users do to tasks: cancel, retry, unblock, approve.

use std::time::Duration;

use orch_core::{decide, Status, TaskId};

use super::apply::{carry_out, dependencies, task_facts};
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
        transact!(self, |tx| async {
            let plan = decide::approve(&task_facts(&tx, task).await?)?;
            carry_out(&tx, &plan, &op).await?;
            Ok(Ok(plan.status))
        })
    }
}
