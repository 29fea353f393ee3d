//! The SQLite backend: one database file in WAL mode, driven through rusqlite on one dedicated
//! thread per store handle (`tokio-rusqlite`), written with `BEGIN IMMEDIATE`.
//!
//! Why rusqlite and not sqlx: sqlx's SQLite driver hands every statement to a worker thread and
//! back, and a claim plus a completion is about a dozen statements; the queue benchmark measured
//! about 1,000 claim+complete/s that way (bare SQL through sqlx: 1,100/s). Here one whole
//! operation is one hand-off to the connection's thread, and the statements run back to back on
//! cached prepared statements.
//!
//! Every write transaction takes the write lock before its first read, so two claimers (threads
//! or processes) can never both read the same queued task and then deadlock upgrading their
//! locks; the loser waits on the busy timeout and then sees the winner's commit.
//!
//! The rules live in `orch_core::decide`: each operation here loads the facts (`apply.rs`),
//! asks the core for a plan and applies it in its transaction. rusqlite's errors stay in this
//! module: [`Error`] converts to the backend-neutral `StoreError` at the `call` boundary.

macro_rules! sql {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/queries/sqlite/",
            $name,
            ".sql"
        ))
    };
}

mod admin;
mod agents;
mod apply;
mod archive;
mod claim;
mod complete;
mod dashboard;
mod fencing;
mod forge;
mod forge_feedback;
mod info_requests;
mod jobs;
mod lease;
mod migrate;
mod read;
mod recover;
mod reviews;
mod rows;
mod submit;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use orch_core::plan::Refusal;
use orch_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::{Op, StoreError};

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Commits reach the WAL in the OS page cache: safe against a process crash (the default).
    #[default]
    Normal,
    /// Every commit is fsynced: also safe against power loss, slower.
    Full,
}

/// How to open the SQLite database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a writer waits for another process's write lock before giving up.
    pub busy_timeout: Duration,
    /// Durability setting.
    pub synchronous: Synchronous,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(30),
            synchronous: Synchronous::Normal,
        }
    }
}

/// Pages of WAL between automatic checkpoints (SQLite's default is 1,000).
pub const WAL_AUTOCHECKPOINT_PAGES: i64 = 4_000;

/// The backend's own error: the driver's, or one of the store's. Private to this module, so
/// no rusqlite type reaches the store's public interface.
#[derive(Debug)]
enum Error {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Error::Sqlite(error)
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::Store(error)
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        Error::Store(refusal.into())
    }
}

impl Error {
    fn into_store(self) -> StoreError {
        match self {
            Error::Store(error) => error,
            Error::Sqlite(error) => StoreError::Database {
                retryable: is_busy(&error)
                    || matches!(
                        &error,
                        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull
                    ),
                message: error.to_string(),
            },
        }
    }
}

/// Results inside the backend.
type Result<T, E = Error> = std::result::Result<T, E>;

/// A store on one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: tokio_rusqlite::Connection,
    path: PathBuf,
    /// Literal secrets (orch's own tokens) redacted from specs with the known formats.
    secrets: crate::secrets::SecretValues,
    /// Wakes this handle's (and its clones') idle claimers after a commit that may have made
    /// work ready.
    work: Arc<crate::wakes::Wakes>,
    /// The limits claims obey (`Store::set_claim_limits`), shared by clones.
    pub(crate) limits: crate::limits::LimitsCell,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// An `Op` that owns its actor, so it can move to the connection's thread.
#[derive(Debug, Clone)]
struct OwnedOp {
    actor: String,
    now: Timestamp,
    jitter_unit: f64,
}

impl OwnedOp {
    fn as_op(&self) -> Op<'_> {
        Op {
            actor: &self.actor,
            now: self.now,
            jitter_unit: self.jitter_unit,
        }
    }

    fn from(op: Op<'_>) -> Self {
        OwnedOp {
            actor: op.actor.to_owned(),
            now: op.now,
            jitter_unit: op.jitter_unit,
        }
    }
}

