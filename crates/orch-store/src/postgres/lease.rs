//! Named leases for singleton duties: one holder at a time, taken over once expired.

use std::time::Duration;

use super::PgStore;
use crate::Op;

impl PgStore {
    pub(crate) async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        op: Op<'_>,
    ) -> crate::Result<bool> {
        let expires = op.now.after(ttl);
        transact!(self, |tx| async {
            let held = tx
                .query_opt(sql!("hold_lease"), &[&name, &holder, &op.now.0, &expires.0])
                .await?;
            Ok(Ok(held.is_some()))
        })
    }

    pub(crate) async fn release_lease(&self, name: &str, holder: &str) -> crate::Result<bool> {
        transact!(self, |tx| async {
            let released = tx.execute(sql!("release_lease"), &[&name, &holder]).await?;
            Ok(Ok(released > 0))
        })
    }
}
