//! Named leases for singleton duties: one holder at a time, taken over once expired.

use std::time::Duration;

use rusqlite::{params, OptionalExtension};

use super::{immediate, SqliteStore};
use crate::Op;

impl SqliteStore {
    pub(crate) async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        op: Op<'_>,
    ) -> crate::Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let (now, expires) = (op.now.0, op.now.after(ttl).0);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let held = tx
                .prepare_cached(sql!("hold_lease"))?
                .query_row(params![name, holder, now, expires], |_| Ok(()))
                .optional()?
                .is_some();
            tx.commit()?;
            Ok(held)
        })
        .await
    }
}
