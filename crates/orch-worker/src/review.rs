//! The review after a run's steps succeeded: the worker's side of `orch_agents::review`.
//!
//! The reviewer gets the task, the step results and the diff against the base branch, and
//! approves or rejects. A rejection in round N of `max_review_rounds` (N below the maximum)
//! gives the run back to the queue (the store's `requeue`: `running → retry_wait → queued`, no
//! attempt used) and the next run's step prompts carry the reasons; a rejection in the last
//! round, or no valid answer at all, ends the run `needs_review`. The work of a rejected run is
//! committed on the task's branch like an approved one, so the next round builds on it.
//!
//! Every valid verdict is recorded in the store through the `Coordinator` (fenced by the run's
//! token, before the completion), and the claim of a later run hands the task's verdicts back,
//! so the round count and the feedback are the same on every worker, embedded or remote.

use std::path::Path;

use orch_agents::prompt::Prompts;
use orch_agents::review::{
    self, PriorReview, PriorReviewRecord, ReviewAnswer, ReviewRequest, StepSummary, Verdict,
};
use orch_core::{Outcome, Task};
use orch_store::{ReviewRecord, ReviewVerdict};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::bundle::Bundle;
use crate::project::ProjectConfig;
use crate::route::{now_ms, record_exchanges};

/// The bundle file of the review.
pub const REVIEW_FILE: &str = "review.json";

/// Most bytes of the diff put into the reviewer's prompt.
const DIFF_LIMIT: usize = 200 * 1024;

/// The reviews of earlier runs of the task that matter now (see
/// `orch_agents::review::prior_reviews`), from the verdicts its claim carried.
pub fn earlier_reviews(reviews: &[ReviewRecord]) -> (Vec<PriorReview>, u32) {
    let records: Vec<PriorReviewRecord> = reviews
        .iter()
        .map(|r| PriorReviewRecord {
            round: r.round,
            verdict: match r.verdict {
                ReviewVerdict::Approve => Verdict::Approve,
                ReviewVerdict::Reject => Verdict::Reject,
            },
            reasons: r.reasons.clone(),
            escalated: r.escalated,
        })
        .collect();
    review::prior_reviews(&records)
}

/// `review` in `result.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewResult {
    /// `approve` or `reject`; none when the reviewer gave no valid answer.
    pub verdict: Option<String>,
    /// The reviewer's reasons.
    pub reasons: Vec<String>,
    /// This review's round.
    pub round: u32,
    /// The most rounds before `needs_review`.
    pub max_rounds: u32,
}

/// How the review ended for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewEnd {
    /// The outcome to report; `None` means give the run back to the queue.
    pub outcome: Option<Outcome>,
    /// The reason recorded with it.
    pub reason: String,
    /// For `result.json`.
    pub result: ReviewResult,
    /// The verdict to record in the store, when the reviewer gave a valid one.
    pub record: Option<ReviewRecord>,
}

/// What the reviewer reads about the run.
pub struct RunForReview<'a> {
    /// The task.
    pub task: &'a Task,
    /// The step results.
    pub steps: Vec<StepSummary>,
    /// The change.
    pub diff: &'a [u8],
    /// Where the reviewer runs.
    pub workdir: &'a Path,
    /// Earlier rejections (feedback).
    pub previous: &'a [PriorReview],
    /// Rounds already used.
    pub rounds_used: u32,
    /// How the reviewer's agent is confined.
    pub sandbox: &'a orch_process::Sandbox,
}

