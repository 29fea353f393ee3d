//! Fencing on SQLite: reading a run's lease and recording a refused request as the shared rules
//! (`crate::fencing`) say.

use rusqlite::{params, Connection, OptionalExtension};

use orch_core::{EventKind, FencingToken, RunId, TaskId};

use super::apply::{insert_event, task_facts};
use super::{OwnedOp, Result};
use crate::fencing::{refusal, Holding, RunLease};
use crate::StoreError;

fn run_lease(conn: &Connection, run: RunId) -> Result<RunLease> {
    conn.prepare_cached(sql!("select_run_lease"))?
        .query_row([run.0], |r| {
            Ok(RunLease {
                task: TaskId(r.get(0)?),
                owner: r.get(1)?,
                state: r.get(2)?,
                token_sha256: r.get(3)?,
                refusal_recorded_at: r.get(4)?,
                refusals_unrecorded: r.get(5)?,
            })
        })
        .optional()?
        .ok_or_else(|| StoreError::RunNotFound(run).into())
}

/// Whether `actor` presenting `token` holds `run`'s lease, and whether the run is active.
pub(super) fn holding(
    conn: &Connection,
    run: RunId,
    token: &FencingToken,
    actor: &str,
) -> Result<Holding> {
    Ok(run_lease(conn, run)?.holding(token, actor))
}

/// Record a refused request about a run (as `crate::fencing` says) and build the error that
/// explains it.
pub(super) fn refuse(
    conn: &Connection,
    run: RunId,
    token: FencingToken,
    what: &str,
    op: &OwnedOp,
) -> Result<StoreError> {
    let lease = run_lease(conn, run)?;
    let refusing = refusal(&lease, run, &token, what, &op.as_op());
    if let Some((reason, data)) = &refusing.note {
        let status = task_facts(conn, lease.task)?.status;
        insert_event(
            conn,
            lease.task,
            Some(run),
            op,
            EventKind::Refused,
            Some(status),
            status,
            Some(reason),
            Some(data),
        )?;
    }
    if refusing.count_only {
        conn.prepare_cached(sql!("count_unrecorded_refusal"))?
            .execute([run.0])?;
    }
    if refusing.open_window {
        conn.prepare_cached(sql!("set_refusal_recorded"))?
            .execute(params![run.0, op.now.0])?;
    }
    Ok(refusing.error)
}
