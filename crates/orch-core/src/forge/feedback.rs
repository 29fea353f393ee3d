//! The feedback loop of a task's pull request, as a pure decision: from what the forge shows of
//! the pull request ([`PullFacts`]: its state, mergeability, checks and statuses, reviews and
//! review comments on its head) and what orch knows of the task ([`TaskFeedback`]: its status,
//! the commit it pushed, the rounds it used, what it already reacted to) under the project's
//! `[forge]` settings ([`FeedbackConfig`]) to one [`Reaction`].
//!
//! Every reaction names its causes ([`Reaction::causes`]: a check run and the head it ran on, a
//! review, a review comment, the merge of a pull request): the caller records them in the same
//! transaction as it carries the reaction out, and a cause already recorded is never reacted to
//! again, so re-reading the same check (after a crash, or on the next poll) does nothing.
//!
//! Order: a merged pull request finishes the task; a closed one sends it to `needs_review`; an
//! open one waits while the task runs or while the pull request's head is not the commit the
//! task pushed last (a stale head); then a conflict starts a rebase run, failing checks a
//! follow-up with their names and log excerpts, changes requested or review comments a follow-up
//! with the comments (file:line); a kind of follow-up past the round limit sends the task to
//! `needs_review` instead; with auto-merge on, a pull request with its approvals and all checks
//! green is merged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::lifecycle::{EventKind, Status};
use crate::plan::{Effect, Move, Plan, Refusal};

use super::{ForgeFile, ForgeOp, ForgeSettings, MergeMethod};

/// How often issues and pull requests are read back unless `poll_interval` says otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The feedback keys of `[forge]`, checked (the round limit, auto-merge and branch deletion are
/// [`ForgeSettings`]' own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackSettings {
    /// `react_to_checks`.
    pub checks: bool,
    /// `react_to_reviews`.
    pub reviews: bool,
    /// `rebase_on_conflict`.
    pub conflicts: bool,
    /// `required_approvals`.
    pub required_approvals: u32,
    /// `poll_interval`.
    pub poll_interval: Duration,
}

impl FeedbackSettings {
    /// Check the feedback keys of `file`; an error names the key and the fix.
    pub fn check(file: &ForgeFile) -> Result<FeedbackSettings, String> {
        let poll_interval = match file.poll_interval.as_deref().map(str::trim) {
            None => DEFAULT_POLL_INTERVAL,
            Some(text) => humantime::parse_duration(text).map_err(|e| {
                format!("forge.poll_interval: `{text}` is not a duration ({e}); write e.g. `60s` or `5m`")
            })?,
        };
        if poll_interval < Duration::from_secs(1) || poll_interval > Duration::from_secs(86_400) {
            return Err(format!(
                "forge.poll_interval: {} is outside 1s..24h; write e.g. `60s`",
                humantime::format_duration(poll_interval)
            ));
        }
        Ok(FeedbackSettings {
            checks: file.react_to_checks.unwrap_or(true),
            reviews: file.react_to_reviews.unwrap_or(true),
            conflicts: file.rebase_on_conflict.unwrap_or(true),
            required_approvals: file.required_approvals.unwrap_or(1),
            poll_interval,
        })
    }
}

impl ForgeSettings {
    /// What the feedback loop decides with.
    pub fn feedback_config(&self) -> FeedbackConfig {
        FeedbackConfig {
            checks: self.feedback.checks,
            reviews: self.feedback.reviews,
            conflicts: self.feedback.conflicts,
            round_limit: self.round_limit,
            auto_merge: self.auto_merge,
            required_approvals: self.feedback.required_approvals,
            delete_branch: self.delete_branch_on_merge,
        }
    }
}

/// Most characters of one check's log excerpt in a prompt.
pub const MAX_EXCERPT_CHARS: usize = 4_000;

/// Most characters of one review comment in a prompt.
pub const MAX_COMMENT_CHARS: usize = 4_000;

/// The feedback settings of `[forge]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackConfig {
    /// Failing checks and statuses start follow-up runs.
    pub checks: bool,
    /// Reviews requesting changes and review comments start follow-up runs.
    pub reviews: bool,
    /// A conflict with the base branch starts a rebase run.
    pub conflicts: bool,
    /// Follow-up runs of one kind before the task goes to `needs_review`.
    pub round_limit: u32,
    /// Merge an approved, green pull request this way (`None`: never).
    pub auto_merge: Option<MergeMethod>,
    /// Approvals a merge needs.
    pub required_approvals: u32,
    /// Delete the head branch once merged.
    pub delete_branch: bool,
}

