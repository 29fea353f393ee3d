//! The forge tables on SQLite: project links, task links, and the outbox (`crate::forge`).

use orch_core::forge::{ForgeKind, ForgeLink, ForgeResult, LinkUpdate};
use orch_core::{ProjectId, TaskId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row as SqlRow};

use super::{immediate, Error, Result, SqliteStore};
use crate::forge::{
    db_number, issue_taken, lease_lost, op_text, parse_op, project_forge, result_text, LinkRow,
    NewForgeOp, OutboxEntry, OutboxRow, ProjectForge,
};

impl SqliteStore {
    pub(crate) async fn link_project_forge(
        &self,
        project: ProjectId,
        kind: ForgeKind,
        repo: String,
        now: Timestamp,
    ) -> crate::Result<ProjectForge> {
        self.call(move |conn| {
            conn.prepare_cached(sql!("forge/upsert_project_forge"))?
                .execute(params![project.0, kind.as_str(), repo, now.0])?;
            Ok(project_forge(project.0, kind.as_str(), &repo, now.0)?)
        })
        .await
    }

    pub(crate) async fn project_forges(&self) -> crate::Result<Vec<ProjectForge>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("forge/select_project_forges"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(p, k, r, at)| Ok(project_forge(p, &k, &r, at)?))
                .collect()
        })
        .await
    }

    pub(crate) async fn forge_link(&self, task: TaskId) -> crate::Result<Option<ForgeLink>> {
        self.call(move |conn| link_of(conn, task)).await
    }

    pub(crate) async fn task_of_issue(
        &self,
        project: ProjectId,
        repo: String,
        issue: u64,
    ) -> crate::Result<Option<TaskId>> {
        self.call(move |conn| task_of_issue(conn, project.0, &repo, issue))
            .await
    }

    pub(crate) async fn linked_numbers(
        &self,
        project: ProjectId,
    ) -> crate::Result<Vec<(TaskId, Option<u64>, Option<u64>)>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("forge/select_linked_numbers"))?;
            let rows = stmt
                .query_map([project.0], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .map(|(task, issue, pull)| {
                    let number = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
                    (TaskId(task), number(issue), number(pull))
                })
                .collect())
        })
        .await
    }

    pub(crate) async fn task_of_pull(
        &self,
        project: ProjectId,
        repo: String,
        pull: u64,
    ) -> crate::Result<Option<TaskId>> {
        self.call(move |conn| {
            let number = db_number(pull, "pull request")?;
            let task: Option<i64> = conn
                .prepare_cached(sql!("forge/select_task_of_pull"))?
                .query_row(params![project.0, repo, number], |r| r.get(0))
                .optional()?;
            Ok(task.map(TaskId))
        })
        .await
    }

    pub(crate) async fn link_task_issue(
        &self,
        task: TaskId,
        repo: String,
        issue: u64,
        now: Timestamp,
    ) -> crate::Result<()> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let project: Option<i64> = tx
                .prepare_cached(sql!("forge/select_task_project"))?
                .query_row([task.0], |r| r.get(0))
                .optional()?;
            let Some(project) = project else {
                return Err(crate::StoreError::TaskNotFound(task).into());
            };
            match task_of_issue(&tx, project, &repo, issue)? {
                Some(holder) if holder == task => return Ok(()),
                Some(holder) => return Err(issue_taken(&repo, issue, Some(holder.0)).into()),
                None => {}
            }
            ensure_link(&tx, task, &repo, now)?;
            let number = db_number(issue, "issue")?;
            let set = tx
                .prepare_cached(sql!("forge/set_link_issue"))?
                .execute(params![task.0, number, now.0])?;
            if set == 0 {
                return Err(issue_taken(&repo, issue, None).into());
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn record_forge_push(
        &self,
        task: TaskId,
        repo: String,
        branch: String,
        commit: String,
        now: Timestamp,
    ) -> crate::Result<()> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            ensure_link(&tx, task, &repo, now)?;
            tx.prepare_cached(sql!("forge/set_link_push"))?
                .execute(params![task.0, branch, commit, now.0])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn enqueue_forge_ops(
        &self,
        ops: Vec<NewForgeOp>,
        now: Timestamp,
    ) -> crate::Result<u64> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let inserted = insert_ops(&tx, &ops, now)?;
            tx.commit()?;
            Ok(inserted)
        })
        .await
    }

    pub(crate) async fn claim_forge_ops(
        &self,
        owner: String,
        lease_ms: i64,
        limit: u32,
        now: Timestamp,
    ) -> crate::Result<Vec<OutboxEntry>> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let rows = {
                let mut stmt = tx.prepare_cached(sql!("forge/claim_ops"))?;
                let rows = stmt
                    .query_map(
                        params![owner, now.0, lease_ms, i64::from(limit)],
                        outbox_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows
            };
            tx.commit()?;
            let mut entries = rows
                .into_iter()
                .map(|row| Ok(row.into_entry()?))
                .collect::<Result<Vec<_>>>()?;
            entries.sort_by_key(|e| e.id);
            Ok(entries)
        })
        .await
    }

    pub(crate) async fn finish_forge_op(
        &self,
        id: i64,
        owner: String,
        result: ForgeResult,
        follow_ups: Vec<NewForgeOp>,
        now: Timestamp,
    ) -> crate::Result<()> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let text = result_text(&result)?;
            let finished: Option<(i64, Option<i64>, String)> = tx
                .prepare_cached(sql!("forge/finish_op"))?
                .query_row(params![id, owner, text, now.0], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((project, _task, op)) = finished else {
                return Err(lease_lost(id, op_state(&tx, id)?).into());
            };
            let op = parse_op(&op, id)?;
            if let Some((task, update)) = op.link_update(&result) {
                let repo: Option<String> = tx
                    .prepare_cached(sql!("forge/select_project_repo"))?
                    .query_row([project], |r| r.get(0))
                    .optional()?;
                let repo = repo.unwrap_or_default();
                ensure_link(&tx, task, &repo, now)?;
                apply_update(&tx, task, &repo, update, now)?;
            }
            insert_ops(&tx, &follow_ups, now)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn renew_forge_leases(
        &self,
        owner: String,
        lease_ms: i64,
        now: Timestamp,
    ) -> crate::Result<u64> {
        self.call(move |conn| {
            let renewed = conn
                .prepare_cached(sql!("forge/renew_leases"))?
                .execute(params![owner, now.0, lease_ms])?;
            Ok(renewed as u64)
        })
        .await
    }

    pub(crate) async fn fail_forge_op(
        &self,
        id: i64,
        owner: String,
        error: String,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> crate::Result<()> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let changed = tx.prepare_cached(sql!("forge/fail_op"))?.execute(params![
                id,
                owner,
                error,
                retry_at.map(|t| t.0),
                now.0
            ])?;
            if changed == 0 {
                return Err(lease_lost(id, op_state(&tx, id)?).into());
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn forge_ops(&self, task: Option<TaskId>) -> crate::Result<Vec<OutboxEntry>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("forge/select_ops"))?;
            let rows = stmt
                .query_map(params![task.map(|t| t.0)], outbox_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(|row| Ok(row.into_entry()?)).collect()
        })
        .await
    }

    pub(crate) async fn last_forge_event(&self) -> crate::Result<i64> {
        self.call(|conn| {
            Ok(conn
                .prepare_cached(sql!("forge/select_last_event"))?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }
}

/// Store ops in the outbox inside `conn`'s transaction; a stored key is left as it is.
pub(super) fn insert_ops(conn: &Connection, ops: &[NewForgeOp], now: Timestamp) -> Result<u64> {
    let mut inserted = 0;
    for new in ops {
        let text = op_text(&new.op.op)?;
        inserted += conn
            .prepare_cached(sql!("forge/insert_op"))?
            .execute(params![
                new.op.key,
                new.project.0,
                new.task.map(|t| t.0),
                new.event,
                text,
                now.0,
            ])? as u64;
    }
    Ok(inserted)
}

fn outbox_row(r: &SqlRow<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        key: r.get(1)?,
        project: r.get(2)?,
        task: r.get(3)?,
        event: r.get(4)?,
        op: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_at: r.get(8)?,
        last_error: r.get(9)?,
        result: r.get(10)?,
        created_at: r.get(11)?,
        lease_owner: r.get(12)?,
    })
}

