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
use orch_core::{Outcome, Step, StepAction, Task};
use orch_store::Claim;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::bundle::{Bundle, ManifestEntry, ResultStatus, RunResult, Usage};
use crate::coordinator::{Coordinator, CoordinatorError};
use crate::exec::{self, ExecPolicy, OutputPaths};
use crate::project::{NonGitMode, ProjectConfig};
use crate::redact::Redactor;
use crate::workspace::{Workspace, WorkspaceError, WorkspaceRequest};

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

/// How a run ended, from the worker's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Reported to the coordinator with this outcome.
    Reported(Outcome),
    /// Given back to the queue (the worker is shutting down).
    Requeued,
    /// The lease was lost; nothing was reported.
    LeaseLost,
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
    /// For a rate limit with a known reset: when (Unix seconds).
    reset_at: Option<i64>,
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

/// Run one claimed task to the end and report it. `stop` asks the run to stop now (shutdown
/// after the grace period); a stopped run that still holds its lease is requeued.
pub async fn execute(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: Claim,
    stop: CancellationToken,
) -> RunEnd {
    let run = claim.run.id;
    let token = claim.run.lease.token;
    let cancel = stop.child_token();
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat_loop(
        coordinator.clone(),
        settings.clone(),
        run,
        token,
        cancel.clone(),
        Arc::clone(&lost),
    ));
    let bundle_dir = settings
        .home
        .join("runs")
        .join(claim.task.id.0.to_string())
        .join(claim.run.attempt.to_string());
    let bundle_stream = coordinator.stream_bundle(run, token, &bundle_dir);
    let verdict = run_task(coordinator, settings, &claim, cancel.clone()).await;
    heartbeat.abort();
    // The heartbeat task may be mid-call; what matters is whether it saw the lease go.
    let _ = heartbeat.await;
    if lost.load(Ordering::SeqCst) {
        bundle_stream.abandon().await;
        tracing::warn!(task = %claim.task.id, run = %run, "lease lost; the result is not reported");
        return RunEnd::LeaseLost;
    }
    // The bundle reaches the daemon before the outcome, so whoever sees the task finished finds
    // its bundle. One that cannot be delivered does not hold the outcome back.
    match bundle_stream
        .finish(tokio::time::Instant::now() + COMPLETE_RETRY_FOR)
        .await
    {
        Ok(()) => {}
        Err(CoordinatorError::LeaseLost(_)) => return RunEnd::LeaseLost,
        Err(e) => {
            tracing::error!(task = %claim.task.id, "could not upload the run bundle: {e}; reporting the outcome without it")
        }
    }
    if stop.is_cancelled() {
        return match coordinator
            .requeue(
                &settings.name,
                run,
                token,
                Duration::ZERO,
                "the worker shut down before the run finished",
            )
            .await
        {
            Ok(_) => RunEnd::Requeued,
            Err(CoordinatorError::LeaseLost(_)) => RunEnd::LeaseLost,
            Err(e) => {
                tracing::error!(task = %claim.task.id, "could not requeue: {e}; the lease will expire and recovery will requeue it");
                RunEnd::Requeued
            }
        };
    }
    if let Some((agent, delay)) = &verdict.requeue_after {
        if let Some(agent) = agent {
            settings.pause_agent(agent, *delay);
        }
        return match coordinator
            .requeue(&settings.name, run, token, *delay, &verdict.reason)
            .await
        {
            Ok(_) => RunEnd::Requeued,
            Err(CoordinatorError::LeaseLost(_)) => RunEnd::LeaseLost,
            Err(e) => {
                tracing::error!(task = %claim.task.id, "could not requeue: {e}; the lease will expire and recovery will requeue it");
                RunEnd::Requeued
            }
        };
    }
    match complete(coordinator, settings, run, token, &verdict).await {
        Ok(_) => RunEnd::Reported(verdict.outcome),
        Err(CoordinatorError::LeaseLost(_)) => RunEnd::LeaseLost,
        Err(e) => {
            tracing::error!(task = %claim.task.id, "could not report the outcome: {e}; the lease will expire and the task run again");
            RunEnd::LeaseLost
        }
    }
}

/// How long a worker keeps trying to deliver a result to a daemon it cannot reach.
const COMPLETE_RETRY_FOR: Duration = Duration::from_secs(120);

