//! The forge poller on the leader: what a machine no webhook reaches still sees. Every linked
//! project with credentials is read back every `poll_interval` (`[forge]`, default 60s), or at
//! once when a webhook of a pull request's event [`nudge`]s it:
//!
//! - **issues**: open issues with the trigger label become tasks exactly once, through the same
//!   path and ids as the webhook's (`api::webhooks::issue_task`, `App::submit_issue`), so an
//!   issue seen by both is one task;
//! - **pull requests**: each task with a pull request whose merge or closing is not handled
//!   yet is looked at (the GraphQL overview, then the head's check runs and statuses, the
//!   reviews and review comments; GETs are conditional, so an unchanged pull request costs no
//!   quota), the reaction decided by `orch_core::forge::feedback::decide` and carried out
//!   through `App::react_to_pull` (follow-up run, `needs_review`, outbox writes) in one
//!   transaction with its causes, so a restart neither repeats nor loses one; a conflict's
//!   follow-up first has the base merged into the branch (`forge_conflict`);
//! - **mentions**: `@orch` comments on linked issues and pull requests (`forge_mentions`).
//!
//! A merged pull request also removes the task's worktree (and, with `delete_branch_on_merge`,
//! its local branch) in this home's checkout, before the reaction is recorded (removing twice is
//! harmless). Worktrees are per worker host: a task that ran on a remote worker keeps its
//! worktree there until that worker's retention (`orch gc`) sees its branch merged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use orch_app::forge::IssueRef;
use orch_app::{App, ProjectDir};
use orch_core::forge::feedback::{
    decide, CheckFact, CheckOutcome, Mergeability, PullFacts, PullState, Reaction,
    ReviewCommentFact, ReviewFact, ReviewVerdict, RoundKind, TaskFeedback,
};
use orch_core::forge::ForgeSettings;
use orch_core::{ProjectId, Task};
use orch_forge::{CheckConclusion, CheckStatus, Forge, IssueQuery, RepoRef, StateFilter};
use orch_store::{Project, Store};
use tokio::sync::Notify;

/// The actor named in events of what the poller does.
const ACTOR: &str = "forge-poll";

/// The webhook events that nudge the poller.
pub const NUDGING_EVENTS: [&str; 6] = [
    "check_run",
    "check_suite",
    "status",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
];

fn nudges() -> &'static Notify {
    static NUDGES: OnceLock<Notify> = OnceLock::new();
    NUDGES.get_or_init(Notify::new)
}

/// Ask the poller to read the pull requests back now (a webhook said one changed). A nudge
/// while a pass runs is kept for the next one.
pub fn nudge() {
    nudges().notify_one();
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Issues that became tasks now.
    pub created: u64,
    /// Reactions carried out.
    pub reactions: u64,
}

/// The poller's state: when each project was last read back, and the forge clients it shares
/// with the outbox's writer (one client per credential, so a rate limit one of them meets
/// holds back the other's requests too, and the conditional-request cache is kept across
/// passes).
pub struct ForgePoller {
    clients: Arc<crate::forge_writer::GitHubWriter>,
    /// Comments mentioning `@<handle>` start follow-ups (`orch serve --github-handle`).
    handle: String,
    last: BTreeMap<ProjectId, Instant>,
}

impl ForgePoller {
    /// A poller taking its clients from `clients`, acting on mentions of `@<handle>`.
    pub fn new(clients: Arc<crate::forge_writer::GitHubWriter>, handle: &str) -> ForgePoller {
        ForgePoller {
            clients,
            handle: handle.to_owned(),
            last: BTreeMap::new(),
        }
    }