fn op_state(conn: &Connection, id: i64) -> Result<Option<(String, Option<String>)>> {
    Ok(conn
        .prepare_cached(sql!("forge/select_op_state"))?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

fn link_of(conn: &Connection, task: TaskId) -> Result<Option<ForgeLink>> {
    let row = conn
        .prepare_cached(sql!("forge/select_task_link"))?
        .query_row([task.0], |r| {
            Ok(LinkRow {
                repo: r.get(0)?,
                issue: r.get(1)?,
                pr_number: r.get(2)?,
                pr_url: r.get(3)?,
                head_branch: r.get(4)?,
                pushed_commit: r.get(5)?,
                marker_comment_id: r.get(6)?,
            })
        })
        .optional()?;
    Ok(row.map(LinkRow::into_link))
}

fn task_of_issue(
    conn: &Connection,
    project: i64,
    repo: &str,
    issue: u64,
) -> Result<Option<TaskId>> {
    let number = db_number(issue, "issue")?;
    let task: Option<i64> = conn
        .prepare_cached(sql!("forge/select_task_of_issue"))?
        .query_row(params![project, repo, number], |r| r.get(0))
        .optional()?;
    Ok(task.map(TaskId))
}

/// The task's link row, made if it has none (a missing task is refused).
fn ensure_link(conn: &Connection, task: TaskId, repo: &str, now: Timestamp) -> Result<()> {
    conn.prepare_cached(sql!("forge/insert_task_link"))?
        .execute(params![task.0, repo, now.0])?;
    if link_of(conn, task)?.is_none() {
        return Err(Error::Store(crate::StoreError::TaskNotFound(task)));
    }
    Ok(())
}

fn apply_update(
    conn: &Connection,
    task: TaskId,
    repo: &str,
    update: LinkUpdate,
    now: Timestamp,
) -> Result<()> {
    match update {
        LinkUpdate::Issue { number } => {
            if let Some(holder) = task_of_issue(conn, link_project(conn, task)?, repo, number)? {
                if holder != task {
                    return Err(issue_taken(repo, number, Some(holder.0)).into());
                }
            }
            conn.prepare_cached(sql!("forge/set_link_issue"))?
                .execute(params![task.0, db_number(number, "issue")?, now.0])?;
        }
        LinkUpdate::Pull { number, url, head } => {
            conn.prepare_cached(sql!("forge/set_link_pull"))?
                .execute(params![
                    task.0,
                    db_number(number, "pull request")?,
                    url,
                    head,
                    now.0
                ])?;
        }
        LinkUpdate::MarkerComment { id } => {
            conn.prepare_cached(sql!("forge/set_link_marker"))?
                .execute(params![task.0, db_number(id, "comment")?, now.0])?;
        }
    }
    Ok(())
}

fn link_project(conn: &Connection, task: TaskId) -> Result<i64> {
    Ok(conn
        .prepare_cached(sql!("forge/select_link_project"))?
        .query_row([task.0], |r| r.get(0))?)
}
