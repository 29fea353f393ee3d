//! Export and import of every row (`crate::archive`): a snapshot read table by table in
//! primary-key order, and inserts with ids preserved into an empty database in one transaction.
//! SQLite needs no sequence fix-up: a new row's id is max(id) + 1.

use rusqlite::{params, Connection, Row as SqlRow, TransactionBehavior};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{immediate, Error, Result, SqliteStore};
use crate::archive::{
    AgentUsageRow, EventRow, ForgeOutboxRow, ForgeReactionRow, JobFiringRow, JobRow,
    ProjectForgeRow, ProjectRow, ReviewRow, Row, RowCounts, RunRow, Table, TaskDepRow,
    TaskForgeLinkRow, TaskReplyRow, TaskRow, WebhookDeliveryRow, WorkflowRow,
};
use crate::StoreError;

impl SqliteStore {
    pub(crate) async fn is_empty(&self) -> crate::Result<bool> {
        self.call(|conn| Ok(!any_row(conn)?)).await
    }

    pub(crate) async fn export_archive(&self, sink: mpsc::Sender<Row>) -> crate::Result<RowCounts> {
        self.call(move |conn| {
            // One read transaction: every table from the same snapshot.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let mut counts = RowCounts::new();
            for table in Table::ALL {
                let count = export_table(&tx, table, &sink)?;
                counts.insert(table, count);
            }
            tx.rollback()?;
            Ok(counts)
        })
        .await
    }

    pub(crate) async fn import_archive(
        &self,
        mut rows: mpsc::Receiver<Row>,
        expected: RowCounts,
    ) -> crate::Result<RowCounts> {
        self.call(move |conn| {
            let tx = immediate(conn)?;
            if any_row(&tx)? {
                return Err(not_empty().into());
            }
            // References are checked at commit, so a row may name one that comes later in its
            // own table (a parent task with a larger id).
            tx.pragma_update(None, "defer_foreign_keys", "ON")?;
            let mut counts = RowCounts::new();
            while let Some(row) = rows.blocking_recv() {
                let table = row.table();
                insert(&tx, row).map_err(|e| in_table(e, table))?;
                *counts.entry(table).or_default() += 1;
            }
            let mut wanted = expected;
            wanted.retain(|_, n| *n > 0);
            if counts != wanted {
                return Err(StoreError::Invalid {
                    field: "archive".into(),
                    reason: format!(
                        "it ended early or holds other rows than its manifest says (manifest: \
                         {wanted:?}, read: {counts:?}); nothing was imported"
                    ),
                }
                .into());
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
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
        Error::Sqlite(e) => Error::Store(StoreError::Invalid {
            field: format!("archive table {table}"),
            reason: format!("a row could not be inserted: {e}; nothing was imported"),
        }),
        other => other,
    }
}

fn any_row(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(sql!("archive/select_any_row"))?
        .query_row([], |r| r.get(0))?)
}

fn json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::Store(StoreError::Corrupt(format!("{what} is not JSON: {e}"))))
}

fn json_text(value: &Value) -> String {
    value.to_string()
}

/// Read one table in primary-key order, sending each row; returns how many were sent.
fn export_table(conn: &Connection, table: Table, sink: &mpsc::Sender<Row>) -> Result<u64> {
    let sql = match table {
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
    };
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut count = 0;
    while let Some(r) = rows.next()? {
        let row = read_row(table, r)?;
        sink.blocking_send(row).map_err(|_| {
            Error::Store(StoreError::Unavailable(
                "the archive writer stopped before every row was read".into(),
            ))
        })?;
        count += 1;
    }
    Ok(count)
}