    /// Read back every linked project that is due (all of them when `all`).
    pub async fn pass(&mut self, app: &App, home: &Path, all: bool) -> PollReport {
        let mut report = PollReport::default();
        let store = app.store();
        let (projects, links) = match (store.projects().await, store.project_forges().await) {
            (Ok(projects), Ok(links)) => (projects, links),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("the forge poller could not read the projects: {e}");
                return report;
            }
        };
        for link in links {
            let Some(project) = projects.iter().find(|p| p.id == link.project) else {
                continue;
            };
            let settings = match crate::forge::settings(home, Path::new(&project.path), Some(&link))
            {
                Ok(Some(settings)) if settings.auth.is_some() => settings,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(project = %project.path, "forge settings: {e}");
                    continue;
                }
            };
            let forge = match self.clients.client(&settings) {
                Ok(forge) => forge,
                Err(
                    crate::forge_outbox::SendError::Retry { message, .. }
                    | crate::forge_outbox::SendError::Refused(message),
                ) => {
                    tracing::warn!(project = %project.path, "the forge client: {message}");
                    continue;
                }
            };
            let due = self
                .last
                .get(&project.id)
                .is_none_or(|last| last.elapsed() >= settings.feedback.poll_interval);
            if !(due || all) {
                continue;
            }
            self.last.insert(project.id, Instant::now());
            match intake(app, project, &forge, &settings).await {
                Ok(created) => report.created += created,
                Err(e) => tracing::warn!(repo = %settings.repo, "polling issues: {e}"),
            }
            match pulls(app, home, project, &forge, &settings).await {
                Ok(reactions) => report.reactions += reactions,
                Err(e) => tracing::warn!(repo = %settings.repo, "polling pull requests: {e}"),
            }
            // Mentions of the handle on the linked issues and pull requests.
            match crate::forge_mentions::poll(app, project, &forge, &settings, &self.handle).await {
                Ok(started) => report.reactions += started,
                Err(e) => tracing::warn!(repo = %settings.repo, "polling mentions: {e}"),
            }
        }
        report
    }
}

fn repo_ref(settings: &ForgeSettings) -> Result<RepoRef, String> {
    RepoRef::parse(&settings.repo.to_string()).map_err(|e| e.to_string())
}

