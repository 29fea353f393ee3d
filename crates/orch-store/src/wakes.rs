//! Wake-ups for the idle claimers of one store handle (shared by its clones): a commit that
//! made work ready wakes every waiter at once, and one that comes while a claimer is still
//! looking is not lost.
//!
//! The race this closes: a claim finds nothing (its snapshot predates a commit), the commit's
//! wake-up fires, and only then does the claimer start to wait; with a bare `Notify` nobody was
//! waiting, so the claimer slept until its poll came round. Here wake-ups are counted, each
//! claim notes the count when it starts looking, and a wait returns at once if the count moved
//! since the last look.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Wakes {
    notify: Notify,
    /// Wake-ups so far.
    count: AtomicU64,
    /// `count` when this handle's claimers last looked for work (a claim began, or a wait
    /// ended).
    looked: AtomicU64,
}

impl Wakes {
    /// Work may be ready: wake every waiter.
    pub(crate) fn wake(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// A claim is about to look for work: wake-ups until now are answered by its look.
    pub(crate) fn looking(&self) {
        self.looked
            .store(self.count.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Wait for a wake-up, at most `timeout`; at once if one came since the last look (it may
    /// have come too late for that look to see its work). `registered` runs once this wait
    /// can no longer miss a wake-up. Claimers sharing a handle share the count, so a wait may
    /// also return early for another claimer's wake-up: a spare look, never a missed one.
    pub(crate) async fn wait(&self, timeout: Duration, registered: impl FnOnce()) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the count is read: a wake-up after the read wakes this wait.
        notified.as_mut().enable();
        registered();
        let now = self.count.load(Ordering::SeqCst);
        if self.looked.swap(now, Ordering::SeqCst) != now {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        self.looking();
    }
}
