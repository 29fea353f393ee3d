//! The reviewer: an agent that reads a task's change and step results after its steps
//! succeeded, and approves or rejects with reasons.
//!
//! It must answer JSON `{"verdict": "approve" | "reject", "reasons": [...]}`; a rejection needs
//! at least one reason. An answer that is not valid (or a failed session) is asked again, with
//! the error, up to `max_answer_attempts` times; when none is valid the caller sends the task to
//! `needs_review`: unreviewed work is never approved, and a rejection without reasons would give
//! the next run nothing to act on.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::answer::{self, Exchange};
use crate::prompt::{self, PromptError, Prompts};
use crate::router::ModelMap;

/// `[review]` in `.orch.toml`. Off unless `agent` is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    /// The reviewing agent; none: no review.
    pub agent: Option<String>,
    /// Its model [default: `model_map.review.<agent>`, else the agent's default].
    pub model: Option<String>,
    /// Reviews a task gets before a rejection sends it to `needs_review` instead of the queue.
    pub max_review_rounds: u32,
    /// Answers asked for in one review before giving up on the reviewer.
    pub max_answer_attempts: u32,
    /// Longest wait for one answer.
    pub timeout_seconds: u64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            agent: None,
            model: None,
            max_review_rounds: 3,
            max_answer_attempts: 2,
            timeout_seconds: 600,
        }
    }
}

impl ReviewConfig {
    /// Check the numbers.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_review_rounds == 0 {
            return Err("review.max_review_rounds is 0; it must be at least 1".to_owned());
        }
        if self.max_answer_attempts == 0 {
            return Err("review.max_answer_attempts is 0; it must be at least 1".to_owned());
        }
        Ok(())
    }

    /// The reviewer's model: `[review] model`, else `model_map.review.<agent>`.
    pub fn model_for(&self, agent: &str, model_map: &ModelMap) -> Option<String> {
        self.model
            .clone()
            .or_else(|| model_map.review.get(agent).cloned())
    }
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The work is good.
    Approve,
    /// It is not; the reasons say why.
    Reject,
}

/// A valid answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewAnswer {
    /// The verdict.
    pub verdict: Verdict,
    /// Why (at least one for a rejection).
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// Read and validate a reviewer's answer.
pub fn parse_answer(answer: &str) -> Result<ReviewAnswer, String> {
    let value = answer::json_object(answer)?;
    let parsed: ReviewAnswer = serde_json::from_value(value).map_err(|e| {
        format!("the answer does not have the expected fields {{verdict: approve|reject, reasons: [..]}}: {e}")
    })?;
    if parsed.reasons.iter().any(|r| r.trim().is_empty()) {
        return Err("the answer has an empty reason".to_owned());
    }
    if parsed.verdict == Verdict::Reject && parsed.reasons.is_empty() {
        return Err(
            "the answer rejects without reasons; a rejection must say what to fix".to_owned(),
        );
    }
    Ok(parsed)
}

/// An earlier review of the same task, for the prompts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorReview {
    /// Its round.
    pub round: u32,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its reasons.
    pub reasons: Vec<String>,
}

/// One step's result as the reviewer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepSummary {
    /// The step's name.
    pub name: String,
    /// `succeeded`, `failed`, ...
    pub status: String,
    /// What it reported.
    pub summary: String,
}

/// What the reviewer is asked about.
#[derive(Debug, Clone)]
pub struct ReviewRequest<'a> {
    /// Task id.
    pub task_id: i64,
    /// Title.
    pub title: &'a str,
    /// Body.
    pub body: &'a str,
    /// Labels.
    pub labels: &'a [String],
    /// This review's round (1 for the first review of the task).
    pub round: u32,
    /// The steps' results.
    pub steps: Vec<StepSummary>,
    /// The change against the base branch.
    pub diff: &'a str,
    /// Earlier rejections of this task.
    pub previous: &'a [PriorReview],
    /// Where the reviewer runs (the task's workspace, so real agents can read the code).
    pub workdir: &'a Path,
    /// How the reviewer's agent is confined: it reads the task's diff, so it is as hostile as
    /// the task (see `answer::ask`); the workspace is readable, never writable, to it.
    pub sandbox: &'a orch_process::Sandbox,
}

/// How a review went: the answer (or why there is none) and every question asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewOutcome {
    /// The reviewing agent.
    pub agent: String,
    /// Its model.
    pub model: Option<String>,
    /// The round.
    pub round: u32,
    /// The most rounds.
    pub max_rounds: u32,
    /// The valid answer, or the last error.
    pub answer: Result<ReviewAnswer, String>,
    /// The questions, in order.
    pub attempts: Vec<Exchange>,
}

