//! Where the task commands go: the daemon's HTTP API when one runs for the home (or `--server`
//! names one), else the store directly. Both answer with the same JSON views, so `--json` output
//! does not depend on the path taken.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use orch_app::{App, ProjectDir, WorkflowText};
use orch_core::{CancelReason, ReplyMessage, RetryDelay, StepAction, TaskId, TaskSpec};
use orch_store::TaskFilter;
use serde_json::{json, Value};

use crate::config::{self, Settings};
use crate::output::{EventView, RunView, TaskView};
use crate::UserError;
use orch_api::{
    BranchView, CancelRequest, CommandRequest, CreateTask, CreatedTask, KilledSession, ListQuery,
    ProjectView, RetryRequest, StatusChange, StatusCounts, StepRequest, SubmitWorkflow, TaskDetail,
    WorkflowView,
};

/// How long the CLI waits for `/health` of the daemon named in `<home>/serve.addr`: a daemon that
/// does not answer this fast is taken for gone (e.g. killed with SIGKILL, leaving the file).
const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);

/// What the command line says about the daemon to talk to (`--server`, `--token-file`).
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// `--server` / `ORCH_URL`.
    pub server: Option<String>,
    /// `--token-file`: the admin token (for `orch worker`, the worker token).
    pub token_file: Option<std::path::PathBuf>,
    /// `--ca-cert` / `ORCH_CA_CERT`: a PEM file of certificates to trust for https.
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Remote {
    /// The `--ca-cert` file's content, if one is given.
    pub fn ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.ca_cert
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|e| {
                    UserError::new(format!("--ca-cert {}: {e}", path.display())).into()
                })
            })
            .transpose()
    }
}

/// The daemon's HTTP API with the admin token.
#[derive(Debug)]
pub struct Api {
    base: String,
    token: String,
    /// Where the token came from, for the message when the daemon refuses it.
    token_source: String,
    client: reqwest::Client,
}

/// The one place a task command's operations go.
#[derive(Debug)]
pub enum Backend {
    Store(App),
    Api(Api),
}

impl Backend {
    /// The API if `--server` is given or a daemon answers at `<home>/serve.addr`, else the store.
    ///
    /// `lacking` names a flag of this command that the API cannot carry yet: then a local daemon
    /// is bypassed (the store is safe to share with it), and an explicit `--server` is refused.
    pub async fn open(
        settings: &Settings,
        remote: &Remote,
        lacking: Option<&str>,
    ) -> anyhow::Result<Backend> {
        if let Some(server) = &remote.server {
            if let Some(flag) = lacking {
                return Err(UserError::new(format!(
                    "{flag} is not supported through the HTTP API yet; run this command on the \
                     daemon's machine without --server (or ORCH_URL)"
                ))
                .into());
            }
            let base = server.trim_end_matches('/').to_owned();
            return Ok(Backend::Api(Api::new(base, settings, remote)?));
        }
        if lacking.is_none() {
            if let Some(base) = local_daemon(settings).await {
                return Ok(Backend::Api(Api::new(base, settings, remote)?));
            }
        }
        Ok(Backend::Store(crate::commands::app(settings).await?))
    }

