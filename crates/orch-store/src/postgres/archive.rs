//! Export and import of every row (`crate::archive`) on PostgreSQL: a REPEATABLE READ snapshot
//! read table by table in primary-key order, and inserts with ids preserved into an empty
//! database in one transaction, after which each identity sequence is moved past the largest
//! id (PostgreSQL, unlike SQLite, does not derive the next id from the rows).
//!
//! Neither runs through `transact!`: rows already handed to the archive writer, or taken from
//! the reader, cannot be sent again, so a failure is reported rather than retried.

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_postgres::Row as PgRow;

use super::{Error, PgStore, Result, Tx};
use crate::archive::{
    AgentUsageRow, EventRow, ForgeOutboxRow, ForgeReactionRow, JobFiringRow, JobRow,
    ProjectForgeRow, ProjectRow, ReviewRow, Row, RowCounts, RunRow, Table, TaskDepRow,
    TaskForgeLinkRow, TaskReplyRow, TaskRow, WebhookDeliveryRow, WorkflowRow,
};
use crate::StoreError;

impl PgStore {
    pub(crate) async fn is_empty(&self) -> crate::Result<bool> {
        read!(self, |tx| async { Ok(Ok(!any_row(&tx).await?)) })
    }

    pub(crate) async fn export_archive(&self, sink: mpsc::Sender<Row>) -> crate::Result<RowCounts> {
        let work = async {
            let mut client = self.client().await?;
            let tx = Tx::begin(&mut client).await?;
            // Every table from the same snapshot.
            tx.execute(sql!("set_repeatable_read"), &[]).await?;
            let mut counts = RowCounts::new();
            for table in Table::ALL {
                let rows = tx.query(select_sql(table), &[]).await?;
                for r in &rows {
                    sink.send(read_row(table, r)?).await.map_err(|_| {
                        Error::Store(StoreError::Unavailable(
                            "the archive writer stopped before every row was read".into(),
                        ))
                    })?;
                }
                counts.insert(table, rows.len() as u64);
            }
            Ok(counts)
        };
        work.await.map_err(Error::into_store)
    }

    pub(crate) async fn import_archive(
        &self,
        mut rows: mpsc::Receiver<Row>,
        expected: RowCounts,
    ) -> crate::Result<RowCounts> {
        let work = async {
            let mut client = self.client().await?;
            let tx = Tx::begin(&mut client).await?;
            // No other writer may add rows while this one fills the database.
            tx.batch(sql!("archive/lock_tables")).await?;
            if any_row(&tx).await? {
                return Err(Error::Store(not_empty()));
            }
            let mut counts = RowCounts::new();
            while let Some(row) = rows.recv().await {
                let table = row.table();
                insert(&tx, row).await.map_err(|e| in_table(e, table))?;
                *counts.entry(table).or_default() += 1;
            }
            let mut wanted = expected;
            wanted.retain(|_, n| *n > 0);
            if counts != wanted {
                return Err(Error::Store(StoreError::Invalid {
                    field: "archive".into(),
                    reason: format!(
                        "it ended early or holds other rows than its manifest says (manifest: \
                         {wanted:?}, read: {counts:?}); nothing was imported"
                    ),
                }));
            }
            tx.batch(sql!("archive/reset_identities")).await?;
            tx.commit().await?;
            Ok(counts)
        };
        work.await.map_err(Error::into_store)
    }
}

fn not_empty() -> StoreError {
    StoreError::Invalid {
        field: "database".into(),
        reason: "the target database already holds data; import only into an empty database \
                 (a new home, or a new PostgreSQL database)"
            .into(),
    }
}

fn in_table(error: Error, table: Table) -> Error {
    match error {
        Error::Pg(e) => Error::Store(StoreError::Invalid {
            field: format!("archive table {table}"),
            reason: format!(
                "a row could not be inserted: {}; nothing was imported",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_owned())
            ),
        }),
        other => other,
    }
}

async fn any_row(tx: &Tx<'_>) -> Result<bool> {
    Ok(tx
        .query_one(sql!("archive/select_any_row"), &[])
        .await?
        .try_get(0)?)
}