/// Report the outcome, trying again with backoff while the coordinator is unreachable: a
/// completion the daemon already accepted is accepted again, so sending it twice is safe.
async fn complete(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    run: orch_core::RunId,
    token: orch_core::FencingToken,
    verdict: &Verdict,
) -> Result<orch_core::Status, CoordinatorError> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match coordinator
            .complete(
                &settings.name,
                run,
                token,
                verdict.outcome,
                Some(&verdict.reason),
            )
            .await
        {
            Err(e) if e.is_retryable() && started.elapsed() < COMPLETE_RETRY_FOR => {
                tracing::warn!(run = %run, "could not report the outcome: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

async fn heartbeat_loop(
    coordinator: Coordinator,
    settings: WorkerSettings,
    run: orch_core::RunId,
    token: orch_core::FencingToken,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
) {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(settings.heartbeat_every) => {}
        }
        match coordinator
            .heartbeat(&settings.name, run, token, settings.lease)
            .await
        {
            Ok(()) => last_ok = Instant::now(),
            Err(CoordinatorError::LeaseLost(reason)) => {
                tracing::warn!(run = %run, "{reason}");
                lost.store(true, Ordering::SeqCst);
                cancel.cancel();
                return;
            }
            Err(e) => {
                // Fencing: once the lease may have expired, someone else may own the run.
                if last_ok.elapsed() >= settings.lease {
                    tracing::error!(run = %run, "heartbeats failing for a whole lease ({e}); stopping the run");
                    lost.store(true, Ordering::SeqCst);
                    cancel.cancel();
                    return;
                }
                tracing::warn!(run = %run, "heartbeat failed: {e}; retrying");
            }
        }
    }
}

async fn run_task(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: &Claim,
    cancel: CancellationToken,
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
    let redactor = Redactor::new(&secrets.values().cloned().collect::<Vec<_>>());
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
        review_feedback: Vec::new(),
        review_rounds_used: 0,
        keep_work: false,
        review_result: None,
    };
    let mut verdict = runner.run(&project_dir, cancel).await;
    let usage = std::mem::take(&mut runner.usage);
    if !usage.is_empty() {
        if let Err(e) = coordinator
            .record_usage(&settings.name, claim.run.id, claim.run.lease.token, &usage)
            .await
        {
            tracing::warn!(task = %task.id, "could not record agent usage: {e}");
        }
    }
    // The reason is stored in the database and shown by `orch task list`: redact it like a file.
    let (redacted, _) = bundle.redactor().redact(verdict.reason.as_bytes());
    verdict.reason = String::from_utf8_lossy(&redacted).into_owned();
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
    /// Earlier reviews' rejections, for the step prompts.
    review_feedback: Vec<orch_agents::review::PriorReview>,
    /// Review rounds this task has used.
    review_rounds_used: u32,
    /// Commit the work even though the run did not succeed (a review rejected it).
    keep_work: bool,
    /// The review, for `result.json`.
    review_result: Option<crate::review::ReviewResult>,
}

