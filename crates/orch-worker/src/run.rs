//! Executing one claimed run: workspace, steps, bundle, and the outcome to report.
//!
//! The lease is heartbeated for the whole run by a companion task; if the coordinator refuses a
//! heartbeat the run's cancellation token fires, every process is stopped, and nothing is
//! reported (the run belongs to someone else now).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orch_agents::{Agent, AgentEvent, AgentRequest, FailureClass, RawOutput};
use orch_core::{Outcome, Status, Step, StepAction, Task};
use orch_store::Claim;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::bundle::{Bundle, ManifestEntry, ResultStatus, RunResult, Usage};
use crate::coordinator::{Coordinator, CoordinatorError};
use crate::exec::{self, ExecPolicy, OutputPaths};
use crate::project::{NonGitMode, ProjectConfig};
use crate::redact::Redactor;
use crate::sandbox::{SandboxDecision, Scratch};
use crate::workspace::{StartRequest, TaskKey, Workspace, WorkspaceError, WorkspaceRequest};

mod agent;
mod ask;
mod budget;
mod command;
mod execute;
mod lease;
mod plan;
mod record;
mod report;

pub use ask::InputTimeout;
pub use execute::execute;

use agent::reply_step;
use lease::*;
pub use report::changed_files;
use report::*;

/// How a worker runs things.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The worker's name (lease owner, event actor).
    pub name: String,
    /// The orch home: `runs/` and `worktrees/` live here.
    pub home: PathBuf,
    /// Lease length.
    pub lease: Duration,
    /// Time between heartbeats (a third of the lease is a good choice).
    pub heartbeat_every: Duration,
    /// Time between SIGTERM and SIGKILL when stopping commands.
    pub kill_grace: Duration,
    /// Agents paused by a rate limit, until when: shared by this process's workers.
    pub agent_pauses: Arc<std::sync::Mutex<BTreeMap<String, Instant>>>,
    /// orch's own secrets this worker holds (a remote worker's worker token), redacted from
    /// every run like a secret value; the tokens in `home` are added at each run.
    pub own_secrets: Vec<String>,
    /// The home's key for secrets kept at rest (info-request answers), for an embedded worker;
    /// a remote worker gets the values opened by the daemon.
    pub secret_box: Option<orch_store::secret_box::SecretBox>,
}

impl WorkerSettings {
    /// Defaults for a worker named `name` in `home`.
    pub fn new(name: impl Into<String>, home: impl Into<PathBuf>) -> Self {
        WorkerSettings {
            name: name.into(),
            home: home.into(),
            lease: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(10),
            kill_grace: Duration::from_secs(5),
            agent_pauses: Arc::default(),
            own_secrets: Vec::new(),
            secret_box: None,
        }
    }

    /// Pause `agent` for `wait`: tasks that need it go back to the queue until then.
    pub fn pause_agent(&self, agent: &str, wait: Duration) {
        // A std mutex: held for one map operation, never across an await.
        if let Ok(mut pauses) = self.agent_pauses.lock() {
            pauses.insert(agent.to_owned(), Instant::now() + wait);
        }
    }

    /// How much longer `agent` is paused, if it is.
    pub fn agent_paused(&self, agent: &str) -> Option<Duration> {
        let pauses = self.agent_pauses.lock().ok()?;
        let until = pauses.get(agent)?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }
}

/// Files in an orch home that hold orch's own secrets (the admin and worker tokens).
pub const HOME_TOKEN_FILES: [&str; 2] = ["token", "worker-token"];

/// orch's own secrets for a run's redactor: the worker's [`WorkerSettings::own_secrets`] plus
/// the tokens found in its home (an embedded worker's home is the daemon's). Read at every run,
/// so a token created after the worker started is covered too.
pub fn own_secrets(settings: &WorkerSettings) -> Vec<String> {
    let mut values = settings.own_secrets.clone();
    values.extend(home_tokens(&settings.home));
    values
}

