//! Wake-ups for the idle claimers of one store handle (shared by its clones): a commit that
//! made work ready wakes every waiter at once, and one that comes while a claimer is still
//! looking is not lost.
//!
//! The race this closes: a claim finds nothing (its snapshot predates a commit), the commit's
//! wake-up fires, and only then does the claimer start to wait; with a bare `Notify` nobody was
//! waiting, so the claimer slept until its poll came round. Here wake-ups are counted, and each
//! claimer keeps its own [`WorkWatch`]: the count when it last started to look. A wait returns
//! at once if the count moved since, so a wake-up that came during a look is answered by one
//! more look, and one claimer's wait never uses up another's wake-up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Wakes {
    notify: Notify,
    /// Wake-ups so far.
    count: AtomicU64,
}

/// One claimer's place in its store's wake-ups (`Store::watch_work`): taken before its first
/// look for work, and moved on by every `Store::wait_for_work`, so a wait returns at once when
/// work may have become ready since this claimer last started to look. (`Default` has seen
/// nothing: its first wait returns at once, a spare look.)
#[derive(Debug, Clone, Default)]
pub struct WorkWatch {
    seen: u64,
}

impl Wakes {
    /// Work may be ready: wake every waiter.
    pub(crate) fn wake(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// A watch that has seen every wake-up until now.
    pub(crate) fn watch(&self) -> WorkWatch {
        WorkWatch {
            seen: self.count.load(Ordering::SeqCst),
        }
    }

    /// Wait for a wake-up, at most `timeout`; at once if one came since `watch` last looked
    /// (it may have come too late for that look to see its work). `registered` runs once this
    /// wait can no longer miss a wake-up. Returns with `watch` at the count it woke to, so the
    /// caller's next look answers every wake-up until then.
    pub(crate) async fn wait(
        &self,
        watch: &mut WorkWatch,
        timeout: Duration,
        registered: impl FnOnce(),
    ) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the count is read: a wake-up after the read wakes this wait.
        notified.as_mut().enable();
        registered();
        let now = self.count.load(Ordering::SeqCst);
        if watch.seen != now {
            watch.seen = now;
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        watch.seen = self.count.load(Ordering::SeqCst);
    }
}
