//! Wake-ups for idle claimers: one `LISTEN orch_work` connection per store handle (shared by
//! its clones), started by the first waiter and fanned out through `crate::wakes::Wakes`.
//!
//! The listener reconnects after losing its connection (with backoff) and wakes every waiter
//! when it is back, since NOTIFYs sent meanwhile are lost; waiters also wake on their timeout,
//! so a dead listener only slows pickup down to polling.

use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) struct WorkSignal {
    wakes: crate::wakes::Wakes,
    config: tokio_postgres::Config,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl WorkSignal {
    pub(super) fn new(config: tokio_postgres::Config) -> WorkSignal {
        WorkSignal {
            wakes: crate::wakes::Wakes::default(),
            config,
            listener: Mutex::new(None),
        }
    }

    /// Wake this process's waiters (after a local commit that made work ready).
    pub(super) fn wake_local(&self) {
        self.wakes.wake();
    }

    pub(super) fn watch(&self) -> crate::WorkWatch {
        self.wakes.watch()
    }

    pub(super) async fn wait(
        self: &std::sync::Arc<Self>,
        watch: &mut crate::WorkWatch,
        timeout: Duration,
    ) {
        self.wakes
            .wait(watch, timeout, || self.ensure_listener())
            .await;
    }

    fn ensure_listener(self: &std::sync::Arc<Self>) {
        let mut listener = self
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if listener.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        // The task holds only a weak reference: dropping the last store handle ends it.
        let signal = std::sync::Arc::downgrade(self);
        *listener = Some(tokio::spawn(listen(self.config.clone(), signal)));
    }

    pub(super) fn stop(&self) {
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl Drop for WorkSignal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wake the waiters of `signal`; false when every store handle is gone.
fn wake(signal: &Weak<WorkSignal>) -> bool {
    match signal.upgrade() {
        Some(signal) => {
            signal.wake_local();
            true
        }
        None => false,
    }
}

async fn listen(config: tokio_postgres::Config, signal: Weak<WorkSignal>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                // The connection must be polled for LISTEN to be sent: drive it here and send
                // LISTEN from a second future.
                let driver = async {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => {
                                if !wake(&signal) {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(error)) => {
                                tracing::warn!("the PostgreSQL LISTEN connection failed: {error}");
                                return;
                            }
                            None => return,
                        }
                    }
                };
                let subscribe = async {
                    match client.batch_execute(sql!("listen_work")).await {
                        Ok(()) => {
                            backoff = Duration::from_millis(100);
                            // NOTIFYs sent while not listening are lost: look again now.
                            wake(&signal);
                        }
                        Err(error) => tracing::warn!("LISTEN orch_work failed: {error}"),
                    }
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    () = driver => {}
                    () = subscribe => {}
                }
                drop(client);
            }
            Err(error) => {
                tracing::warn!(
                    "cannot connect the PostgreSQL LISTEN connection (retrying in {backoff:?}): {error}"
                );
            }
        }
        if signal.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