/// A pull request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    /// Open.
    Open,
    /// Closed without being merged.
    Closed,
    /// Merged.
    Merged,
}

/// Whether the pull request merges cleanly into its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mergeability {
    /// It does.
    Mergeable,
    /// It conflicts.
    Conflicting,
    /// The forge has not worked it out yet.
    Unknown,
}

/// Where a check or status is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Still running (or queued).
    Pending,
    /// Passed (success, neutral, skipped).
    Passed,
    /// Failed (failure, error, timed out, cancelled, action required...).
    Failed,
}

/// One check run or commit status on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFact {
    /// What identifies it on its commit (`check-run:123`, `status:ci/lint`).
    pub id: String,
    /// Its name (a check run's name, a status's context).
    pub name: String,
    /// The commit it ran on.
    pub head_sha: String,
    /// Where it is.
    pub outcome: CheckOutcome,
    /// Its conclusion as the forge says it (`failure`, `timed_out`...).
    pub conclusion: String,
    /// Its output: title, summary, log excerpt (may be empty).
    pub excerpt: String,
}

/// What a review says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVerdict {
    /// Approved.
    Approved,
    /// Changes requested.
    ChangesRequested,
    /// A comment only.
    Commented,
    /// Dismissed, pending, or another state.
    Other,
}

/// One submitted review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewFact {
    /// Its id.
    pub id: u64,
    /// Who wrote it.
    pub author: String,
    /// What it says.
    pub verdict: ReviewVerdict,
    /// Its text.
    pub body: String,
}

/// One comment on a line of the pull request's diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewCommentFact {
    /// Its id.
    pub id: u64,
    /// The review it belongs to.
    pub review: Option<u64>,
    /// Who wrote it.
    pub author: String,
    /// The file.
    pub path: String,
    /// The line (`None`: an outdated comment).
    pub line: Option<u64>,
    /// The comment.
    pub body: String,
}

/// What the forge shows of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFacts {
    /// Its number.
    pub number: u64,
    /// Open, closed or merged.
    pub state: PullState,
    /// Whether it merges cleanly.
    pub mergeable: Mergeability,
    /// Its head commit.
    pub head_sha: String,
    /// Its head branch.
    pub head_branch: String,
    /// Its base branch.
    pub base_branch: String,
    /// Check runs and statuses (of any commit; those of other commits are ignored).
    pub checks: Vec<CheckFact>,
    /// Reviews, oldest first.
    pub reviews: Vec<ReviewFact>,
    /// Review comments, oldest first.
    pub review_comments: Vec<ReviewCommentFact>,
}

/// Which kind of follow-up a round was (each kind has its own round limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoundKind {
    /// Failing checks.
    Checks,
    /// Reviews and review comments.
    Reviews,
    /// A conflict with the base branch.
    Conflict,
}

impl RoundKind {
    /// Every kind.
    pub const ALL: [RoundKind; 3] = [RoundKind::Checks, RoundKind::Reviews, RoundKind::Conflict];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundKind::Checks => "checks",
            RoundKind::Reviews => "reviews",
            RoundKind::Conflict => "conflict",
        }
    }

    /// The kind of a stored name.
    pub fn parse(text: &str) -> Option<RoundKind> {
        RoundKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// What orch knows of the task behind the pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFeedback {
    /// Its status now.
    pub status: Status,
    /// The commit it last pushed to the pull request's branch.
    pub pushed_commit: Option<String>,
    /// The tip of its local branch (its last run's commit), when known. A done task whose tip is
    /// not yet pushed is between a follow-up's end and its push: the pull request's head is
    /// stale, and nothing is decided on it (no merge of the old head, no reaction to old checks).
    pub last_commit: Option<String>,
    /// The issue it came from.
    pub issue: Option<u64>,
    /// Follow-up runs used, per kind.
    pub rounds: BTreeMap<RoundKind, u32>,
    /// Every cause already reacted to.
    pub reacted: BTreeSet<String>,
}