impl Runner<'_> {
    fn log(&mut self, step: Option<&str>, line: &str) {
        let stamped = format!("{} {line}\n", rfc3339(now_ms()));
        if let Err(e) = self.bundle.append("logs.txt", stamped.as_bytes()) {
            tracing::warn!("could not write logs.txt: {e}");
        }
        if let Some(step) = step {
            let _ = self
                .bundle
                .append(&format!("steps/{step}/logs.txt"), stamped.as_bytes());
        }
    }

    fn write_state(&mut self, status: &str) {
        let steps: Vec<_> = self
            .task
            .spec
            .steps
            .iter()
            .map(|step| {
                let done = self.steps.iter().find(|r| r.name == step.name);
                json!({ "name": step.name, "status": done.map_or("pending".to_owned(), |r| status_name(r.status)) })
            })
            .collect();
        let state = json!({
            "task": self.task.id.0, "attempt": self.attempt, "run": self.run_id,
            "status": status, "worker": self.settings.name, "steps": steps, "updated_at": rfc3339(now_ms()),
        });
        if let Err(e) = self.bundle.write_json("state.json", &state) {
            tracing::warn!("could not write state.json: {e}");
        }
    }

    fn write_context(&mut self) {
        let steps: Vec<_> = self
            .steps
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "status": status_name(r.status), "summary": r.summary,
                    "exit_code": r.exit_code, "session_id": r.session_id, "output_tail": r.output_tail,
                })
            })
            .collect();
        let context = json!({
            "task": { "id": self.task.id.0, "title": self.task.spec.title.as_str(), "body": self.task.spec.body, "labels": self.task.spec.labels },
            "attempt": self.attempt,
            "steps": steps,
        });
        if let Err(e) = self.bundle.write_json("context.json", &context) {
            tracing::warn!("could not write context.json: {e}");
        }
    }

    async fn run(&mut self, project_dir: &Path, cancel: CancellationToken) -> Verdict {
        let job = json!({ "task": self.task.id.0, "attempt": self.attempt, "run": self.run_id, "project": project_dir, "spec": self.task.spec });
        if let Err(e) = self.bundle.write_json("job.json", &job) {
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
        if let Some(verdict) = self.preflight().await {
            self.log(None, &verdict.reason);
            self.finish(None, started, verdict.outcome, &verdict.reason, None)
                .await;
            return verdict;
        }
        (self.review_feedback, self.review_rounds_used) = crate::review::earlier_reviews(
            &self.settings.home.join("runs"),
            self.task,
            self.attempt,
        );
        match crate::route::route_run(self.task, self.config, &self.prompts, self.bundle, &cancel)
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
        };
        let workspace = match Workspace::prepare(&request).await {
            Ok(ws) => ws,
            Err(e) => {
                let outcome = match (&e, self.config.non_git) {
                    (WorkspaceError::NeedsReview(_), _) => Outcome::NeedsReview,
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
        self.log(
            None,
            &format!(
                "workspace {} ({})",
                workspace.path().display(),
                match &workspace {
                    Workspace::Git { branch, .. } => format!("branch {branch}"),
                    Workspace::Copy { .. } => "copy".to_owned(),
                }
            ),
        );
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
            let report = self
                .run_step(index, step, &workspace, run_cancel.clone())
                .await;
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
        if verdict.outcome == Outcome::Succeeded && !verdict.interrupted {
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
        let status = verdict.interrupted.then_some(ResultStatus::Cancelled);
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
        let diff = workspace.diff().await.unwrap_or_default();
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
            commit: None,
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

    fn command_env(&self, workspace: &Workspace, step: &Step) -> BTreeMap<String, String> {
        let mut env = self.secrets.clone();
        env.insert("ORCH_TASK_ID".into(), self.task.id.to_string());
        env.insert("ORCH_RUN_ID".into(), self.run_id.to_string());
        env.insert("ORCH_ATTEMPT".into(), self.attempt.to_string());
        env.insert("ORCH_STEP".into(), step.name.clone());
        env.insert(
            "ORCH_WORKSPACE".into(),
            workspace.path().display().to_string(),
        );
        env.insert(
            "ORCH_BUNDLE".into(),
            self.bundle.path().display().to_string(),
        );
        env.insert(
            "ORCH_CONTEXT".into(),
            self.bundle
                .path()
                .join("context.json")
                .display()
                .to_string(),
        );
        env
    }

    async fn run_exec(
        &mut self,
        step: &Step,
        commands: &[orch_core::Command],
        workspace: &Workspace,
        cancel: CancellationToken,
    ) -> StepReport {
        let clock = Instant::now();
        let policy = ExecPolicy {
            allow_shell: self.config.allow_shell,
            env_allowlist: self.config.env_allowlist.clone(),
            output_cap_bytes: self.config.output_cap_bytes,
            kill_grace: self.settings.kill_grace,
            default_timeout: None,
            process_registry: Some(self.settings.home.join("processes")),
        };
        if let Err(refused) = exec::validate(commands, workspace.path(), &policy) {
            let mut report = failed_report(&step.name, refused.to_string(), clock);
            report.summary = "refused before anything ran".into();
            report.status = ResultStatus::Failed;
            report.exit_code = None;
            // Marks the failure as permanent for `step_verdict`.
            report.error = Some(format!("refused: {refused}"));
            return report;
        }
        let env = self.command_env(workspace, step);
        let step_dir = self.bundle.path().join("steps").join(&step.name);
        let mut last_code = None;
        let mut tail = String::new();
        for (index, command) in commands.iter().enumerate() {
            let line = shell_words::join(&command.argv);
            self.log(Some(&step.name), &format!("$ {line}"));
            let out = OutputPaths {
                stdout: step_dir.join(format!("cmd-{}.stdout.log", index + 1)),
                stderr: step_dir.join(format!("cmd-{}.stderr.log", index + 1)),
            };
            let redactor = self.bundle.redactor().clone();
            let record = match exec::run_command(
                command,
                workspace.path(),
                &out,
                &env,
                &redactor,
                &policy,
                cancel.clone(),
            )
            .await
            {
                Ok(record) => record,
                Err(e) => return failed_report(&step.name, e.to_string(), clock),
            };
            self.bundle.note_redactions(&record.redactions);
            // The step's stdout.log / stderr.log hold every command's output in order.
            for (kind, path) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                let bytes = std::fs::read(path).unwrap_or_default();
                if !bytes.is_empty() {
                    let mut section = format!("==> $ {line} <==\n").into_bytes();
                    section.extend_from_slice(&bytes);
                    if !section.ends_with(b"\n") {
                        section.push(b'\n');
                    }
                    let _ = self
                        .bundle
                        .append(&format!("steps/{}/{kind}.log", step.name), &section);
                }
                if kind == "stdout" {
                    tail = tail_text(&bytes, 2048);
                }
            }
            let exit = record.exit.clone();
            last_code = exit.code;
            self.bundle.record(ManifestEntry::Command {
                step: step.name.clone(),
                record,
            });
            self.log(Some(&step.name), &exit_text(&exit));
            if !exit.success() {
                let mut report =
                    failed_report(&step.name, format!("`{line}` {}", exit_text(&exit)), clock);
                report.exit_code = exit.code;
                report.output_tail = tail;
                report.summary = format!("command {} of {} failed", index + 1, commands.len());
                return report;
            }
        }
        StepReport {
            name: step.name.clone(),
            status: ResultStatus::Succeeded,
            summary: format!("{} command(s) succeeded", commands.len()),
            exit_code: last_code,
            usage: None,
            session_id: None,
            output_tail: tail,
            duration_ms: 0,
            error: None,
            failure: None,
            reset_at: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_agent(
        &mut self,
        step: &Step,
        resolved: crate::route::ResolvedStep,
        prompt: &str,
        workspace: &Workspace,
        cancel: CancellationToken,
    ) -> StepReport {
        let clock = Instant::now();
        let started = now_ms();
        let agent = match Agent::resolve(&resolved.agent, &self.config.agents) {
            Ok(agent) => agent,
            Err(e) => {
                let mut report = failed_report(&step.name, e.to_string(), clock);
                report.error = Some(format!("refused: {e}"));
                report.failure = Some(e.class());
                return report;
            }
        };
        let earlier: Vec<_> = self
            .steps
            .iter()
            .map(|r| crate::route::EarlierStep {
                name: &r.name,
                status: status_name(r.status),
                summary: &r.summary,
            })
            .collect();
        let full_prompt = match crate::route::step_prompt(
            &self.prompts,
            prompt,
            &resolved,
            &self.review_feedback,
            &earlier,
        ) {
            Ok(text) => text,
            Err(e) => {
                let mut report = failed_report(&step.name, e.clone(), clock);
                report.error = Some(format!("refused: {e}"));
                return report;
            }
        };
        // The prompt as the agent got it, so a run can be understood (and a test can check
        // that review feedback reached it).
        let _ = self.bundle.write_bytes(
            &format!("steps/{}/prompt.md", step.name),
            full_prompt.as_bytes(),
        );
        let model = resolved.model.clone();
        let (raw_sender, mut raw_receiver) = tokio::sync::mpsc::unbounded_channel::<RawOutput>();
        let request = AgentRequest {
            prompt: full_prompt,
            model,
            workdir: workspace.path().to_owned(),
            resume_session: self.resume_session.clone(),
            env: self.command_env(workspace, step),
            state_dir: Some(
                self.settings
                    .home
                    .join("agent-state")
                    .join(self.task.id.0.to_string()),
            ),
            process_registry: Some(self.settings.home.join("processes")),
            raw_output: Some(raw_sender),
            // Used when the agent's settings say `session = "tmux"`.
            live_session: Some(orch_agents::tmux::LiveSession {
                socket: orch_agents::tmux::socket(&self.settings.home),
                name: orch_agents::tmux::session_name(self.task.id.0),
                dir: self
                    .settings
                    .home
                    .join("agent-state")
                    .join(self.task.id.0.to_string())
                    .join("live")
                    .join(format!("{}-{}", self.run_id, step.name)),
            }),
            ..AgentRequest::default()
        };
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<AgentEvent>();
        let step_dir = format!("steps/{}", step.name);
        let events_rel = format!("{step_dir}/events.jsonl");
        let outcome = {
            let session = agent.run(&request, sender, cancel.clone());
            tokio::pin!(session);
            loop {
                tokio::select! {
                    biased;
                    Some(event) = receiver.recv() => self.record_event(&step.name, &events_rel, &event),
                    Some(raw) = raw_receiver.recv() => self.record_raw(&step_dir, raw),
                    result = &mut session => break result,
                }
            }
        };
        // Closes the raw channel, so the drain below ends.
        drop(request);
        while let Ok(event) = receiver.try_recv() {
            self.record_event(&step.name, &events_rel, &event);
        }
        while let Ok(raw) = raw_receiver.try_recv() {
            self.record_raw(&step_dir, raw);
        }
        let events_path = self.bundle.path().join(&events_rel);
        let events_bytes = std::fs::read(&events_path).unwrap_or_default();
        let argv = outcome.as_ref().map(|o| o.argv.clone()).unwrap_or_default();
        self.bundle.record(ManifestEntry::Agent {
            step: step.name.clone(),
            agent: agent.name().to_owned(),
            argv,
            cwd: workspace.path().to_owned(),
            started_at_ms: started,
            ended_at_ms: now_ms(),
            success: outcome.is_ok(),
            events_path: PathBuf::from(&events_rel),
            events_bytes: events_bytes.len() as u64,
            events_sha256: sha256_hex(&events_bytes),
        });
        match outcome {
            Ok(done) => {
                self.usage.push(orch_store::UsageRecord {
                    step: step.name.clone(),
                    agent: agent.name().to_owned(),
                    model: done.model.clone(),
                    session_id: done.session_id.clone(),
                    input_tokens: done.input_tokens,
                    output_tokens: done.output_tokens,
                    cost_usd: done.cost_usd,
                });
                StepReport {
                    name: step.name.clone(),
                    status: ResultStatus::Succeeded,
                    summary: done.result_text.clone(),
                    exit_code: None,
                    usage: Some(Usage {
                        input_tokens: done.input_tokens,
                        output_tokens: done.output_tokens,
                        cost_usd: done.cost_usd,
                    }),
                    session_id: done.session_id,
                    output_tail: tail_text(done.result_text.as_bytes(), 2048),
                    duration_ms: 0,
                    error: None,
                    failure: None,
                    reset_at: None,
                }
            }
            Err(e) => {
                let class = e.class();
                let mut report = failed_report(&step.name, e.to_string(), clock);
                report.summary = format!("agent `{}` failed ({})", agent.name(), class.as_str());
                report.failure = Some(class);
                report.reset_at = e.reset_at();
                report
            }
        }
    }

    fn record_raw(&mut self, step_dir: &str, raw: RawOutput) {
        let (file, mut line) = match raw {
            RawOutput::Stdout(line) => ("stdout.log", line),
            RawOutput::Stderr(line) => ("stderr.log", line),
        };
        line.push('\n');
        let _ = self
            .bundle
            .append(&format!("{step_dir}/{file}"), line.as_bytes());
    }

    /// Refuse the task at claim time when one of its agents cannot run here (not enabled, not
    /// installed, too old) or is paused by a rate limit, before a workspace is made.
    async fn preflight(&mut self) -> Option<Verdict> {
        let path = std::env::var("PATH").ok();
        for step in &self.task.spec.steps {
            let StepAction::Agent { agent, .. } = &step.action else {
                continue;
            };
            if agent == "auto" {
                continue;
            }
            if let Some(until) = self.settings.agent_paused(agent) {
                return Some(Verdict {
                    outcome: Outcome::Failed,
                    reason: format!(
                        "agent `{agent}` is paused by a rate limit; the task waits {} for it",
                        humantime_duration(until)
                    ),
                    interrupted: false,
                    requeue_after: Some((Some(agent.clone()), until)),
                });
            }
            if let Err(e) = Agent::resolve(agent, &self.config.agents) {
                return Some(Verdict {
                    outcome: Outcome::FailedPermanently,
                    reason: format!("step `{}`: {e}", step.name),
                    interrupted: false,
                    requeue_after: None,
                });
            }
            let info =
                orch_agents::preflight::check(agent, &self.config.agents, path.as_deref()).await;
            if let Err(e) = orch_agents::preflight::require_ready(&info) {
                return Some(Verdict {
                    outcome: Outcome::FailedPermanently,
                    reason: format!("step `{}`: {e}", step.name),
                    interrupted: false,
                    requeue_after: None,
                });
            }
        }
        None
    }

    /// Review a run whose steps all succeeded; the verdict replaces the run's.
    async fn review(
        &mut self,
        agent: &str,
        workspace: &Workspace,
        cancel: &CancellationToken,
    ) -> Verdict {
        self.log(
            None,
            &format!(
                "review by `{agent}` (round {} of {})",
                self.review_rounds_used + 1,
                self.config.review.max_review_rounds
            ),
        );
        let diff = workspace.diff().await.unwrap_or_else(|e| {
            tracing::warn!("diff for the review failed: {e}");
            Vec::new()
        });
        let steps = self
            .steps
            .iter()
            .map(|r| orch_agents::review::StepSummary {
                name: r.name.clone(),
                status: status_name(r.status),
                summary: r.summary.clone(),
            })
            .collect();
        let feedback = self.review_feedback.clone();
        let run = crate::review::RunForReview {
            task: self.task,
            steps,
            diff: &diff,
            workdir: workspace.path(),
            previous: &feedback,
            rounds_used: self.review_rounds_used,
        };
        let end =
            crate::review::review_run(agent, self.config, &self.prompts, self.bundle, run, cancel)
                .await;
        self.log(None, &end.reason);
        self.review_result = Some(end.result);
        match end.outcome {
            Some(outcome) => Verdict {
                outcome,
                reason: end.reason,
                interrupted: false,
                requeue_after: None,
            },
            None => {
                self.keep_work = true;
                Verdict {
                    outcome: Outcome::Failed,
                    reason: end.reason,
                    interrupted: false,
                    requeue_after: Some((None, Duration::ZERO)),
                }
            }
        }
    }

    fn record_event(&mut self, step: &str, events_rel: &str, event: &AgentEvent) {
        if let Ok(mut line) = serde_json::to_vec(event) {
            line.push(b'\n');
            let _ = self.bundle.append(events_rel, &line);
        }
        let text = match event {
            AgentEvent::Message { role, text } => Some(format!("{role}: {text}")),
            AgentEvent::ToolCall { name, input, .. } => Some(format!("tool {name} {input}")),
            AgentEvent::Error { message } => Some(format!("agent error: {message}")),
            AgentEvent::Result { text, is_error } => Some(format!(
                "result{}: {text}",
                if *is_error { " (error)" } else { "" }
            )),
            _ => None,
        };
        if let Some(text) = text {
            self.log(Some(step), &text);
        }
    }

    fn write_result(&mut self, relative: &str, result: &RunResult) {
        match serde_json::to_value(result) {
            Ok(value) => {
                if let Err(e) = crate::bundle::validate_result(&value) {
                    tracing::error!("{relative} does not match its schema: {e}");
                }
                if let Err(e) = self.bundle.write_json(relative, &value) {
                    tracing::error!("could not write {relative}: {e}");
                }
            }
            Err(e) => tracing::error!("could not serialize {relative}: {e}"),
        }
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
                match ws.commit_all(&message).await {
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
        let _ = self.bundle.write_bytes("patch.diff", &diff);
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
        let _ = self.bundle.write_bytes("report.md", md.as_bytes());
        self.write_state(status_name(status).as_str());
        self.log(None, &format!("run {}: {reason}", status_name(status)));
    }
}

fn step_verdict(
    report: &StepReport,
    task_deadline_hit: bool,
    task_timeout: Option<Duration>,
) -> Verdict {
    let error = report
        .error
        .clone()
        .unwrap_or_else(|| report.summary.clone());
    if task_deadline_hit {
        let limit = humantime_duration(task_timeout.unwrap_or_default());
        return Verdict {
            outcome: Outcome::NeedsReview,
            reason: format!("the task ran past its timeout of {limit}"),
            interrupted: false,
            requeue_after: None,
        };
    }
    match report.status {
        ResultStatus::NeedsReview => Verdict {
            outcome: Outcome::NeedsReview,
            reason: format!("step `{}`: {error}", report.name),
            interrupted: false,
            requeue_after: None,
        },
        _ if report.failure == Some(FailureClass::RateLimited) && report.reset_at.is_some() => {
            let wait = report
                .reset_at
                .map(|at| at.saturating_mul(1000).saturating_sub(now_ms()))
                .map(|ms| {
                    Duration::from_millis(
                        u64::try_from(ms.clamp(1_000, 24 * 3_600_000)).unwrap_or(1_000),
                    )
                })
                .unwrap_or_default();
            Verdict {
                outcome: Outcome::Failed,
                reason: format!("step `{}` failed: {error}; the task waits for the reset without using an attempt", report.name),
                interrupted: false,
                requeue_after: Some((Some(agent_of(report)), wait)),
            }
        }
        _ if report.failure.is_some_and(|class| !class.retryable()) => Verdict {
            outcome: Outcome::FailedPermanently,
            reason: format!("step `{}` failed: {error}", report.name),
            interrupted: false,
            requeue_after: None,
        },
        _ if error.starts_with("refused: ") => Verdict {
            outcome: Outcome::FailedPermanently,
            reason: format!("step `{}` {error}", report.name),
            interrupted: false,
            requeue_after: None,
        },
        _ => Verdict {
            outcome: Outcome::Failed,
            reason: format!("step `{}` failed: {error}", report.name),
            interrupted: false,
            requeue_after: None,
        },
    }
}

/// The one step of a follow-up run: the agent of the session it resumes, the reply as prompt,
/// the model of the step that session came from.
fn reply_step(reply: &orch_store::PendingReply, steps: &[Step]) -> Step {
    let original = steps.iter().find(|s| s.name == reply.step);
    let (model, profile) = match original.map(|s| &s.action) {
        Some(StepAction::Agent { model, profile, .. }) => (model.clone(), profile.clone()),
        _ => (None, None),
    };
    Step {
        name: format!("reply-{}", reply.id),
        action: StepAction::Agent {
            agent: reply.agent.clone(),
            prompt: reply.message.clone(),
            model,
            profile,
        },
        timeout: original.and_then(|s| s.timeout),
    }
}

/// The agent named in a failed agent step's summary (`agent `x` failed (...)`).
fn agent_of(report: &StepReport) -> String {
    report
        .summary
        .split('`')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn humantime_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn skipped(name: &str) -> StepReport {
    StepReport {
        name: name.to_owned(),
        status: ResultStatus::Skipped,
        summary: "skipped: an earlier step did not succeed".into(),
        exit_code: None,
        usage: None,
        session_id: None,
        output_tail: String::new(),
        duration_ms: 0,
        error: None,
        failure: None,
        reset_at: None,
    }
}

fn failed_report(name: &str, error: String, clock: Instant) -> StepReport {
    StepReport {
        name: name.to_owned(),
        status: ResultStatus::Failed,
        summary: error.clone(),
        exit_code: None,
        usage: None,
        session_id: None,
        output_tail: String::new(),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        error: Some(error),
        failure: None,
        reset_at: None,
    }
}

fn status_name(status: ResultStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn exit_text(exit: &exec::ExitRecord) -> String {
    if exit.timed_out {
        "timed out and was stopped".to_owned()
    } else if exit.cancelled {
        "was stopped (run cancelled)".to_owned()
    } else if let Some(code) = exit.code {
        format!("exited with code {code}")
    } else if let Some(signal) = exit.signal {
        format!("was killed by signal {signal}")
    } else {
        "ended".to_owned()
    }
}

fn tail_text(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Files named in a unified diff (`diff --git a/X b/X` headers), sorted and unique.
fn changed_files(diff: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(diff);
    let mut files: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("diff --git a/"))
        .filter_map(|rest| rest.split(" b/").next())
        .map(str::to_owned)
        .collect();
    files.sort();
    files.dedup();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_290_252_356), "2026-11-21T19:44:12.356Z");
    }

    #[test]
    fn changed_files_come_from_diff_headers() {
        let diff =
            b"diff --git a/src/x.rs b/src/x.rs\n--- a\n+++ b\ndiff --git a/NOTES.md b/NOTES.md\n";
        assert_eq!(
            changed_files(diff),
            vec!["NOTES.md".to_owned(), "src/x.rs".to_owned()]
        );
    }
}
