//! Fencing, for every backend: the random token of a claim, its stored hash, and what a
//! refused request about a run records.
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
//!
//! The backends read a run's [`RunLease`], ask [`refusal`] what to record and write it.

use sha2::{Digest, Sha256};

use orch_core::{FencingToken, RunId, RunState, TaskId};

use crate::{Op, StoreError};

/// At most one `refused` event per run per this many milliseconds for requests from anyone but
/// the run's holder.
pub const REFUSAL_WINDOW_MS: i64 = 60_000;

/// A new secret token from the operating system's random number generator.
pub(crate) fn new_token() -> FencingToken {
    use rand::TryRngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator works");
    FencingToken::from_bytes(bytes)
}

/// What the store keeps of a token: its SHA-256.
pub(crate) fn token_hash(token: &FencingToken) -> Vec<u8> {
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
pub(crate) struct RunLease {
    pub task: TaskId,
    pub owner: String,
    pub state: String,
    pub token_sha256: Option<Vec<u8>>,
    pub refusal_recorded_at: Option<i64>,
    pub refusals_unrecorded: i64,
}

/// How a request's sender stands to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holding {
    /// The run is active and the sender holds its lease.
    Active,
    /// The sender held the lease of a run that has ended.
    Ended,
    /// The sender is not the run's holder.
    Not,
}

impl RunLease {
    /// Whether `actor` presenting `token` holds this lease.
    pub(crate) fn held_by(&self, token: &FencingToken, actor: &str) -> bool {
        self.owner == actor && self.token_sha256.as_deref() == Some(token_hash(token).as_slice())
    }

    /// How `actor` presenting `token` stands to the run.
    pub(crate) fn holding(&self, token: &FencingToken, actor: &str) -> Holding {
        if !self.held_by(token, actor) {
            Holding::Not
        } else if self.state == RunState::Active.as_str() {
            Holding::Active
        } else {
            Holding::Ended
        }
    }
}

/// What a backend writes for one refused request, in its transaction.
pub(crate) struct Refusing {
    /// A `refused` event to add (reason, data), if one is due.
    pub note: Option<(String, serde_json::Value)>,
    /// Count the refusal on the run without an event (inside the window).
    pub count_only: bool,
    /// Start a new window at `now` (an event by others than the holder was recorded).
    pub open_window: bool,
    /// The error to answer with.
    pub error: StoreError,
}

/// Decide how to record a refused request (`what`) about `run` from `op.actor` with `token`.
pub(crate) fn refusal(
    lease: &RunLease,
    run: RunId,
    token: &FencingToken,
    what: &str,
    op: &Op<'_>,
) -> Refusing {
    if lease.held_by(token, op.actor) {
        let reason = format!(
            "{what} refused: the run is {} (no longer active)",
            lease.state
        );
        let data = serde_json::json!({
            "request": what, "token": fingerprint(token), "owner": op.actor,
            "run_state": lease.state,
        });
        return Refusing {
            note: Some((reason.clone(), data)),
            count_only: false,
            open_window: false,
            error: StoreError::StaleLease {
                run,
                task: lease.task,
                reason,
            },
        };
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
    let note = (!window_open).then(|| {
        let refused = lease.refusals_unrecorded + 1;
        let recorded = format!(
            "{reason} ({refused} request(s) by others than the run's holder refused since the \
             last such event; at most one is recorded per minute)"
        );
        let data = serde_json::json!({
            "request": what, "token": fingerprint(token), "owner": op.actor,
            "run_owner": lease.owner, "run_state": lease.state, "refused": refused,
            "window_ms": REFUSAL_WINDOW_MS,
        });
        (recorded, data)
    });
    Refusing {
        note,
        count_only: window_open,
        open_window: !window_open,
        error: StoreError::NotLeaseHolder {
            run,
            task: lease.task,
            reason,
        },
    }
}

/// `YYYY-MM-DD` in UTC for a millisecond timestamp (the day usage is counted under).
pub(crate) fn utc_day(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    let text = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
    )
    .to_string();
    text.chars().take(10).collect()
}
