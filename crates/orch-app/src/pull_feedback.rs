//! A pull request's feedback loop through the application layer: a [`Reaction`] decided by
//! `orch_core::forge::feedback` is recorded under its causes and carried out in one store
//! transaction (`Store::record_forge_reaction`): a follow-up run of the task with the prompt
//! (as `reply` starts one), `needs_review`, or forge writes enqueued in the outbox (the merge;
//! closing the issue and deleting the branch once merged), each keyed by the task and its cause.
//! A merge finishes a task that is not `done` in the same transaction (its run cancelled).

use orch_core::forge::feedback::Reaction;
use orch_core::forge::KeyedOp;
use orch_core::{ProjectId, ReplyMessage, TaskId};
use orch_store::{NewForgeOp, NewReaction, Op, ReactionEffect};

use crate::{App, Result};

impl App {
    /// Carry out `reaction` for `task` (of `project`) once: `Ok(false)` when it was carried out
    /// before (its cause is recorded) or is [`Reaction::Nothing`].
    pub async fn react_to_pull(
        &self,
        task: TaskId,
        project: ProjectId,
        reaction: &Reaction,
        actor: &str,
    ) -> Result<bool> {
        let causes = reaction.causes().to_vec();
        let keyed = |key: &str, op: &orch_core::forge::ForgeOp| NewForgeOp {
            project,
            task: Some(task),
            event: None,
            op: KeyedOp {
                key: format!("feedback:task-{}:{key}", task.0),
                op: op.clone(),
            },
        };
        let (effect, ops) = match reaction {
            Reaction::Nothing { .. } => return Ok(false),
            Reaction::FollowUp { kind, prompt, .. } => {
                let message = ReplyMessage::parse(prompt.clone())?;
                (
                    ReactionEffect::FollowUp {
                        kind: *kind,
                        message: message.as_str().to_owned(),
                    },
                    Vec::new(),
                )
            }
            Reaction::Merge { causes, op } => {
                let key = causes.first().map_or("merge", String::as_str);
                (ReactionEffect::None, vec![keyed(key, op)])
            }
            Reaction::Finish { ops, reason, .. } => (
                ReactionEffect::Finish(reason.clone()),
                ops.iter().map(|(key, op)| keyed(key, op)).collect(),
            ),
            Reaction::NeedsReview { reason, .. } => {
                (ReactionEffect::NeedsReview(reason.clone()), Vec::new())
            }
        };
        let recorded = self
            .store
            .record_forge_reaction(
                &NewReaction {
                    task,
                    causes,
                    name: reaction.name(),
                    effect,
                    ops,
                },
                Op::now(actor),
            )
            .await?;
        Ok(recorded)
    }
}