    /// Add one task for the project directory; returns its view and the project's name.
    pub async fn add_task(
        &self,
        project_dir: &Path,
        spec: TaskSpec,
        needs: &[i64],
        parent: Option<i64>,
    ) -> anyhow::Result<(Value, String)> {
        match self {
            Backend::Store(app) => {
                let project = local_project(project_dir)?;
                let task = orch_core::NewTask {
                    spec,
                    needs_in_batch: Vec::new(),
                    needs_existing: needs.iter().copied().map(TaskId).collect(),
                    parent: parent.map(TaskId),
                    parent_in_batch: None,
                };
                let submitted =
                    app.submit(&project, vec![task], "cli")
                        .await
                        .map_err(|e| match e {
                            orch_app::AppError::Store(orch_store::StoreError::Invalid {
                                field,
                                reason,
                            }) => anyhow::Error::from(UserError::new(format!(
                                "--{field}: {reason}; `orch task list` shows the tasks there are"
                            ))),
                            other => other.into(),
                        })?;
                let task = submitted
                    .tasks
                    .first()
                    .context("the submission created no task")?;
                let answer = CreatedTask {
                    task: TaskView::from(task),
                    warnings: submitted.warnings.clone(),
                    existing: submitted.existing.contains(&task.id),
                };
                Ok((view(&answer)?, submitted.project.name))
            }
            Backend::Api(api) => {
                let body = create_request(project_dir, &spec, needs, parent)?;
                let task: CreatedTask = api.post_as("/v1/tasks", &body).await?;
                let task = view(&task)?;
                let name = project_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| project_dir.display().to_string());
                Ok((task, name))
            }
        }
    }

    /// Submit a workflow file's text (already checked by the caller) for the project directory;
    /// returns `{workflow, project, tasks}`.
    pub async fn submit_workflow(
        &self,
        project_dir: &Path,
        file: &str,
        text: String,
    ) -> anyhow::Result<Value> {
        match self {
            Backend::Store(app) => {
                let project = local_project(project_dir)?;
                let workflow = WorkflowText { file, text: &text };
                let submitted = app
                    .submit_workflow(&project, workflow, "cli")
                    .await
                    .map_err(|e| match e {
                        orch_app::AppError::Workflow(e) => UserError::new(e.to_string()).into(),
                        other => anyhow::Error::from(other),
                    })?;
                let tasks = submitted.tasks;
                view(&WorkflowView {
                    workflow: tasks.first().and_then(|t| t.workflow).map(|w| w.0),
                    project: submitted.project.name,
                    tasks: tasks.iter().map(TaskView::from).collect(),
                    warnings: submitted.warnings,
                })
            }
            Backend::Api(api) => {
                let body = SubmitWorkflow {
                    project: project_dir.to_string_lossy().into_owned(),
                    yaml: text,
                    file: Some(file.to_owned()),
                };
                let submitted: WorkflowView = api.post_as("/v1/workflows", &body).await?;
                view(&submitted)
            }
        }
    }

    /// The registered projects, oldest first (`GET /v1/projects` through the API).
    pub async fn projects(&self) -> anyhow::Result<Vec<orch_store::Project>> {
        match self {
            Backend::Store(app) => Ok(app.store().projects().await?),
            Backend::Api(api) => {
                let list: Vec<ProjectView> = api
                    .get_as("/v1/projects", &())
                    .await
                    .context("the daemon's project list")?;
                Ok(list
                    .into_iter()
                    .map(|p| orch_store::Project {
                        id: orch_core::ProjectId(p.id),
                        name: p.name,
                        path: p.path,
                        // Not used by the callers; the API's RFC 3339 text is not parsed back.
                        created_at: orch_core::Timestamp(0),
                    })
                    .collect())
            }
        }
    }

    /// Tasks, oldest first, filtered by status, project (its id) and count.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> anyhow::Result<Vec<Value>> {
        match self {
            Backend::Store(app) => {
                let tasks = app.store().tasks(filter).await?;
                tasks.iter().map(|t| view(&TaskView::from(t))).collect()
            }
            Backend::Api(api) => {
                let query = ListQuery {
                    status: filter.status.map(|s| s.as_str().to_owned()),
                    project: filter.project.map(|p| p.0.to_string()),
                    limit: filter.limit,
                    label: filter.label.clone(),
                    order: filter.newest_first.then(|| "newest".to_owned()),
                };
                let tasks: Vec<TaskView> = api.get_as("/v1/tasks", &query).await?;
                tasks.iter().map(view).collect()
            }
        }
    }

    /// A task with its spec, runs, events, bundle and result (`orch task get --json`).
    pub async fn task_detail(&self, settings: &Settings, id: i64) -> anyhow::Result<Value> {
        match self {
            Backend::Store(app) => {
                let id = TaskId(id);
                let task = app.store().task(id).await?;
                let runs = app.store().runs(id).await?;
                let events = app.store().events(id).await?;
                // The latest run's bundle, if one was written.
                let bundle = runs
                    .last()
                    .map(|run| {
                        settings
                            .home
                            .join("runs")
                            .join(task.id.to_string())
                            .join(run.attempt.to_string())
                    })
                    .filter(|dir| dir.is_dir());
                let read_json = |name: &str| -> Option<Value> {
                    bundle
                        .as_ref()
                        .and_then(|dir| std::fs::read(dir.join(name)).ok())
                        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                };
                let branch = orch_server::landing::branch(app.store(), &settings.home, &task)
                    .await
                    .map(|(name, head)| BranchView { name, head });
                view(&TaskDetail {
                    task: TaskView::from(&task),
                    branch,
                    spec: serde_json::to_value(&task.spec)?,
                    runs: runs.iter().map(RunView::from).collect(),
                    events: events.iter().map(EventView::from).collect(),
                    result: read_json("result.json"),
                    route: read_json("route.json"),
                    review: read_json("review.json"),
                    start: read_json("job.json")
                        .and_then(|job| job.get("start").cloned())
                        .filter(|start| !start.is_null()),
                    bundle: bundle.map(|dir| dir.display().to_string()),
                    forge: app.forge_link(id).await?.map(orch_api::ForgeLinkView::from),
                })
            }
            Backend::Api(api) => {
                let detail: TaskDetail = api.get_as(&format!("/v1/tasks/{id}"), &()).await?;
                view(&detail)
            }
        }
    }

    /// A task's change as a patch (`GET /v1/tasks/{id}/diff` through the API).
    pub async fn task_diff(&self, settings: &Settings, id: i64) -> anyhow::Result<Vec<u8>> {
        match self {
            Backend::Store(app) => {
                orch_server::landing::diff(app.store(), &settings.home, TaskId(id))
                    .await
                    .map_err(crate::land::land_error)
            }
            Backend::Api(api) => api.get_bytes(&format!("/v1/tasks/{id}/diff")).await,
        }
    }

    /// Apply an action to a task; returns `{id, status}`.
    pub async fn act(&self, id: i64, action: Action) -> anyhow::Result<StatusChange> {
        match self {
            Backend::Store(app) => {
                let task = TaskId(id);
                let status = match action {
                    Action::Cancel { reason } => app.cancel(task, reason.as_ref(), "cli").await?,
                    Action::Retry { delay } => app.retry(task, delay, "cli").await?,
                    Action::Unblock => app.unblock(task, "cli").await?,
                    Action::Approve { comment } => {
                        let actor = crate::task_tree::cli_actor();
                        app.judge_approval(
                            task,
                            orch_store::ApprovalVerdict::Approve,
                            comment.as_ref(),
                            &actor,
                        )
                        .await?
                    }
                    Action::Reject { comment } => {
                        let actor = crate::task_tree::cli_actor();
                        app.judge_approval(
                            task,
                            orch_store::ApprovalVerdict::Reject,
                            comment.as_ref(),
                            &actor,
                        )
                        .await?
                    }
                };
                Ok(status_change(id, status))
            }
            Backend::Api(api) => {
                let (verb, body) = match action {
                    Action::Cancel { reason } => (
                        "cancel",
                        view(&CancelRequest {
                            reason: reason.as_ref().map(|r| r.as_str().to_owned()),
                        })?,
                    ),
                    Action::Retry { delay } => (
                        "retry",
                        view(&RetryRequest {
                            delay_ms: delay
                                .map(|d| u64::try_from(d.get().as_millis()).unwrap_or(u64::MAX)),
                        })?,
                    ),
                    Action::Unblock => ("unblock", json!({})),
                    Action::Approve { comment } => (
                        "approve",
                        view(&crate::task_tree::approval_body(comment.as_ref()))?,
                    ),
                    Action::Reject { comment } => (
                        "reject",
                        view(&crate::task_tree::approval_body(comment.as_ref()))?,
                    ),
                };
                api.post_as(&format!("/v1/tasks/{id}/{verb}"), &body).await
            }
        }
    }

    /// The views of these tasks (`TaskView` as JSON), in the order given.
    pub async fn task_views(&self, ids: &[i64]) -> anyhow::Result<Vec<Value>> {
        let mut views = Vec::with_capacity(ids.len());
        for &id in ids {
            views.push(match self {
                Backend::Store(app) => view(&TaskView::from(&app.store().task(TaskId(id)).await?))?,
                Backend::Api(api) => view(
                    &api.get_as::<TaskDetail, _>(&format!("/v1/tasks/{id}"), &())
                        .await?
                        .task,
                )?,
            });
        }
        Ok(views)
    }

    /// Whether the tasks went to the store with no daemon to run them (the daemon of the home
    /// is asked again: a task the API cannot carry goes to the store even when one runs).
    pub async fn nobody_runs_them(&self, settings: &Settings) -> bool {
        matches!(self, Backend::Store(_)) && local_daemon(settings).await.is_none()
    }

    /// Task counts: `{total, by_status}` with every status.
    pub async fn status_counts(&self) -> anyhow::Result<StatusCounts> {
        match self {
            Backend::Store(app) => {
                let counts = app.store().status_counts().await?;
                Ok(StatusCounts {
                    total: counts.values().sum(),
                    by_status: orch_core::Status::ALL
                        .iter()
                        .map(|s| (s.as_str().to_owned(), counts.get(s).copied().unwrap_or(0)))
                        .collect(),
                })
            }
            Backend::Api(api) => api.get_as("/v1/status", &()).await,
        }
    }
}

