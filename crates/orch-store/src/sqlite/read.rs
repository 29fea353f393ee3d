//! Reads: tasks, runs, events, counts, and the consistency check behind `orch doctor`.

use std::collections::BTreeMap;

use orch_core::{Event, Run, RunId, Status, Task, TaskId, WorkflowId};
use rusqlite::{params, Connection, TransactionBehavior};

use super::apply::{dependencies, load_run, load_task, parse_status};
use super::rows::{event_from_row, event_row, run_from_row, task_from_row};
use super::{query_ids, Result, SqliteStore};
use crate::doctor::{needs_dependencies, Snapshot};
use crate::{FeedEvent, Problem, TaskFilter};

impl SqliteStore {
    pub(crate) async fn task(&self, task: TaskId) -> crate::Result<Task> {
        self.call(move |conn| load_task(conn, task)).await
    }

    pub(crate) async fn children(&self, task: TaskId) -> crate::Result<Vec<Task>> {
        self.call(move |conn| {
            super::apply::children(conn, task)?
                .iter()
                .map(|child| load_task(conn, child.id))
                .collect()
        })
        .await
    }

    pub(crate) async fn tasks(&self, filter: &TaskFilter) -> crate::Result<Vec<Task>> {
        let filter = filter.clone();
        self.call(move |conn| {
            // Two statements rather than a parameter for the direction: only a literal
            // `ORDER BY id DESC` lets SQLite walk the primary key backwards and stop at the
            // limit (the first page of 10,000 tasks without sorting them).
            let mut stmt = if filter.newest_first {
                conn.prepare_cached(sql!("list_tasks_newest"))?
            } else {
                conn.prepare_cached(sql!("list_tasks"))?
            };
            let rows = stmt.query_map(
                params![
                    filter.status.map(Status::as_str),
                    filter.project.map(|p| p.0),
                    filter.workflow.map(|w| w.0),
                    filter.limit.map_or(-1, i64::from),
                    filter.label.as_deref(),
                ],
                task_from_row,
            )?;
            let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows.into_iter().collect::<crate::Result<_>>()?)
        })
        .await
    }

    pub(crate) async fn run(&self, run: RunId) -> crate::Result<Run> {
        self.call(move |conn| load_run(conn, run)).await
    }

    pub(crate) async fn runs(&self, task: TaskId) -> crate::Result<Vec<Run>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_runs_of_task"))?;
            let rows = stmt
                .query_map([task.0], run_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows.into_iter().collect::<crate::Result<_>>()?)
        })
        .await
    }

    pub(crate) async fn events(&self, task: TaskId) -> crate::Result<Vec<Event>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_events_of_task"))?;
            let rows = stmt
                .query_map([task.0], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows.into_iter().collect::<crate::Result<_>>()?)
        })
        .await
    }

    pub(crate) async fn events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> crate::Result<Vec<FeedEvent>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_events_after"))?;
            let rows = stmt
                .query_map(params![after, limit], |row| {
                    let workflow = row.get::<_, Option<i64>>("workflow_id")?.map(WorkflowId);
                    Ok(event_from_row(row)?.map(|event| FeedEvent { event, workflow }))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows.into_iter().collect::<crate::Result<_>>()?)
        })
        .await
    }

    pub(crate) async fn last_event_id(&self) -> crate::Result<i64> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("select_last_event_id"))?;
            Ok(stmt.query_row([], |row| row.get::<_, i64>(0))?)
        })
        .await
    }

    pub(crate) async fn status_counts(&self) -> crate::Result<BTreeMap<Status, u64>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("count_by_status"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut counts = BTreeMap::new();
            for (status, n) in rows {
                counts.insert(parse_status(&status)?, u64::try_from(n).unwrap_or(0));
            }
            Ok(counts)
        })
        .await
    }

    pub(crate) async fn check_consistency(&self) -> crate::Result<Vec<Problem>> {
        self.call(|conn| {
            // One read transaction, so events, tasks and runs are one snapshot.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let problems = check_consistency(&tx)?;
            tx.rollback()?;
            Ok(problems)
        })
        .await
    }
}

fn check_consistency(conn: &Connection) -> Result<Vec<Problem>> {
    let mut snapshot = Snapshot {
        statuses: conn
            .prepare_cached(sql!("select_task_statuses"))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?,
        ..Snapshot::default()
    };
    {
        let mut stmt = conn.prepare_cached(sql!("select_all_events"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            snapshot.add_event(event_row(row)?);
        }
    }
    for task in query_ids(conn, sql!("select_active_run_tasks"), 0)? {
        *snapshot.active_runs.entry(task).or_default() += 1;
    }
    snapshot.open_requests = query_ids(conn, sql!("select_open_info_request_tasks"), 0)?
        .into_iter()
        .collect();
    for (id, status) in &snapshot.statuses {
        if needs_dependencies(status) {
            let deps = dependencies(conn, TaskId(*id))?;
            snapshot.dependencies.insert(*id, deps);
            let children = super::apply::children(conn, TaskId(*id))?;
            snapshot.children.insert(*id, children);
        }
    }
    Ok(snapshot.problems())
}