/// The tokens in `home` ([`HOME_TOKEN_FILES`]) that exist and are not empty.
pub fn home_tokens(home: &Path) -> Vec<String> {
    HOME_TOKEN_FILES
        .iter()
        .filter_map(|name| std::fs::read_to_string(home.join(name)).ok())
        .map(|text| text.trim().to_owned())
        .filter(|token| !token.is_empty())
        .collect()
}

/// How a run ended, from the worker's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Reported to the coordinator with this outcome.
    Reported(Outcome),
    /// Given back to the queue (the worker is shutting down).
    Requeued,
    /// The lease was lost; nothing was reported.
    LeaseLost,
    /// A step asked for values: the run ended and its task awaits input (no slot held).
    Parked,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn rfc3339(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// What one step produced, for `context.json`, `state.json` and the report.
#[derive(Debug, Clone)]
struct StepReport {
    name: String,
    status: ResultStatus,
    summary: String,
    exit_code: Option<i32>,
    usage: Option<Usage>,
    session_id: Option<String>,
    output_tail: String,
    duration_ms: u64,
    error: Option<String>,
    /// For agent steps that failed: the class of failure, which decides retry or not.
    failure: Option<FailureClass>,
    /// For a rate limit with a known reset: the agent, and when (Unix seconds).
    reset: Option<(String, i64)>,
}

/// The outcome of the steps before it is reported.
struct Verdict {
    outcome: Outcome,
    reason: String,
    /// The run was stopped (lease lost, shutdown, cancel) before its steps finished.
    interrupted: bool,
    /// Give the task back to the queue for this long without using an attempt instead of
    /// reporting `outcome`: an agent rate limited until a known time (named, so it is paused),
    /// or a review rejection (no agent, no delay).
    requeue_after: Option<(Option<String>, Duration)>,
}

async fn run_task(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: &Claim,
    cancel: CancellationToken,
    park: &mut Option<orch_store::NewInfoRequest>,
) -> Verdict {
    let task = &claim.task;
    let project_dir = match coordinator.project_dir(task.project).await {
        Ok(dir) => dir,
        Err(e) => {
            return Verdict {
                outcome: Outcome::Failed,
                reason: format!("could not look up the project: {e}"),
                interrupted: false,
                requeue_after: None,
            }
        }
    };
    let config = match ProjectConfig::load_merged(&settings.home, &project_dir) {
        Ok(config) => config,
        Err(e) => {
            return Verdict {
                outcome: Outcome::FailedPermanently,
                reason: e.to_string(),
                interrupted: false,
                requeue_after: None,
            }
        }
    };
    // A step-less task stored before such tasks became agent work (or written to the store
    // directly) gets its implicit agent step now: nothing that does no work ends `done`.
    let implicit;
    let task = if task.spec.steps.is_empty() {
        let mut with_step = task.clone();
        with_step
            .spec
            .steps
            .push(orch_core::input::implicit_agent_step(
                &with_step.spec.title,
                &with_step.spec.body,
            ));
        if let Some(agent) = config.default_agent.as_deref().filter(|a| *a != "auto") {
            with_step.spec.apply_default_agent(agent);
        }
        implicit = with_step;
        &implicit
    } else {
        task
    };
    let prompts = match orch_agents::prompt::Prompts::load(&project_dir) {
        Ok(prompts) => prompts,
        Err(e) => {
            return Verdict {
                outcome: Outcome::FailedPermanently,
                reason: e.to_string(),
                interrupted: false,
                requeue_after: None,
            }
        }
    };
    let secrets = config.secret_values();
    let mut secret_values: Vec<String> = secrets.values().cloned().collect();
    secret_values.extend(own_secrets(settings));
    let inputs = match ask::fetch_inputs(coordinator, settings, claim).await {
        Ok(inputs) => inputs,
        Err(reason) => {
            return Verdict {
                outcome: Outcome::Failed,
                reason,
                interrupted: false,
                requeue_after: None,
            }
        }
    };
    // Answered secrets are redacted from everything the run writes, like configured ones.
    secret_values.extend(inputs.iter().filter(|v| v.secret).map(|v| v.value.clone()));
    let redactor = Redactor::new(&secret_values);
    let mut bundle = match Bundle::create(
        &settings.home.join("runs"),
        task.id.0,
        claim.run.attempt,
        redactor,
    ) {
        Ok(bundle) => bundle,
        Err(e) => {
            return Verdict {
                outcome: Outcome::Failed,
                reason: format!("could not create the run bundle: {e}"),
                interrupted: false,
                requeue_after: None,
            }
        }
    };
    let started = now_ms();
    let mut runner = Runner {
        task,
        attempt: claim.run.attempt,
        run_id: claim.run.id.0,
        settings,
        config: &config,
        secrets,
        bundle: &mut bundle,
        steps: Vec::new(),
        resume_session: claim.reply.as_ref().map(|r| r.session_id.clone()),
        reply: claim.reply.clone(),
        usage: Vec::new(),
        prompts,
        decision: None,
        earlier_reviews: &claim.reviews,
        review_feedback: Vec::new(),
        review_rounds_used: 0,
        keep_work: false,
        review_result: None,
        review_record: None,
        project_dir: project_dir.clone(),
        sandbox: SandboxDecision::Off,
        dependencies: &claim.dependencies,
        children: match coordinator
            .children_context(&settings.name, claim, &settings.home)
            .await
        {
            Ok(children) => children,
            Err(e) => {
                tracing::warn!(task = %task.id, "could not read the task's children: {e}");
                Vec::new()
            }
        },
        inputs,
        park: None,
        claim,
        coordinator,
        planned: false,
    };
    let mut verdict = runner.run(&project_dir, cancel).await;
    *park = runner.park.take();
    if let Some(review) = runner.review_record.take() {
        // Before the completion, while the lease is still this run's.
        if let Err(e) = coordinator
            .record_review(&settings.name, claim.run.id, claim.token, &review)
            .await
        {
            tracing::warn!(task = %task.id, "could not record the review: {e}");
        }
    }
    let usage = std::mem::take(&mut runner.usage);
    if !usage.is_empty() {
        if let Err(e) = coordinator
            .record_usage(&settings.name, claim.run.id, claim.token, &usage)
            .await
        {
            tracing::warn!(task = %task.id, "could not record agent usage: {e}");
        }
    }
    // The reason is stored in the database and shown by `orch task list`: redact it like a file.
    let (redacted, _) = bundle.redactor().redact(verdict.reason.as_bytes());
    verdict.reason = String::from_utf8_lossy(&redacted).into_owned();
    // The end-of-run scan: files a step or agent wrote into the bundle directory are redacted
    // too, before the manifest records digests and before a remote worker uploads the bundle.
    if let Err(e) = bundle.scan_all() {
        tracing::error!(task = %task.id, "could not scan the bundle for secrets: {e}");
    }
    if let Err(e) = bundle.write_manifest() {
        tracing::error!(task = %task.id, "could not write manifest.json: {e}");
    }
    tracing::info!(task = %task.id, attempt = claim.run.attempt, ms = now_ms() - started, outcome = ?verdict.outcome, "run finished");
    verdict
}

struct Runner<'a> {
    task: &'a Task,
    attempt: u32,
    run_id: i64,
    settings: &'a WorkerSettings,
    config: &'a ProjectConfig,
    secrets: BTreeMap<String, String>,
    bundle: &'a mut Bundle,
    steps: Vec<StepReport>,
    /// The agent session a follow-up resumes (`orch task reply`).
    resume_session: Option<String>,
    /// The follow-up this run answers, if any: it runs one agent session instead of the steps.
    reply: Option<orch_store::PendingReply>,
    /// Usage of the agent sessions of this run, reported before completion.
    usage: Vec<orch_store::UsageRecord>,
    /// The project's prompt templates.
    prompts: orch_agents::prompt::Prompts,
    /// The router's decision, when the task has `agent: auto` steps.
    decision: Option<orch_agents::router::RouteDecision>,
    /// The verdicts recorded for earlier runs of the task (from the claim).
    earlier_reviews: &'a [orch_store::ReviewRecord],
    /// Earlier reviews' rejections, for the step prompts.
    review_feedback: Vec<orch_agents::review::PriorReview>,
    /// Review rounds this task has used.
    review_rounds_used: u32,
    /// Commit the work even though the run did not succeed (a review rejected it).
    keep_work: bool,
    /// The review, for `result.json`.
    review_result: Option<crate::review::ReviewResult>,
    /// This run's verdict, recorded in the store before the completion.
    review_record: Option<orch_store::ReviewRecord>,
    /// The main checkout (read-only inside the sandbox).
    project_dir: PathBuf,
    /// Whether steps run confined (decided at claim time).
    sandbox: SandboxDecision,
    /// The task's dependencies (from the claim), in `needs` order.
    dependencies: &'a [orch_store::DependencyRef],
    /// The task's children and their results, for `context.json` (a parent's next step).
    children: Vec<serde_json::Value>,
    /// The values the task was given by answers to its info requests (opened).
    inputs: Vec<orch_store::InputValue>,
    /// A step asked for values: the run parks with this request instead of completing.
    park: Option<orch_store::NewInfoRequest>,
    /// The claim and its coordinator (a planner step creates children through them).
    claim: &'a Claim,
    coordinator: &'a Coordinator,
    /// A planner step created the task's children: the run ends after it, unreviewed.
    planned: bool,
}

