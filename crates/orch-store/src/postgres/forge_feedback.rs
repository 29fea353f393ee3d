//! The feedback loop's reactions on PostgreSQL (`crate::forge_feedback`).

use orch_core::forge::feedback::{escalate, finish_merged};
use orch_core::TaskId;

use super::agents::reply_in;
use super::apply::{carry_out, task_facts};
use super::forge::insert_ops;
use super::{Error, PgStore, Result, Tx};
use crate::forge_feedback::{fold, FeedbackState, NewReaction, ReactionEffect};
use crate::{Op, StoreError};

impl PgStore {
    pub(crate) async fn forge_feedback(&self, task: TaskId) -> crate::Result<FeedbackState> {
        read!(self, |tx| async {
            Ok(Ok(fold(reactions(&tx, task).await?)))
        })
    }

    pub(crate) async fn tasks_with_open_pulls(&self) -> crate::Result<Vec<TaskId>> {
        read!(self, |tx| async {
            let rows = tx
                .query(sql!("forge_feedback/select_pull_tasks"), &[])
                .await?;
            let mut ids = Vec::with_capacity(rows.len());
            for r in &rows {
                ids.push(TaskId(r.try_get(0)?));
            }
            Ok(Ok(ids))
        })
    }

    pub(crate) async fn record_forge_reaction(
        &self,
        reaction: NewReaction,
        op: Op<'_>,
    ) -> crate::Result<bool> {
        let effect = match reaction.effect.clone() {
            // A follow-up message is a prompt: no token in it reaches the database.
            ReactionEffect::FollowUp { kind, message } => ReactionEffect::FollowUp {
                kind,
                message: self.secrets.redact_text(&message),
            },
            other => other,
        };
        let reaction = &reaction;
        let effect = &effect;
        let op = &op;
        transact!(self, |tx| async {
            let known = fold(reactions(&tx, reaction.task).await?);
            if reaction.causes.iter().any(|c| known.reacted.contains(c)) {
                return Ok(Ok(false));
            }
            let kind = match effect {
                ReactionEffect::FollowUp { kind, .. } => Some(kind.as_str()),
                _ => None,
            };
            for (i, cause) in reaction.causes.iter().enumerate() {
                let first_kind = if i == 0 { kind } else { None };
                let inserted = tx
                    .execute(
                        sql!("forge_feedback/insert_reaction"),
                        &[
                            &reaction.task.0,
                            cause,
                            &reaction.name,
                            &first_kind,
                            &op.now.0,
                        ],
                    )
                    .await?;
                if inserted == 0 {
                    // Another server recorded a cause meanwhile: roll back, nothing is done.
                    return Err(Error::Store(StoreError::Invalid {
                        field: "cause".into(),
                        reason: format!(
                            "the reaction of task {} to `{cause}` was recorded meanwhile",
                            reaction.task
                        ),
                    }));
                }
            }
            match effect {
                ReactionEffect::None => {}
                ReactionEffect::FollowUp { message, .. } => {
                    reply_in(&tx, reaction.task, message, op).await?;
                }
                ReactionEffect::NeedsReview(reason) => {
                    let facts = task_facts(&tx, reaction.task).await?;
                    let plan = escalate(&facts, reason)?;
                    carry_out(&tx, &plan, op).await?;
                }
                ReactionEffect::Finish(reason) => {
                    let facts = task_facts(&tx, reaction.task).await?;
                    if facts.status != orch_core::Status::Done {
                        carry_out(&tx, &finish_merged(&facts, reason)?, op).await?;
                    }
                }
            }
            insert_ops(&tx, &reaction.ops, op.now).await?;
            Ok(Ok(true))
        })
    }
}

async fn reactions(tx: &Tx<'_>, task: TaskId) -> Result<Vec<(String, Option<String>)>> {
    let rows = tx
        .query(sql!("forge_feedback/select_reactions"), &[&task.0])
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push((r.try_get(0)?, r.try_get(1)?));
    }
    Ok(out)
}
