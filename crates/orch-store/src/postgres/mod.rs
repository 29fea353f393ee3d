//! The PostgreSQL backend: several orch processes on several machines share one database.
//!
//! Driver: tokio-postgres with a deadpool pool, chosen by measurement over sqlx (see
//! docs/decisions.md, "PostgreSQL driver"). Transactions run at READ COMMITTED with explicit
//! row locks: a claim takes the next queued task with `FOR UPDATE SKIP LOCKED`, every decision
//! reads its task's facts `FOR UPDATE` (so two transactions about one task serialize on its
//! row, and dependents are settled under their own row lock), and a new task reads its
//! dependencies `FOR SHARE`, so a dependency finishing while it is created cannot be missed. Every status change is a conditional update and writes its event
//! in the same transaction, exactly as on SQLite.
//!
//! A transaction that fails with a deadlock or serialization failure, or loses its connection
//! before its COMMIT was sent, rolled back, so it is retried (`transact!`); a connection lost
//! during COMMIT is answered as a retryable error instead, since the commit may have landed.
//!
//! Transactions that make a task `queued` send one `NOTIFY orch_work` at commit; idle claimers
//! wait for it through one `LISTEN` connection per store handle (`listen.rs`).

macro_rules! sql {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/queries/postgres/",
            $name,
            ".sql"
        ))
    };
}

/// Run `$body` (an `async` block that uses the transaction `$tx` and evaluates to
/// `Result<crate::Result<T>>`) in one transaction: `Ok(answer)` commits and returns `answer`
/// (an `Err` answer too: a recorded refusal commits), `Err` rolls back. Retried from the start
/// when the failure proves nothing was committed.
macro_rules! transact {
    ($store:expr, |$tx:ident| $body:expr) => {
        transact!(@run $store, begin, |$tx| $body)
    };
    (@run $store:expr, $begin:ident, |$tx:ident| $body:expr) => {{
        let store: &$crate::postgres::PgStore = &$store;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let outcome: $crate::postgres::Result<_> = async {
                let mut client = store.client().await?;
                let $tx = $crate::postgres::Tx::$begin(&mut client).await?;
                let answer = $crate::postgres::typed($body).await?;
                let woke = $tx.commit().await?;
                Ok((answer, woke))
            }
            .await;
            match outcome {
                Ok((answer, woke)) => {
                    if woke {
                        store.work.wake_local();
                    }
                    break answer;
                }
                Err(error) if error.may_retry() && attempt < $crate::postgres::TRIES => {
                    tracing::debug!(attempt, "retrying a PostgreSQL transaction: {error:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
                }
                Err(error) => break Err(error.into_store()),
            }
        }
    }};
}

/// `transact!` for reads that need no snapshot across statements: each statement runs on its
/// own (autocommit), saving the BEGIN and COMMIT round trips.
macro_rules! read {
    ($store:expr, |$tx:ident| $body:expr) => {
        transact!(@run $store, autocommit, |$tx| $body)
    };
}

