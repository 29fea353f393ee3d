//! The dashboard's sessions and one-time sign-in links.

use std::collections::BTreeMap;

use orch_core::{Status, Timestamp};

use super::rows::task_from_row;
use super::{PgStore, Result};
use crate::dashboard::{BoardPage, BoardQuery, DashboardGrant};
use crate::rows::parse;

impl PgStore {
    pub(crate) async fn board(&self, q: &BoardQuery) -> crate::Result<BoardPage> {
        let project = q.project.map(|p| p.0);
        let workflow = q.workflow.map(|w| w.0);
        let before = q.before.map(|t| t.0);
        let limit = i64::from(q.limit);
        transact!(self, |tx| async {
            // One snapshot for the page and the counts.
            tx.execute(sql!("set_repeatable_read"), &[]).await?;
            let rows = tx
                .query(
                    sql!("dashboard/board_tasks"),
                    &[
                        &q.status.map(Status::as_str),
                        &project,
                        &q.label.as_deref(),
                        &q.agent.as_deref(),
                        &q.text.as_deref(),
                        &workflow,
                        &before,
                        &limit,
                    ],
                )
                .await?;
            let tasks = rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?;
            let mut counts = BTreeMap::new();
            for row in tx
                .query(
                    sql!("dashboard/board_counts"),
                    &[
                        &project,
                        &q.label.as_deref(),
                        &q.agent.as_deref(),
                        &q.text.as_deref(),
                        &workflow,
                    ],
                )
                .await?
            {
                let n: i64 = row.try_get(1)?;
                counts.insert(parse(row.try_get(0)?)?, u64::try_from(n).unwrap_or(0));
            }
            Ok(Ok(BoardPage { tasks, counts }))
        })
    }

    pub(crate) async fn create_dashboard_grant(
        &self,
        grant: &DashboardGrant,
        link: bool,
    ) -> crate::Result<()> {
        let insert = if link {
            sql!("dashboard/insert_sign_in_link")
        } else {
            sql!("dashboard/insert_session")
        };
        transact!(self, |tx| async {
            let now = grant.created_at.0;
            tx.execute(sql!("dashboard/delete_expired_sessions"), &[&now])
                .await?;
            tx.execute(sql!("dashboard/delete_expired_sign_in_links"), &[&now])
                .await?;
            tx.execute(
                insert,
                &[
                    &grant.token_hash,
                    &grant.actor,
                    &grant.created_at.0,
                    &grant.expires_at.0,
                ],
            )
            .await?;
            Ok(Ok(()))
        })
    }

    pub(crate) async fn dashboard_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> crate::Result<Option<DashboardGrant>> {
        read!(self, |tx| async {
            let row = tx
                .query_opt(sql!("dashboard/select_session"), &[&token_hash, &now.0])
                .await?;
            Ok(Ok(match row {
                Some(row) => Some(DashboardGrant {
                    token_hash: row.try_get(0)?,
                    actor: row.try_get(1)?,
                    created_at: Timestamp(row.try_get(2)?),
                    expires_at: Timestamp(row.try_get(3)?),
                }),
                None => None,
            }))
        })
    }

    pub(crate) async fn end_dashboard_session(&self, token_hash: &str) -> crate::Result<bool> {
        transact!(self, |tx| async {
            let deleted = tx
                .execute(sql!("dashboard/delete_session"), &[&token_hash])
                .await?;
            Ok(Ok(deleted > 0))
        })
    }

    pub(crate) async fn sign_in_with_link(
        &self,
        link_hash: &str,
        session: &DashboardGrant,
    ) -> crate::Result<Option<DashboardGrant>> {
        transact!(self, |tx| async {
            let link = tx
                .query_opt(sql!("dashboard/take_sign_in_link"), &[&link_hash])
                .await?;
            let Some(link) = link else {
                return Ok(Ok(None));
            };
            let actor: String = link.try_get(0)?;
            let expires_at: i64 = link.try_get(1)?;
            if expires_at <= session.created_at.0 {
                // Committed: an expired link is deleted too.
                return Ok(Ok(None));
            }
            let mut session = session.clone();
            session.actor = actor;
            tx.execute(
                sql!("dashboard/insert_session"),
                &[
                    &session.token_hash,
                    &session.actor,
                    &session.created_at.0,
                    &session.expires_at.0,
                ],
            )
            .await?;
            Ok(Ok(Some(session)))
        })
    }
}
