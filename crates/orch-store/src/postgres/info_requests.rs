//! Info requests: a run parks asking for values (fenced), a human answers, the next run reads
//! them (fenced), unanswered ones expire. The rules are `orch_core::info_request`'s.

use std::collections::BTreeMap;

use orch_core::info_request::{self, AskedKey, RequestState};
use orch_core::{FencingToken, RunId, RunState, Status, TaskId};
use tokio_postgres::Row;

use super::apply::{
    carry_out, carry_out_knowing, end_run_with_facts, load_run, refuse, require_holder, task_facts,
};
use super::{PgStore, Result, Tx};
use crate::info_requests::{
    check_answer, keys_json, parse_keys, AnswerValue, InfoRequest, InputValue, NewInfoRequest,
    RequestRow, ValueRow,
};
use crate::{Op, StoreError};

impl PgStore {
    pub(crate) async fn request_input(
        &self,
        run: RunId,
        token: FencingToken,
        request: NewInfoRequest,
        op: Op<'_>,
    ) -> crate::Result<i64> {
        let why = format!(
            "parked: step `{}` asks for {}",
            request.step,
            info_request::key_list(&request.ask.keys)
        );
        let keys = keys_json(&request.ask)?;
        let hint = request.ask.hint.map(|h| h.as_str());
        let expires_at = request.expires_at.map(|t| t.0);
        transact!(self, |tx| async {
            let Some((facts, after)) =
                end_run_with_facts(&tx, run, token, RunState::Requeued, Some(&why), &op).await?
            else {
                return Ok(Err(refuse(&tx, run, token, "info request", &op).await?));
            };
            let task = facts.id;
            let plan = info_request::park(&facts, run, &request.step, &request.ask)?;
            tx.execute(
                sql!("close_open_info_requests"),
                &[&task.0, &op.now.0, &"asked again"],
            )
            .await?;
            let id: i64 = tx
                .query_one(
                    sql!("insert_info_request"),
                    &[
                        &task.0,
                        &run.0,
                        &request.step,
                        &keys,
                        &hint,
                        &request.ask.reason,
                        &op.now.0,
                        &expires_at,
                    ],
                )
                .await?
                .try_get(0)?;
            carry_out_knowing(&tx, &plan, &op, Some(after)).await?;
            self.freed_a_slot(&tx);
            Ok(Ok(id))
        })
    }

    pub(crate) async fn answer_input(
        &self,
        task: TaskId,
        values: Vec<AnswerValue>,
        op: Op<'_>,
    ) -> crate::Result<Status> {
        transact!(self, |tx| async {
            let facts = task_facts(&tx, task).await?;
            let open = tx
                .query_opt(sql!("select_open_info_request_of_task"), &[&task.0])
                .await?
                .map(|row| request_row(&row))
                .transpose()?;
            let Some(open) = open.filter(|_| facts.status == Status::AwaitingInput) else {
                return Ok(Err(StoreError::Conflict {
                    task,
                    status: facts.status,
                    message: "it has no open info request to answer".into(),
                }));
            };
            let keys = parse_keys(open.id, &open.keys)?;
            if let Err(invalid) = check_answer(&keys, &values) {
                return Ok(Err(invalid));
            }
            let names: Vec<String> = values.iter().map(|v| v.key.clone()).collect();
            let plan = info_request::answer(&facts, &names)?;
            for value in &values {
                let secret = value.secret || keys.iter().any(|k| k.name == value.key && k.secret);
                tx.execute(
                    sql!("insert_info_value"),
                    &[&open.id, &task.0, &value.key, &secret, &value.value],
                )
                .await?;
            }
            tx.execute(
                sql!("set_info_request_state"),
                &[
                    &open.id,
                    &RequestState::Answered.as_str(),
                    &op.now.0,
                    &op.actor,
                ],
            )
            .await?;
            carry_out(&tx, &plan, &op).await?;
            Ok(Ok(plan.status))
        })
    }

    pub(crate) async fn info_requests(&self, task: TaskId) -> crate::Result<Vec<InfoRequest>> {
        read!(self, |tx| async {
            let rows = tx
                .query(sql!("select_info_requests_of_task"), &[&task.0])
                .await?;
            let values = values_of_task(&tx, task).await?;
            let mut requests = Vec::new();
            for row in &rows {
                requests.push(request_row(row)?.into_request(&values)?);
            }
            Ok(Ok(requests))
        })
    }

