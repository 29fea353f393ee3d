//! Reads: tasks, runs, events, counts, and the consistency check behind `orch doctor`.

use std::collections::BTreeMap;

use orch_core::{Event, Run, RunId, Status, Task, TaskId, WorkflowId};

use super::apply::{dependencies, load_run, load_task};
use super::rows::{event_from_row, event_row, run_from_row, task_from_row};
use super::{PgStore, Result, Tx};
use crate::doctor::{needs_dependencies, Snapshot};
use crate::rows::parse;
use crate::{FeedEvent, Problem, TaskFilter};

impl PgStore {
    pub(crate) async fn task(&self, task: TaskId) -> crate::Result<Task> {
        read!(self, |tx| async { Ok(Ok(load_task(&tx, task).await?)) })
    }

    pub(crate) async fn children(&self, task: TaskId) -> crate::Result<Vec<Task>> {
        read!(self, |tx| async {
            let mut children = Vec::new();
            for child in super::apply::children(&tx, task).await? {
                children.push(load_task(&tx, child.id).await?);
            }
            Ok(Ok(children))
        })
    }

    pub(crate) async fn tasks(&self, filter: &TaskFilter) -> crate::Result<Vec<Task>> {
        read!(self, |tx| async {
            // Two statements, as on SQLite (where only a literal direction walks the index).
            let sql = if filter.newest_first {
                sql!("list_tasks_newest")
            } else {
                sql!("list_tasks")
            };
            let rows = tx
                .query(
                    sql,
                    &[
                        &filter.status.map(Status::as_str),
                        &filter.project.map(|p| p.0),
                        &filter.workflow.map(|w| w.0),
                        &filter.limit.map(i64::from),
                        &filter.label.as_deref(),
                    ],
                )
                .await?;
            Ok(Ok(rows.iter().map(task_from_row).collect::<Result<_>>()?))
        })
    }

    pub(crate) async fn run(&self, run: RunId) -> crate::Result<Run> {
        read!(self, |tx| async { Ok(Ok(load_run(&tx, run).await?)) })
    }

    pub(crate) async fn runs(&self, task: TaskId) -> crate::Result<Vec<Run>> {
        read!(self, |tx| async {
            let rows = tx.query(sql!("select_runs_of_task"), &[&task.0]).await?;
            Ok(Ok(rows.iter().map(run_from_row).collect::<Result<_>>()?))
        })
    }

    pub(crate) async fn events(&self, task: TaskId) -> crate::Result<Vec<Event>> {
        read!(self, |tx| async {
            let rows = tx.query(sql!("select_events_of_task"), &[&task.0]).await?;
            Ok(Ok(rows
                .iter()
                .map(event_from_row)
                .collect::<Result<_>>()?))
        })
    }

    pub(crate) async fn events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> crate::Result<Vec<FeedEvent>> {
        read!(self, |tx| async {
            let rows = tx
                .query(sql!("select_events_after"), &[&after, &i64::from(limit)])
                .await?;
            let events = rows
                .iter()
                .map(|row| {
                    Ok(FeedEvent {
                        event: event_from_row(row)?,
                        workflow: row
                            .try_get::<_, Option<i64>>("workflow_id")?
                            .map(WorkflowId),
                    })
                })
                .collect::<Result<_>>()?;
            Ok(Ok(events))
        })
    }

    pub(crate) async fn last_event_id(&self) -> crate::Result<i64> {
        read!(self, |tx| async {
            Ok(Ok(tx
                .query_one(sql!("select_last_event_id"), &[])
                .await?
                .try_get(0)?))
        })
    }

    pub(crate) async fn status_counts(&self) -> crate::Result<BTreeMap<Status, u64>> {
        read!(self, |tx| async {
            let mut counts = BTreeMap::new();
            for row in tx.query(sql!("count_by_status"), &[]).await? {
                let n: i64 = row.try_get(1)?;
                counts.insert(parse(row.try_get(0)?)?, u64::try_from(n).unwrap_or(0));
            }
            Ok(Ok(counts))
        })
    }

    pub(crate) async fn check_consistency(&self) -> crate::Result<Vec<Problem>> {
        transact!(self, |tx| async {
            // One snapshot for events, tasks and runs.
            tx.execute(sql!("set_repeatable_read"), &[]).await?;
            Ok(Ok(check_consistency(&tx).await?))
        })
    }
}

async fn check_consistency(tx: &Tx<'_>) -> Result<Vec<Problem>> {
    let mut snapshot = Snapshot {
        statuses: tx
            .query(sql!("select_task_statuses"), &[])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_>>()?,
        ..Snapshot::default()
    };
    for row in tx.query(sql!("select_all_events"), &[]).await? {
        snapshot.add_event(event_row(&row)?);
    }
    for task in tx.ids(sql!("select_active_run_tasks"), &[]).await? {
        *snapshot.active_runs.entry(task).or_default() += 1;
    }
    snapshot.open_requests = tx
        .ids(sql!("select_open_info_request_tasks"), &[])
        .await?
        .into_iter()
        .collect();
    let need: Vec<i64> = snapshot
        .statuses
        .iter()
        .filter(|(_, status)| needs_dependencies(status))
        .map(|(id, _)| *id)
        .collect();
    for id in need {
        let deps = dependencies(tx, TaskId(id)).await?;
        snapshot.dependencies.insert(id, deps);
        let children = super::apply::children(tx, TaskId(id)).await?;
        snapshot.children.insert(id, children);
    }
    Ok(snapshot.problems())
}