fn read_row(table: Table, r: &SqlRow<'_>) -> Result<Row> {
    Ok(match table {
        Table::Projects => Row::Project(ProjectRow {
            id: r.get(0)?,
            name: r.get(1)?,
            path: r.get(2)?,
            created_at: r.get(3)?,
        }),
        Table::Workflows => Row::Workflow(WorkflowRow {
            id: r.get(0)?,
            project_id: r.get(1)?,
            name: r.get(2)?,
            source: r.get(3)?,
            created_at: r.get(4)?,
        }),
        Table::Tasks => {
            let id: i64 = r.get(0)?;
            let spec: String = r.get(7)?;
            Row::Task(TaskRow {
                id,
                project_id: r.get(1)?,
                workflow_id: r.get(2)?,
                parent_id: r.get(3)?,
                key: r.get(4)?,
                title: r.get(5)?,
                priority: r.get(6)?,
                spec: json(&spec, &format!("the spec of task {id}"))?,
                status: r.get(8)?,
                status_reason: r.get(9)?,
                approved: r.get(10)?,
                attempts_used: r.get(11)?,
                max_attempts: r.get(12)?,
                run_count: r.get(13)?,
                not_before: r.get(14)?,
                created_at: r.get(15)?,
                updated_at: r.get(16)?,
                unique_key: r.get(17)?,
            })
        }
        Table::TaskDeps => Row::TaskDep(TaskDepRow {
            task_id: r.get(0)?,
            dep_id: r.get(1)?,
            waived: r.get(2)?,
        }),
        Table::Runs => Row::Run(RunRow {
            id: r.get(0)?,
            task_id: r.get(1)?,
            attempt: r.get(2)?,
            owner: r.get(3)?,
            lease_expires_at: r.get(4)?,
            state: r.get(5)?,
            started_at: r.get(6)?,
            ended_at: r.get(7)?,
            outcome: r.get(8)?,
            token_sha256: r.get::<_, Option<Vec<u8>>>(9)?.map(hex::encode),
            refusal_recorded_at: r.get(10)?,
            refusals_unrecorded: r.get(11)?,
        }),
        Table::Events => {
            let id: i64 = r.get(0)?;
            let data: String = r.get(9)?;
            Row::Event(EventRow {
                id,
                task_id: r.get(1)?,
                run_id: r.get(2)?,
                at: r.get(3)?,
                actor: r.get(4)?,
                kind: r.get(5)?,
                from_status: r.get(6)?,
                to_status: r.get(7)?,
                reason: r.get(8)?,
                data: json(&data, &format!("the data of event {id}"))?,
            })
        }
        Table::AgentUsage => Row::AgentUsage(AgentUsageRow {
            run_id: r.get(0)?,
            step: r.get(1)?,
            task_id: r.get(2)?,
            agent: r.get(3)?,
            model: r.get(4)?,
            session_id: r.get(5)?,
            input_tokens: r.get(6)?,
            output_tokens: r.get(7)?,
            cost_usd: r.get(8)?,
            day: r.get(9)?,
            recorded_at: r.get(10)?,
        }),
        Table::TaskReplies => Row::TaskReply(TaskReplyRow {
            id: r.get(0)?,
            task_id: r.get(1)?,
            message: r.get(2)?,
            agent: r.get(3)?,
            step: r.get(4)?,
            session_id: r.get(5)?,
            created_at: r.get(6)?,
            answered_run: r.get(7)?,
        }),
        Table::Reviews => {
            let run: i64 = r.get(0)?;
            let reasons: String = r.get(4)?;
            Row::Review(ReviewRow {
                run_id: run,
                task_id: r.get(1)?,
                round: r.get(2)?,
                verdict: r.get(3)?,
                reasons: json(&reasons, &format!("the reasons of the review of run {run}"))?,
                escalated: r.get(5)?,
                recorded_at: r.get(6)?,
            })
        }
        Table::WebhookDeliveries => Row::WebhookDelivery(WebhookDeliveryRow {
            source: r.get(0)?,
            delivery_id: r.get(1)?,
            task_id: r.get(2)?,
            received_at: r.get(3)?,
        }),
        Table::InfoRequests => {
            let id: i64 = r.get(0)?;
            let keys: String = r.get(4)?;
            Row::InfoRequest(crate::archive::InfoRequestRow {
                id,
                task_id: r.get(1)?,
                run_id: r.get(2)?,
                step: r.get(3)?,
                keys: json(&keys, &format!("the keys of info request {id}"))?,
                hint: r.get(5)?,
                reason: r.get(6)?,
                state: r.get(7)?,
                created_at: r.get(8)?,
                expires_at: r.get(9)?,
                closed_at: r.get(10)?,
                closed_by: r.get(11)?,
            })
        }
        Table::InfoValues => Row::InfoValue(crate::archive::InfoValueRow {
            request_id: r.get(0)?,
            task_id: r.get(1)?,
            key: r.get(2)?,
            secret: r.get(3)?,
            value: r.get(4)?,
        }),
        Table::Jobs => Row::Job(JobRow {
            id: r.get(0)?,
            name: r.get(1)?,
            project_id: r.get(2)?,
            schedule: r.get(3)?,
            timezone: r.get(4)?,
            missed: r.get(5)?,
            target: r.get(6)?,
            source: r.get(7)?,
            enabled: r.get(8)?,
            last_slot: r.get(9)?,
            created_at: r.get(10)?,
            updated_at: r.get(11)?,
        }),
        Table::JobFirings => Row::JobFiring(JobFiringRow {
            job_id: r.get(0)?,
            slot_at: r.get(1)?,
            kind: r.get(2)?,
            task_id: r.get(3)?,
            error: r.get(4)?,
            fired_at: r.get(5)?,
        }),
        Table::ProjectForges => Row::ProjectForge(ProjectForgeRow {
            project_id: r.get(0)?,
            kind: r.get(1)?,
            repo: r.get(2)?,
            linked_at: r.get(3)?,
        }),
        Table::ForgeReactions => Row::ForgeReaction(ForgeReactionRow {
            task_id: r.get(0)?,
            cause: r.get(1)?,
            reaction: r.get(2)?,
            round_kind: r.get(3)?,
            created_at: r.get(4)?,
        }),
        Table::TaskForgeLinks => Row::TaskForgeLink(TaskForgeLinkRow {
            task_id: r.get(0)?,
            project_id: r.get(1)?,
            repo: r.get(2)?,
            issue_number: r.get(3)?,
            pr_number: r.get(4)?,
            pr_url: r.get(5)?,
            head_branch: r.get(6)?,
            pushed_commit: r.get(7)?,
            marker_comment_id: r.get(8)?,
            updated_at: r.get(9)?,
        }),
        Table::ForgeOutbox => {
            let id: i64 = r.get(0)?;
            let op: String = r.get(5)?;
            let result: Option<String> = r.get(10)?;
            Row::ForgeOutbox(ForgeOutboxRow {
                id,
                idempotency_key: r.get(1)?,
                project_id: r.get(2)?,
                task_id: r.get(3)?,
                event_id: r.get(4)?,
                op: json(&op, &format!("forge op {id}"))?,
                state: r.get(6)?,
                attempts: r.get(7)?,
                next_attempt_at: r.get(8)?,
                last_error: r.get(9)?,
                result: result
                    .map(|text| json(&text, &format!("the result of forge op {id}")))
                    .transpose()?,
                created_at: r.get(11)?,
                updated_at: r.get(12)?,
            })
        }
    })
}