    pub(crate) async fn open_info_requests(&self) -> crate::Result<Vec<InfoRequest>> {
        read!(self, |tx| async {
            let rows = tx.query(sql!("select_open_info_requests"), &[]).await?;
            let mut requests = Vec::new();
            for row in &rows {
                requests.push(request_row(row)?.into_request(&[])?);
            }
            Ok(Ok(requests))
        })
    }

    pub(crate) async fn input_values(
        &self,
        run: RunId,
        token: FencingToken,
        op: Op<'_>,
    ) -> crate::Result<Vec<InputValue>> {
        transact!(self, |tx| async {
            if let Err(refused) = require_holder(&tx, run, token, "info values", &op).await? {
                return Ok(Err(refused));
            }
            let task = load_run(&tx, run).await?.task;
            let values = values_of_task(&tx, task).await?;
            let keys = keys_of_task(&tx, task).await?;
            Ok(Ok(crate::info_requests::input_values(values, &keys)))
        })
    }

    pub(crate) async fn expire_info_requests(&self, op: Op<'_>) -> crate::Result<Vec<TaskId>> {
        transact!(self, |tx| async {
            // Requests whose task left `awaiting_input` another way (cancelled) are closed.
            tx.execute(
                sql!("close_stale_info_requests"),
                &[&op.now.0, &"task left awaiting_input"],
            )
            .await?;
            let due = tx
                .query(sql!("select_expired_info_requests"), &[&op.now.0])
                .await?;
            let mut expired = Vec::new();
            for row in &due {
                let id: i64 = row.try_get(0)?;
                let task = TaskId(row.try_get(1)?);
                let keys: String = row.try_get(2)?;
                let created_at: i64 = row.try_get(3)?;
                let expires_at: Option<i64> = row.try_get(4)?;
                let keys = info_request::key_list(&parse_keys(id, &keys)?);
                let waited = std::time::Duration::from_millis(
                    u64::try_from(expires_at.unwrap_or(created_at) - created_at).unwrap_or(0),
                );
                let facts = task_facts(&tx, task).await?;
                if facts.status != Status::AwaitingInput {
                    continue;
                }
                let plan = info_request::expire(&facts, &keys, waited)?;
                tx.execute(
                    sql!("set_info_request_state"),
                    &[&id, &RequestState::Expired.as_str(), &op.now.0, &op.actor],
                )
                .await?;
                carry_out(&tx, &plan, &op).await?;
                expired.push(task);
            }
            Ok(Ok(expired))
        })
    }
}

fn request_row(r: &Row) -> Result<RequestRow> {
    Ok(RequestRow {
        id: r.try_get(0)?,
        task_id: r.try_get(1)?,
        run_id: r.try_get(2)?,
        step: r.try_get(3)?,
        keys: r.try_get(4)?,
        hint: r.try_get(5)?,
        reason: r.try_get(6)?,
        state: r.try_get(7)?,
        created_at: r.try_get(8)?,
        expires_at: r.try_get(9)?,
        closed_at: r.try_get(10)?,
        closed_by: r.try_get(11)?,
    })
}

async fn values_of_task(tx: &Tx<'_>, task: TaskId) -> Result<Vec<ValueRow>> {
    let rows = tx
        .query(sql!("select_info_values_of_task"), &[&task.0])
        .await?;
    let mut values = Vec::new();
    for r in &rows {
        values.push(ValueRow {
            request_id: r.try_get(0)?,
            step: r.try_get(1)?,
            key: r.try_get(2)?,
            secret: r.try_get(3)?,
            value: r.try_get(4)?,
        });
    }
    Ok(values)
}

async fn keys_of_task(tx: &Tx<'_>, task: TaskId) -> Result<BTreeMap<i64, Vec<AskedKey>>> {
    let rows = tx
        .query(sql!("select_info_requests_of_task"), &[&task.0])
        .await?;
    let mut keys = BTreeMap::new();
    for row in &rows {
        let row = request_row(row)?;
        keys.insert(row.id, parse_keys(row.id, &row.keys)?);
    }
    Ok(keys)
}
