//! Reads: tasks, runs, events, counts, and the consistency check behind `orch doctor`.

use std::collections::BTreeMap;
use std::str::FromStr;

use orch_core::{Event, Run, RunId, Status, Task, TaskId, WorkflowId};

use super::apply::{dependencies, load_run, load_task};
use super::rows::{event_from_row, event_row, run_from_row, task_from_row};
use super::{PgStore, Result, Tx};
use crate::rows::parse;
use crate::{FeedEvent, Problem, TaskFilter};

impl PgStore {
    pub(crate) async fn task(&self, task: TaskId) -> crate::Result<Task> {
        read!(self, |tx| async { Ok(Ok(load_task(&tx, task).await?)) })
    }

    pub(crate) async fn tasks(&self, filter: &TaskFilter) -> crate::Result<Vec<Task>> {
        read!(self, |tx| async {
            let rows = tx
                .query(
                    sql!("list_tasks"),
                    &[
                        &filter.status.map(Status::as_str),
                        &filter.project.map(|p| p.0),
                        &filter.workflow.map(|w| w.0),
                        &filter.limit.map(i64::from),
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
    let mut problems = Vec::new();
    let stored: Vec<(i64, String)> = tx
        .query(sql!("select_task_statuses"), &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
    let mut by_task: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    for row in tx.query(sql!("select_all_events"), &[]).await? {
        let event = event_row(&row)?;
        let task = event.task_id;
        match event.into_event() {
            Ok(event) => by_task.entry(task).or_default().push(event),
            Err(e) => problems.push(Problem {
                task: TaskId(task),
                message: format!("unreadable event: {e}"),
            }),
        }
    }
    let mut active_by_task: BTreeMap<i64, usize> = BTreeMap::new();
    for task in tx.ids(sql!("select_active_run_tasks"), &[]).await? {
        *active_by_task.entry(task).or_default() += 1;
    }
    for (id, status_text) in stored {
        let task = TaskId(id);
        let Ok(status) = Status::from_str(&status_text) else {
            problems.push(Problem {
                task,
                message: format!("stored status `{status_text}` is not a status"),
            });
            continue;
        };
        let events = by_task.remove(&id).unwrap_or_default();
        let active_runs = active_by_task.get(&id).copied().unwrap_or(0);
        let deps = if matches!(status, Status::Waiting | Status::Blocked | Status::Queued) {
            Some(dependencies(tx, task).await?)
        } else {
            None
        };
        for message in orch_core::replay::check_task(status, &events, active_runs, deps.as_deref())
        {
            problems.push(Problem { task, message });
        }
    }
    for (task, _) in by_task {
        problems.push(Problem {
            task: TaskId(task),
            message: "events exist for a task that does not".into(),
        });
    }
    Ok(problems)
}