impl Backend {
    /// Kill the task's live agent session (and cancel the task).
    pub async fn kill(&self, settings: &Settings, id: i64) -> anyhow::Result<KilledSession> {
        match self {
            Backend::Store(app) => {
                use orch_app::live_sessions::LiveSessions;
                let sessions = orch_server::live_sessions::TmuxSessions::of_home(&settings.home);
                let reason = CancelReason::parse(Some(
                    "its live session was ended with `orch task kill`".to_owned(),
                ))
                .map_err(|e| UserError::new(e.to_string()))?;
                let status = app
                    .kill_live_session(
                        TaskId(id),
                        std::sync::Arc::new(sessions.clone()),
                        reason.as_ref(),
                        "cli",
                    )
                    .await?;
                Ok(KilledSession {
                    id,
                    session: sessions.name(TaskId(id)),
                    killed: true,
                    status: status.as_str().to_owned(),
                })
            }
            Backend::Api(api) => {
                api.post_as(&format!("/v1/tasks/{id}/kill"), &json!({}))
                    .await
            }
        }
    }

    /// Reopen a finished task with a follow-up message for its agent.
    pub async fn reply(&self, id: i64, message: &ReplyMessage) -> anyhow::Result<StatusChange> {
        match self {
            Backend::Store(app) => {
                let status = app.reply(TaskId(id), message, "cli").await?;
                Ok(status_change(id, status))
            }
            Backend::Api(api) => {
                api.post_as(
                    &format!("/v1/tasks/{id}/reply"),
                    &orch_api::ReplyRequest {
                        message: message.as_str().to_owned(),
                    },
                )
                .await
            }
        }
    }