/// Open issues with the trigger label become tasks (once each).
async fn intake(
    app: &App,
    project: &Project,
    forge: &Forge,
    settings: &ForgeSettings,
) -> Result<u64, String> {
    let repo = repo_ref(settings)?;
    let issues = forge
        .list_issues(
            &repo,
            &IssueQuery {
                labels: vec![settings.trigger_label.clone()],
                state: StateFilter::Open,
                since: None,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let dir = ProjectDir::resolve(&project.path, "project").map_err(|e| e.to_string())?;
    let mut created = 0;
    for issue in issues {
        let (request, key, deliveries) = crate::api::webhooks::issue_task(
            &settings.repo.to_string(),
            issue.number,
            &issue.title,
            issue.body.clone().unwrap_or_default(),
            issue.html_url.as_deref(),
            issue.labels.iter().map(|l| l.name.clone()).collect(),
        );
        let mut task = match crate::api::tasks::new_task(request) {
            Ok(task) => task,
            Err(e) => {
                tracing::warn!(issue = issue.number, "the issue is not a task: {e:?}");
                continue;
            }
        };
        task.spec.key = Some(key);
        // An issue with the plan label is planned first, as when it arrives by webhook.
        orch_core::planner::plan_if_labelled(&mut task.spec, &settings.plan_label);
        let issue_ref = IssueRef {
            repo: settings.repo.clone(),
            number: issue.number,
            body: issue.body.unwrap_or_default(),
        };
        match app
            .submit_issue(&dir, &issue_ref, &deliveries, task, ACTOR)
            .await
        {
            Ok(submitted) if submitted.created => created += 1,
            Ok(_) => {}
            Err(e) => tracing::warn!(issue = issue.number, "the issue's task: {e}"),
        }
    }
    Ok(created)
}

/// Look at the project's tasks with pull requests and carry out what each calls for.
async fn pulls(
    app: &App,
    home: &Path,
    project: &Project,
    forge: &Forge,
    settings: &ForgeSettings,
) -> Result<u64, String> {
    let store = app.store();
    let repo = repo_ref(settings)?;
    let config = settings.feedback_config();
    let mut reactions = 0;
    for id in store
        .tasks_with_open_pulls()
        .await
        .map_err(|e| e.to_string())?
    {
        let task = store.task(id).await.map_err(|e| e.to_string())?;
        if task.project != project.id {
            continue;
        }
        let Some(link) = store.forge_link(id).await.map_err(|e| e.to_string())? else {
            continue;
        };
        let Some(number) = link.pr_number else {
            continue;
        };
        let pull = match pull_facts(forge, &repo, number).await {
            Ok(pull) => pull,
            Err(e) => {
                tracing::warn!(task = %id, pull = number, "reading the pull request: {e}");
                continue;
            }
        };
        let state = store.forge_feedback(id).await.map_err(|e| e.to_string())?;
        // The local branch's tip: a done task's commit the forge sync has not pushed yet.
        let last_commit = if task.status == orch_core::Status::Done {
            crate::forge_conflict::last_commit(store, home, project, &task).await
        } else {
            None
        };
        let facts = TaskFeedback {
            status: task.status,
            pushed_commit: link.pushed_commit.clone(),
            last_commit,
            issue: link.issue,
            rounds: state.rounds,
            reacted: state.reacted,
        };
        let reaction = match decide(&pull, &facts, &config) {
            Reaction::Nothing { why } => {
                tracing::debug!(task = %id, pull = number, "{why}");
                continue;
            }
            // The base is merged into the branch first; the prompt says what is left to do.
            Reaction::FollowUp {
                kind: RoundKind::Conflict,
                causes,
                ..
            } => match crate::forge_conflict::prepare(
                store, home, project, forge, settings, &task, &pull,
            )
            .await
            {
                Ok(prompt) => Reaction::FollowUp {
                    kind: RoundKind::Conflict,
                    causes,
                    prompt,
                },
                Err(e) => {
                    tracing::warn!(task = %id, pull = number, "merging the base into the branch: {e}");
                    continue;
                }
            },
            reaction => reaction,
        };
        // A done task's worktree goes before the merge is recorded (removing twice is
        // harmless); an unfinished task's after, once its run is cancelled.
        let finish_unfinished = match &reaction {
            Reaction::Finish { delete_branch, .. } if task.status == orch_core::Status::Done => {
                clean_up(home, project, &task, *delete_branch).await;
                None
            }
            Reaction::Finish { delete_branch, .. } => Some(*delete_branch),
            _ => None,
        };
        let reacted = app.react_to_pull(id, project.id, &reaction, ACTOR).await;
        if let (Some(delete_branch), Ok(_)) = (finish_unfinished, &reacted) {
            clean_up(home, project, &task, delete_branch).await;
        }
        match reacted {
            Ok(true) => {
                tracing::info!(task = %id, pull = number, reaction = reaction.name(), "reacted to the pull request");
                reactions += 1;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(task = %id, pull = number, "reacting to the pull request: {e}")
            }
        }
    }
    Ok(reactions)
}

/// The merged task's worktree, and with `delete_branch` its local branch, in this home.
async fn clean_up(home: &Path, project: &Project, task: &Task, delete_branch: bool) {
    let branch = orch_worker::workspace::TaskChange::branch_of(
        home,
        &PathBuf::from(&project.path),
        task.id.0,
    )
    .await
    .ok()
    .flatten()
    .map(|(branch, _)| branch);
    match crate::retention::remove_task_workspace(home, task.id).await {
        Ok(Some(path)) => {
            tracing::info!(task = %task.id, "removed the merged task's worktree {}", path.display())
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(task = %task.id, "{e}"),
    }
    if let (true, Some(branch)) = (delete_branch, branch) {
        let dir = PathBuf::from(&project.path);
        let scope = orch_worker::workspace::GitScope::Discover { dir: &dir };
        let deleted = orch_worker::workspace::git_command(&scope, &["branch", "-D", "--", &branch])
            .output()
            .await;
        if !deleted.is_ok_and(|o| o.status.success()) {
            tracing::warn!(task = %task.id, "could not delete the local branch {branch}");
        }
    }
}

/// What the forge shows of pull request `number`: the overview, and for an open one the head's
/// checks and statuses and the reviews and review comments.
async fn pull_facts(forge: &Forge, repo: &RepoRef, number: u64) -> Result<PullFacts, String> {
    let text = |e: orch_forge::ForgeError| e.to_string();
    let overview = forge.pull_overview(repo, number).await.map_err(text)?;
    let mut pull = PullFacts {
        number,
        state: match overview.state {
            orch_forge::PullState::Open => PullState::Open,
            orch_forge::PullState::Closed => PullState::Closed,
            orch_forge::PullState::Merged => PullState::Merged,
        },
        mergeable: match overview.mergeable {
            orch_forge::Mergeable::Mergeable => Mergeability::Mergeable,
            orch_forge::Mergeable::Conflicting => Mergeability::Conflicting,
            orch_forge::Mergeable::Unknown => Mergeability::Unknown,
        },
        head_sha: overview.head_sha.clone(),
        head_branch: overview.head_ref_name.clone(),
        base_branch: overview.base_ref_name.clone(),
        checks: Vec::new(),
        reviews: Vec::new(),
        review_comments: Vec::new(),
    };
    if pull.state != PullState::Open {
        return Ok(pull);
    }
    let head = overview.head_sha.as_str();
    for run in forge.check_runs(repo, head).await.map_err(text)? {
        let outcome = match (&run.status, &run.conclusion) {
            (CheckStatus::Completed, Some(conclusion)) if conclusion.is_failing() => {
                CheckOutcome::Failed
            }
            (CheckStatus::Completed, _) => CheckOutcome::Passed,
            _ => CheckOutcome::Pending,
        };
        let output = &run.output;
        let excerpt = [&output.title, &output.summary, &output.text]
            .into_iter()
            .flatten()
            .map(|part| part.trim())
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        pull.checks.push(CheckFact {
            id: format!("check-run:{}", run.id),
            name: run.name.clone(),
            head_sha: if run.head_sha.is_empty() {
                head.to_owned()
            } else {
                run.head_sha.clone()
            },
            outcome,
            conclusion: run
                .conclusion
                .as_ref()
                .map_or_else(String::new, conclusion_name),
            excerpt,
        });
    }
    let combined = forge.combined_status(repo, head).await.map_err(text)?;
    for status in combined.statuses {
        let outcome = match status.state.as_str() {
            "success" => CheckOutcome::Passed,
            "failure" | "error" => CheckOutcome::Failed,
            _ => CheckOutcome::Pending,
        };
        pull.checks.push(CheckFact {
            id: format!("status:{}:{}", status.context, status.state),
            name: status.context.clone(),
            head_sha: combined.sha.clone(),
            outcome,
            conclusion: status.state.clone(),
            excerpt: status.description.clone().unwrap_or_default(),
        });
    }
    for review in forge.reviews(repo, number).await.map_err(text)? {
        pull.reviews.push(ReviewFact {
            id: review.id,
            author: review.user.map(|u| u.login).unwrap_or_default(),
            verdict: match review.state {
                orch_forge::ReviewState::Approved => ReviewVerdict::Approved,
                orch_forge::ReviewState::ChangesRequested => ReviewVerdict::ChangesRequested,
                orch_forge::ReviewState::Commented => ReviewVerdict::Commented,
                _ => ReviewVerdict::Other,
            },
            body: review.body.unwrap_or_default(),
        });
    }
    for comment in forge.review_comments(repo, number).await.map_err(text)? {
        pull.review_comments.push(ReviewCommentFact {
            id: comment.id,
            review: comment.pull_request_review_id,
            author: comment.user.map(|u| u.login).unwrap_or_default(),
            path: comment.path,
            line: comment.line,
            body: comment.body,
        });
    }
    Ok(pull)
}

fn conclusion_name(conclusion: &CheckConclusion) -> String {
    match conclusion {
        CheckConclusion::Success => "success",
        CheckConclusion::Failure => "failure",
        CheckConclusion::Neutral => "neutral",
        CheckConclusion::Cancelled => "cancelled",
        CheckConclusion::Skipped => "skipped",
        CheckConclusion::TimedOut => "timed_out",
        CheckConclusion::ActionRequired => "action_required",
        CheckConclusion::Stale => "stale",
        CheckConclusion::StartupFailure => "startup_failure",
        CheckConclusion::Other => "other",
    }
    .to_owned()
}

/// How often the loop looks whether a project is due.
const TICK: Duration = Duration::from_secs(1);

/// The poller on the leader: due projects every [`TICK`], all of them at once on a nudge.
pub async fn poll_loop(
    store: Store,
    home: PathBuf,
    clients: Arc<crate::forge_writer::GitHubWriter>,
    handle: String,
    leadership: crate::scheduler::Leadership,
    stop: tokio_util::sync::CancellationToken,
) {
    let app = App::new(store).with_check(Arc::new(crate::submit_check::ConfigCheck::new(&home)));
    let mut poller = ForgePoller::new(clients, &handle);
    let mut nudged = false;
    loop {
        if leadership.is_leader() {
            // A stop ends a pass at once (a forge that does not answer must not hold up a
            // shutdown); each reaction is one transaction, so none is left half done.
            let report = tokio::select! {
                () = stop.cancelled() => return,
                report = poller.pass(&app, &home, nudged) => report,
            };
            if report != PollReport::default() {
                tracing::info!(
                    created = report.created,
                    reactions = report.reactions,
                    "forge poll"
                );
            }
        }
        nudged = false;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
            () = nudges().notified() => nudged = true,
        }
    }
}