/// What to do about a pull request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing (yet), and why.
    Nothing {
        /// Why, for the log.
        why: String,
    },
    /// A follow-up run of the task with `prompt` (one round of `kind`).
    FollowUp {
        /// Its kind.
        kind: RoundKind,
        /// What caused it.
        causes: Vec<String>,
        /// The message the agent is given.
        prompt: String,
    },
    /// Write to the forge (merge the pull request).
    Merge {
        /// What caused it.
        causes: Vec<String>,
        /// The merge.
        op: ForgeOp,
    },
    /// The pull request was merged: the task is finished; close its issue, remove its worktree
    /// and (when configured) its branch.
    Finish {
        /// What caused it.
        causes: Vec<String>,
        /// The reason a task that is not `done` when this is carried out (merged by a human
        /// during a follow-up run, or while it waits for review) ends `done` with
        /// ([`finish_merged`], decided again on the task's status in the transaction).
        reason: String,
        /// Writes to the forge, each with its idempotency key.
        ops: Vec<(String, ForgeOp)>,
        /// Whether to delete the local branch too.
        delete_branch: bool,
    },
    /// A human must look: the task goes to `needs_review`.
    NeedsReview {
        /// What caused it.
        causes: Vec<String>,
        /// Why.
        reason: String,
    },
}

impl Reaction {
    /// The causes it is recorded under (none for [`Reaction::Nothing`]).
    pub fn causes(&self) -> &[String] {
        match self {
            Reaction::Nothing { .. } => &[],
            Reaction::FollowUp { causes, .. }
            | Reaction::Merge { causes, .. }
            | Reaction::Finish { causes, .. }
            | Reaction::NeedsReview { causes, .. } => causes,
        }
    }