    /// The agent sessions of a task with their usage (the rows of `GET /v1/tasks/{id}/usage`).
    pub async fn task_usage(&self, id: i64) -> anyhow::Result<Vec<orch_api::UsageView>> {
        match self {
            Backend::Store(app) => {
                let rows = app.store().task_usage(TaskId(id)).await?;
                Ok(rows
                    .into_iter()
                    .map(orch_server::api::convert::usage)
                    .collect())
            }
            Backend::Api(api) => api.get_as(&format!("/v1/tasks/{id}/usage"), &()).await,
        }
    }

    /// Usage per agent and per day (`{by_agent, by_day}`).
    pub async fn usage_summary(&self, days: u32) -> anyhow::Result<orch_api::UsageSummaryView> {
        match self {
            Backend::Store(app) => Ok(orch_server::api::convert::usage_summary(
                app.store().usage_summary(days).await?,
            )),
            Backend::Api(api) => api.get_as("/v1/usage", &[("days", days)]).await,
        }
    }

    /// Today's usage against the claim limits and `days` days of history (`orch usage`): the
    /// daemon's limits through its API, else those of `<home>/config.toml`.
    pub async fn usage_report(
        &self,
        home: &Path,
        days: u32,
    ) -> anyhow::Result<orch_api::UsageLimitsView> {
        match self {
            Backend::Store(app) => {
                let limits = orch_server::limits::load(home).map_err(UserError::new)?;
                Ok(app.usage_report(&limits, days).await?)
            }
            Backend::Api(api) => {
                api.get_as("/v1/usage/limits", &[("days", days.to_string())])
                    .await
            }
        }
    }
}