/// Run the review of a run whose steps all succeeded and write `review.json`.
pub async fn review_run(
    agent: &str,
    config: &ProjectConfig,
    prompts: &Prompts,
    bundle: &mut Bundle,
    run: RunForReview<'_>,
    cancel: &CancellationToken,
) -> ReviewEnd {
    let started = now_ms();
    let max_rounds = config.review.max_review_rounds;
    let round = run.rounds_used + 1;
    let diff_text = String::from_utf8_lossy(&run.diff[..run.diff.len().min(DIFF_LIMIT)]);
    let mut diff_text = diff_text.into_owned();
    if run.diff.len() > DIFF_LIMIT {
        diff_text.push_str(&format!(
            "\n[... {} more bytes of the diff are not shown]",
            run.diff.len() - DIFF_LIMIT
        ));
    }
    let request = ReviewRequest {
        task_id: run.task.id.0,
        title: run.task.spec.title.as_str(),
        body: &run.task.spec.body,
        labels: &run.task.spec.labels,
        round,
        steps: run.steps,
        diff: &diff_text,
        previous: run.previous,
        workdir: run.workdir,
        sandbox: run.sandbox,
    };
    let outcome = match review::review(
        agent,
        &config.agents,
        &config.review,
        &config.model_map,
        prompts,
        &request,
        cancel,
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(e) => {
            let reason = format!("the review could not start: {e}");
            return ReviewEnd {
                outcome: Some(Outcome::NeedsReview),
                reason,
                result: ReviewResult {
                    verdict: None,
                    reasons: Vec::new(),
                    round,
                    max_rounds,
                },
                record: None,
            };
        }
    };
    record_exchanges(
        bundle,
        "review",
        agent,
        &outcome.attempts,
        run.workdir.to_owned(),
        started,
    );
    let rounds = review::round_text(round, max_rounds);
    let (end, verdict, reasons, error, escalated) = match &outcome.answer {
        Ok(ReviewAnswer {
            verdict: Verdict::Approve,
            reasons,
        }) => (
            ReviewEnd {
                outcome: Some(Outcome::Succeeded),
                reason: format!("every step succeeded; the review approved ({rounds})"),
                result: result(Some("approve"), reasons, round, max_rounds),
                record: Some(ReviewRecord {
                    round,
                    verdict: ReviewVerdict::Approve,
                    reasons: reasons.clone(),
                    escalated: false,
                }),
            },
            Some(Verdict::Approve),
            reasons.clone(),
            None,
            false,
        ),
        Ok(ReviewAnswer {
            verdict: Verdict::Reject,
            reasons,
        }) => {
            let listed = review::reasons_text(reasons);
            let last_round = round >= max_rounds;
            let (outcome, reason) = if last_round {
                (
                    Some(Outcome::NeedsReview),
                    format!("the review rejected the work in its last {rounds}: {listed}"),
                )
            } else {
                (
                    None,
                    format!("the review rejected the work ({rounds}): {listed}; queued again with the review as feedback"),
                )
            };
            (
                ReviewEnd {
                    outcome,
                    reason,
                    result: result(Some("reject"), reasons, round, max_rounds),
                    record: Some(ReviewRecord {
                        round,
                        verdict: ReviewVerdict::Reject,
                        reasons: reasons.clone(),
                        escalated: last_round,
                    }),
                },
                Some(Verdict::Reject),
                reasons.clone(),
                None,
                last_round,
            )
        }
        Err(error) => (
            ReviewEnd {
                outcome: Some(Outcome::NeedsReview),
                reason: format!(
                    "the reviewer `{agent}` gave no valid answer in {} attempt(s): {error}",
                    outcome.attempts.len()
                ),
                result: result(None, &[], round, max_rounds),
                record: None,
            },
            None,
            Vec::new(),
            Some(error.clone()),
            true,
        ),
    };
    let record = serde_json::json!({
        "agent": outcome.agent,
        "model": outcome.model,
        "round": round,
        "max_rounds": max_rounds,
        "verdict": verdict,
        "reasons": reasons,
        "escalated": escalated,
        "error": error,
        "attempts": outcome.attempts,
    });
    if let Err(e) = bundle.write_json(REVIEW_FILE, &record) {
        tracing::warn!(task = %run.task.id, "could not write {REVIEW_FILE}: {e}");
    }
    end
}

fn result(verdict: Option<&str>, reasons: &[String], round: u32, max_rounds: u32) -> ReviewResult {
    ReviewResult {
        verdict: verdict.map(str::to_owned),
        reasons: reasons.to_vec(),
        round,
        max_rounds,
    }
}