fn json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::Store(StoreError::Corrupt(format!("{what} is not JSON: {e}"))))
}

fn select_sql(table: Table) -> &'static str {
    match table {
        Table::Projects => sql!("archive/select_projects"),
        Table::Workflows => sql!("archive/select_workflows"),
        Table::Tasks => sql!("archive/select_tasks"),
        Table::TaskDeps => sql!("archive/select_task_deps"),
        Table::Runs => sql!("archive/select_runs"),
        Table::Events => sql!("archive/select_events"),
        Table::AgentUsage => sql!("archive/select_agent_usage"),
        Table::TaskReplies => sql!("archive/select_task_replies"),
        Table::Reviews => sql!("archive/select_reviews"),
        Table::WebhookDeliveries => sql!("archive/select_webhook_deliveries"),
        Table::InfoRequests => sql!("archive/select_info_requests"),
        Table::InfoValues => sql!("archive/select_info_values"),
        Table::Jobs => sql!("archive/select_jobs"),
        Table::JobFirings => sql!("archive/select_job_firings"),
        Table::ProjectForges => sql!("archive/select_project_forges"),
        Table::TaskForgeLinks => sql!("archive/select_task_forge_links"),
        Table::ForgeOutbox => sql!("archive/select_forge_outbox"),
        Table::ForgeReactions => sql!("archive/select_forge_reactions"),
    }
}