/// The project directory of the store path: the CLI found it itself, so a bad one is the
/// user's mistake.
fn local_project(project_dir: &Path) -> anyhow::Result<ProjectDir> {
    ProjectDir::resolve(&project_dir.to_string_lossy(), "project")
        .map_err(|e| UserError::new(e.to_string()).into())
}

/// What `act` does to a task.
#[derive(Debug, Clone)]
pub enum Action {
    Cancel {
        reason: Option<CancelReason>,
    },
    Retry {
        delay: Option<RetryDelay>,
    },
    Unblock,
    Approve {
        comment: Option<orch_app::ApprovalComment>,
    },
    Reject {
        comment: Option<orch_app::ApprovalComment>,
    },
}

impl Api {
    fn new(base: String, settings: &Settings, remote: &Remote) -> anyhow::Result<Api> {
        let (token, token_source) = match config::token_from(
            remote.token_file.as_deref(),
            "ORCH_TOKEN",
        )
        .map_err(|e| UserError::new(format!("{e:#}")))?
        {
            Some(token) => (token.value, token.source),
            None => {
                let file = settings.home.join("token");
                let token = std::fs::read_to_string(&file).map_err(|e| {
                    UserError::new(format!(
                        "no token for the daemon at {base}: --token-file and ORCH_TOKEN are unset and \
                         {} cannot be read ({e}); pass the daemon's admin token (the file `token` \
                         in its home)",
                        file.display()
                    ))
                })?;
                (token.trim().to_owned(), file.display().to_string())
            }
        };
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(pem) = remote.ca_pem()? {
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| UserError::new("--ca-cert: the file holds no PEM certificate"))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().context("build the HTTP client")?;
        Ok(Api {
            base,
            token,
            token_source,
            client,
        })
    }