    /// The kind of round it uses, for a follow-up.
    pub fn round(&self) -> Option<RoundKind> {
        match self {
            Reaction::FollowUp { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The stored name of what it does (`follow_up`, `merge`...).
    pub fn name(&self) -> &'static str {
        match self {
            Reaction::Nothing { .. } => "nothing",
            Reaction::FollowUp { .. } => "follow_up",
            Reaction::Merge { .. } => "merge",
            Reaction::Finish { .. } => "finish",
            Reaction::NeedsReview { .. } => "needs_review",
        }
    }
}

/// A done task whose pull request needs a human goes to `needs_review` (closed without a
/// merge, or a kind of follow-up past its round limit).
pub fn escalate(task: &crate::plan::TaskFacts, reason: &str) -> Result<Plan, Refusal> {
    let step = Move::checked(
        task.id,
        task.status,
        EventKind::Escalate,
        Status::NeedsReview,
    )?
    .because(Some(reason.to_owned()));
    Ok(Plan {
        status: Status::NeedsReview,
        effects: vec![Effect::Move(step)],
    })
}

/// A task whose pull request was merged while it was not `done` ends `done` with `reason`; its
/// active run (a follow-up the merge made moot) is cancelled first.
pub fn finish_merged(task: &crate::plan::TaskFacts, reason: &str) -> Result<Plan, Refusal> {
    let mut effects = Vec::new();
    if let Some(run) = task.active_run {
        effects.push(Effect::EndRun {
            run,
            state: crate::model::RunState::Cancelled,
            outcome: reason.to_owned(),
        });
    }
    let step = Move::checked(task.id, task.status, EventKind::PullMerged, Status::Done)?
        .because(Some(reason.to_owned()))
        .of_run(task.active_run);
    effects.push(Effect::Move(step));
    effects.push(Effect::SettleDependents { task: task.id });
    Ok(Plan {
        status: Status::Done,
        effects,
    })
}

/// Why a task whose pull request was merged is done.
pub fn merged_reason(pull: u64) -> String {
    format!("pull request #{pull} was merged")
}

fn nothing(why: impl Into<String>) -> Reaction {
    Reaction::Nothing { why: why.into() }
}

/// The cause of a pull request's merge.
pub fn merged_cause(pull: u64) -> String {
    format!("merged:pr-{pull}")
}

/// The cause of a pull request's closing without a merge.
pub fn closed_cause(pull: u64) -> String {
    format!("closed:pr-{pull}")
}

/// Decide what the pull request calls for now (see the module's docs for the order).
pub fn decide(pull: &PullFacts, task: &TaskFeedback, config: &FeedbackConfig) -> Reaction {
    let fresh = |cause: &str| !task.reacted.contains(cause);
    match pull.state {
        PullState::Merged => {
            let cause = merged_cause(pull.number);
            if !fresh(&cause) {
                return nothing("the merge was handled");
            }
            return finish(pull, task, config, cause);
        }
        PullState::Closed => {
            let cause = closed_cause(pull.number);
            if !fresh(&cause) {
                return nothing("the closing was handled");
            }
            if task.status != Status::Done {
                return nothing(format!(
                    "the pull request was closed; waiting for the task ({}) to finish",
                    task.status.as_str()
                ));
            }
            return Reaction::NeedsReview {
                causes: vec![cause],
                reason: format!(
                    "pull request #{} was closed without being merged",
                    pull.number
                ),
            };
        }
        PullState::Open => {}
    }
    if task.status != Status::Done {
        return nothing(format!(
            "the task is {}; its pull request is looked at once it is done",
            task.status.as_str()
        ));
    }
    if let Some(tip) = task
        .last_commit
        .as_deref()
        .filter(|tip| task.pushed_commit.as_deref() != Some(*tip))
    {
        return nothing(format!(
            "the task's last commit {} is not pushed yet; waiting for it",
            short(tip)
        ));
    }
    if task.pushed_commit.as_deref() != Some(pull.head_sha.as_str()) {
        return nothing(format!(
            "the pull request's head {} is not the task's last push {}; waiting for it",
            short(&pull.head_sha),
            task.pushed_commit.as_deref().map_or("(none)", short)
        ));
    }
    let on_head: Vec<&CheckFact> = pull
        .checks
        .iter()
        .filter(|c| c.head_sha == pull.head_sha)
        .collect();
    if config.conflicts && pull.mergeable == Mergeability::Conflicting {
        let cause = format!("conflict:{}", pull.head_sha);
        if fresh(&cause) {
            return round(
                task,
                config,
                RoundKind::Conflict,
                vec![cause],
                rebase_prompt(pull),
            );
        }
    }
    if config.checks {
        let failing: Vec<&CheckFact> = on_head
            .iter()
            .copied()
            .filter(|c| c.outcome == CheckOutcome::Failed)
            .collect();
        let causes: Vec<String> = failing
            .iter()
            .map(|c| check_cause(c))
            .filter(|cause| fresh(cause))
            .collect();
        if !causes.is_empty() {
            return round(
                task,
                config,
                RoundKind::Checks,
                causes,
                checks_prompt(pull, &failing),
            );
        }
    }
    if config.reviews {
        if let Some((causes, prompt)) = review_feedback(pull, task) {
            return round(task, config, RoundKind::Reviews, causes, prompt);
        }
    }
    let Some(method) = config.auto_merge else {
        return nothing("auto-merge is off");
    };
    if pull.mergeable != Mergeability::Mergeable {
        return nothing("the pull request is not known to merge cleanly");
    }
    if let Some(check) = on_head.iter().find(|c| c.outcome != CheckOutcome::Passed) {
        return nothing(format!("the check `{}` is not green", check.name));
    }
    let (approvals, blocking) = approvals(&pull.reviews);
    if let Some(author) = blocking {
        return nothing(format!("{author} still requests changes"));
    }
    if approvals < config.required_approvals {
        return nothing(format!(
            "{approvals} of {} approvals",
            config.required_approvals
        ));
    }
    let cause = format!("merge:{}", pull.head_sha);
    if !fresh(&cause) {
        return nothing("the merge is enqueued");
    }
    Reaction::Merge {
        causes: vec![cause],
        op: ForgeOp::MergePull {
            pull: pull.number,
            method,
            head_sha: Some(pull.head_sha.clone()),
        },
    }
}

fn finish(
    pull: &PullFacts,
    task: &TaskFeedback,
    config: &FeedbackConfig,
    cause: String,
) -> Reaction {
    let mut ops = Vec::new();
    if let Some(issue) = task.issue {
        ops.push((
            format!("finish:pr-{}:close-issue-{issue}", pull.number),
            ForgeOp::CloseIssue { issue },
        ));
    }
    if config.delete_branch && !pull.head_branch.is_empty() {
        ops.push((
            format!("finish:pr-{}:delete-branch", pull.number),
            ForgeOp::DeleteBranch {
                branch: pull.head_branch.clone(),
            },
        ));
    }
    Reaction::Finish {
        causes: vec![cause],
        reason: merged_reason(pull.number),
        ops,
        delete_branch: config.delete_branch,
    }
}

/// A follow-up of `kind`, or `needs_review` once the kind's rounds are used up.
fn round(
    task: &TaskFeedback,
    config: &FeedbackConfig,
    kind: RoundKind,
    causes: Vec<String>,
    prompt: String,
) -> Reaction {
    let used = task.rounds.get(&kind).copied().unwrap_or(0);
    if used >= config.round_limit {
        return Reaction::NeedsReview {
            causes,
            reason: format!(
                "{used} follow-up run(s) for {} used the round limit ({}); a human must look",
                kind.as_str(),
                config.round_limit
            ),
        };
    }
    Reaction::FollowUp {
        kind,
        causes,
        prompt,
    }
}

fn check_cause(check: &CheckFact) -> String {
    format!("check:{}@{}", check.id, check.head_sha)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    // The end of a log is where the failure usually is.
    let skip = text.chars().count() - max;
    format!("…{}", text.chars().skip(skip).collect::<String>())
}

fn rebase_prompt(pull: &PullFacts) -> String {
    format!(
        "Pull request #{} of your branch `{}` conflicts with its base branch `{}`. Bring your \
         branch up to date with `{}` (merge or rebase it onto the base) and resolve the \
         conflicts, keeping both sides' intent, then finish as before.\n",
        pull.number, pull.head_branch, pull.base_branch, pull.base_branch
    )
}

fn checks_prompt(pull: &PullFacts, failing: &[&CheckFact]) -> String {
    let mut prompt = format!(
        "Checks failed on pull request #{} (commit {}). Fix the cause so they pass, then finish \
         as before.\n",
        pull.number,
        short(&pull.head_sha)
    );
    for check in failing {
        prompt.push_str(&format!(
            "\nCheck `{}` ({}):\n",
            check.name, check.conclusion
        ));
        let excerpt = clip(&check.excerpt, MAX_EXCERPT_CHARS);
        if excerpt.is_empty() {
            prompt.push_str("(no output)\n");
        } else {
            prompt.push_str(&excerpt);
            prompt.push('\n');
        }
    }
    prompt
}

/// The reviews and comments not reacted to yet that ask for something: reviews requesting
/// changes (or commenting with text), and every review comment.
fn review_feedback(pull: &PullFacts, task: &TaskFeedback) -> Option<(Vec<String>, String)> {
    let fresh = |cause: &str| !task.reacted.contains(cause);
    let reviews: Vec<&ReviewFact> = pull
        .reviews
        .iter()
        .filter(|r| {
            let asks = match r.verdict {
                ReviewVerdict::ChangesRequested => true,
                ReviewVerdict::Commented => !r.body.trim().is_empty(),
                ReviewVerdict::Approved | ReviewVerdict::Other => false,
            };
            asks && fresh(&format!("review:{}", r.id))
        })
        .collect();
    let comments: Vec<&ReviewCommentFact> = pull
        .review_comments
        .iter()
        .filter(|c| fresh(&format!("review-comment:{}", c.id)))
        .collect();
    if reviews.is_empty() && comments.is_empty() {
        return None;
    }
    let mut causes: Vec<String> = reviews.iter().map(|r| format!("review:{}", r.id)).collect();
    causes.extend(comments.iter().map(|c| format!("review-comment:{}", c.id)));
    let mut prompt = format!(
        "Review of pull request #{} asks for changes. Address each point, then finish as \
         before.\n",
        pull.number
    );
    for review in &reviews {
        let body = clip(&review.body, MAX_COMMENT_CHARS);
        let what = match review.verdict {
            ReviewVerdict::ChangesRequested => "requests changes",
            _ => "comments",
        };
        prompt.push_str(&format!("\n{} {what}:\n", review.author));
        if !body.is_empty() {
            prompt.push_str(&body);
            prompt.push('\n');
        }
    }
    let mut sorted = comments;
    sorted.sort_by(|a, b| (a.path.as_str(), a.line).cmp(&(b.path.as_str(), b.line)));
    for comment in sorted {
        let place = match comment.line {
            Some(line) => format!("{}:{line}", comment.path),
            None => format!("{} (an outdated line)", comment.path),
        };
        prompt.push_str(&format!(
            "\n{place} ({}):\n{}\n",
            comment.author,
            clip(&comment.body, MAX_COMMENT_CHARS)
        ));
    }
    Some((causes, prompt))
}

/// Approvals (authors whose latest approving or change-requesting review approves) and an author
/// whose latest such review requests changes.
fn approvals(reviews: &[ReviewFact]) -> (u32, Option<String>) {
    let mut latest: BTreeMap<&str, ReviewVerdict> = BTreeMap::new();
    for review in reviews {
        if matches!(
            review.verdict,
            ReviewVerdict::Approved | ReviewVerdict::ChangesRequested
        ) {
            latest.insert(review.author.as_str(), review.verdict);
        }
    }
    let approved = latest
        .values()
        .filter(|v| **v == ReviewVerdict::Approved)
        .count();
    let blocking = latest
        .iter()
        .find(|(_, v)| **v == ReviewVerdict::ChangesRequested)
        .map(|(author, _)| (*author).to_owned());
    (u32::try_from(approved).unwrap_or(u32::MAX), blocking)
}

#[cfg(test)]
mod tests;