fn read_row(table: Table, r: &PgRow) -> Result<Row> {
    Ok(match table {
        Table::Projects => Row::Project(ProjectRow {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            path: r.try_get(2)?,
            created_at: r.try_get(3)?,
        }),
        Table::Workflows => Row::Workflow(WorkflowRow {
            id: r.try_get(0)?,
            project_id: r.try_get(1)?,
            name: r.try_get(2)?,
            source: r.try_get(3)?,
            created_at: r.try_get(4)?,
        }),
        Table::Tasks => {
            let id: i64 = r.try_get(0)?;
            let spec: String = r.try_get(7)?;
            Row::Task(TaskRow {
                id,
                project_id: r.try_get(1)?,
                workflow_id: r.try_get(2)?,
                parent_id: r.try_get(3)?,
                key: r.try_get(4)?,
                title: r.try_get(5)?,
                priority: r.try_get(6)?,
                spec: json(&spec, &format!("the spec of task {id}"))?,
                status: r.try_get(8)?,
                status_reason: r.try_get(9)?,
                approved: r.try_get(10)?,
                attempts_used: r.try_get(11)?,
                max_attempts: r.try_get(12)?,
                run_count: r.try_get(13)?,
                not_before: r.try_get(14)?,
                created_at: r.try_get(15)?,
                updated_at: r.try_get(16)?,
                unique_key: r.try_get(17)?,
            })
        }
        Table::TaskDeps => Row::TaskDep(TaskDepRow {
            task_id: r.try_get(0)?,
            dep_id: r.try_get(1)?,
            waived: r.try_get(2)?,
        }),
        Table::Runs => Row::Run(RunRow {
            id: r.try_get(0)?,
            task_id: r.try_get(1)?,
            attempt: r.try_get(2)?,
            owner: r.try_get(3)?,
            lease_expires_at: r.try_get(4)?,
            state: r.try_get(5)?,
            started_at: r.try_get(6)?,
            ended_at: r.try_get(7)?,
            outcome: r.try_get(8)?,
            token_sha256: r.try_get::<_, Option<Vec<u8>>>(9)?.map(hex::encode),
            refusal_recorded_at: r.try_get(10)?,
            refusals_unrecorded: r.try_get(11)?,
        }),
        Table::Events => {
            let id: i64 = r.try_get(0)?;
            let data: String = r.try_get(9)?;
            Row::Event(EventRow {
                id,
                task_id: r.try_get(1)?,
                run_id: r.try_get(2)?,
                at: r.try_get(3)?,
                actor: r.try_get(4)?,
                kind: r.try_get(5)?,
                from_status: r.try_get(6)?,
                to_status: r.try_get(7)?,
                reason: r.try_get(8)?,
                data: json(&data, &format!("the data of event {id}"))?,
            })
        }
        Table::AgentUsage => Row::AgentUsage(AgentUsageRow {
            run_id: r.try_get(0)?,
            step: r.try_get(1)?,
            task_id: r.try_get(2)?,
            agent: r.try_get(3)?,
            model: r.try_get(4)?,
            session_id: r.try_get(5)?,
            input_tokens: r.try_get(6)?,
            output_tokens: r.try_get(7)?,
            cost_usd: r.try_get(8)?,
            day: r.try_get(9)?,
            recorded_at: r.try_get(10)?,
        }),
        Table::TaskReplies => Row::TaskReply(TaskReplyRow {
            id: r.try_get(0)?,
            task_id: r.try_get(1)?,
            message: r.try_get(2)?,
            agent: r.try_get(3)?,
            step: r.try_get(4)?,
            session_id: r.try_get(5)?,
            created_at: r.try_get(6)?,
            answered_run: r.try_get(7)?,
        }),
        Table::Reviews => {
            let run: i64 = r.try_get(0)?;
            let reasons: String = r.try_get(4)?;
            Row::Review(ReviewRow {
                run_id: run,
                task_id: r.try_get(1)?,
                round: r.try_get(2)?,
                verdict: r.try_get(3)?,
                reasons: json(&reasons, &format!("the reasons of the review of run {run}"))?,
                escalated: r.try_get(5)?,
                recorded_at: r.try_get(6)?,
            })
        }
        Table::WebhookDeliveries => Row::WebhookDelivery(WebhookDeliveryRow {
            source: r.try_get(0)?,
            delivery_id: r.try_get(1)?,
            task_id: r.try_get(2)?,
            received_at: r.try_get(3)?,
        }),
        Table::InfoRequests => {
            let id: i64 = r.try_get(0)?;
            let keys: String = r.try_get(4)?;
            Row::InfoRequest(crate::archive::InfoRequestRow {
                id,
                task_id: r.try_get(1)?,
                run_id: r.try_get(2)?,
                step: r.try_get(3)?,
                keys: json(&keys, &format!("the keys of info request {id}"))?,
                hint: r.try_get(5)?,
                reason: r.try_get(6)?,
                state: r.try_get(7)?,
                created_at: r.try_get(8)?,
                expires_at: r.try_get(9)?,
                closed_at: r.try_get(10)?,
                closed_by: r.try_get(11)?,
            })
        }
        Table::InfoValues => Row::InfoValue(crate::archive::InfoValueRow {
            request_id: r.try_get(0)?,
            task_id: r.try_get(1)?,
            key: r.try_get(2)?,
            secret: r.try_get(3)?,
            value: r.try_get(4)?,
        }),
        Table::Jobs => Row::Job(JobRow {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            project_id: r.try_get(2)?,
            schedule: r.try_get(3)?,
            timezone: r.try_get(4)?,
            missed: r.try_get(5)?,
            target: r.try_get(6)?,
            source: r.try_get(7)?,
            enabled: r.try_get(8)?,
            last_slot: r.try_get(9)?,
            created_at: r.try_get(10)?,
            updated_at: r.try_get(11)?,
        }),
        Table::JobFirings => Row::JobFiring(JobFiringRow {
            job_id: r.try_get(0)?,
            slot_at: r.try_get(1)?,
            kind: r.try_get(2)?,
            task_id: r.try_get(3)?,
            error: r.try_get(4)?,
            fired_at: r.try_get(5)?,
        }),
        Table::ProjectForges => Row::ProjectForge(ProjectForgeRow {
            project_id: r.try_get(0)?,
            kind: r.try_get(1)?,
            repo: r.try_get(2)?,
            linked_at: r.try_get(3)?,
        }),
        Table::ForgeReactions => Row::ForgeReaction(ForgeReactionRow {
            task_id: r.try_get(0)?,
            cause: r.try_get(1)?,
            reaction: r.try_get(2)?,
            round_kind: r.try_get(3)?,
            created_at: r.try_get(4)?,
        }),
        Table::TaskForgeLinks => Row::TaskForgeLink(TaskForgeLinkRow {
            task_id: r.try_get(0)?,
            project_id: r.try_get(1)?,
            repo: r.try_get(2)?,
            issue_number: r.try_get(3)?,
            pr_number: r.try_get(4)?,
            pr_url: r.try_get(5)?,
            head_branch: r.try_get(6)?,
            pushed_commit: r.try_get(7)?,
            marker_comment_id: r.try_get(8)?,
            updated_at: r.try_get(9)?,
        }),
        Table::ForgeOutbox => {
            let id: i64 = r.try_get(0)?;
            let op: String = r.try_get(5)?;
            let result: Option<String> = r.try_get(10)?;
            Row::ForgeOutbox(ForgeOutboxRow {
                id,
                idempotency_key: r.try_get(1)?,
                project_id: r.try_get(2)?,
                task_id: r.try_get(3)?,
                event_id: r.try_get(4)?,
                op: json(&op, &format!("forge op {id}"))?,
                state: r.try_get(6)?,
                attempts: r.try_get(7)?,
                next_attempt_at: r.try_get(8)?,
                last_error: r.try_get(9)?,
                result: result
                    .map(|text| json(&text, &format!("the result of forge op {id}")))
                    .transpose()?,
                created_at: r.try_get(11)?,
                updated_at: r.try_get(12)?,
            })
        }
    })
}

