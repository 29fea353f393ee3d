//! Named leases (`Store::hold_lease`): one holder at a time, renewal by the holder, takeover only
//! once the lease expired, and a clean hand-over with `release_lease`.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::store_tests;
use support::*;

const TTL: Duration = Duration::from_millis(1_000);

async fn one_holder_at_a_time_until_the_lease_expires(db: TestDb) {
    let s = &db.store;
    assert!(s
        .hold_lease("scheduler", "a", TTL, op("a", 0))
        .await
        .unwrap());
    // b is refused while a's lease runs, however often it asks.
    assert!(!s
        .hold_lease("scheduler", "b", TTL, op("b", 10))
        .await
        .unwrap());
    assert!(!s
        .hold_lease("scheduler", "b", TTL, op("b", 999))
        .await
        .unwrap());
    // a renews: its lease now runs until 500 + TTL.
    assert!(s
        .hold_lease("scheduler", "a", TTL, op("a", 500))
        .await
        .unwrap());
    assert!(!s
        .hold_lease("scheduler", "b", TTL, op("b", 1_499))
        .await
        .unwrap());
    // a stops renewing; at expiry b takes over, and a, coming back, is refused.
    assert!(s
        .hold_lease("scheduler", "b", TTL, op("b", 1_500))
        .await
        .unwrap());
    assert!(!s
        .hold_lease("scheduler", "a", TTL, op("a", 1_600))
        .await
        .unwrap());
    // Another lease name is independent.
    assert!(s
        .hold_lease("cron", "a", TTL, op("a", 1_600))
        .await
        .unwrap());
}

async fn a_released_lease_is_free_at_once_and_only_its_holder_releases_it(db: TestDb) {
    let s = &db.store;
    assert!(s
        .hold_lease("scheduler", "a", TTL, op("a", 0))
        .await
        .unwrap());
    assert!(!s.release_lease("scheduler", "b").await.unwrap());
    assert!(!s
        .hold_lease("scheduler", "b", TTL, op("b", 1))
        .await
        .unwrap());
    assert!(s.release_lease("scheduler", "a").await.unwrap());
    assert!(s
        .hold_lease("scheduler", "b", TTL, op("b", 2))
        .await
        .unwrap());
}

store_tests!(
    one_holder_at_a_time_until_the_lease_expires,
    a_released_lease_is_free_at_once_and_only_its_holder_releases_it,
);
