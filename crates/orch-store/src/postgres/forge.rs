//! The forge tables on PostgreSQL: project links, task links, and the outbox (`crate::forge`).
//! Claims take rows `FOR UPDATE SKIP LOCKED`, so servers sharing the database never lease the
//! same op at once.

use orch_core::forge::{ForgeKind, ForgeLink, ForgeResult, LinkUpdate};
use orch_core::{ProjectId, TaskId, Timestamp};
use tokio_postgres::Row;

use super::{Error, PgStore, Result, Tx};
use crate::forge::{
    db_number, issue_taken, lease_lost, op_text, parse_op, project_forge, result_text, LinkRow,
    NewForgeOp, OutboxEntry, OutboxRow, ProjectForge,
};
use crate::StoreError;

impl PgStore {
    pub(crate) async fn link_project_forge(
        &self,
        project: ProjectId,
        kind: ForgeKind,
        repo: String,
        now: Timestamp,
    ) -> crate::Result<ProjectForge> {
        transact!(self, |tx| async {
            tx.execute(
                sql!("forge/upsert_project_forge"),
                &[&project.0, &kind.as_str(), &repo, &now.0],
            )
            .await?;
            Ok(Ok(project_forge(project.0, kind.as_str(), &repo, now.0)?))
        })
    }

    pub(crate) async fn project_forges(&self) -> crate::Result<Vec<ProjectForge>> {
        read!(self, |tx| async {
            let rows = tx.query(sql!("forge/select_project_forges"), &[]).await?;
            let mut forges = Vec::with_capacity(rows.len());
            for r in &rows {
                let kind: String = r.try_get(1)?;
                let repo: String = r.try_get(2)?;
                forges.push(project_forge(r.try_get(0)?, &kind, &repo, r.try_get(3)?)?);
            }
            Ok(Ok(forges))
        })
    }

    pub(crate) async fn forge_link(&self, task: TaskId) -> crate::Result<Option<ForgeLink>> {
        read!(self, |tx| async { Ok(Ok(link_of(&tx, task).await?)) })
    }

    pub(crate) async fn task_of_issue(
        &self,
        project: ProjectId,
        repo: String,
        issue: u64,
    ) -> crate::Result<Option<TaskId>> {
        read!(self, |tx| async {
            Ok(Ok(task_of_issue(&tx, project.0, &repo, issue).await?))
        })
    }

