//! The dashboard's sessions and one-time sign-in links.

use std::collections::BTreeMap;

use orch_core::{Status, Timestamp};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::apply::parse_status;
use super::rows::task_from_row;
use super::SqliteStore;
use crate::dashboard::{BoardPage, BoardQuery, DashboardGrant};

impl SqliteStore {
    pub(crate) async fn board(&self, query: &BoardQuery) -> crate::Result<BoardPage> {
        let q = query.clone();
        self.call(move |conn| {
            // One read transaction: the page and the counts from one snapshot.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let project = q.project.map(|p| p.0);
            let workflow = q.workflow.map(|w| w.0);
            let tasks = {
                let mut stmt = tx.prepare_cached(sql!("dashboard/board_tasks"))?;
                let rows = stmt.query_map(
                    params![
                        q.status.map(Status::as_str),
                        project,
                        q.label.as_deref(),
                        q.agent.as_deref(),
                        q.text.as_deref(),
                        workflow,
                        q.before.map(|t| t.0),
                        i64::from(q.limit),
                    ],
                    task_from_row,
                )?;
                let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                rows.into_iter().collect::<crate::Result<Vec<_>>>()?
            };
            let mut counts = BTreeMap::new();
            {
                let mut stmt = tx.prepare_cached(sql!("dashboard/board_counts"))?;
                let rows = stmt
                    .query_map(
                        params![
                            project,
                            q.label.as_deref(),
                            q.agent.as_deref(),
                            q.text.as_deref(),
                            workflow
                        ],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for (status, n) in rows {
                    counts.insert(parse_status(&status)?, u64::try_from(n).unwrap_or(0));
                }
            }
            tx.commit()?;
            Ok(BoardPage { tasks, counts })
        })
        .await
    }

    pub(crate) async fn create_dashboard_grant(
        &self,
        grant: &DashboardGrant,
        link: bool,
    ) -> crate::Result<()> {
        let grant = grant.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = grant.created_at.0;
            tx.prepare_cached(sql!("dashboard/delete_expired_sessions"))?
                .execute([now])?;
            tx.prepare_cached(sql!("dashboard/delete_expired_sign_in_links"))?
                .execute([now])?;
            let insert = if link {
                sql!("dashboard/insert_sign_in_link")
            } else {
                sql!("dashboard/insert_session")
            };
            tx.prepare_cached(insert)?.execute(params![
                grant.token_hash,
                grant.actor,
                grant.created_at.0,
                grant.expires_at.0
            ])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn dashboard_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> crate::Result<Option<DashboardGrant>> {
        let token_hash = token_hash.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(sql!("dashboard/select_session"))?
                .query_row(params![token_hash, now.0], |row| {
                    Ok(DashboardGrant {
                        token_hash: row.get(0)?,
                        actor: row.get(1)?,
                        created_at: Timestamp(row.get(2)?),
                        expires_at: Timestamp(row.get(3)?),
                    })
                })
                .optional()?)
        })
        .await
    }

    pub(crate) async fn end_dashboard_session(&self, token_hash: &str) -> crate::Result<bool> {
        let token_hash = token_hash.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(sql!("dashboard/delete_session"))?
                .execute([token_hash])?
                > 0)
        })
        .await
    }

    pub(crate) async fn sign_in_with_link(
        &self,
        link_hash: &str,
        session: &DashboardGrant,
    ) -> crate::Result<Option<DashboardGrant>> {
        let link_hash = link_hash.to_owned();
        let mut session = session.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let link: Option<(String, i64)> = tx
                .prepare_cached(sql!("dashboard/take_sign_in_link"))?
                .query_row([&link_hash], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let answer = match link {
                Some((actor, expires_at)) if expires_at > session.created_at.0 => {
                    session.actor = actor;
                    tx.prepare_cached(sql!("dashboard/insert_session"))?
                        .execute(params![
                            session.token_hash,
                            session.actor,
                            session.created_at.0,
                            session.expires_at.0
                        ])?;
                    Some(session)
                }
                _ => None,
            };
            // Committed either way: an expired link is deleted too.
            tx.commit()?;
            Ok(answer)
        })
        .await
    }
}
