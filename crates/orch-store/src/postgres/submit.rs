//! Registering projects and creating tasks (once per webhook delivery, when asked).

use std::collections::BTreeSet;

use orch_core::{decide, Status, TaskId, Timestamp};
use tokio_postgres::error::SqlState;

use super::apply::{carry_out, locked_dependencies, task_facts};
use super::rows::project_from_row;
use super::{Error, PgStore, Result, Tx};
use crate::{Delivery, Op, Project, StoreError, Submission, SubmittedOnce};

/// Serializes project registration across servers (two new projects must not take one name).
const PROJECT_LOCK: i64 = 0x6f72_6370;

impl PgStore {
    pub(crate) async fn ensure_project(
        &self,
        path: &str,
        now: Timestamp,
    ) -> crate::Result<Project> {
        transact!(self, |tx| async {
            tx.execute(sql!("lock_projects"), &[&PROJECT_LOCK]).await?;
            if let Some(row) = tx
                .query_opt(sql!("select_project_by_path"), &[&path])
                .await?
            {
                return Ok(Ok(project_from_row(&row)?));
            }
            let taken: BTreeSet<String> = tx
                .query(sql!("select_project_names"), &[])
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
            let name = decide::project_name(path, &taken);
            let row = tx
                .query_one(sql!("insert_project"), &[&name, &path, &now.0])
                .await?;
            Ok(Ok(project_from_row(&row)?))
        })
    }

    pub(crate) async fn projects(&self) -> crate::Result<Vec<Project>> {
        read!(self, |tx| async {
            Ok(Ok(tx
                .query(sql!("select_projects"), &[])
                .await?
                .iter()
                .map(project_from_row)
                .collect::<Result<_>>()?))
        })
    }

    pub(crate) async fn submit(
        &self,
        submission: &Submission,
        op: Op<'_>,
    ) -> crate::Result<SubmittedOnce> {
        let submission = self.secrets.prepared(submission)?;
        transact!(self, |tx| async {
            let (tasks, existing) = submit(&tx, &submission, &op).await?;
            Ok(Ok(SubmittedOnce {
                tasks,
                created: true,
                existing,
            }))
        })
    }

    pub(crate) async fn submit_once(
        &self,
        deliveries: &[Delivery],
        submission: &Submission,
        op: Op<'_>,
    ) -> crate::Result<SubmittedOnce> {
        let submission = self.secrets.prepared_once(deliveries, submission)?;

        transact!(self, |tx| async {
            // Two copies of a delivery arriving at once (on two servers too) serialize on a
            // lock per delivery id, and the second sees the first's record.
            for delivery in deliveries {
                tx.execute(sql!("lock_delivery"), &[&delivery.source, &delivery.id])
                    .await?;
            }
            let mut earlier = None;
            for delivery in deliveries {
                earlier = tx
                    .query_opt(
                        sql!("select_webhook_delivery"),
                        &[&delivery.source, &delivery.id],
                    )
                    .await?;
                if earlier.is_some() {
                    break;
                }
            }
            let (tasks, created, existing) = match earlier {
                Some(row) => (vec![TaskId(row.try_get(0)?)], false, Vec::new()),
                None => {
                    let (tasks, existing) = submit(&tx, &submission, &op).await?;
                    (tasks, true, existing)
                }
            };
            // Every id is recorded (a new delivery of a known issue too), so each later replay
            // answers with the same task.
            for delivery in deliveries {
                tx.execute(
                    sql!("insert_webhook_delivery"),
                    &[&delivery.source, &delivery.id, &tasks[0].0, &op.now.0],
                )
                .await?;
            }
            Ok(Ok(SubmittedOnce {
                tasks,
                created,
                existing,
            }))
        })
    }
}

/// Create the tasks; returns their ids, and those of them that existed already (a live task
/// held the unique key). Two submissions of one key serialize on an advisory lock, so the second
/// finds the first's task; the partial unique index refuses a second live task whatever happens.
pub(super) async fn submit(
    tx: &Tx<'_>,
    submission: &Submission,
    op: &Op<'_>,
) -> Result<(Vec<TaskId>, Vec<TaskId>)> {
    let workflow_id: Option<i64> = match &submission.workflow {
        Some((name, source)) => Some(
            tx.query_one(
                sql!("insert_workflow"),
                &[&submission.project.0, name, source, &op.now.0],
            )
            .await?
            .try_get(0)?,
        ),
        None => None,
    };
    let mut ids: Vec<TaskId> = Vec::with_capacity(submission.tasks.len());
    let mut existing = Vec::new();
    for task in &submission.tasks {
        if let Some(key) = &task.spec.unique_key {
            tx.execute(sql!("lock_unique_key"), &[&submission.project.0, key])
                .await?;
            let live = tx
                .query_opt(
                    sql!("select_live_task_by_unique_key"),
                    &[&submission.project.0, key],
                )
                .await?;
            if let Some(row) = live {
                let live = TaskId(row.try_get(0)?);
                ids.push(live);
                existing.push(live);
                continue;
            }
        }
        let parent = match (task.parent, task.parent_in_batch) {
            (Some(parent), _) => Some(parent),
            (None, Some(index)) => Some(ids[index]),
            (None, None) => None,
        };
        if let Some(parent) = parent {
            // Locks the parent's row: it cannot finish while its new child is created.
            let facts = task_facts(tx, parent).await.map_err(|e| match e {
                Error::Store(StoreError::TaskNotFound(_)) => StoreError::Invalid {
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
        let id: i64 = tx
            .query_one(
                sql!("insert_task"),
                &[
                    &submission.project.0,
                    &workflow_id,
                    &parent.map(|p| p.0),
                    &task.spec.key.as_deref(),
                    &task.spec.title.as_str(),
                    &i64::from(task.spec.priority),
                    &spec_json,
                    // Inserted as waiting; the create event records where it really starts.
                    &Status::Waiting.as_str(),
                    &Option::<&str>::None,
                    &i64::from(task.spec.retry.max_attempts),
                    &op.now.0,
                    &task.spec.unique_key.as_deref(),
                ],
            )
            .await?
            .try_get(0)?;
        let id = TaskId(id);
        for dep in &deps {
            tx.execute(sql!("insert_task_dep"), &[&id.0, &dep.0])
                .await
                .map_err(|e| match e {
                    Error::Pg(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                        StoreError::Invalid {
                            field: "needs".into(),
                            reason: format!("task {dep} does not exist"),
                        }
                        .into()
                    }
                    other => other,
                })?;
        }
        let plan = decide::create(
            &task_facts(tx, id).await?,
            &locked_dependencies(tx, id).await?,
        )?;
        carry_out(tx, &plan, op).await?;
        ids.push(id);
    }
    Ok((ids, existing))
}