/// WAL mode, durability, foreign keys, checkpoint size, then the schema.
fn configure(conn: &mut Connection, options: &SqliteOptions) -> Result<()> {
    // WAL lets readers work while one writer commits. `synchronous = NORMAL` in WAL mode syncs
    // only at checkpoints: a commit survives a crash of this process (the WAL is in the OS page
    // cache) but not necessarily a power cut.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Invalid {
            field: "database".into(),
            reason: format!(
                "SQLite refused WAL mode (got `{mode}`); is the file on a network file system?"
            ),
        }
        .into());
    }
    conn.pragma_update(
        None,
        "synchronous",
        match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoint every ~16 MB of WAL instead of 4 MB: each checkpoint fsyncs, and a claim plus a
    // completion writes a dozen pages.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    migrate::run(conn)
}

/// SQLite said another connection holds a lock.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Whether a one-parameter query finds anything (a read, without the write lock).
fn any_row(conn: &Connection, sql: &str, arg: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([arg], |_| Ok(()))
        .optional()?
        .is_some())
}

fn query_ids(conn: &Connection, sql: &str, arg: i64) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let ids = stmt
        .query_map([arg], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

impl SqliteStore {
    /// Open the database at `path`, creating it and applying migrations as needed.
    pub async fn open(path: &Path, options: SqliteOptions) -> crate::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                context: format!("create the directory {}", parent.display()),
                source,
            })?;
        }
        let conn = tokio_rusqlite::Connection::open(path)
            .await
            .map_err(|e| Error::Sqlite(e).into_store())?;
        let store = SqliteStore {
            conn,
            path: path.to_owned(),
            secrets: crate::secrets::SecretValues::default(),
            limits: crate::limits::LimitsCell::default(),
            work: Arc::default(),
        };
        store
            .call(move |conn| {
                conn.busy_timeout(options.busy_timeout)?;
                conn.set_prepared_statement_cache_capacity(128);
                // Switching a new file to WAL takes an exclusive lock, and SQLite answers BUSY
                // at once (without its busy handler) when two processes open a new home at the
                // same moment; those answers are retried here until the busy timeout.
                let deadline = std::time::Instant::now() + options.busy_timeout;
                let mut wait = Duration::from_millis(5);
                loop {
                    match configure(conn, &options) {
                        Err(Error::Sqlite(e))
                            if is_busy(&e) && std::time::Instant::now() < deadline =>
                        {
                            std::thread::sleep(wait);
                            wait = (wait * 2).min(Duration::from_millis(200));
                        }
                        other => return other,
                    }
                }
            })
            .await?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `work` on the connection's thread.
    async fn call<T, F>(&self, work: F) -> crate::Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.conn
            .call_raw(work)
            .await
            .map_err(|_| StoreError::Unavailable("the database connection is closed".into()))?
            .map_err(Error::into_store)
    }

    pub(crate) async fn close(&self) {
        // Closing consumes the handle; clones of it (other `Store` values) keep theirs.
        let _ = self.conn.clone().close().await;
    }

    pub(crate) fn watch_work(&self) -> crate::WorkWatch {
        self.work.watch()
    }

    /// Wait until a commit through this handle may have made work ready, at most `timeout`.
    pub(crate) async fn wait_for_work(&self, watch: &mut crate::WorkWatch, timeout: Duration) {
        self.work.wait(watch, timeout, || {}).await;
    }

    /// A commit may have made work ready: wake the waiters.
    fn woke<T>(&self, result: crate::Result<T>) -> crate::Result<T> {
        if result.is_ok() {
            self.work.wake();
        }
        result
    }

    /// Add literal secrets to redact from every spec submitted from now on.
    pub(crate) fn add_secret_values(&self, values: &[String]) {
        self.secrets.add(values);
    }

    /// The literal secrets given to `add_secret_values`.
    pub(crate) fn secret_values(&self) -> Vec<String> {
        self.secrets.get()
    }
}
