//! Fencing on PostgreSQL: reading a run's lease and recording a refused request as the shared
//! rules (`crate::fencing`) say.

use orch_core::{EventKind, FencingToken, RunId, TaskId};

use super::apply::{insert_event, task_facts};
use super::{Result, Tx};
use crate::fencing::{refusal, Holding, RunLease};
use crate::{Op, StoreError};

async fn run_lease(tx: &Tx<'_>, run: RunId) -> Result<RunLease> {
    let row = tx
        .query_opt(sql!("select_run_lease"), &[&run.0])
        .await?
        .ok_or(StoreError::RunNotFound(run))?;
    Ok(RunLease {
        task: TaskId(row.try_get(0)?),
        owner: row.try_get(1)?,
        state: row.try_get(2)?,
        token_sha256: row.try_get(3)?,
        refusal_recorded_at: row.try_get(4)?,
        refusals_unrecorded: row.try_get(5)?,
    })
}

/// Whether `actor` presenting `token` holds `run`'s lease, and whether the run is active.
pub(super) async fn holding(
    tx: &Tx<'_>,
    run: RunId,
    token: &FencingToken,
    actor: &str,
) -> Result<Holding> {
    Ok(run_lease(tx, run).await?.holding(token, actor))
}

/// Record a refused request about a run (as `crate::fencing` says) and build the error that
/// explains it.
pub(super) async fn refuse(
    tx: &Tx<'_>,
    run: RunId,
    token: FencingToken,
    what: &str,
    op: &Op<'_>,
) -> Result<StoreError> {
    let lease = run_lease(tx, run).await?;
    let refusing = refusal(&lease, run, &token, what, op);
    if let Some((reason, data)) = &refusing.note {
        let status = task_facts(tx, lease.task).await?.status;
        insert_event(
            tx,
            lease.task,
            Some(run),
            op,
            EventKind::Refused,
            Some(status),
            status,
            Some(reason),
            Some(data),
        )
        .await?;
    }
    if refusing.count_only {
        tx.execute(sql!("count_unrecorded_refusal"), &[&run.0])
            .await?;
    }
    if refusing.open_window {
        tx.execute(sql!("set_refusal_recorded"), &[&run.0, &op.now.0])
            .await?;
    }
    Ok(refusing.error)
}
