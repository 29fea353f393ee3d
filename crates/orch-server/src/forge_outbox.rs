//! The daemon's side of the forge outbox: [`ForgeSync`] turns the event log into forge writes
//! (labels and the marker comment of linked tasks, the push of a finished task's branch and its
//! pull request), and [`dispatch_due`] sends due writes through a [`ForgeWriter`]
//! ([`crate::forge_writer::GitHubWriter`], run by [`crate::forge_writer::dispatch_loop`]).
//!
//! Exactly once: every op is enqueued under an idempotency key made of the task and the event
//! that caused it, so looking at the same event twice (after a crash, or on two daemons) stores
//! nothing new; the scan resumes at the newest event an op was enqueued for
//! (`Store::last_forge_event`). The push comes before the ops of its event are enqueued, and
//! pushing the same commit again is harmless, so a crash between them repeats the push and
//! enqueues the ops. A push that fails is tried again with backoff; at start-up every finished
//! task of a linked project with no pull request op yet is looked at again (a push that failed
//! before a crash, a branch pushed without its pull request). Sending is leased per op, the
//! lease renewed while the pass runs (two servers never send one op at once, however long the
//! forge makes a send wait; a dead dispatcher's ops pass on within [`SEND_LEASE`]), and the
//! writer makes each op safe to send twice (it finds what an earlier attempt made).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::forge::{
    ensure_labels_op, op_retry_delay, ops_for_change, pull_request_body, pull_request_op,
    ForgeAuth, ForgeOp, ForgeResult, ForgeSettings, KeyedOp, LinkUpdate, RepoSlug, RunFacts,
    TaskChange, TaskFacts,
};
use orch_core::{EventKind, ProjectId, Status, StepAction, Task, TaskId};
use orch_store::{NewForgeOp, Project, ProjectForge, Store, StoreError, TaskFilter};
use orch_worker::workspace::push::{push_branch, ForgeToken, PushRequest};

/// How a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Try again later (a 5xx, a rate limit, the network): after `after` when the forge said.
    Retry {
        /// What happened (no secret in it).
        message: String,
        /// When the forge asked to be called again (`Retry-After`, a rate limit's reset).
        after: Option<Duration>,
    },
    /// The forge refused for good (a 422, a missing repository): the op is `failed`.
    Refused(String),
}

/// What sends one op to a repository's forge ([`crate::forge_writer::GitHubWriter`]);
/// each op must be safe to send twice: look for what an earlier attempt made (the marker in a
/// comment or issue body, an open pull request of the head branch) before making it.
pub trait ForgeWriter: Send + Sync {
    /// Send `op` to `repo` with `settings` (API base, auth, draft pull requests, ...).
    fn send(
        &self,
        repo: &RepoSlug,
        settings: &ForgeSettings,
        op: &ForgeOp,
    ) -> impl Future<Output = Result<ForgeResult, SendError>> + Send;
}

/// How long a dispatcher holds an op without renewing it: a dispatcher that dies mid-pass
/// gives its ops to another server within this.
pub const SEND_LEASE: Duration = Duration::from_secs(30);

/// How often a pass renews the leases of the ops it still holds, so that a slow send (the
/// forge's rate limit makes the client wait for its reset) never lets another server send
/// the same op meanwhile.
const LEASE_RENEWAL: Duration = Duration::from_secs(10);

/// Ops leased per dispatch pass.
const OPS_PER_PASS: u32 = 20;

/// What a dispatch pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Ops the forge did.
    pub done: u64,
    /// Ops to be tried again.
    pub retried: u64,
    /// Ops given up on.
    pub failed: u64,
}

/// Lease the due ops to `owner` and send them through `writer`, recording each outcome.
pub async fn dispatch_due<W: ForgeWriter>(
    store: &Store,
    home: &Path,
    writer: &W,
    owner: &str,
) -> Result<DispatchReport, StoreError> {
    dispatch_due_leased(store, home, writer, owner, SEND_LEASE, LEASE_RENEWAL).await
}