/// Ask the reviewer. `agent` is `config.agent`, passed in so callers check it is set.
#[allow(clippy::too_many_arguments)]
pub async fn review(
    agent: &str,
    agents: &crate::AgentsConfig,
    config: &ReviewConfig,
    model_map: &ModelMap,
    prompts: &Prompts,
    request: &ReviewRequest<'_>,
    cancel: &CancellationToken,
) -> Result<ReviewOutcome, PromptError> {
    let model = config.model_for(agent, model_map);
    let mut attempts = Vec::new();
    let mut last_error = String::new();
    for attempt in 1..=config.max_answer_attempts {
        let context = json!({
            "task": { "id": request.task_id, "title": request.title, "body": request.body, "labels": request.labels },
            "round": request.round,
            "max_rounds": config.max_review_rounds,
            "steps": request.steps,
            "diff": request.diff,
            "previous_reviews": request.previous,
            "attempt": attempt,
            "previous_error": (attempt > 1).then(|| last_error.clone()),
        });
        let prompt = prompts.render(prompt::REVIEW, context)?;
        let (outcome, events) = answer::ask(
            agent,
            agents,
            model.as_deref(),
            &prompt,
            request.workdir,
            request.sandbox,
            Duration::from_secs(config.timeout_seconds),
            cancel,
        )
        .await;
        let (text, parsed) = match outcome {
            Ok(text) => {
                let parsed = parse_answer(&text);
                (Some(text), parsed)
            }
            Err(e) => (None, Err(format!("the reviewer failed: {e}"))),
        };
        attempts.push(Exchange {
            attempt,
            prompt,
            answer: text,
            error: parsed.as_ref().err().cloned(),
            events,
        });
        match parsed {
            Ok(answer) => {
                return Ok(ReviewOutcome {
                    agent: agent.to_owned(),
                    model,
                    round: request.round,
                    max_rounds: config.max_review_rounds,
                    answer: Ok(answer),
                    attempts,
                })
            }
            Err(e) => last_error = e,
        }
        if cancel.is_cancelled() {
            break;
        }
    }
    Ok(ReviewOutcome {
        agent: agent.to_owned(),
        model,
        round: request.round,
        max_rounds: config.max_review_rounds,
        answer: Err(last_error),
        attempts,
    })
}

/// The earlier reviews of a task that matter now, from its `review.json` files in attempt
/// order: `feedback` holds the rejections since the last approval (what the next run must
/// address); `rounds_used` counts the rejections since the last escalation to `needs_review`,
/// so a task a human retried gets a fresh set of rounds but keeps the feedback.
pub fn prior_reviews(reviews: &[PriorReviewRecord]) -> (Vec<PriorReview>, u32) {
    let mut feedback = Vec::new();
    let mut rounds_used = 0;
    for record in reviews {
        match record.verdict {
            Verdict::Approve => {
                feedback.clear();
                rounds_used = 0;
            }
            Verdict::Reject => {
                feedback.push(PriorReview {
                    round: record.round,
                    verdict: record.verdict,
                    reasons: record.reasons.clone(),
                });
                rounds_used += 1;
                if record.escalated {
                    rounds_used = 0;
                }
            }
        }
    }
    (feedback, rounds_used)
}

/// What `prior_reviews` reads from one `review.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PriorReviewRecord {
    /// Its round.
    pub round: u32,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its reasons.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Whether that rejection sent the task to `needs_review`.
    #[serde(default)]
    pub escalated: bool,
}

/// Labels per review round, for messages: `round 2 of 3`.
pub fn round_text(round: u32, max: u32) -> String {
    format!("round {round} of {max}")
}

/// Reasons as one line: `a; b; c`.
pub fn reasons_text(reasons: &[String]) -> String {
    reasons.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_validated() {
        let ok = parse_answer("{\"verdict\": \"reject\", \"reasons\": [\"no test\"]}").expect("ok");
        assert_eq!(ok.verdict, Verdict::Reject);
        assert_eq!(
            parse_answer("Looks good: {\"verdict\": \"approve\"}")
                .expect("ok")
                .reasons,
            Vec::<String>::new()
        );
        for (answer, expected) in [
            ("LGTM", "no JSON object"),
            ("{\"verdict\": \"maybe\"}", "unknown variant `maybe`"),
            ("{\"verdict\": \"reject\"}", "rejects without reasons"),
            (
                "{\"verdict\": \"reject\", \"reasons\": [\" \"]}",
                "empty reason",
            ),
            (
                "{\"verdict\": \"approve\", \"score\": 3}",
                "unknown field `score`",
            ),
        ] {
            let error = parse_answer(answer).expect_err(answer);
            assert!(error.contains(expected), "{answer}: {error}");
        }
    }

    fn record(round: u32, verdict: Verdict, escalated: bool) -> PriorReviewRecord {
        PriorReviewRecord {
            round,
            verdict,
            reasons: vec![format!("reason {round}")],
            escalated,
        }
    }

    #[test]
    fn rounds_restart_after_an_approval_or_an_escalation_but_feedback_survives_escalation() {
        use Verdict::*;
        let (feedback, used) = prior_reviews(&[record(1, Reject, false), record(2, Reject, false)]);
        assert_eq!((feedback.len(), used), (2, 2));
        let (feedback, used) =
            prior_reviews(&[record(1, Reject, false), record(2, Approve, false)]);
        assert_eq!((feedback.len(), used), (0, 0));
        let (feedback, used) = prior_reviews(&[record(1, Reject, false), record(2, Reject, true)]);
        assert_eq!((feedback.len(), used), (2, 0));
    }

    #[tokio::test]
    async fn an_invalid_answer_is_asked_again_and_then_reported_as_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ReviewConfig {
            agent: Some("sim".into()),
            ..ReviewConfig::default()
        };
        let request = ReviewRequest {
            task_id: 1,
            title: "t",
            body: "@answer looks fine to me",
            labels: &[],
            round: 1,
            steps: Vec::new(),
            diff: "",
            previous: &[],
            workdir: dir.path(),
            sandbox: &orch_process::Sandbox::Off,
        };
        let outcome = review(
            "sim",
            &crate::AgentsConfig::default(),
            &config,
            &ModelMap::default(),
            &Prompts::builtin(),
            &request,
            &CancellationToken::new(),
        )
        .await
        .expect("rendered");
        assert_eq!(outcome.attempts.len(), 2);
        assert!(outcome
            .answer
            .expect_err("invalid")
            .contains("no JSON object"));
    }
}