async fn insert(tx: &Tx<'_>, row: Row) -> Result<u64> {
    match row {
        Row::Project(r) => {
            tx.execute(
                sql!("archive/insert_project"),
                &[&r.id, &r.name, &r.path, &r.created_at],
            )
            .await
        }
        Row::Workflow(r) => {
            tx.execute(
                sql!("archive/insert_workflow"),
                &[&r.id, &r.project_id, &r.name, &r.source, &r.created_at],
            )
            .await
        }
        Row::Task(r) => {
            tx.execute(
                sql!("archive/insert_task"),
                &[
                    &r.id,
                    &r.project_id,
                    &r.workflow_id,
                    &r.parent_id,
                    &r.key,
                    &r.title,
                    &r.priority,
                    &r.spec.to_string(),
                    &r.status,
                    &r.status_reason,
                    &r.approved,
                    &r.attempts_used,
                    &r.max_attempts,
                    &r.run_count,
                    &r.not_before,
                    &r.created_at,
                    &r.updated_at,
                    &r.unique_key,
                ],
            )
            .await
        }
        Row::TaskDep(r) => {
            tx.execute(
                sql!("archive/insert_task_dep"),
                &[&r.task_id, &r.dep_id, &r.waived],
            )
            .await
        }
        Row::Run(r) => {
            let hash = match &r.token_sha256 {
                Some(text) => Some(hex::decode(text).map_err(|e| {
                    Error::Store(StoreError::Invalid {
                        field: format!("archive run {}", r.id),
                        reason: format!("token_sha256 is not hex: {e}"),
                    })
                })?),
                None => None,
            };
            tx.execute(
                sql!("archive/insert_run"),
                &[
                    &r.id,
                    &r.task_id,
                    &r.attempt,
                    &r.owner,
                    &r.lease_expires_at,
                    &r.state,
                    &r.started_at,
                    &r.ended_at,
                    &r.outcome,
                    &hash,
                    &r.refusal_recorded_at,
                    &r.refusals_unrecorded,
                ],
            )
            .await
        }
        Row::Event(r) => {
            tx.execute(
                sql!("archive/insert_event"),
                &[
                    &r.id,
                    &r.task_id,
                    &r.run_id,
                    &r.at,
                    &r.actor,
                    &r.kind,
                    &r.from_status,
                    &r.to_status,
                    &r.reason,
                    &r.data.to_string(),
                ],
            )
            .await
        }
        Row::AgentUsage(r) => {
            tx.execute(
                sql!("archive/insert_agent_usage"),
                &[
                    &r.run_id,
                    &r.step,
                    &r.task_id,
                    &r.agent,
                    &r.model,
                    &r.session_id,
                    &r.input_tokens,
                    &r.output_tokens,
                    &r.cost_usd,
                    &r.day,
                    &r.recorded_at,
                ],
            )
            .await
        }
        Row::TaskReply(r) => {
            tx.execute(
                sql!("archive/insert_task_reply"),
                &[
                    &r.id,
                    &r.task_id,
                    &r.message,
                    &r.agent,
                    &r.step,
                    &r.session_id,
                    &r.created_at,
                    &r.answered_run,
                ],
            )
            .await
        }
        Row::Review(r) => {
            tx.execute(
                sql!("archive/insert_review"),
                &[
                    &r.run_id,
                    &r.task_id,
                    &r.round,
                    &r.verdict,
                    &r.reasons.to_string(),
                    &r.escalated,
                    &r.recorded_at,
                ],
            )
            .await
        }
        Row::WebhookDelivery(r) => {
            tx.execute(
                sql!("archive/insert_webhook_delivery"),
                &[&r.source, &r.delivery_id, &r.task_id, &r.received_at],
            )
            .await
        }
        Row::InfoRequest(r) => {
            tx.execute(
                sql!("archive/insert_info_request"),
                &[
                    &r.id,
                    &r.task_id,
                    &r.run_id,
                    &r.step,
                    &r.keys.to_string(),
                    &r.hint,
                    &r.reason,
                    &r.state,
                    &r.created_at,
                    &r.expires_at,
                    &r.closed_at,
                    &r.closed_by,
                ],
            )
            .await
        }
        Row::Job(r) => {
            tx.execute(
                sql!("archive/insert_job"),
                &[
                    &r.id,
                    &r.name,
                    &r.project_id,
                    &r.schedule,
                    &r.timezone,
                    &r.missed,
                    &r.target,
                    &r.source,
                    &r.enabled,
                    &r.last_slot,
                    &r.created_at,
                    &r.updated_at,
                ],
            )
            .await
        }
        Row::InfoValue(r) => {
            tx.execute(
                sql!("archive/insert_info_value"),
                &[&r.request_id, &r.task_id, &r.key, &r.secret, &r.value],
            )
            .await
        }
        Row::JobFiring(r) => {
            tx.execute(
                sql!("archive/insert_job_firing"),
                &[
                    &r.job_id,
                    &r.slot_at,
                    &r.kind,
                    &r.task_id,
                    &r.error,
                    &r.fired_at,
                ],
            )
            .await
        }
        Row::ProjectForge(r) => {
            tx.execute(
                sql!("archive/insert_project_forge"),
                &[&r.project_id, &r.kind, &r.repo, &r.linked_at],
            )
            .await
        }
        Row::ForgeReaction(r) => {
            tx.execute(
                sql!("archive/insert_forge_reaction"),
                &[
                    &r.task_id,
                    &r.cause,
                    &r.reaction,
                    &r.round_kind,
                    &r.created_at,
                ],
            )
            .await
        }
        Row::TaskForgeLink(r) => {
            tx.execute(
                sql!("archive/insert_task_forge_link"),
                &[
                    &r.task_id,
                    &r.project_id,
                    &r.repo,
                    &r.issue_number,
                    &r.pr_number,
                    &r.pr_url,
                    &r.head_branch,
                    &r.pushed_commit,
                    &r.marker_comment_id,
                    &r.updated_at,
                ],
            )
            .await
        }
        Row::ForgeOutbox(r) => {
            tx.execute(
                sql!("archive/insert_forge_outbox"),
                &[
                    &r.id,
                    &r.idempotency_key,
                    &r.project_id,
                    &r.task_id,
                    &r.event_id,
                    &r.op.to_string(),
                    &r.state,
                    &r.attempts,
                    &r.next_attempt_at,
                    &r.last_error,
                    &r.result.as_ref().map(Value::to_string),
                    &r.created_at,
                    &r.updated_at,
                ],
            )
            .await
        }
    }
}