fn insert(conn: &Connection, row: Row) -> Result<()> {
    match row {
        Row::Project(r) => conn
            .prepare_cached(sql!("archive/insert_project"))?
            .execute(params![r.id, r.name, r.path, r.created_at])?,
        Row::Workflow(r) => conn
            .prepare_cached(sql!("archive/insert_workflow"))?
            .execute(params![r.id, r.project_id, r.name, r.source, r.created_at])?,
        Row::Task(r) => conn
            .prepare_cached(sql!("archive/insert_task"))?
            .execute(params![
                r.id,
                r.project_id,
                r.workflow_id,
                r.parent_id,
                r.key,
                r.title,
                r.priority,
                json_text(&r.spec),
                r.status,
                r.status_reason,
                r.approved,
                r.attempts_used,
                r.max_attempts,
                r.run_count,
                r.not_before,
                r.created_at,
                r.updated_at,
                r.unique_key,
            ])?,
        Row::TaskDep(r) => conn
            .prepare_cached(sql!("archive/insert_task_dep"))?
            .execute(params![r.task_id, r.dep_id, r.waived])?,
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
            conn.prepare_cached(sql!("archive/insert_run"))?
                .execute(params![
                    r.id,
                    r.task_id,
                    r.attempt,
                    r.owner,
                    r.lease_expires_at,
                    r.state,
                    r.started_at,
                    r.ended_at,
                    r.outcome,
                    hash,
                    r.refusal_recorded_at,
                    r.refusals_unrecorded,
                ])?
        }
        Row::Event(r) => conn
            .prepare_cached(sql!("archive/insert_event"))?
            .execute(params![
                r.id,
                r.task_id,
                r.run_id,
                r.at,
                r.actor,
                r.kind,
                r.from_status,
                r.to_status,
                r.reason,
                json_text(&r.data),
            ])?,
        Row::AgentUsage(r) => conn
            .prepare_cached(sql!("archive/insert_agent_usage"))?
            .execute(params![
                r.run_id,
                r.step,
                r.task_id,
                r.agent,
                r.model,
                r.session_id,
                r.input_tokens,
                r.output_tokens,
                r.cost_usd,
                r.day,
                r.recorded_at,
            ])?,
        Row::TaskReply(r) => conn
            .prepare_cached(sql!("archive/insert_task_reply"))?
            .execute(params![
                r.id,
                r.task_id,
                r.message,
                r.agent,
                r.step,
                r.session_id,
                r.created_at,
                r.answered_run,
            ])?,
        Row::Review(r) => conn
            .prepare_cached(sql!("archive/insert_review"))?
            .execute(params![
                r.run_id,
                r.task_id,
                r.round,
                r.verdict,
                json_text(&r.reasons),
                r.escalated,
                r.recorded_at,
            ])?,
        Row::WebhookDelivery(r) => conn
            .prepare_cached(sql!("archive/insert_webhook_delivery"))?
            .execute(params![r.source, r.delivery_id, r.task_id, r.received_at])?,
        Row::InfoRequest(r) => conn
            .prepare_cached(sql!("archive/insert_info_request"))?
            .execute(params![
                r.id,
                r.task_id,
                r.run_id,
                r.step,
                json_text(&r.keys),
                r.hint,
                r.reason,
                r.state,
                r.created_at,
                r.expires_at,
                r.closed_at,
                r.closed_by,
            ])?,
        Row::InfoValue(r) => conn
            .prepare_cached(sql!("archive/insert_info_value"))?
            .execute(params![r.request_id, r.task_id, r.key, r.secret, r.value])?,
        Row::Job(r) => conn
            .prepare_cached(sql!("archive/insert_job"))?
            .execute(params![
                r.id,
                r.name,
                r.project_id,
                r.schedule,
                r.timezone,
                r.missed,
                r.target,
                r.source,
                r.enabled,
                r.last_slot,
                r.created_at,
                r.updated_at,
            ])?,
        Row::JobFiring(r) => conn
            .prepare_cached(sql!("archive/insert_job_firing"))?
            .execute(params![
                r.job_id, r.slot_at, r.kind, r.task_id, r.error, r.fired_at
            ])?,
        Row::ProjectForge(r) => conn
            .prepare_cached(sql!("archive/insert_project_forge"))?
            .execute(params![r.project_id, r.kind, r.repo, r.linked_at])?,
        Row::ForgeReaction(r) => conn
            .prepare_cached(sql!("archive/insert_forge_reaction"))?
            .execute(params![
                r.task_id,
                r.cause,
                r.reaction,
                r.round_kind,
                r.created_at
            ])?,
        Row::TaskForgeLink(r) => conn
            .prepare_cached(sql!("archive/insert_task_forge_link"))?
            .execute(params![
                r.task_id,
                r.project_id,
                r.repo,
                r.issue_number,
                r.pr_number,
                r.pr_url,
                r.head_branch,
                r.pushed_commit,
                r.marker_comment_id,
                r.updated_at,
            ])?,
        Row::ForgeOutbox(r) => conn
            .prepare_cached(sql!("archive/insert_forge_outbox"))?
            .execute(params![
                r.id,
                r.idempotency_key,
                r.project_id,
                r.task_id,
                r.event_id,
                json_text(&r.op),
                r.state,
                r.attempts,
                r.next_attempt_at,
                r.last_error,
                r.result.as_ref().map(json_text),
                r.created_at,
                r.updated_at,
            ])?,
    };
    Ok(())
}