/// [`dispatch_due`] with `lease` as the send lease, renewed every `renew_every` while the pass
/// runs (tests shorten both).
pub async fn dispatch_due_leased<W: ForgeWriter>(
    store: &Store,
    home: &Path,
    writer: &W,
    owner: &str,
    lease: Duration,
    renew_every: Duration,
) -> Result<DispatchReport, StoreError> {
    let mut report = DispatchReport::default();
    let now = orch_store::wall_clock();
    let entries = store
        .claim_forge_ops(owner, lease, OPS_PER_PASS, now)
        .await?;
    if entries.is_empty() {
        return Ok(report);
    }
    let pass = send_entries(store, home, writer, owner, entries, &mut report);
    let renewals = async {
        loop {
            tokio::time::sleep(renew_every).await;
            let now = orch_store::wall_clock();
            if let Err(e) = store.renew_forge_leases(owner, lease, now).await {
                tracing::warn!(error = %e, "could not renew the forge ops' send leases");
            }
        }
    };
    tokio::select! {
        biased;
        outcome = pass => outcome?,
        never = renewals => never,
    }
    Ok(report)
}

/// Send `entries` (leased to `owner`) one by one, recording each outcome in `report`.
async fn send_entries<W: ForgeWriter>(
    store: &Store,
    home: &Path,
    writer: &W,
    owner: &str,
    entries: Vec<orch_store::OutboxEntry>,
    report: &mut DispatchReport,
) -> Result<(), StoreError> {
    let projects = projects_by_id(store).await?;
    let links = links_by_project(store).await?;
    for entry in entries {
        let settings = match (projects.get(&entry.project), links.get(&entry.project)) {
            (Some(project), Some(link)) => {
                crate::forge::settings(home, Path::new(&project.path), Some(link))
                    .map_err(|e| e.to_string())
                    .and_then(|s| s.ok_or_else(|| "the project has no forge settings".to_owned()))
            }
            _ => Err("the project is not linked to a repository; run `orch init --repo owner/repo` in it".to_owned()),
        };
        let outcome = match settings {
            Ok(settings) => writer.send(&settings.repo, &settings, &entry.op).await,
            Err(reason) => Err(SendError::Refused(reason)),
        };
        let now = orch_store::wall_clock();
        match outcome {
            Ok(result) => {
                // Stored with the op's `done` in one transaction, keyed by what the forge made:
                // a crash before it sends the op again, which finds the same result.
                let follow = follow_ups(store, home, &entry, &result).await?;
                store
                    .finish_forge_op_with(entry.id, owner, &result, &follow, now)
                    .await?;
                report.done += 1;
            }
            Err(SendError::Retry { message, after }) => {
                let backoff = op_retry_delay(entry.attempts + 1);
                let retry_at = backoff.map(|delay| now.after(after.unwrap_or(delay).max(delay)));
                store
                    .fail_forge_op(entry.id, owner, &message, retry_at, now)
                    .await?;
                if retry_at.is_some() {
                    report.retried += 1;
                } else {
                    report.failed += 1;
                }
            }
            Err(SendError::Refused(message)) => {
                store
                    .fail_forge_op(entry.id, owner, &message, None, now)
                    .await?;
                report.failed += 1;
            }
        }
    }
    Ok(())
}

