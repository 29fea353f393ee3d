//! Registering projects and creating tasks (once per webhook delivery, when asked).

use std::collections::BTreeSet;

use orch_core::{decide, Status, TaskId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use super::apply::{carry_out, dependencies, task_facts};
use super::rows::project_from_row;
use super::{immediate, OwnedOp, Result, SqliteStore};
use crate::{Delivery, Op, Project, StoreError, Submission, SubmittedOnce};

impl SqliteStore {
    pub(crate) async fn ensure_project(
        &self,
        path: &str,
        now: Timestamp,
    ) -> crate::Result<Project> {
        let path = path.to_owned();
        self.call(move |conn| {
            let tx = immediate(conn)?;
            if let Some(project) = tx
                .prepare_cached(sql!("select_project_by_path"))?
                .query_row([&path], project_from_row)
                .optional()?
            {
                return Ok(project);
            }
            let taken: BTreeSet<String> = tx
                .prepare_cached(sql!("select_project_names"))?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let name = decide::project_name(&path, &taken);
            let project = tx
                .prepare_cached(sql!("insert_project"))?
                .query_row(params![name, path, now.0], project_from_row)?;
            tx.commit()?;
            Ok(project)
        })
        .await
    }

    pub(crate) async fn projects(&self) -> crate::Result<Vec<Project>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("select_projects"))?;
            let rows = stmt.query_map([], project_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(crate) async fn submit(
        &self,
        submission: &Submission,
        op: Op<'_>,
    ) -> crate::Result<SubmittedOnce> {
        let submission = self.secrets.prepared(submission)?;
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                let (tasks, existing) = submit(&tx, &submission, &op)?;
                tx.commit()?;
                Ok(SubmittedOnce {
                    tasks,
                    created: true,
                    existing,
                })
            })
            .await;
        self.woke(result)
    }

    pub(crate) async fn submit_once(
        &self,
        deliveries: &[Delivery],
        submission: &Submission,
        op: Op<'_>,
    ) -> crate::Result<SubmittedOnce> {
        let submission = self.secrets.prepared_once(deliveries, submission)?;
        let deliveries = deliveries.to_vec();

        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                // One write transaction: two copies of a delivery arriving at once serialize on the
                // write lock, and the second sees the first's record.
                let tx = immediate(conn)?;
                let mut earlier = None;
                for delivery in &deliveries {
                    earlier = tx
                        .prepare_cached(sql!("select_webhook_delivery"))?
                        .query_row(params![delivery.source, delivery.id], |r| {
                            r.get::<_, i64>(0)
                        })
                        .optional()?;
                    if earlier.is_some() {
                        break;
                    }
                }
                let (tasks, created, existing) = match earlier {
                    Some(task) => (vec![TaskId(task)], false, Vec::new()),
                    None => {
                        let (tasks, existing) = submit(&tx, &submission, &op)?;
                        (tasks, true, existing)
                    }
                };
                // Every id is recorded (a new delivery of a known issue too), so each later replay
                // answers with the same task.
                for delivery in &deliveries {
                    tx.prepare_cached(sql!("insert_webhook_delivery"))?
                        .execute(params![delivery.source, delivery.id, tasks[0].0, op.now.0])?;
                }
                tx.commit()?;
                Ok(SubmittedOnce {
                    tasks,
                    created,
                    existing,
                })
            })
            .await;
        self.woke(result)
    }
}

/// Create the tasks; returns their ids, and those of them that existed already (a live task
/// held the unique key; the write lock of `BEGIN IMMEDIATE` makes the look-up and the insert one
/// step, and the partial unique index refuses a second live task whatever happens).
pub(super) fn submit(
    conn: &Connection,
    submission: &Submission,
    op: &OwnedOp,
) -> Result<(Vec<TaskId>, Vec<TaskId>)> {
    let workflow_id: Option<i64> = match &submission.workflow {
        Some((name, source)) => Some(
            conn.prepare_cached(sql!("insert_workflow"))?
                .query_row(params![submission.project.0, name, source, op.now.0], |r| {
                    r.get(0)
                })?,
        ),
        None => None,
    };
    let mut ids: Vec<TaskId> = Vec::with_capacity(submission.tasks.len());
    let mut existing = Vec::new();
    for task in &submission.tasks {
        if let Some(key) = &task.spec.unique_key {
            let live: Option<i64> = conn
                .prepare_cached(sql!("select_live_task_by_unique_key"))?
                .query_row(params![submission.project.0, key], |r| r.get(0))
                .optional()?;
            if let Some(live) = live {
                ids.push(TaskId(live));
                existing.push(TaskId(live));
                continue;
            }
        }
        let parent = match (task.parent, task.parent_in_batch) {
            (Some(parent), _) => Some(parent),
            (None, Some(index)) => Some(ids[index]),
            (None, None) => None,
        };
        if let Some(parent) = parent {
            let facts = task_facts(conn, parent).map_err(|e| match e {
                super::Error::Store(StoreError::TaskNotFound(_)) => StoreError::Invalid {
                    field: "parent".into(),
                    reason: format!(
                        "task {parent} does not exist; give the id of an existing task"
                    ),
                }
                .into(),
                other => other,
            })?;
            decide::adopt(&facts)?;
        }
        let mut deps: Vec<TaskId> = task.needs_in_batch.iter().map(|&i| ids[i]).collect();
        for existing in &task.needs_existing {
            if !deps.contains(existing) {
                deps.push(*existing);
            }
        }
        let spec_json = serde_json::to_string(&task.spec)
            .map_err(|e| StoreError::Corrupt(format!("task spec does not serialize: {e}")))?;
        let id: i64 = conn.prepare_cached(sql!("insert_task"))?.query_row(
            params![
                submission.project.0,
                workflow_id,
                parent.map(|p| p.0),
                task.spec.key.as_deref(),
                task.spec.title.as_str(),
                task.spec.priority,
                spec_json,
                // Inserted as waiting; the create event records where it really starts.
                Status::Waiting.as_str(),
                Option::<&str>::None,
                i64::from(task.spec.retry.max_attempts),
                op.now.0,
                task.spec.unique_key.as_deref(),
            ],
            |r| r.get(0),
        )?;
        let id = TaskId(id);
        for dep in &deps {
            conn.prepare_cached(sql!("insert_task_dep"))?
                .execute(params![id.0, dep.0])
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                    {
                        StoreError::Invalid {
                            field: "needs".into(),
                            reason: format!("task {dep} does not exist"),
                        }
                        .into()
                    }
                    other => super::Error::from(other),
                })?;
        }
        let plan = decide::create(&task_facts(conn, id)?, &dependencies(conn, id)?)?;
        carry_out(conn, &plan, op)?;
        ids.push(id);
    }
    Ok((ids, existing))
}