    /// A GET whose answer is bytes (a patch), not JSON; a refusal is mapped as `send` does.
    async fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach the orch daemon at {} ({e}); check that `orch serve` runs \
                     there, or drop --server / ORCH_URL to use the local home",
                    self.base
                )
            })?;
        if response.status().is_success() {
            let bytes = response
                .bytes()
                .await
                .with_context(|| format!("read the answer of the daemon at {}", self.base))?;
            return Ok(bytes.to_vec());
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(self.refusal(status, &body))
    }

    /// A GET whose answer is read as `T` (an `orch_api` type), with `query` as its query string.
    pub(crate) async fn get_as<T, Q>(&self, path: &str, query: &Q) -> anyhow::Result<T>
    where
        T: serde::de::DeserializeOwned,
        Q: serde::Serialize + ?Sized,
    {
        let request = self.client.get(format!("{}{path}", self.base)).query(query);
        self.typed(path, self.send(request).await?)
    }

    /// A POST of `body` whose answer is read as `T` (an `orch_api` type).
    pub(crate) async fn post_as<T, B>(&self, path: &str, body: &B) -> anyhow::Result<T>
    where
        T: serde::de::DeserializeOwned,
        B: serde::Serialize + ?Sized,
    {
        let request = self.client.post(format!("{}{path}", self.base)).json(body);
        self.typed(path, self.send(request).await?)
    }

    /// The daemon's answer to `path` as the API type the caller expects.
    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        answer: Value,
    ) -> anyhow::Result<T> {
        serde_json::from_value(answer).with_context(|| {
            format!(
                "the daemon at {} answered {path} with JSON this orch does not read (is it \
                 another version?)",
                self.base
            )
        })
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self.client.post(format!("{}{path}", self.base)).json(body);
        self.send(request).await
    }

    /// Send with the token; a refusal becomes the error the store path would give (404, 400 and
    /// 422 exit 2 as input errors; 409 exits 1 as a failed operation).
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = self
            .send_patiently(request.bearer_auth(&self.token))
            .await?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("read the answer of the daemon at {}", self.base))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(self.refusal(status, &body))
    }

    /// The error for a refused request (404, 400 and 422 exit 2 as input errors; 409 exits 1 as
    /// a failed operation).
    fn refusal(&self, status: reqwest::StatusCode, body: &Value) -> anyhow::Error {
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_owned();
        let code = status.as_u16();
        match code {
            401 | 403 => UserError::new(format!(
                "the daemon at {} refused the token from {} ({code}: {message}); use the admin \
                 token in the file `token` of the daemon's home, through --token or ORCH_TOKEN",
                self.base, self.token_source
            ))
            .into(),
            400 | 404 | 422 => UserError::new(message).into(),
            409 => anyhow::anyhow!(message),
            _ => anyhow::anyhow!("the daemon at {} answered {status}: {message}", self.base),
        }
    }
}

/// How long in all the CLI waits out a busy daemon's 429s before giving up.
const BUSY_BUDGET: Duration = Duration::from_secs(60);
/// Waiting longer than this in all is said on stderr (once).
const BUSY_NOTE_AFTER: Duration = Duration::from_secs(3);

impl Api {
    async fn deliver(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        request.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the orch daemon at {} ({e}); check that `orch serve` runs there, \
                 or drop --server / ORCH_URL to use the local home",
                self.base
            )
        })
    }

    /// Send, waiting out `429 Too Many Requests` as its `Retry-After` asks (with a little
    /// jitter so that clients refused together do not come back together), for up to
    /// [`BUSY_BUDGET`] in all. A 429 is answered before the request is handled, so sending it
    /// again is safe.
    async fn send_patiently(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let mut waited = Duration::ZERO;
        let mut noted = false;
        let mut attempt = 0u32;
        loop {
            // A streamed body cannot be sent twice (the CLI sends none): then no waiting.
            let Some(this) = request.try_clone() else {
                return self.deliver(request).await;
            };
            let response = self.deliver(this).await?;
            if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Ok(response);
            }
            attempt += 1;
            let asked = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or_else(|| Duration::from_millis(250 * u64::from(attempt.min(8))));
            let jitter = Duration::from_millis(rand::random_range(0..250));
            let pause = (asked + jitter).min(BUSY_BUDGET.saturating_sub(waited));
            if pause.is_zero() {
                return Ok(response);
            }
            if !noted && waited + pause > BUSY_NOTE_AFTER {
                eprintln!(
                    "note: the daemon at {} is busy (429 Too Many Requests); waiting up to {}s \
                     in all",
                    self.base,
                    BUSY_BUDGET.as_secs()
                );
                noted = true;
            }
            tokio::time::sleep(pause).await;
            waited += pause;
        }
    }
}

