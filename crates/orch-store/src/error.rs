//! The store's error type: the variants callers act on, and the database's failures in words.
//! No backend's types appear here: each backend converts its driver's errors privately.

use orch_core::plan::Refusal;
use orch_core::{RunId, Status, TaskId, TransitionError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such task.
    #[error("task {0} does not exist; `orch task list` shows the tasks there are")]
    TaskNotFound(TaskId),
    /// No such run.
    #[error("run {0} does not exist")]
    RunNotFound(RunId),
    /// The run's holder (its owner with its token) asked about a run that is no longer active
    /// (its lease expired, it was cancelled). It was refused and the refusal recorded as an event.
    #[error(
        "run {run} of task {task}: {reason}; the lease is no longer yours, so stop working on it"
    )]
    StaleLease {
        /// The run named in the request.
        run: RunId,
        /// Its task.
        task: TaskId,
        /// Why it was refused.
        reason: String,
    },
    /// The request came from someone who does not hold the run's lease: a worker other than the
    /// run's owner, or a token that is not the run's. Counted, and recorded at most once per
    /// run per minute (`REFUSAL_WINDOW_MS`), so such requests cannot flood the task's log.
    #[error(
        "run {run} of task {task}: {reason}; only the worker that claimed the run may act on it"
    )]
    NotLeaseHolder {
        /// The run named in the request.
        run: RunId,
        /// Its task.
        task: TaskId,
        /// Why it was refused.
        reason: String,
    },
    /// The operation does not apply to the task in its current status.
    #[error("task {task}: {source}")]
    Transition {
        /// The task.
        task: TaskId,
        /// The refusal from the transition table.
        source: TransitionError,
    },
    /// The operation does not apply now, for a reason stated in words.
    #[error("task {task} is {status}: {message}")]
    Conflict {
        /// The task.
        task: TaskId,
        /// Its status.
        status: Status,
        /// What is in the way and what to do.
        message: String,
    },
    /// The request itself is wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored value could not be read back (a hand-edited or corrupt database).
    #[error("the database holds a value orch cannot read: {0}; run `orch doctor`")]
    Corrupt(String),
    /// The database failed a statement.
    #[error("database error: {message}")]
    Database {
        /// The driver's message.
        message: String,
        /// Whether the same request may succeed later (the database was busy or full), as
        /// opposed to a failure that will repeat.
        retryable: bool,
    },
    /// The database cannot be reached (its connection is closed or the backend is not built).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A file next to the database could not be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl StoreError {
    /// The fault of the machine behind this error (a full disk, an I/O error, the database
    /// unreachable), if that is what it is: the request may succeed once the machine recovers,
    /// and no task is to blame.
    pub fn machine_fault(&self) -> Option<orch_core::fault::MachineFault> {
        use orch_core::fault::MachineFault;
        match self {
            StoreError::Unavailable(_) => Some(MachineFault::StoreUnavailable),
            StoreError::Database { message, .. } => MachineFault::classify(message),
            StoreError::Io { source, .. } => MachineFault::of_io(source),
            _ => None,
        }
    }

    /// Whether the caller did something that does not apply (as opposed to a failure of the
    /// database), so a CLI can exit with a usage code.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::TaskNotFound(_)
                | StoreError::RunNotFound(_)
                | StoreError::StaleLease { .. }
                | StoreError::NotLeaseHolder { .. }
                | StoreError::Transition { .. }
                | StoreError::Conflict { .. }
                | StoreError::Invalid { .. }
        )
    }
}

impl From<Refusal> for StoreError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Transition { task, source } => StoreError::Transition { task, source },
            Refusal::Conflict {
                task,
                status,
                message,
            } => StoreError::Conflict {
                task,
                status,
                message,
            },
        }
    }
}
