//! Named leases for singleton duties: one statement takes, takes over or renews a lease.

use std::time::Duration;

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::Op;

impl SqliteStore {
    pub(crate) async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        op: Op<'_>,
    ) -> crate::Result<bool> {
        let name = name.to_owned();
        let holder = holder.to_owned();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let now = op.now.0;
        self.call(move |conn| {
            let held: Option<String> = conn
                .prepare_cached(sql!("hold_lease"))?
                .query_row(params![name, holder, now, ttl_ms], |r| r.get(0))
                .optional()?;
            Ok(held.is_some())
        })
        .await
    }

    pub(crate) async fn release_lease(&self, name: &str, holder: &str) -> crate::Result<bool> {
        let name = name.to_owned();
        let holder = holder.to_owned();
        self.call(move |conn| {
            let deleted = conn
                .prepare_cached(sql!("release_lease"))?
                .execute(params![name, holder])?;
            Ok(deleted > 0)
        })
        .await
    }
}