impl Runner<'_> {
    /// The task's tool recipes, checked before the worktree is made, as a step would find
    /// them (the PATH steps get): a missing or mismatched tool fails the task for good.
    async fn tools_preflight(&self) -> Option<Verdict> {
        let tools = &self.task.spec.tools;
        if tools.is_empty() {
            return None;
        }
        let path = std::env::var("PATH").ok();
        let problem = crate::task_tree::check_tools(tools, path.as_deref())
            .await
            .err()?;
        Some(Verdict {
            outcome: Outcome::FailedPermanently,
            reason: format!("tool recipe: {problem}"),
            interrupted: false,
            requeue_after: None,
        })
    }

    async fn run(&mut self, project_dir: &Path, cancel: CancellationToken) -> Verdict {
        if let Err(e) = self.write_job(project_dir, None) {
            return Verdict {
                outcome: Outcome::Failed,
                reason: format!("could not write job.json: {e}"),
                interrupted: false,
                requeue_after: None,
            };
        }
        self.write_state("preparing");
        self.write_context();
        let started = now_ms();
        if let Some(verdict) = match self.sandbox_preflight() {
            Some(refused) => Some(refused),
            None => match self.preflight().await {
                Some(refused) => Some(refused),
                None => self.tools_preflight().await,
            },
        } {
            self.log(None, &verdict.reason);
            self.finish(None, started, verdict.outcome, &verdict.reason, None)
                .await;
            return verdict;
        }
        (self.review_feedback, self.review_rounds_used) =
            crate::review::earlier_reviews(self.earlier_reviews);
        let answer_sandbox = self.answer_sandbox();
        match crate::route::route_run(
            self.task,
            self.config,
            &self.prompts,
            self.bundle,
            &answer_sandbox,
            &cancel,
        )
        .await
        {
            Ok(Some(decision)) => {
                self.log(
                    None,
                    &format!(
                        "routed to agent `{}` (model {}, complexity {}) by {}: {}",
                        decision.agent,
                        decision.model.as_deref().unwrap_or("default"),
                        decision.complexity,
                        serde_json::to_value(decision.source)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        decision.why.join("; ")
                    ),
                );
                self.decision = Some(decision);
            }
            Ok(None) => {}
            Err(reason) => {
                self.log(None, &reason);
                self.finish(None, started, Outcome::FailedPermanently, &reason, None)
                    .await;
                return Verdict {
                    outcome: Outcome::FailedPermanently,
                    reason,
                    interrupted: false,
                    requeue_after: None,
                };
            }
        }
        let request = WorkspaceRequest {
            project_dir: project_dir.to_owned(),
            worktrees_root: self.settings.home.join("worktrees"),
            task_id: self.task.id.0,
            title: self.task.spec.title.to_string(),
            base_branch: self.config.base_branch.clone(),
            non_git: self.config.non_git,
            copy_max_bytes: self.config.copy_max_size.bytes(),
            task_created_at: self.task.created_at.0,
            start: StartRequest {
                from: self.task.spec.start_from,
                dependencies: self
                    .dependencies
                    .iter()
                    .filter(|d| d.project == self.task.project && d.status == Status::Done)
                    .map(|d| TaskKey {
                        id: d.id.0,
                        created_at: d.created_at.0,
                    })
                    .collect(),
            },
        };
        let workspace = match Workspace::prepare(&request).await {
            Ok(ws) => ws,
            Err(e) => {
                let outcome = match (&e, self.config.non_git) {
                    (WorkspaceError::NeedsReview(_), _) => Outcome::NeedsReview,
                    // Another attempt would find the project just as large.
                    (WorkspaceError::TooLarge { .. }, _) => Outcome::FailedPermanently,
                    (WorkspaceError::Conflict { .. }, _) => Outcome::FailedPermanently,
                    (WorkspaceError::NotGit(_), NonGitMode::Fail) => Outcome::FailedPermanently,
                    _ => Outcome::Failed,
                };
                let reason = format!("could not prepare the workspace: {e}");
                self.log(None, &reason);
                self.finish(None, started, outcome, &reason, None).await;
                return Verdict {
                    outcome,
                    reason,
                    interrupted: false,
                    requeue_after: None,
                };
            }
        };
        if let Workspace::Git { start, .. } = &workspace {
            if let Err(e) = self.write_job(project_dir, Some(start)) {
                tracing::warn!("could not record the start in job.json: {e}");
            }
        }
        self.log(
            None,
            &format!(
                "workspace {} ({})",
                workspace.path().display(),
                match &workspace {
                    Workspace::Git { branch, start, .. } => format!(
                        "branch {branch}, started at {} from {}{}",
                        start.commit,
                        start.from.as_str(),
                        if start.branches.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", start.branches.join(", "))
                        }
                    ),
                    Workspace::Copy { .. } => "copy".to_owned(),
                }
            ),
        );
        // A known state: the branch's tip (the start plus each finished step's checkpoint),
        // whatever a lost attempt left half-done; the steps checkpointed are not run again.
        let mut completed = std::collections::BTreeMap::new();
        if self.config.auto_commit {
            match workspace.reset_to_tip().await {
                Ok(true) => self.log(
                    None,
                    "discarded what an earlier attempt left unfinished in the worktree (reset to the last checkpoint)",
                ),
                Ok(false) => {}
                Err(e) => {
                    let reason = format!("could not reset the worktree to its last checkpoint: {e}");
                    let outcome = if matches!(e, WorkspaceError::Tampered { .. }) {
                        Outcome::FailedPermanently
                    } else {
                        Outcome::Failed
                    };
                    self.log(None, &reason);
                    self.finish(None, started, outcome, &reason, None).await;
                    return Verdict {
                        outcome,
                        reason,
                        interrupted: false,
                        requeue_after: None,
                    };
                }
            }
            if self.reply.is_none() {
                match workspace.completed_steps().await {
                    Ok(steps) => completed = steps,
                    Err(e) => tracing::warn!("could not read the step checkpoints: {e}"),
                }
            }
        }
        self.write_state("running");

        // The task's own timeout stops everything and sends the task to review.
        let deadline_hit = Arc::new(AtomicBool::new(false));
        let run_cancel = cancel.child_token();
        let timer = self.task.spec.timeout.map(|limit| {
            let run_cancel = run_cancel.clone();
            let hit = Arc::clone(&deadline_hit);
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                hit.store(true, Ordering::SeqCst);
                run_cancel.cancel();
            })
        });

        let mut verdict = Verdict {
            outcome: Outcome::Succeeded,
            reason: "every step succeeded".to_owned(),
            interrupted: false,
            requeue_after: None,
        };
        let steps = match &self.reply {
            Some(reply) => vec![reply_step(reply, &self.task.spec.steps)],
            None => self.task.spec.steps.clone(),
        };
        for (index, step) in steps.iter().enumerate() {
            if verdict.outcome != Outcome::Succeeded {
                self.steps.push(skipped(&step.name));
                continue;
            }
            if let Some(report) = self.done_before(index, step, &completed) {
                self.steps.push(report);
                continue;
            }
            self.clear_ask();
            let mut report = self
                .run_step(index, step, &workspace, run_cancel.clone())
                .await;
            if self.ask_after_step(step, &mut report, &mut verdict) {
                self.steps.push(report);
                self.write_context();
                self.write_state("awaiting_input");
                break;
            }
            if self.after_plan(step, &mut report, &mut verdict).await {
                self.steps.push(report);
                self.write_context();
                break;
            }
            let failed = report.status != ResultStatus::Succeeded;
            if failed {
                verdict = step_verdict(
                    &report,
                    deadline_hit.load(Ordering::SeqCst),
                    self.task.spec.timeout,
                );
            }
            self.steps.push(report);
            self.write_context();
            self.write_state("running");
            if cancel.is_cancelled() {
                break;
            }
        }
        if let Some(timer) = timer {
            timer.abort();
        }
        if cancel.is_cancelled() {
            verdict = Verdict {
                outcome: Outcome::Failed,
                reason: "the run was stopped before its steps finished (lease lost, cancelled or shut down)".into(),
                interrupted: true,
                requeue_after: None,
            };
        }
        if verdict.outcome == Outcome::Succeeded && !verdict.interrupted && !self.planned {
            if let Some(agent) = self.config.review.agent.clone() {
                verdict = self.review(&agent, &workspace, &run_cancel).await;
                if cancel.is_cancelled() {
                    verdict = Verdict {
                        outcome: Outcome::Failed,
                        reason: "the run was stopped during its review (lease lost, cancelled or shut down)".into(),
                        interrupted: true,
                        requeue_after: None,
                    };
                }
            }
        }
        // Whatever the steps did, a worktree whose git metadata the task replaced or redirected
        // fails the run for good: retrying would run the same task into the same trap, and
        // nothing is committed or diffed (`commit_all` and `diff` refuse it too).
        if let Err(refused) = workspace.verify().await {
            self.log(None, &refused.to_string());
            verdict = Verdict {
                outcome: Outcome::FailedPermanently,
                reason: refused.to_string(),
                interrupted: false,
                requeue_after: None,
            };
        }
        let status =
            (verdict.interrupted || self.park.is_some()).then_some(ResultStatus::Cancelled);
        self.finish(
            Some(&workspace),
            started,
            verdict.outcome,
            &verdict.reason,
            status,
        )
        .await;
        verdict
    }

    async fn run_step(
        &mut self,
        index: usize,
        step: &Step,
        workspace: &Workspace,
        cancel: CancellationToken,
    ) -> StepReport {
        let started = now_ms();
        let clock = Instant::now();
        if let Err(e) = self.bundle.step_dir(&step.name) {
            return failed_report(
                &step.name,
                format!("could not create the step directory: {e}"),
                clock,
            );
        }
        self.log(
            Some(&step.name),
            &format!("step {} `{}` started", index + 1, step.name),
        );
        let step_cancel = cancel.child_token();
        let step_timer = step.timeout.map(|limit| {
            let step_cancel = step_cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                step_cancel.cancel();
            })
        });
        let mut report = match &step.action {
            StepAction::Exec { commands } => {
                self.run_exec(step, commands, workspace, step_cancel.clone())
                    .await
            }
            StepAction::Agent {
                agent,
                prompt,
                model,
                profile,
            } => match crate::route::resolve_step(
                agent,
                model.as_deref(),
                profile.as_deref(),
                self.decision.as_ref(),
                self.config,
            ) {
                Ok(resolved) => {
                    self.run_agent(step, resolved, prompt, workspace, step_cancel.clone())
                        .await
                }
                Err(e) => {
                    let mut report = failed_report(&step.name, e.clone(), clock);
                    report.error = Some(format!("refused: {e}"));
                    report
                }
            },
        };
        if let Some(timer) = step_timer {
            timer.abort();
        }
        if step_cancel.is_cancelled()
            && !cancel.is_cancelled()
            && report.status != ResultStatus::Succeeded
        {
            report.status = ResultStatus::NeedsReview;
            if matches!(step.action, StepAction::Agent { .. }) {
                report.failure = Some(FailureClass::Timeout);
            }
            report.error = Some(format!(
                "the step ran past its timeout of {}",
                humantime_duration(step.timeout.unwrap_or_default())
            ));
        }
        report.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let diff = match workspace.diff().await {
            Ok(diff) => diff,
            Err(refused @ WorkspaceError::Tampered { .. }) => {
                // The step changed where git would look: no later step runs in that worktree.
                report.status = ResultStatus::Failed;
                report.error = Some(refused.to_string());
                Vec::new()
            }
            Err(e) => {
                tracing::warn!("diff failed: {e}");
                Vec::new()
            }
        };
        // A finished step is committed on the branch before anything says it finished, so a
        // lost attempt never loses it and the next one never runs it again.
        let mut checkpoint = None;
        if report.status == ResultStatus::Succeeded
            && self.config.auto_commit
            && self.reply.is_none()
            && !cancel.is_cancelled()
            && !self.asked()
        {
            match workspace
                .checkpoint(self.task.id.0, self.run_id, &step.name)
                .await
            {
                Ok(sha) => checkpoint = sha,
                Err(e) => {
                    report.status = ResultStatus::Failed;
                    report.error = Some(format!("could not commit the step's checkpoint: {e}"));
                }
            }
        }
        let step_dir = format!("steps/{}", step.name);
        let _ = self
            .bundle
            .write_bytes(&format!("{step_dir}/patch.diff"), &diff);
        let result = RunResult {
            kind: "step".into(),
            task: self.task.id.0,
            attempt: self.attempt,
            step: Some(step.name.clone()),
            status: report.status,
            summary: report.summary.clone(),
            started_at: rfc3339(started),
            ended_at: rfc3339(now_ms()),
            duration_ms: report.duration_ms,
            exit_code: report.exit_code,
            changed_files: changed_files(&diff),
            commit: checkpoint,
            usage: report.usage,
            session_id: report.session_id.clone(),
            error: report.error.clone(),
            failure_class: report.failure.map(|c| c.as_str().to_owned()),
            review: None,
        };
        self.write_result(&format!("{step_dir}/result.json"), &result);
        let md = format!(
            "# Step `{}`\n\n- status: {}\n- duration: {} ms\n{}{}\n{}\n",
            step.name,
            status_name(report.status),
            report.duration_ms,
            report
                .exit_code
                .map(|c| format!("- exit code: {c}\n"))
                .unwrap_or_default(),
            report
                .error
                .as_ref()
                .map(|e| format!("- error: {e}\n"))
                .unwrap_or_default(),
            report.summary,
        );
        let _ = self
            .bundle
            .write_bytes(&format!("{step_dir}/report.md"), md.as_bytes());
        self.log(
            Some(&step.name),
            &format!(
                "step `{}` {}: {}",
                step.name,
                status_name(report.status),
                report.error.as_deref().unwrap_or(&report.summary)
            ),
        );
        report
    }

    async fn finish(
        &mut self,
        workspace: Option<&Workspace>,
        started: i64,
        outcome: Outcome,
        reason: &str,
        status_override: Option<ResultStatus>,
    ) {
        let mut commit = None;
        if let Some(ws) = workspace {
            if (outcome == Outcome::Succeeded || self.keep_work) && self.config.auto_commit {
                let message = format!(
                    "orch: task {} attempt {}: {}",
                    self.task.id, self.attempt, self.task.spec.title
                );
                let committed = if self.keep_work {
                    ws.end_round(&message).await
                } else {
                    ws.commit_all(&message).await
                };
                match committed {
                    Ok(sha) => commit = sha,
                    Err(e) => self.log(None, &format!("auto-commit failed: {e}")),
                }
            }
        }
        let diff = match workspace {
            Some(ws) => ws.diff().await.unwrap_or_else(|e| {
                tracing::warn!("diff failed: {e}");
                Vec::new()
            }),
            None => Vec::new(),
        };
        if let Err(e) = self.bundle.write_bytes("patch.diff", &diff) {
            tracing::error!(task = %self.task.id, "could not write patch.diff: {e}");
        }
        let usage =
            self.steps
                .iter()
                .filter_map(|s| s.usage)
                .fold(None, |acc: Option<Usage>, u| {
                    let a = acc.unwrap_or_default();
                    Some(Usage {
                        input_tokens: a.input_tokens + u.input_tokens,
                        output_tokens: a.output_tokens + u.output_tokens,
                        cost_usd: a.cost_usd + u.cost_usd,
                    })
                });
        let status = status_override.unwrap_or(match outcome {
            Outcome::Succeeded => ResultStatus::Succeeded,
            Outcome::Failed | Outcome::FailedPermanently => ResultStatus::Failed,
            Outcome::NeedsReview => ResultStatus::NeedsReview,
        });
        let files = changed_files(&diff);
        // The work may already be committed (step checkpoints, or a lost earlier attempt): the
        // result names the commit that holds it whenever there is a change.
        if commit.is_none() && !files.is_empty() && self.config.auto_commit {
            if let Some(ws) = workspace {
                match ws.tip().await {
                    Ok(tip) => commit = tip,
                    Err(e) => tracing::warn!("could not read the branch's tip: {e}"),
                }
            }
        }
        let ended = now_ms();
        let result = RunResult {
            kind: "run".into(),
            task: self.task.id.0,
            attempt: self.attempt,
            step: None,
            status,
            summary: reason.to_owned(),
            started_at: rfc3339(started),
            ended_at: rfc3339(ended),
            duration_ms: u64::try_from(ended - started).unwrap_or(0),
            exit_code: self.steps.iter().rev().find_map(|s| s.exit_code),
            changed_files: files.clone(),
            commit: commit.clone(),
            usage,
            session_id: self.steps.iter().rev().find_map(|s| s.session_id.clone()),
            error: (status != ResultStatus::Succeeded).then(|| reason.to_owned()),
            failure_class: (status != ResultStatus::Succeeded)
                .then(|| self.steps.iter().rev().find_map(|s| s.failure))
                .flatten()
                .map(|c| c.as_str().to_owned()),
            review: self.review_result.clone(),
        };
        self.write_result("result.json", &result);
        let mut md = format!(
            "# Task {}: {}\n\n- attempt: {}\n- status: **{}**\n- {}\n- duration: {} ms\n",
            self.task.id,
            self.task.spec.title,
            self.attempt,
            status_name(status),
            reason,
            result.duration_ms
        );
        if let Some(sha) = &commit {
            md.push_str(&format!("- commit: `{sha}`\n"));
        }
        if let Some(Workspace::Git { branch, path, .. }) = workspace {
            md.push_str(&format!(
                "- branch: `{branch}` (worktree {})\n",
                path.display()
            ));
        }
        md.push_str("\n## Steps\n\n| step | status | duration | summary |\n|---|---|---:|---|\n");
        for s in &self.steps {
            md.push_str(&format!(
                "| {} | {} | {} ms | {} |\n",
                s.name,
                status_name(s.status),
                s.duration_ms,
                s.error
                    .as_deref()
                    .unwrap_or(&s.summary)
                    .replace('|', "\\|")
                    .replace('\n', " ")
            ));
        }
        if !files.is_empty() {
            md.push_str("\n## Changed files\n\n");
            for f in &files {
                md.push_str(&format!("- `{f}`\n"));
            }
        }
        if let Err(e) = self.bundle.write_bytes("report.md", md.as_bytes()) {
            tracing::error!(task = %self.task.id, "could not write report.md: {e}");
        }
        self.write_state(status_name(status).as_str());
        self.log(None, &format!("run {}: {reason}", status_name(status)));
    }
}
