//! Fencing: the random token of a claim, its stored hash, and how a refused request about a run
//! is recorded.
//!
//! A request about a run (heartbeat, completion, requeue, usage, a remote worker's files and
//! bundle) is accepted only from the run's owner (`Op::actor`) presenting the token its claim
//! returned, while the run is active. A refusal is recorded in one of two ways:
//!
//! - **The holder, too late** (the token and owner match, the run is no longer active: a worker
//!   paused past its lease): a `refused` event every time, and [`StoreError::StaleLease`].
//! - **Anyone else** (a wrong owner or a made-up token): [`StoreError::NotLeaseHolder`], and at
//!   most one `refused` event per run per [`REFUSAL_WINDOW_MS`], saying how many requests were
//!   refused since the last such event. A flood of forged requests therefore adds O(1) events
//!   per minute to the task's log; the daemon counts every one in its metrics.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use orch_core::{EventKind, FencingToken, RunId, RunState, TaskId};

use super::apply::{insert_event, task_facts};
use super::{OwnedOp, Result};
use crate::StoreError;

/// At most one `refused` event per run per this many milliseconds for requests from anyone but
/// the run's holder.
pub const REFUSAL_WINDOW_MS: i64 = 60_000;

/// A new secret token from the operating system's random number generator.
pub(super) fn new_token() -> FencingToken {
    use rand::TryRngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator works");
    FencingToken::from_bytes(bytes)
}

/// What the store keeps of a token: its SHA-256.
pub(super) fn token_hash(token: &FencingToken) -> Vec<u8> {
    Sha256::digest(token.expose_bytes()).to_vec()
}

/// A short public name of a token for events: the first 8 hex characters of its SHA-256. It
/// tells two tokens apart in a log without revealing either.
pub fn fingerprint(token: &FencingToken) -> String {
    Sha256::digest(token.expose_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fencing-relevant columns of one run.
struct RunLease {
    task: TaskId,
    owner: String,
    state: String,
    token_sha256: Option<Vec<u8>>,
    refusal_recorded_at: Option<i64>,
    refusals_unrecorded: i64,
}

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
    let lease = run_lease(conn, run)?;
    Ok(if !holds(&lease, token, actor) {
        Holding::Not
    } else if lease.state == RunState::Active.as_str() {
        Holding::Active
    } else {
        Holding::Ended
    })
}

/// How a request's sender stands to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holding {
    /// The run is active and the sender holds its lease.
    Active,
    /// The sender held the lease of a run that has ended.
    Ended,
    /// The sender is not the run's holder.
    Not,
}

fn holds(lease: &RunLease, token: &FencingToken, actor: &str) -> bool {
    lease.owner == actor && lease.token_sha256.as_deref() == Some(token_hash(token).as_slice())
}

/// A `refused` event: a note on the task that changes nothing.
fn note_refusal(
    conn: &Connection,
    lease: &RunLease,
    run: RunId,
    reason: &str,
    data: &serde_json::Value,
    op: &OwnedOp,
) -> Result<()> {
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
    )
}

/// Record a refused request about a run (as the module says) and build the error that explains
/// it.
pub(super) fn refuse(
    conn: &Connection,
    run: RunId,
    token: FencingToken,
    what: &str,
    op: &OwnedOp,
) -> Result<StoreError> {
    let lease = run_lease(conn, run)?;
    if holds(&lease, &token, &op.actor) {
        let reason = format!(
            "{what} refused: the run is {} (no longer active)",
            lease.state
        );
        let data = serde_json::json!({
            "request": what, "token": fingerprint(&token), "owner": op.actor,
            "run_state": lease.state,
        });
        note_refusal(conn, &lease, run, &reason, &data, op)?;
        return Ok(StoreError::StaleLease {
            run,
            task: lease.task,
            reason,
        });
    }
    let why = if lease.owner == op.actor {
        "the fencing token is not the run's".to_owned()
    } else {
        format!(
            "`{}` is not the run's owner (`{}`) or its token",
            op.actor, lease.owner
        )
    };
    let reason = format!("{what} refused: {why}");
    let window_open = lease
        .refusal_recorded_at
        .is_some_and(|at| op.now.0.saturating_sub(at) < REFUSAL_WINDOW_MS);
    if window_open {
        conn.prepare_cached(sql!("count_unrecorded_refusal"))?
            .execute([run.0])?;
    } else {
        let refused = lease.refusals_unrecorded + 1;
        let recorded = format!(
            "{reason} ({refused} request(s) by others than the run's holder refused since the \
             last such event; at most one is recorded per minute)"
        );
        let data = serde_json::json!({
            "request": what, "token": fingerprint(&token), "owner": op.actor,
            "run_owner": lease.owner, "run_state": lease.state, "refused": refused,
            "window_ms": REFUSAL_WINDOW_MS,
        });
        note_refusal(conn, &lease, run, &recorded, &data, op)?;
        conn.prepare_cached(sql!("set_refusal_recorded"))?
            .execute(params![run.0, op.now.0])?;
    }
    Ok(StoreError::NotLeaseHolder {
        run,
        task: lease.task,
        reason,
    })
}
