//! One transaction on a pooled connection, or a connection in autocommit mode, with as few
//! round trips as the protocol allows: the BEGIN travels with the transaction's first statement
//! (both are written before either answer is awaited), and the NOTIFY of a transaction that
//! made work ready travels with its COMMIT.
//!
//! A transaction ends by `commit`; dropped before that (an error, or its future dropped) it
//! sends a ROLLBACK without waiting for the answer, as tokio-postgres's own `Transaction` does:
//! requests on one connection run in order, so the connection's next user starts after it.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::{is_connection_error, Error, Result};
use crate::StoreError;

pub(super) type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// Statements on their own: each commits by itself.
const AUTOCOMMIT: u8 = 0;
/// A transaction no statement has been sent in yet (so no BEGIN either).
const NOT_BEGUN: u8 = 1;
/// BEGIN sent; COMMIT not yet.
const BEGUN: u8 = 2;
/// COMMIT sent (or nothing to commit).
const ENDED: u8 = 3;

/// One transaction (or, for reads, a connection in autocommit mode), with a note of whether it
/// made work ready (then it NOTIFYs at commit).
pub(crate) struct Tx<'a> {
    client: &'a deadpool_postgres::Object,
    state: AtomicU8,
    wake: AtomicBool,
}

impl<'a> Tx<'a> {
    /// A transaction on `client`; its BEGIN goes out with its first statement.
    pub(super) async fn begin(client: &'a mut deadpool_postgres::Object) -> Result<Tx<'a>> {
        Ok(Tx::on(client, NOT_BEGUN))
    }

    pub(super) async fn autocommit(client: &'a mut deadpool_postgres::Object) -> Result<Tx<'a>> {
        Ok(Tx::on(client, AUTOCOMMIT))
    }

    fn on(client: &'a deadpool_postgres::Object, state: u8) -> Tx<'a> {
        Tx {
            client,
            state: AtomicU8::new(state),
            wake: AtomicBool::new(false),
        }
    }

    /// Send one NOTIFY at commit: a task became `queued`.
    pub(super) fn wake(&self) {
        self.wake.store(true, Ordering::Relaxed);
    }

    /// Run one driver call; the first of a transaction is preceded by its BEGIN, written
    /// before the call's own request (`call` sends it when first polled, after BEGIN's).
    async fn send<T>(
        &self,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        let begins = self
            .state
            .compare_exchange(NOT_BEGUN, BEGUN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if !begins {
            return Ok(call.await?);
        }
        let ((), answer) = tokio::try_join!(biased; self.client.batch_execute("BEGIN"), call)?;
        Ok(answer)
    }

    /// Commit; returns whether it woke claimers. The NOTIFY (if any) and the COMMIT are sent
    /// together. A connection lost here is ambiguous (the commit may have landed), so it is
    /// answered, not retried.
    pub(super) async fn commit(self) -> Result<bool> {
        let woke = self.wake.load(Ordering::Relaxed);
        let notify = match woke {
            // At most one per transaction: every NOTIFY takes a global lock at commit.
            true => Some(self.statement(sql!("notify_work")).await?),
            false => None,
        };
        if self.state.load(Ordering::SeqCst) == AUTOCOMMIT {
            if let Some(notify) = &notify {
                self.client.execute(notify, &[]).await?;
            }
            return Ok(woke);
        }
        // Nothing after this point yields before both requests are written, so the state says
        // the truth to `drop` whatever happens to this future.
        let begun = self.state.swap(ENDED, Ordering::SeqCst) == BEGUN;
        if !begun {
            // No statement ran, so there is nothing to commit (a NOTIFY would need one).
            return Ok(woke);
        }
        let notified = async {
            match &notify {
                Some(notify) => self.client.execute(notify, &[]).await.map(|_| ()),
                None => Ok(()),
            }
        };
        let (notified, committed) =
            tokio::join!(biased; notified, self.client.batch_execute("COMMIT"));
        for result in [notified, committed] {
            if let Err(error) = result {
                // A failed NOTIFY aborted the transaction: the COMMIT rolled it back.
                return Err(if is_connection_error(&error) {
                    lost_at_commit(&error)
                } else {
                    Error::Pg(error)
                });
            }
        }
        Ok(woke)
    }

    pub(super) async fn statement(&self, sql: &str) -> Result<Statement> {
        Ok(self.client.prepare_cached(sql).await?)
    }

    /// Statements that are not prepared (DDL, several statements).
    pub(super) async fn batch(&self, sql: &str) -> Result<()> {
        self.send(self.client.batch_execute(sql)).await
    }

    pub(super) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let statement = self.statement(sql).await?;
        self.query_prepared(&statement, params).await
    }

    pub(super) async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let statement = self.statement(sql).await?;
        self.query_opt_prepared(&statement, params).await
    }

    pub(super) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        let statement = self.statement(sql).await?;
        self.send(self.client.query_one(&statement, params)).await
    }

    pub(super) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        let statement = self.statement(sql).await?;
        self.send(self.client.execute(&statement, params)).await
    }

    /// A statement prepared beforehand ([`Tx::statement`]): its request is sent on the first
    /// poll, so futures joined with `biased` run on the server in their order.
    pub(super) async fn query_prepared(
        &self,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Vec<Row>> {
        self.send(self.client.query(statement, params)).await
    }

    /// [`Tx::query_prepared`] for at most one row.
    pub(super) async fn query_opt_prepared(
        &self,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Option<Row>> {
        self.send(self.client.query_opt(statement, params)).await
    }

    /// The first column of every row, as ids.
    pub(super) async fn ids(&self, sql: &str, params: Params<'_>) -> Result<Vec<i64>> {
        self.query(sql, params)
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.state.load(Ordering::SeqCst) != BEGUN {
            return;
        }
        // Write the ROLLBACK now and leave its answer to the connection (which reads and drops
        // answers nobody waits for): the request goes out on the future's first poll.
        let rollback = pin!(self.client.batch_execute("ROLLBACK"));
        if let Poll::Ready(Err(error)) = rollback.poll(&mut Context::from_waker(Waker::noop())) {
            tracing::debug!("ROLLBACK of a dropped PostgreSQL transaction failed: {error}");
        }
    }
}

/// The error of a connection lost while committing.
pub(super) fn lost_at_commit(error: &tokio_postgres::Error) -> Error {
    Error::Store(StoreError::Database {
        message: format!(
            "the connection to PostgreSQL failed while committing, so the operation may or may \
             not have taken effect; check before repeating it: {error}"
        ),
        retryable: true,
    })
}