    pub(crate) async fn linked_numbers(
        &self,
        project: ProjectId,
    ) -> crate::Result<Vec<(TaskId, Option<u64>, Option<u64>)>> {
        read!(self, |tx| async {
            let rows = tx
                .query(sql!("forge/select_linked_numbers"), &[&project.0])
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let number = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
                out.push((
                    TaskId(row.try_get(0)?),
                    number(row.try_get(1)?),
                    number(row.try_get(2)?),
                ));
            }
            Ok(Ok(out))
        })
    }

    pub(crate) async fn task_of_pull(
        &self,
        project: ProjectId,
        repo: String,
        pull: u64,
    ) -> crate::Result<Option<TaskId>> {
        read!(self, |tx| async {
            let number = db_number(pull, "pull request")?;
            let row = tx
                .query_opt(
                    sql!("forge/select_task_of_pull"),
                    &[&project.0, &repo, &number],
                )
                .await?;
            Ok(Ok(match row {
                Some(row) => Some(TaskId(row.try_get(0)?)),
                None => None,
            }))
        })
    }

    pub(crate) async fn link_task_issue(
        &self,
        task: TaskId,
        repo: String,
        issue: u64,
        now: Timestamp,
    ) -> crate::Result<()> {
        transact!(self, |tx| async {
            let Some(row) = tx
                .query_opt(sql!("forge/select_task_project"), &[&task.0])
                .await?
            else {
                return Err(Error::Store(StoreError::TaskNotFound(task)));
            };
            let project: i64 = row.try_get(0)?;
            match task_of_issue(&tx, project, &repo, issue).await? {
                Some(holder) if holder == task => return Ok(Ok(())),
                Some(holder) => return Err(issue_taken(&repo, issue, Some(holder.0)).into()),
                None => {}
            }
            ensure_link(&tx, task, &repo, now).await?;
            let number = db_number(issue, "issue")?;
            let set = tx
                .execute(sql!("forge/set_link_issue"), &[&task.0, &number, &now.0])
                .await?;
            if set == 0 {
                return Err(issue_taken(&repo, issue, None).into());
            }
            Ok(Ok(()))
        })
    }

    pub(crate) async fn record_forge_push(
        &self,
        task: TaskId,
        repo: String,
        branch: String,
        commit: String,
        now: Timestamp,
    ) -> crate::Result<()> {
        transact!(self, |tx| async {
            ensure_link(&tx, task, &repo, now).await?;
            tx.execute(
                sql!("forge/set_link_push"),
                &[&task.0, &branch, &commit, &now.0],
            )
            .await?;
            Ok(Ok(()))
        })
    }

    pub(crate) async fn enqueue_forge_ops(
        &self,
        ops: Vec<NewForgeOp>,
        now: Timestamp,
    ) -> crate::Result<u64> {
        transact!(self, |tx| async {
            Ok(Ok(insert_ops(&tx, &ops, now).await?))
        })
    }

    pub(crate) async fn claim_forge_ops(
        &self,
        owner: String,
        lease_ms: i64,
        limit: u32,
        now: Timestamp,
    ) -> crate::Result<Vec<OutboxEntry>> {
        transact!(self, |tx| async {
            let rows = tx
                .query(
                    sql!("forge/claim_ops"),
                    &[&owner, &now.0, &lease_ms, &i64::from(limit)],
                )
                .await?;
            let mut entries = rows
                .iter()
                .map(|r| Ok(outbox_row(r)?.into_entry()?))
                .collect::<Result<Vec<_>>>()?;
            entries.sort_by_key(|e| e.id);
            Ok(Ok(entries))
        })
    }

    pub(crate) async fn finish_forge_op(
        &self,
        id: i64,
        owner: String,
        result: ForgeResult,
        follow_ups: Vec<NewForgeOp>,
        now: Timestamp,
    ) -> crate::Result<()> {
        let text = result_text(&result)?;
        transact!(self, |tx| async {
            let Some(row) = tx
                .query_opt(sql!("forge/finish_op"), &[&id, &owner, &text, &now.0])
                .await?
            else {
                return Err(lease_lost(id, op_state(&tx, id).await?).into());
            };
            let project: i64 = row.try_get(0)?;
            let op: String = row.try_get(2)?;
            let op = parse_op(&op, id)?;
            if let Some((task, update)) = op.link_update(&result) {
                let repo: String = match tx
                    .query_opt(sql!("forge/select_project_repo"), &[&project])
                    .await?
                {
                    Some(row) => row.try_get(0)?,
                    None => String::new(),
                };
                ensure_link(&tx, task, &repo, now).await?;
                apply_update(&tx, task, &repo, update, now).await?;
            }
            insert_ops(&tx, &follow_ups, now).await?;
            Ok(Ok(()))
        })
    }

    pub(crate) async fn renew_forge_leases(
        &self,
        owner: String,
        lease_ms: i64,
        now: Timestamp,
    ) -> crate::Result<u64> {
        transact!(self, |tx| async {
            let renewed = tx
                .execute(sql!("forge/renew_leases"), &[&owner, &now.0, &lease_ms])
                .await?;
            Ok(Ok(renewed))
        })
    }

    pub(crate) async fn fail_forge_op(
        &self,
        id: i64,
        owner: String,
        error: String,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> crate::Result<()> {
        transact!(self, |tx| async {
            let changed = tx
                .execute(
                    sql!("forge/fail_op"),
                    &[&id, &owner, &error, &retry_at.map(|t| t.0), &now.0],
                )
                .await?;
            if changed == 0 {
                return Err(lease_lost(id, op_state(&tx, id).await?).into());
            }
            Ok(Ok(()))
        })
    }

    pub(crate) async fn forge_ops(&self, task: Option<TaskId>) -> crate::Result<Vec<OutboxEntry>> {
        read!(self, |tx| async {
            let rows = tx
                .query(sql!("forge/select_ops"), &[&task.map(|t| t.0)])
                .await?;
            Ok(Ok(rows
                .iter()
                .map(|r| Ok(outbox_row(r)?.into_entry()?))
                .collect::<Result<Vec<_>>>()?))
        })
    }

    pub(crate) async fn last_forge_event(&self) -> crate::Result<i64> {
        read!(self, |tx| async {
            let row = tx.query_one(sql!("forge/select_last_event"), &[]).await?;
            Ok(Ok(row.try_get(0)?))
        })
    }
}