/// One statement on its own (autocommit): it commits by itself, saving the BEGIN and COMMIT
/// round trips. Retried like `read!` when its connection fails, so only for a statement whose
/// repetition is harmless even if the first one committed.
macro_rules! autocommit {
    ($store:expr, |$tx:ident| $body:expr) => {
        transact!(@run $store, autocommit, |$tx| $body)
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
mod listen;
mod migrate;
mod read;
mod recover;
mod reviews;
mod rows;
mod submit;
mod tx;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use orch_core::plan::Refusal;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::StoreError;
pub(crate) use tx::Tx;

/// How often a transaction is tried before its failure is answered.
const TRIES: u32 = 5;

/// Connections per store handle (all clones share them).
const POOL_SIZE: usize = 16;

/// The backend's own error: the driver's, the pool's, or one of the store's. Private to this
/// module, so no driver type reaches the store's public interface.
#[derive(Debug)]
enum Error {
    Pg(tokio_postgres::Error),
    /// No connection could be had from the pool.
    Pool(String),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::Pg(error)
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

/// The connection itself failed (as opposed to a statement): lost, refused, or shut down.
fn is_connection_error(error: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    match error.as_db_error() {
        None => {
            error.is_closed()
                || error
                    .source()
                    .is_some_and(|source| source.is::<std::io::Error>())
                || error.to_string().starts_with("error connecting")
        }
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
    }
}

impl Error {
    /// Whether the transaction certainly rolled back and may simply run again: a deadlock, a
    /// serialization failure, or a connection that failed before COMMIT was sent (a failure at
    /// COMMIT becomes `Error::Store` in `Tx::commit`, so it is never retried here).
    fn may_retry(&self) -> bool {
        match self {
            Error::Pg(error) => {
                error.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                    || error.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
                    || is_connection_error(error)
            }
            // The pool already waited for a connection (and replaced broken ones).
            Error::Pool(_) | Error::Store(_) => false,
        }
    }

    fn into_store(self) -> StoreError {
        match self {
            Error::Store(error) => error,
            Error::Pool(message) => StoreError::Unavailable(message),
            Error::Pg(error) => {
                if is_connection_error(&error) {
                    return StoreError::Database {
                        message: format!("the connection to PostgreSQL failed: {error}"),
                        retryable: true,
                    };
                }
                let retryable = error.code().is_some_and(|code| {
                    let code = code.code();
                    // Serialization failure, deadlock, lock timeout, insufficient resources
                    // (disk full, too many connections).
                    matches!(code, "40001" | "40P01" | "55P03") || code.starts_with("53")
                });
                let message = match error.as_db_error() {
                    Some(db) => match db.detail() {
                        Some(detail) => format!("{} ({detail})", db.message()),
                        None => db.message().to_owned(),
                    },
                    None => error.to_string(),
                };
                StoreError::Database { message, retryable }
            }
        }
    }
}

/// Results inside the backend.
type Result<T, E = Error> = std::result::Result<T, E>;

/// Pin down the error type of a `transact!` body.
fn typed<T, F: Future<Output = Result<T>>>(body: F) -> F {
    body
}

/// A store on one PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Shared, so a `Store` stays small.
    config: Arc<tokio_postgres::Config>,
    /// Literal secrets (orch's own tokens) redacted from specs with the known formats.
    secrets: crate::secrets::SecretValues,
    /// Wakes idle claimers: local commits and other processes' NOTIFYs.
    work: Arc<listen::WorkSignal>,
    /// The limits claims obey (`Store::set_claim_limits`), shared by clones.
    pub(crate) limits: crate::limits::LimitsCell,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.config.get_dbname())
            .field("hosts", &self.config.get_hosts())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user@host/db`) and bring its schema up to
    /// date (under an advisory lock, so servers starting together do not race).
    pub async fn open(url: &str) -> crate::Result<Self> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Invalid {
                field: "database url".into(),
                reason: format!("`{}` is not a PostgreSQL URL: {e}", redact_url(url)),
            })?;
        config
            .application_name("orch")
            .connect_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection whose socket closed is dropped and replaced when handed out.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot build the connection pool: {e}"))
            })?;
        let store = PgStore {
            pool,
            config: Arc::new(config.clone()),
            secrets: crate::secrets::SecretValues::default(),
            limits: crate::limits::LimitsCell::default(),
            work: Arc::new(listen::WorkSignal::new(config)),
        };
        let mut client = store.client().await.map_err(Error::into_store)?;
        migrate::run(&mut client).await.map_err(Error::into_store)?;
        Ok(store)
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            Error::Pool(format!(
                "cannot get a connection to PostgreSQL ({e}); check that the server at {:?} runs \
                 and accepts connections",
                self.config.get_hosts()
            ))
        })
    }

    pub(crate) async fn close(&self) {
        self.work.stop();
        self.pool.close();
    }

    pub(crate) fn watch_work(&self) -> crate::WorkWatch {
        self.work.watch()
    }

    /// Wait until work may be ready (a NOTIFY or a local commit), at most `timeout`.
    pub(crate) async fn wait_for_work(&self, watch: &mut crate::WorkWatch, timeout: Duration) {
        self.work.wait(watch, timeout).await;
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

/// `url` without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