/// What the forge made calls for more writes: a new pull request goes into the marker comment
/// (its link), and a published issue gets the task's labels and marker comment.
async fn follow_ups(
    store: &Store,
    home: &Path,
    entry: &orch_store::OutboxEntry,
    result: &ForgeResult,
) -> Result<Vec<NewForgeOp>, StoreError> {
    let Some((task_id, update)) = entry.op.link_update(result) else {
        return Ok(Vec::new());
    };
    let task = match store.task(task_id).await {
        Ok(task) => task,
        Err(StoreError::TaskNotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut facts = task_facts(store, home, &task).await?;
    let made = match update {
        LinkUpdate::Pull { number, url, head } => {
            facts.link.pr_number = Some(number);
            facts.link.pr_url = Some(url);
            facts.link.head_branch = Some(head);
            format!("pull-{number}")
        }
        LinkUpdate::Issue { number } => {
            facts.link.issue = Some(number);
            format!("issue-{number}")
        }
        LinkUpdate::MarkerComment { .. } => return Ok(Vec::new()),
    };
    let Some(issue) = facts.link.issue else {
        return Ok(Vec::new());
    };
    let mut ops = Vec::new();
    if made.starts_with("issue-") {
        let (add, remove) = orch_core::forge::label_change(None, &facts);
        ops.push(KeyedOp {
            key: format!("labels:task-{}:{made}", task.id.0),
            op: ForgeOp::SetLabels { issue, add, remove },
        });
    }
    ops.push(KeyedOp {
        key: format!("marker:task-{}:{made}", task.id.0),
        op: ForgeOp::UpsertMarkerComment {
            issue,
            task: task.id,
            body: orch_core::forge::marker_comment(&facts),
        },
    });
    Ok(ops
        .into_iter()
        .map(|op| NewForgeOp {
            project: entry.project,
            task: Some(task.id),
            event: None,
            op,
        })
        .collect())
}

/// Events read per page of the log.
const PAGE: u32 = 1000;

/// The scan of the event log for forge writes (on the leader).
#[derive(Debug, Default)]
pub struct ForgeSync {
    /// The last event looked at (`None`: not started; resumes after the newest enqueued op's).
    after: Option<i64>,
    /// What makes git tokens for pushes (a GitHub App's installation token needs the client);
    /// without it tokens are read from the token file or variable.
    writer: Option<Arc<crate::forge_writer::GitHubWriter>>,
    /// Finished tasks whose push is to be tried (again).
    pushes: BTreeMap<TaskId, PushRetry>,
    /// Whether the start-up look at finished tasks without a pull request op was made.
    reconciled: bool,
}

/// A push to try again.
#[derive(Debug, Clone)]
struct PushRetry {
    /// The event that finished the task (`None`: found at start-up).
    event: Option<i64>,
    /// Failed attempts so far.
    failures: u32,
    /// Not before this.
    due: Instant,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Ops stored now.
    pub enqueued: u64,
    /// Branches pushed.
    pub pushed: u64,
}

impl ForgeSync {
    /// A sync whose pushes take their git token from `writer` (needed for GitHub App auth).
    pub fn with_writer(writer: Arc<crate::forge_writer::GitHubWriter>) -> ForgeSync {
        ForgeSync {
            writer: Some(writer),
            ..ForgeSync::default()
        }
    }

    /// Look at up to `max_events` new events (`None`: all) and enqueue what linked tasks' changes
    /// call for. Store failures end the pass (it resumes at the same event next time); a push
    /// that fails is logged and its event passed (its pull request waits for the task's next
    /// success).
    pub async fn pass(
        &mut self,
        store: &Store,
        home: &Path,
        max_events: Option<u64>,
    ) -> Result<SyncReport, StoreError> {
        let mut report = SyncReport::default();
        let links = links_by_project(store).await?;
        if links.is_empty() {
            // No project is linked: nothing to write, and nothing to scan.
            return Ok(report);
        }
        let mut after = match self.after {
            Some(after) => after,
            None => store.last_forge_event().await?,
        };
        let projects = projects_by_id(store).await?;
        if !self.reconciled {
            self.reconcile(store, &links).await?;
            self.reconciled = true;
        }
        self.retry_pushes(store, home, &projects, &links, &mut report)
            .await?;
        let mut labelled: BTreeMap<ProjectId, ()> = BTreeMap::new();
        let mut seen = 0u64;
        loop {
            let page = store.events_after(after, PAGE).await?;
            let full = page.len() == PAGE as usize;
            for feed in page {
                let event = feed.event;
                let task = match store.task(event.task).await {
                    Ok(task) => Some(task),
                    Err(StoreError::TaskNotFound(_)) => None,
                    Err(e) => return Err(e),
                };
                if let Some(task) = task {
                    if let (Some(link), Some(project)) =
                        (links.get(&task.project), projects.get(&task.project))
                    {
                        let mut ops = Vec::new();
                        if labelled.insert(task.project, ()).is_none() {
                            let (trigger, plan) =
                                crate::forge::labels(home, Path::new(&project.path), link);
                            ops.push(NewForgeOp {
                                project: task.project,
                                task: None,
                                event: Some(event.id),
                                op: ensure_labels_op(&link.repo, &trigger, &plan),
                            });
                        }
                        let finished =
                            event.kind == EventKind::Complete && event.to == Status::Done;
                        if finished {
                            match self.push(store, home, project, link, &task).await {
                                Ok(Some(op)) => {
                                    report.pushed += 1;
                                    ops.push(NewForgeOp {
                                        project: task.project,
                                        task: Some(task.id),
                                        event: Some(event.id),
                                        op,
                                    });
                                }
                                Ok(None) => {}
                                Err(PushFailure::Store(e)) => return Err(e),
                                Err(PushFailure::Other(why)) => {
                                    tracing::warn!(task = %task.id, "the task's branch was not pushed (tried again later): {why}");
                                    self.push_failed(task.id, Some(event.id), 0);
                                }
                            }
                        }
                        let facts = task_facts(store, home, &task).await?;
                        let change = TaskChange {
                            event: event.id,
                            from: event.from,
                            facts,
                        };
                        // A planned child's issue (`forge_plan.rs`).
                        ops.extend(
                            crate::forge_plan::child_issue_ops(
                                store,
                                home,
                                (project, link),
                                &task,
                                &event,
                            )
                            .await?,
                        );
                        for keyed in ops_for_change(&change) {
                            ops.push(NewForgeOp {
                                project: task.project,
                                task: Some(task.id),
                                event: Some(event.id),
                                op: keyed,
                            });
                        }
                        if !ops.is_empty() {
                            report.enqueued += store
                                .enqueue_forge_ops(&ops, orch_store::wall_clock())
                                .await?;
                        }
                    }
                }
                after = event.id;
                self.after = Some(after);
                seen += 1;
            }
            self.after = Some(after);
            if !full || max_events.is_some_and(|max| seen >= max) {
                return Ok(report);
            }
        }
    }

    /// Push a finished task's branch (when the project has credentials) and give the pull
    /// request op to enqueue.
    async fn push(
        &self,
        store: &Store,
        home: &Path,
        project: &Project,
        link: &ProjectForge,
        task: &Task,
    ) -> Result<Option<orch_core::forge::KeyedOp>, PushFailure> {
        let project_dir = PathBuf::from(&project.path);
        let settings = crate::forge::settings(home, &project_dir, Some(link))
            .map_err(|e| PushFailure::Other(e.to_string()))?;
        let Some(settings) = settings else {
            return Ok(None);
        };
        let Some(auth) = &settings.auth else {
            // No credentials: the task stays a local branch (said once per task in the log).
            return Ok(None);
        };
        let token = match (&self.writer, auth) {
            (Some(writer), _) => Some(
                writer
                    .git_token(&settings)
                    .await
                    .map_err(PushFailure::Other)?,
            ),
            (None, auth) => read_token(auth).map_err(PushFailure::Other)?,
        };
        let Some((branch, head)) = crate::landing::branch(store, home, task).await else {
            return Ok(None);
        };
        let previous = store
            .forge_link(task.id)
            .await
            .map_err(PushFailure::Store)?;
        if previous.as_ref().and_then(|l| l.pushed_commit.as_deref()) == Some(head.as_str()) {
            // Pushed before (a rescan after a crash): the pull request op is enqueued again
            // below under the same key, which stores nothing new.
        } else {
            push_branch(&PushRequest {
                project_dir: &project_dir,
                remote: &settings.remote,
                commit: &head,
                branch: &branch,
                previous: previous.as_ref().and_then(|l| l.pushed_commit.as_deref()),
                token: token.as_ref(),
            })
            .await
            .map_err(|e| PushFailure::Other(e.to_string()))?;
            store
                .record_forge_push(
                    task.id,
                    &settings.repo,
                    &branch,
                    &head,
                    orch_store::wall_clock(),
                )
                .await
                .map_err(PushFailure::Store)?;
        }
        let issue = previous.as_ref().and_then(|l| l.issue);
        let usage = store
            .task_usage(task.id)
            .await
            .map_err(PushFailure::Store)?;
        let cost: f64 = usage.iter().map(|u| u.cost_usd).sum();
        let tokens: u64 = usage.iter().map(|u| u.input_tokens + u.output_tokens).sum();
        let report = std::fs::read_to_string(latest_bundle(home, task).join("report.md"))
            .unwrap_or_default();
        let body = pull_request_body(
            task.id,
            issue,
            &report,
            &format!("${cost:.4}, {tokens} tokens"),
        );
        let base = match ProjectConfigBase::of(home, &project_dir) {
            Some(base) => base,
            None => current_branch(&project_dir)
                .await
                .unwrap_or_else(|| "main".to_owned()),
        };
        Ok(Some(pull_request_op(
            task.id,
            task.spec.title.as_str(),
            &branch,
            &base,
            &body,
            settings.draft_prs,
        )))
    }
}

impl ForgeSync {
    /// At start-up: every finished task of a linked project, finished since it was linked,
    /// whose pull request op was never enqueued (its push failed, or the daemon died between
    /// the push and the op) is pushed again.
    async fn reconcile(
        &mut self,
        store: &Store,
        links: &BTreeMap<ProjectId, ProjectForge>,
    ) -> Result<(), StoreError> {
        for link in links.values() {
            let done = store
                .tasks(&TaskFilter {
                    status: Some(Status::Done),
                    project: Some(link.project),
                    ..TaskFilter::default()
                })
                .await?;
            for task in done.into_iter().filter(|t| t.updated_at >= link.linked_at) {
                let key = orch_core::forge::pull_request_op(task.id, "", "", "", "", false).key;
                if !store
                    .forge_ops(Some(task.id))
                    .await?
                    .iter()
                    .any(|e| e.key == key)
                {
                    self.pushes.insert(
                        task.id,
                        PushRetry {
                            event: None,
                            failures: 0,
                            due: Instant::now(),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Note a failed push: tried again after the outbox's backoff, or given up on.
    fn push_failed(&mut self, task: TaskId, event: Option<i64>, failures_before: u32) {
        let failures = failures_before + 1;
        match op_retry_delay(failures) {
            Some(delay) => {
                self.pushes.insert(
                    task,
                    PushRetry {
                        event,
                        failures,
                        due: Instant::now() + delay,
                    },
                );
            }
            None => {
                self.pushes.remove(&task);
                tracing::error!(task = %task, failures, "giving up pushing the task's branch; finish the task again (`orch task retry`) or push it by hand");
            }
        }
    }

    /// Try the due pushes again; a task no longer `done` is left alone.
    async fn retry_pushes(
        &mut self,
        store: &Store,
        home: &Path,
        projects: &BTreeMap<ProjectId, Project>,
        links: &BTreeMap<ProjectId, ProjectForge>,
        report: &mut SyncReport,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let due: Vec<(TaskId, PushRetry)> = self
            .pushes
            .iter()
            .filter(|(_, retry)| retry.due <= now)
            .map(|(task, retry)| (*task, retry.clone()))
            .collect();
        for (id, retry) in due {
            let task = match store.task(id).await {
                Ok(task) if task.status == Status::Done => task,
                Ok(_) | Err(StoreError::TaskNotFound(_)) => {
                    self.pushes.remove(&id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (Some(project), Some(link)) =
                (projects.get(&task.project), links.get(&task.project))
            else {
                self.pushes.remove(&id);
                continue;
            };
            match self.push(store, home, project, link, &task).await {
                Ok(op) => {
                    self.pushes.remove(&id);
                    if let Some(op) = op {
                        report.pushed += 1;
                        report.enqueued += store
                            .enqueue_forge_ops(
                                &[NewForgeOp {
                                    project: task.project,
                                    task: Some(task.id),
                                    event: retry.event,
                                    op,
                                }],
                                orch_store::wall_clock(),
                            )
                            .await?;
                    }
                }
                Err(PushFailure::Store(e)) => return Err(e),
                Err(PushFailure::Other(why)) => {
                    tracing::warn!(task = %id, failures = retry.failures + 1, "the task's branch was not pushed again: {why}");
                    self.push_failed(id, retry.event, retry.failures);
                }
            }
        }
        Ok(())
    }
}

enum PushFailure {
    Store(StoreError),
    Other(String),
}

/// The project's configured `base_branch`.
struct ProjectConfigBase;

impl ProjectConfigBase {
    fn of(home: &Path, project_dir: &Path) -> Option<String> {
        orch_worker::project::ProjectConfig::load_merged(home, project_dir)
            .ok()
            .and_then(|c| c.base_branch)
    }
}

/// The branch the main checkout has checked out.
async fn current_branch(project_dir: &Path) -> Option<String> {
    let scope = orch_worker::workspace::GitScope::Discover { dir: project_dir };
    let output =
        orch_worker::workspace::git_command(&scope, &["symbolic-ref", "--short", "-q", "HEAD"])
            .output()
            .await
            .ok()?;
    let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !name.is_empty()).then_some(name)
}

/// The forge token of `auth`, read now (never kept): from its file or environment variable.
/// A GitHub App's installation token is made by the forge client: a sync made
/// [`ForgeSync::with_writer`] (as `orch serve` runs it) takes tokens from there instead.
pub fn read_token(auth: &ForgeAuth) -> Result<Option<ForgeToken>, String> {
    match auth {
        ForgeAuth::TokenFile(path) => std::fs::read_to_string(path)
            .map(|text| Some(ForgeToken::new(&text)))
            .map_err(|e| format!("cannot read forge.token_file {path}: {e}")),
        ForgeAuth::TokenEnv(name) => match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(ForgeToken::new(&value))),
            _ => Err(format!(
                "forge.token_env names {name}, which is not set for the daemon"
            )),
        },
        ForgeAuth::App { .. } => Err(
            "a GitHub App's installation token comes from the forge client (`orch serve` \
             makes it); this caller has none"
                .to_owned(),
        ),
    }
}

fn latest_bundle(home: &Path, task: &Task) -> PathBuf {
    home.join("runs")
        .join(task.id.to_string())
        .join(task.run_count.to_string())
}

/// What the forge shows of a task: its state, runs, usage, links, and its agent and complexity
/// (its steps' agents, or the router's choice recorded in the latest run's `route.json`).
pub async fn task_facts(store: &Store, home: &Path, task: &Task) -> Result<TaskFacts, StoreError> {
    let runs = store.runs(task.id).await?;
    let usage = store.task_usage(task.id).await?;
    let link = store.forge_link(task.id).await?.unwrap_or_default();
    let route: Option<serde_json::Value> =
        std::fs::read(latest_bundle(home, task).join("route.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let mut agents: Vec<String> = task
        .spec
        .steps
        .iter()
        .filter_map(|step| match &step.action {
            StepAction::Agent { agent, .. } if agent != "auto" => Some(agent.clone()),
            _ => None,
        })
        .collect();
    if let Some(agent) = route.as_ref().and_then(|r| r["agent"].as_str()) {
        if !agents.iter().any(|a| a == agent) {
            agents.push(agent.to_owned());
        }
    }
    agents.dedup();
    Ok(TaskFacts {
        task: task.id,
        title: task.spec.title.as_str().to_owned(),
        status: task.status,
        status_reason: task.status_reason.clone(),
        agents,
        complexity: route
            .as_ref()
            .and_then(|r| r["complexity"].as_str())
            .map(str::to_owned),
        runs: runs
            .iter()
            .map(|run| RunFacts {
                attempt: run.attempt,
                started_at: run.started_at,
                outcome: run.outcome.clone(),
            })
            .collect(),
        cost_usd: usage.iter().map(|u| u.cost_usd).sum(),
        input_tokens: usage.iter().map(|u| u.input_tokens).sum(),
        output_tokens: usage.iter().map(|u| u.output_tokens).sum(),
        link,
    })
}

async fn projects_by_id(store: &Store) -> Result<BTreeMap<ProjectId, Project>, StoreError> {
    Ok(store
        .projects()
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect())
}

async fn links_by_project(store: &Store) -> Result<BTreeMap<ProjectId, ProjectForge>, StoreError> {
    Ok(store
        .project_forges()
        .await?
        .into_iter()
        .map(|l| (l.project, l))
        .collect())
}

/// The forge sync on the leader, every `tick`: scan, and push and enqueue what it finds; and
/// the dispatcher ([`crate::forge_writer::dispatch_loop`], named `forge-<instance>`) that
/// sends the outbox's ops, woken when a pass enqueued some.
pub async fn sync_loop(
    store: Store,
    home: PathBuf,
    tick: Duration,
    instance: String,
    writer: Arc<crate::forge_writer::GitHubWriter>,
    leadership: crate::scheduler::Leadership,
    stop: tokio_util::sync::CancellationToken,
) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let dispatcher = tokio::spawn(crate::forge_writer::dispatch_loop(
        store.clone(),
        home.clone(),
        writer.clone(),
        format!("forge-{instance}"),
        leadership.clone(),
        wake.clone(),
        stop.clone(),
    ));
    let mut sync = ForgeSync::with_writer(writer.clone());
    let mut complaints = crate::scheduler::Complaints::new("forge sync pass");
    loop {
        if leadership.is_leader() {
            let passed = match sync.pass(&store, &home, Some(5_000)).await {
                Ok(report) => crate::forge_plan::enqueue_sub_issues(&store)
                    .await
                    .map(|sub_issues| report.enqueued + sub_issues),
                Err(e) => Err(e),
            };
            match passed {
                Ok(enqueued) => {
                    complaints.succeeded();
                    if enqueued > 0 {
                        wake.notify_one();
                    }
                }
                Err(e) => {
                    complaints.failed(&e);
                }
            }
        } else {
            // Another daemon leads; when this one leads again it resumes from the outbox.
            sync = ForgeSync::with_writer(writer.clone());
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(tick) => {}
        }
    }
    if let Err(e) = dispatcher.await {
        tracing::error!("the forge dispatcher ended abnormally: {e}");
    }
}
