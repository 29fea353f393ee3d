//! The feedback loop's reactions on SQLite (`crate::forge_feedback`).

use orch_core::forge::feedback::{escalate, finish_merged};
use orch_core::TaskId;
use rusqlite::{params, Connection};

use super::agents::reply_in;
use super::apply::{carry_out, task_facts};
use super::forge::insert_ops;
use super::{immediate, OwnedOp, Result, SqliteStore};
use crate::forge_feedback::{fold, FeedbackState, NewReaction, ReactionEffect};
use crate::Op;

impl SqliteStore {
    pub(crate) async fn forge_feedback(&self, task: TaskId) -> crate::Result<FeedbackState> {
        self.call(move |conn| Ok(fold(reactions(conn, task)?)))
            .await
    }

    pub(crate) async fn tasks_with_open_pulls(&self) -> crate::Result<Vec<TaskId>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("forge_feedback/select_pull_tasks"))?;
            let ids = stmt
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ids.into_iter().map(TaskId).collect())
        })
        .await
    }

    pub(crate) async fn record_forge_reaction(
        &self,
        reaction: NewReaction,
        op: Op<'_>,
    ) -> crate::Result<bool> {
        let op = OwnedOp::from(op);
        let effect = match reaction.effect.clone() {
            // A follow-up message is a prompt: no token in it reaches the database.
            ReactionEffect::FollowUp { kind, message } => ReactionEffect::FollowUp {
                kind,
                message: self.secrets.redact_text(&message),
            },
            other => other,
        };
        let result = self
            .call(move |conn| {
                let tx = immediate(conn)?;
                let known = fold(reactions(&tx, reaction.task)?);
                if reaction.causes.iter().any(|c| known.reacted.contains(c)) {
                    return Ok(false);
                }
                let kind = match &effect {
                    ReactionEffect::FollowUp { kind, .. } => Some(kind.as_str()),
                    _ => None,
                };
                for (i, cause) in reaction.causes.iter().enumerate() {
                    let inserted = tx
                        .prepare_cached(sql!("forge_feedback/insert_reaction"))?
                        .execute(params![
                            reaction.task.0,
                            cause,
                            reaction.name,
                            if i == 0 { kind } else { None },
                            op.now.0
                        ])?;
                    if inserted == 0 {
                        // A cause listed twice; nothing is committed.
                        return Ok(false);
                    }
                }
                match &effect {
                    ReactionEffect::None => {}
                    ReactionEffect::FollowUp { message, .. } => {
                        reply_in(&tx, reaction.task, message, &op)?;
                    }
                    ReactionEffect::NeedsReview(reason) => {
                        let facts = task_facts(&tx, reaction.task)?;
                        let plan = escalate(&facts, reason)?;
                        carry_out(&tx, &plan, &op)?;
                    }
                    ReactionEffect::Finish(reason) => {
                        let facts = task_facts(&tx, reaction.task)?;
                        if facts.status != orch_core::Status::Done {
                            carry_out(&tx, &finish_merged(&facts, reason)?, &op)?;
                        }
                    }
                }
                insert_ops(&tx, &reaction.ops, op.now)?;
                tx.commit()?;
                Ok(true)
            })
            .await;
        self.woke(result)
    }
}

fn reactions(conn: &Connection, task: TaskId) -> Result<Vec<(String, Option<String>)>> {
    let mut stmt = conn.prepare_cached(sql!("forge_feedback/select_reactions"))?;
    let rows = stmt
        .query_map([task.0], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