/// The base URL of the daemon named in `<home>/serve.addr`, if it answers `/health`.
async fn local_daemon(settings: &Settings) -> Option<String> {
    let addr = std::fs::read_to_string(settings.home.join("serve.addr")).ok()?;
    let base = format!("http://{}", addr.trim());
    let client = reqwest::Client::builder()
        .timeout(HEALTH_TIMEOUT)
        .build()
        .ok()?;
    let response = client.get(format!("{base}/health")).send().await.ok()?;
    response.status().is_success().then_some(base)
}

fn view<T: serde::Serialize>(value: &T) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(value)?)
}

/// What of this spec `POST /v1/tasks` cannot carry yet, if anything.
pub fn spec_lacks(spec: &TaskSpec) -> Option<&'static str> {
    let default_retry = orch_core::RetryPolicy {
        max_attempts: spec.retry.max_attempts,
        ..orch_core::RetryPolicy::default()
    };
    let command_timeout = spec.steps.iter().any(|s| match &s.action {
        StepAction::Exec { commands } => commands.iter().any(|c| c.timeout.is_some()),
        StepAction::Agent { .. } => false,
    });
    if spec.key.is_some() {
        Some("a task key")
    } else if spec.timeout.is_some() || spec.steps.iter().any(|s| s.timeout.is_some()) {
        Some("a timeout")
    } else if command_timeout {
        Some("a command timeout")
    } else if spec.retry != default_retry {
        Some("a retry backoff")
    } else if spec.merge.is_some() {
        Some("`merge:`")
    } else {
        None
    }
}

/// The `POST /v1/tasks` body for a spec that `spec_lacks` nothing of.
fn create_request(
    project_dir: &Path,
    spec: &TaskSpec,
    needs: &[i64],
    parent: Option<i64>,
) -> anyhow::Result<CreateTask> {
    let steps = spec
        .steps
        .iter()
        .map(|step| {
            let mut request = StepRequest {
                name: Some(step.name.clone()),
                exec: None,
                agent: None,
                prompt: None,
                model: None,
                profile: None,
            };
            match &step.action {
                StepAction::Exec { commands } => {
                    request.exec = Some(
                        commands
                            .iter()
                            .map(|c| CommandRequest {
                                argv: c.argv.clone(),
                                env: c.env.clone(),
                                cwd: c.cwd.clone(),
                            })
                            .collect(),
                    );
                }
                StepAction::Agent {
                    agent,
                    prompt,
                    model,
                    profile,
                } => {
                    request.agent = Some(agent.clone());
                    request.prompt = Some(prompt.clone());
                    request.model = model.clone();
                    request.profile = profile.clone();
                }
            }
            request
        })
        .collect();
    Ok(CreateTask {
        project: config::absolute(project_dir)?
            .to_string_lossy()
            .into_owned(),
        title: spec.title.to_string(),
        body: spec.body.clone(),
        labels: spec.labels.clone(),
        priority: spec.priority,
        needs: needs.to_vec(),
        steps,
        max_attempts: Some(spec.retry.max_attempts),
        requires_approval: spec.requires_approval,
        unique_key: spec.unique_key.clone(),
        parent,
        tools: spec.tools.clone(),
        budget: spec.budget,
    })
}

/// `{id, status}` after an action.
fn status_change(id: i64, status: orch_core::Status) -> StatusChange {
    StatusChange {
        id,
        status: status.as_str().to_owned(),
    }
}

impl Api {
    /// `DELETE path` with the token.
    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let request = self.client.delete(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// `DELETE path` whose answer is read as `T` (an `orch_api` type).
    pub(crate) async fn delete_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<T> {
        let answer = self.delete(path).await?;
        self.typed(path, answer)
    }
}