fn outbox_row(r: &Row) -> Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.try_get(0)?,
        key: r.try_get(1)?,
        project: r.try_get(2)?,
        task: r.try_get(3)?,
        event: r.try_get(4)?,
        op: r.try_get(5)?,
        state: r.try_get(6)?,
        attempts: r.try_get(7)?,
        next_attempt_at: r.try_get(8)?,
        last_error: r.try_get(9)?,
        result: r.try_get(10)?,
        created_at: r.try_get(11)?,
        lease_owner: r.try_get(12)?,
    })
}

async fn op_state(tx: &Tx<'_>, id: i64) -> Result<Option<(String, Option<String>)>> {
    match tx.query_opt(sql!("forge/select_op_state"), &[&id]).await? {
        Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?))),
        None => Ok(None),
    }
}

async fn link_of(tx: &Tx<'_>, task: TaskId) -> Result<Option<ForgeLink>> {
    let Some(r) = tx
        .query_opt(sql!("forge/select_task_link"), &[&task.0])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(
        LinkRow {
            repo: r.try_get(0)?,
            issue: r.try_get(1)?,
            pr_number: r.try_get(2)?,
            pr_url: r.try_get(3)?,
            head_branch: r.try_get(4)?,
            pushed_commit: r.try_get(5)?,
            marker_comment_id: r.try_get(6)?,
        }
        .into_link(),
    ))
}

async fn task_of_issue(
    tx: &Tx<'_>,
    project: i64,
    repo: &str,
    issue: u64,
) -> Result<Option<TaskId>> {
    let number = db_number(issue, "issue")?;
    match tx
        .query_opt(
            sql!("forge/select_task_of_issue"),
            &[&project, &repo, &number],
        )
        .await?
    {
        Some(row) => Ok(Some(TaskId(row.try_get(0)?))),
        None => Ok(None),
    }
}

/// The task's link row, made if it has none (a missing task is refused).
async fn ensure_link(tx: &Tx<'_>, task: TaskId, repo: &str, now: Timestamp) -> Result<()> {
    tx.execute(sql!("forge/insert_task_link"), &[&task.0, &repo, &now.0])
        .await?;
    if link_of(tx, task).await?.is_none() {
        return Err(Error::Store(StoreError::TaskNotFound(task)));
    }
    Ok(())
}

async fn apply_update(
    tx: &Tx<'_>,
    task: TaskId,
    repo: &str,
    update: LinkUpdate,
    now: Timestamp,
) -> Result<()> {
    match update {
        LinkUpdate::Issue { number } => {
            let project: i64 = tx
                .query_one(sql!("forge/select_link_project"), &[&task.0])
                .await?
                .try_get(0)?;
            if let Some(holder) = task_of_issue(tx, project, repo, number).await? {
                if holder != task {
                    return Err(issue_taken(repo, number, Some(holder.0)).into());
                }
            }
            let number = db_number(number, "issue")?;
            tx.execute(sql!("forge/set_link_issue"), &[&task.0, &number, &now.0])
                .await?;
        }
        LinkUpdate::Pull { number, url, head } => {
            let number = db_number(number, "pull request")?;
            tx.execute(
                sql!("forge/set_link_pull"),
                &[&task.0, &number, &url, &head, &now.0],
            )
            .await?;
        }
        LinkUpdate::MarkerComment { id } => {
            let id = db_number(id, "comment")?;
            tx.execute(sql!("forge/set_link_marker"), &[&task.0, &id, &now.0])
                .await?;
        }
    }
    Ok(())
}

/// Store ops in the outbox inside `tx`; a stored key is left as it is.
pub(super) async fn insert_ops(tx: &Tx<'_>, ops: &[NewForgeOp], now: Timestamp) -> Result<u64> {
    let mut inserted = 0;
    for new in ops {
        let text = op_text(&new.op.op)?;
        inserted += tx
            .execute(
                sql!("forge/insert_op"),
                &[
                    &new.op.key,
                    &new.project.0,
                    &new.task.map(|t| t.0),
                    &new.event,
                    &text,
                    &now.0,
                ],
            )
            .await?;
    }
    Ok(inserted)
}
