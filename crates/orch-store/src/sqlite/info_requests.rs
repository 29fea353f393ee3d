//! Info requests: a run parks asking for values (fenced), a human answers, the next run reads
//! them (fenced), unanswered ones expire. The rules are `orch_core::info_request`'s.

use std::collections::BTreeMap;

use orch_core::info_request::{self, RequestState};
use orch_core::{FencingToken, RunId, RunState, Status, TaskId};
use rusqlite::{params, Connection, OptionalExtension};

use super::apply::{carry_out, end_run, load_run, refuse, require_holder, task_facts};
use super::{immediate, OwnedOp, Result, SqliteStore};
use crate::info_requests::{
    check_answer, keys_json, parse_keys, AnswerValue, InfoRequest, InputValue, NewInfoRequest,
    RequestRow, ValueRow,
};
use crate::{Op, StoreError};

impl SqliteStore {
    pub(crate) async fn request_input(
        &self,
        run: RunId,
        token: FencingToken,
        request: NewInfoRequest,
        op: Op<'_>,
    ) -> crate::Result<i64> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let why = format!(
                "parked: step `{}` asks for {}",
                request.step,
                info_request::key_list(&request.ask.keys)
            );
            let Some(task) = end_run(&tx, run, token, RunState::Requeued, Some(&why), &op)? else {
                let err = refuse(&tx, run, token, "info request", &op)?;
                tx.commit()?;
                return Err(err.into());
            };
            let plan =
                info_request::park(&task_facts(&tx, task)?, run, &request.step, &request.ask)?;
            tx.prepare_cached(sql!("close_open_info_requests"))?
                .execute(params![task.0, op.now.0, "asked again"])?;
            let id: i64 = tx.prepare_cached(sql!("insert_info_request"))?.query_row(
                params![
                    task.0,
                    run.0,
                    request.step,
                    keys_json(&request.ask)?,
                    request.ask.hint.map(|h| h.as_str()),
                    request.ask.reason,
                    op.now.0,
                    request.expires_at.map(|t| t.0),
                ],
                |r| r.get(0),
            )?;
            carry_out(&tx, &plan, &op)?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    pub(crate) async fn answer_input(
        &self,
        task: TaskId,
        values: Vec<AnswerValue>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                let facts = task_facts(&tx, task)?;
                let open = tx
                    .prepare_cached(sql!("select_open_info_request_of_task"))?
                    .query_row([task.0], request_row)
                    .optional()?;
                let Some(open) = open.filter(|_| facts.status == Status::AwaitingInput) else {
                    return Err(StoreError::Conflict {
                        task,
                        status: facts.status,
                        message: "it has no open info request to answer".into(),
                    }
                    .into());
                };
                let keys = parse_keys(open.id, &open.keys)?;
                check_answer(&keys, &values)?;
                let names: Vec<String> = values.iter().map(|v| v.key.clone()).collect();
                let plan = info_request::answer(&facts, &names)?;
                for value in &values {
                    let secret =
                        value.secret || keys.iter().any(|k| k.name == value.key && k.secret);
                    tx.prepare_cached(sql!("insert_info_value"))?
                        .execute(params![open.id, task.0, value.key, secret, value.value])?;
                }
                tx.prepare_cached(sql!("set_info_request_state"))?
                    .execute(params![
                        open.id,
                        RequestState::Answered.as_str(),
                        op.now.0,
                        op.actor
                    ])?;
                carry_out(&tx, &plan, &op)?;
                tx.commit()?;
                Ok(plan.status)
            })
            .await;
        self.woke(result)
    }

    pub(crate) async fn info_requests(&self, task: TaskId) -> crate::Result<Vec<InfoRequest>> {
        self.call(move |conn| {
            let rows = conn
                .prepare_cached(sql!("select_info_requests_of_task"))?
                .query_map([task.0], request_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let values = values_of_task(conn, task)?;
            Ok(rows
                .into_iter()
                .map(|row| row.into_request(&values))
                .collect::<crate::Result<_>>()?)
        })
        .await
    }

    pub(crate) async fn open_info_requests(&self) -> crate::Result<Vec<InfoRequest>> {
        self.call(move |conn| {
            let rows = conn
                .prepare_cached(sql!("select_open_info_requests"))?
                .query_map([], request_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .map(|row| row.into_request(&[]))
                .collect::<crate::Result<_>>()?)
        })
        .await
    }

    pub(crate) async fn input_values(
        &self,
        run: RunId,
        token: FencingToken,
        op: Op<'_>,
    ) -> crate::Result<Vec<InputValue>> {
        let op = OwnedOp::from(op);
        self.call(move |conn| {
            let tx = immediate(conn)?;
            if let Err(refused) = require_holder(&tx, run, token, "info values", &op) {
                tx.commit()?;
                return Err(refused);
            }
            let task = load_run(&tx, run)?.task;
            let values = values_of_task(&tx, task)?;
            let keys = keys_of_task(&tx, task)?;
            tx.commit()?;
            Ok(crate::info_requests::input_values(values, &keys))
        })
        .await
    }

    pub(crate) async fn expire_info_requests(&self, op: Op<'_>) -> crate::Result<Vec<TaskId>> {
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                // Requests whose task left `awaiting_input` another way (cancelled) are closed.
                tx.prepare_cached(sql!("close_stale_info_requests"))?
                    .execute(params![op.now.0, "task left awaiting_input"])?;
                let due = tx
                    .prepare_cached(sql!("select_expired_info_requests"))?
                    .query_map([op.now.0], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut expired = Vec::new();
                for (id, task, keys, created_at, expires_at) in due {
                    let task = TaskId(task);
                    let keys = info_request::key_list(&parse_keys(id, &keys)?);
                    let waited = std::time::Duration::from_millis(
                        u64::try_from(expires_at.unwrap_or(created_at) - created_at).unwrap_or(0),
                    );
                    let plan = info_request::expire(&task_facts(&tx, task)?, &keys, waited)?;
                    tx.prepare_cached(sql!("set_info_request_state"))?
                        .execute(params![
                            id,
                            RequestState::Expired.as_str(),
                            op.now.0,
                            op.actor
                        ])?;
                    carry_out(&tx, &plan, &op)?;
                    expired.push(task);
                }
                tx.commit()?;
                Ok(expired)
            })
            .await;
        self.woke(result)
    }
}

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        id: r.get(0)?,
        task_id: r.get(1)?,
        run_id: r.get(2)?,
        step: r.get(3)?,
        keys: r.get(4)?,
        hint: r.get(5)?,
        reason: r.get(6)?,
        state: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        closed_at: r.get(10)?,
        closed_by: r.get(11)?,
    })
}

fn values_of_task(conn: &Connection, task: TaskId) -> Result<Vec<ValueRow>> {
    Ok(conn
        .prepare_cached(sql!("select_info_values_of_task"))?
        .query_map([task.0], |r| {
            Ok(ValueRow {
                request_id: r.get(0)?,
                step: r.get(1)?,
                key: r.get(2)?,
                secret: r.get(3)?,
                value: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

fn keys_of_task(
    conn: &Connection,
    task: TaskId,
) -> Result<BTreeMap<i64, Vec<orch_core::info_request::AskedKey>>> {
    let rows = conn
        .prepare_cached(sql!("select_info_requests_of_task"))?
        .query_map([task.0], request_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut keys = BTreeMap::new();
    for row in rows {
        keys.insert(row.id, parse_keys(row.id, &row.keys)?);
    }
    Ok(keys)
}
