//! The work of each subcommand. Task commands, `run` and `status` go through a `Backend` (the
//! daemon's API when one runs, else the store); the offline ones open the store directly, which
//! several `orch` processes may do at once.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use orch_core::spec;
use orch_core::{
    CancelReason, CommandDraft, ReplyMessage, RetryDelay, Status, StepAction, StepDraft, TaskDraft,
    TaskSpec, Timestamp,
};
use orch_store::{Op, Store, TaskFilter};
use serde_json::{json, Value};

use crate::cli::{
    DoctorArgs, InitArgs, JsonArgs, RunArgs, SchemaArgs, SchemaKind, TaskAddArgs, TaskCommand,
    TaskIdArgs, TaskListArgs,
};
use crate::client::{self, Action, Backend, Remote};
use crate::config::{self, Settings};
use crate::output::{self, print_json};
use crate::UserError;

/// The current time.
pub fn now() -> Timestamp {
    orch_store::wall_clock()
}

/// An `Op` for the CLI acting now.
pub fn op(actor: &str) -> Op<'_> {
    Op::now(actor)
}

/// Open (creating if needed) the store of this home.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let database = settings.database();
    let store = Store::open(&database)
        .await
        .with_context(|| match &database {
            orch_store::DatabaseConfig::Sqlite { path, .. } => {
                format!("open the orch database at {}", path.display())
            }
            // Not the URL itself: it may carry a password.
            orch_store::DatabaseConfig::Postgres { .. } => {
                format!("open the orch database of {}", settings.database_source)
            }
        })?;
    // orch's own tokens are redacted from every spec this process submits.
    store.add_secret_values(&orch_worker::run::home_tokens(&settings.home));
    Ok(store)
}

/// The database in words: the SQLite file, or where the PostgreSQL URL came from (not the URL:
/// it may carry a password).
pub fn database_shown(settings: &Settings) -> String {
    match settings.database_path() {
        Some(path) => path.display().to_string(),
        None => format!("PostgreSQL (from {})", settings.database_source),
    }
}

/// The application over this home's store, checking submissions against its `config.toml`.
pub async fn app(settings: &Settings) -> anyhow::Result<orch_app::App> {
    let check = orch_server::submit_check::ConfigCheck::new(&settings.home);
    Ok(orch_app::App::new(open_store(settings).await?).with_check(std::sync::Arc::new(check)))
}

pub async fn init(settings: &Settings, args: InitArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(UserError::new(format!(
                    "{} is not a directory; give the project's directory",
                    dir.display()
                ))
                .into());
            }
            config::absolute(dir)?
                .canonicalize()
                .with_context(|| format!("resolve {}", dir.display()))?
        }
        None => {
            config::project_root(&std::env::current_dir().context("read the current directory")?)?
        }
    };
    let store = open_store(settings).await?;
    let project = store.ensure_project(&dir.to_string_lossy(), now()).await?;
    let repo = match &args.repo {
        Some(repo) => Some(crate::forge::link(settings, &store, &dir, repo).await?),
        None => None,
    };
    if args.json {
        print_json(&json!({
            "home": settings.home,
            "database": database_shown(settings),
            "project": { "id": project.id.0, "name": project.name, "path": project.path },
            "repo": repo,
        }))?;
    } else {
        println!("orch home:  {}", settings.home.display());
        println!("database:   {}", database_shown(settings));
        println!("project:    {} ({})", project.name, project.path);
        if let Some(repo) = &repo {
            println!("repository: {repo} (linked)");
        }
        println!("next: `orch task add \"...\"` or `orch run workflow.yml`");
    }
    Ok(())
}

pub async fn run_workflow(
    settings: &Settings,
    remote: &Remote,
    args: RunArgs,
) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| {
        UserError::new(format!(
            "cannot read the workflow file {}: {e}",
            args.file.display()
        ))
    })?;
    let name = args.file.display().to_string();
    // Checked here too, so a broken file is reported the same way whichever path is taken.
    let parsed = spec::parse_workflow(&name, &text).map_err(|e| UserError::new(e.to_string()))?;
    let project_dir = crate::project::of_workflow(
        args.project.as_deref(),
        &args.file,
        parsed.project.as_deref(),
    )?;
    let backend = Backend::open(settings, remote, None).await?;
    let submitted = backend.submit_workflow(&project_dir, &name, text).await?;
    print_warnings(&submitted);
    if args.json {
        print_json(&submitted)?;
    } else {
        let tasks = submitted["tasks"].as_array().cloned().unwrap_or_default();
        println!(
            "submitted {} task(s) from {} to project {}",
            tasks.len(),
            args.file.display(),
            text_of(&submitted, "project")
        );
        let mut table = output::table(&["id", "key", "status", "needs", "title"]);
        for task in &tasks {
            table.add_row(vec![
                task["id"].to_string(),
                text_of(task, "key"),
                text_of(task, "status"),
                output::ids(&task["needs"]),
                text_of(task, "title"),
            ]);
        }
        println!("{table}");
    }
    if args.wait {
        let ids: Vec<i64> = submitted["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["id"].as_i64())
            .collect();
        return crate::wait::wait(settings, &backend, &ids).await;
    }
    if backend.nobody_runs_them(settings).await {
        eprintln!("{}", crate::wait::no_daemon_note());
    }
    Ok(true)
}

/// A string field of a JSON view, empty when absent or null.
fn text_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or("").to_owned()
}

pub async fn task(
    settings: &Settings,
    remote: &Remote,
    command: TaskCommand,
) -> anyhow::Result<()> {
    match command {
        TaskCommand::Add(args) => task_add(settings, remote, *args).await,
        TaskCommand::List(args) => task_list(settings, remote, args).await,
        TaskCommand::Get(args) => task_get(settings, remote, args).await,
        TaskCommand::Route(args) => crate::route::task_route(settings, args).await,
        TaskCommand::Cancel(args) => {
            let reason =
                CancelReason::parse(args.reason).map_err(|e| UserError::new(format!("--{e}")))?;
            let backend = Backend::open(settings, remote, None).await?;
            let changed = backend.act(args.id, Action::Cancel { reason }).await?;
            report_status(&changed, "cancelled", args.json)
        }
        TaskCommand::Retry(args) => {
            let delay = RetryDelay::parse(args.delay)
                .map_err(|e| UserError::new(format!("--delay: {}", e.reason)))?;
            let backend = Backend::open(settings, remote, None).await?;
            let changed = backend.act(args.id, Action::Retry { delay }).await?;
            report_status(&changed, "retried", args.json)
        }
        TaskCommand::Unblock(args) => {
            let backend = Backend::open(settings, remote, None).await?;
            let changed = backend.act(args.id, Action::Unblock).await?;
            report_status(&changed, "unblocked", args.json)
        }
        TaskCommand::Logs(args) => crate::daemon::task_logs(settings, args).await,
        TaskCommand::Live(args) => crate::agents::live(settings, args.json),
        TaskCommand::Attach(args) => crate::agents::attach(settings, args),
        TaskCommand::Kill(args) => crate::agents::kill(settings, remote, args).await,
        TaskCommand::Reply(args) => {
            let message =
                ReplyMessage::parse(args.message).map_err(|e| UserError::new(e.reason))?;
            let backend = Backend::open(settings, remote, None).await?;
            let changed = backend.reply(args.id, &message).await?;
            report_status(&changed, "reopened with a reply", args.json)
        }
        TaskCommand::Answer(args) => crate::info_requests::answer(settings, remote, args).await,
        TaskCommand::Diff(args) => crate::land::diff(settings, remote, args).await,
        TaskCommand::Merge(args) => crate::land::merge(settings, remote, args).await,
        TaskCommand::Apply(args) => crate::land::apply(settings, remote, args).await,
        TaskCommand::Publish(args) => crate::forge::task_publish(settings, remote, args).await,
        TaskCommand::Approve(args) => {
            let comment = crate::task_tree::comment(args.comment.as_deref())?;
            let backend = Backend::open(settings, remote, None).await?;
            let changed = backend.act(args.id, Action::Approve { comment }).await?;
            report_status(&changed, "approved", args.json)
        }
        TaskCommand::Reject(args) => {
            let comment = crate::task_tree::comment(args.comment.as_deref())?;
            let backend = Backend::open(settings, remote, None).await?;
            let changed = backend.act(args.id, Action::Reject { comment }).await?;
            report_status(&changed, "rejected", args.json)
        }
    }
}

fn report_status(changed: &orch_api::StatusChange, verb: &str, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(changed)
    } else {
        println!("task {} {verb}; it is now {}", changed.id, changed.status);
        Ok(())
    }
}

async fn task_add(settings: &Settings, remote: &Remote, args: TaskAddArgs) -> anyhow::Result<()> {
    let spec = match &args.file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                UserError::new(format!("cannot read the task file {}: {e}", file.display()))
            })?;
            let mut spec = spec::parse_task(&file.display().to_string(), &text)
                .map_err(|e| UserError::new(e.to_string()))?;
            apply_overrides(&mut spec, &args)?;
            spec
        }
        None => spec_from_flags(&args)?,
    };
    let project_dir = match &args.project {
        Some(dir) => crate::project::named("--project", dir)?,
        None => crate::project::current()?,
    };
    let implicit = crate::forge::implicit_step_line(settings, &project_dir, &spec);
    let backend = Backend::open(settings, remote, client::spec_lacks(&spec)).await?;
    let (task, project) = backend
        .add_task(&project_dir, spec, &args.needs, args.parent)
        .await?;
    print_warnings(&task);
    if task["existing"].as_bool() == Some(true) {
        if args.json {
            return print_json(&task);
        }
        println!(
            "task {} ({}) already holds the key `{}` in project {project}; nothing was added",
            task["id"],
            text_of(&task, "status"),
            args.unique_key.as_deref().unwrap_or_default()
        );
        return Ok(());
    }
    if backend.nobody_runs_them(settings).await {
        eprintln!("{}", crate::wait::no_daemon_note());
    }
    if args.json {
        print_json(&task)
    } else {
        println!(
            "added task {} ({}) to project {project}",
            task["id"],
            text_of(&task, "status")
        );
        if let Some(line) = implicit {
            println!("{line}");
        }
        Ok(())
    }
}

pub(crate) fn apply_overrides(spec: &mut TaskSpec, args: &TaskAddArgs) -> anyhow::Result<()> {
    for label in &args.labels {
        if !spec.labels.contains(label) {
            spec.labels.push(label.clone());
        }
    }
    if let Some(priority) = args.priority {
        spec.priority = priority;
    }
    if let Some(max) = args.max_attempts {
        orch_core::input::check_max_attempts(max)
            .map_err(|e| UserError::new(format!("--max-attempts {max}: {e}")))?;
        spec.retry.max_attempts = max;
    }
    if args.requires_approval {
        spec.requires_approval = true;
    }
    crate::task_tree::apply_flags(spec, args)?;
    Ok(())
}

/// The task the flags describe, checked by the core like every other front end's.
pub(crate) fn spec_from_flags(args: &TaskAddArgs) -> anyhow::Result<TaskSpec> {
    let mut steps = Vec::new();
    if !args.exec.is_empty() {
        let mut commands = Vec::new();
        for (index, line) in args.exec.iter().enumerate() {
            let argv = shell_words::split(line).map_err(|e| {
                UserError::new(format!(
                    "--exec #{}: `{line}` cannot be split into arguments ({e}); check its quotes",
                    index + 1
                ))
            })?;
            if argv.is_empty() {
                return Err(UserError::new(format!(
                    "--exec #{} is empty; give a command such as \"cargo test\"",
                    index + 1
                ))
                .into());
            }
            commands.push(CommandDraft {
                argv,
                ..CommandDraft::default()
            });
        }
        steps.push(StepDraft {
            name: Some("exec".into()),
            exec: Some(commands),
            ..StepDraft::default()
        });
    }
    if let Some(agent) = &args.agent {
        steps.push(StepDraft {
            name: Some("agent".into()),
            agent: Some(agent.clone()),
            ..StepDraft::default()
        });
    }
    let draft = TaskDraft {
        title: args.title.clone().unwrap_or_default(),
        body: args.body.clone().unwrap_or_default(),
        labels: args.labels.clone(),
        priority: args.priority.unwrap_or(0),
        steps,
        max_attempts: args.max_attempts,
        requires_approval: args.requires_approval,
        ..TaskDraft::default()
    };
    let draft = crate::task_tree::draft_with_flags(draft, args)?;
    TaskSpec::parse(draft).map_err(|e| {
        let flag = match e.field.as_str() {
            "title" => "TITLE".to_owned(),
            "max_attempts" => format!("--max-attempts {}", args.max_attempts.unwrap_or(0)),
            "unique_key" => "--key".to_owned(),
            field if field.starts_with("tools") => "--tool".to_owned(),
            field if field.contains(".exec") => "--exec".to_owned(),
            field if field.contains(".agent") => "--agent".to_owned(),
            other => other.to_owned(),
        };
        UserError::new(format!("{flag}: {}", e.reason)).into()
    })
}

async fn task_list(settings: &Settings, remote: &Remote, args: TaskListArgs) -> anyhow::Result<()> {
    let status = args
        .status
        .as_deref()
        .map(|s| {
            s.parse::<Status>()
                .map_err(|e| UserError::new(format!("--status: {e}")))
        })
        .transpose()?;
    let backend = Backend::open(settings, remote, None).await?;
    let project = match &args.project {
        None => None,
        Some(wanted) => {
            let projects = backend.projects().await?;
            let resolved = config::absolute(Path::new(wanted))
                .ok()
                .and_then(|p| p.canonicalize().ok());
            let found = projects.iter().find(|p| {
                p.name == *wanted
                    || resolved
                        .as_ref()
                        .is_some_and(|r| r.to_string_lossy() == p.path)
            });
            match found {
                Some(p) => Some(p.id),
                None => {
                    let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
                    return Err(UserError::new(format!(
                        "--project {wanted}: no such project; registered projects: {}",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ))
                    .into());
                }
            }
        }
    };
    let tasks = backend
        .list_tasks(&TaskFilter {
            status,
            project,
            workflow: None,
            limit: (!args.all).then_some(args.limit),
            label: args.label.clone(),
            newest_first: true,
        })
        .await?;
    if args.json {
        print_json(&tasks)
    } else if tasks.is_empty() {
        println!("no tasks");
        Ok(())
    } else {
        let color = crate::listing::color_for(std::io::stdout().is_terminal());
        let mut out = std::io::stdout().lock();
        let tasks = if args.tree {
            crate::task_tree::as_tree(tasks)
        } else {
            tasks
        };
        for line in crate::listing::task_lines(&tasks, crate::listing::stdout_width(), color) {
            writeln!(out, "{line}")?;
        }
        if !args.all && tasks.len() == args.limit as usize {
            eprintln!(
                "(the latest {} task(s); --limit N or --all for more)",
                args.limit
            );
        }
        Ok(())
    }
}

async fn task_get(settings: &Settings, remote: &Remote, args: TaskIdArgs) -> anyhow::Result<()> {
    let backend = Backend::open(settings, remote, None).await?;
    let mut detail = backend.task_detail(settings, args.id).await?;
    let usage = serde_json::to_value(backend.task_usage(args.id).await?)?;
    detail["usage"] = json!({ "sessions": usage, "total": crate::agents::sum_usage(&usage) });
    detail["info_requests"] = crate::info_requests::info_requests(&backend, args.id).await?;
    if args.json {
        return print_json(&detail);
    }
    let task = &detail["task"];
    let spec: TaskSpec = serde_json::from_value(detail["spec"].clone())
        .context("read the task's spec from its JSON view")?;
    println!("task {}: {}", task["id"], text_of(task, "title"));
    println!(
        "status:   {}{}",
        text_of(task, "status"),
        task["status_reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    if let Some(key) = &spec.key {
        println!("key:      {key}");
    }
    println!("priority: {}", spec.priority);
    println!(
        "attempts: {} of {} used ({} runs in all)",
        task["attempts_used"], spec.retry.max_attempts, task["run_count"]
    );
    let needs = output::ids(&task["needs"]);
    if !needs.is_empty() {
        println!("needs:    {}", needs.replace(',', ", "));
    }
    if !spec.labels.is_empty() {
        println!("labels:   {}", spec.labels.join(", "));
    }
    if let Some(dir) = detail["bundle"].as_str() {
        println!("bundle:   {dir}");
    }
    for line in crate::info_requests::describe(&detail["info_requests"]) {
        println!("{line}");
    }
    if let Some(branch) = detail["branch"]["name"].as_str() {
        println!(
            "branch:   {branch} (head {})",
            detail["branch"]["head"].as_str().unwrap_or("?")
        );
    }
    let start = &detail["start"];
    if let Some(commit) = start["commit"].as_str() {
        let branches: Vec<&str> = start["branches"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.as_str())
            .collect();
        println!(
            "start:    {commit} (from {}{})",
            text_of(start, "from"),
            if branches.is_empty() {
                String::new()
            } else {
                format!(": {}", branches.join(", "))
            }
        );
    }
    crate::forge::print_links(&detail["forge"]);
    crate::agents::print_task_usage(&detail["usage"]);
    let route = &detail["route"];
    if !route.is_null() {
        println!(
            "route:    agent {} (model {}, complexity {}) by {}",
            text_of(route, "agent"),
            route["model"].as_str().unwrap_or("default"),
            text_of(route, "complexity"),
            text_of(route, "source"),
        );
    }
    let review = &detail["review"];
    if !review.is_null() {
        let reasons: Vec<&str> = review["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        println!(
            "review:   {} (round {} of {}){}",
            review["verdict"].as_str().unwrap_or("no valid answer"),
            review["round"],
            review["max_rounds"],
            if reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", reasons.join("; "))
            }
        );
    }
    let result = &detail["result"];
    if !result.is_null() {
        println!(
            "result:   {} ({})",
            text_of(result, "status"),
            text_of(result, "summary")
        );
        if let Some(files) = result["changed_files"].as_array().filter(|f| !f.is_empty()) {
            let files: Vec<&str> = files.iter().filter_map(|f| f.as_str()).collect();
            println!("changed:  {}", files.join(", "));
        }
        if let Some(commit) = result["commit"].as_str() {
            println!("commit:   {commit}");
        }
    }
    for (index, step) in spec.steps.iter().enumerate() {
        let what = match &step.action {
            StepAction::Exec { commands } => {
                let lines: Vec<String> = commands
                    .iter()
                    .map(|c| shell_words::join(&c.argv))
                    .collect();
                format!("exec: {}", lines.join(" && "))
            }
            StepAction::Agent { agent, .. } => format!("agent: {agent}"),
        };
        println!("step {}:   {} ({what})", index + 1, step.name);
    }
    let runs = detail["runs"].as_array().cloned().unwrap_or_default();
    if !runs.is_empty() {
        let mut table = output::table(&["run", "attempt", "owner", "state", "started", "outcome"]);
        for run in &runs {
            table.add_row(vec![
                run["id"].to_string(),
                run["attempt"].to_string(),
                text_of(run, "owner"),
                text_of(run, "state"),
                text_of(run, "started_at"),
                text_of(run, "outcome"),
            ]);
        }
        println!("\n{table}");
    }
    let mut table = output::table(&["event", "at", "actor", "kind", "from", "to", "reason"]);
    for event in detail["events"].as_array().into_iter().flatten() {
        table.add_row(vec![
            event["id"].to_string(),
            text_of(event, "at"),
            text_of(event, "actor"),
            text_of(event, "kind"),
            event["from"].as_str().unwrap_or("-").to_owned(),
            text_of(event, "to"),
            text_of(event, "reason"),
        ]);
    }
    println!("\n{table}");
    Ok(())
}

pub async fn status(settings: &Settings, remote: &Remote, args: JsonArgs) -> anyhow::Result<()> {
    let backend = Backend::open(settings, remote, None).await?;
    let mut counts = serde_json::to_value(backend.status_counts().await?)?;
    let usage = backend.usage_summary(7).await?;
    counts["usage"] = serde_json::to_value(usage)?;
    if args.json {
        return print_json(&counts);
    }
    let mut table = output::table(&["status", "tasks"]);
    for status in Status::ALL {
        let n = &counts["by_status"][status.as_str()];
        if n.as_u64().is_some_and(|n| n > 0) {
            table.add_row(vec![status.to_string(), n.to_string()]);
        }
    }
    table.add_row(vec!["total".to_owned(), counts["total"].to_string()]);
    println!("{table}");
    crate::agents::print_usage_summary(&counts["usage"]);
    Ok(())
}

pub async fn doctor(settings: &Settings, args: DoctorArgs) -> anyhow::Result<bool> {
    if let Some(path) = settings.database_path() {
        if !path.exists() {
            return Err(UserError::new(format!(
                "no orch database at {}; run `orch init` first (or check --home and --database)",
                path.display()
            ))
            .into());
        }
    }
    let store = open_store(settings).await?;
    let report = doctor_check(settings, &store, !args.no_agents).await?;
    if args.json {
        print_json(&report.to_json())?;
    } else {
        report.print();
    }
    Ok(report.ok())
}

/// What `orch doctor` found (also run by `orch admin import` on the home it filled).
pub struct DoctorReport {
    /// The SQLite file, or where the PostgreSQL URL came from.
    database: String,
    problems: Vec<orch_store::Problem>,
    total: u64,
    /// The agents' readiness; `None` when they were not checked (`--no-agents`).
    agents: Option<Vec<orch_agents::preflight::AgentInfo>>,
    config_problem: Option<String>,
}

/// Replay every task's events against its state, and check the configuration and (with
/// `check_agents`) the agent CLIs.
pub async fn doctor_check(
    settings: &Settings,
    store: &Store,
    check_agents: bool,
) -> anyhow::Result<DoctorReport> {
    let counts = store.status_counts().await?;
    let total: u64 = counts.values().sum();
    let spinner = progress_spinner(format!("replaying the events of {total} task(s)"));
    let problems = store.check_consistency().await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let problems = problems?;
    // The agents as the current directory's project would run them (global config merged
    // under its `.orch.toml`). A config that does not parse is a problem; a missing CLI is
    // reported, not a failure: `sim` needs none.
    let cwd = std::env::current_dir().context("read the current directory")?;
    let (agents, config_problem) = if check_agents {
        match crate::agents::check(settings, &cwd).await {
            Ok(agents) => (Some(agents), None),
            Err(e) => (Some(Vec::new()), Some(e.to_string())),
        }
    } else {
        let config = orch_worker::project::ProjectConfig::load_merged(&settings.home, &cwd);
        (None, config.err().map(|e| e.to_string()))
    };
    Ok(DoctorReport {
        database: database_shown(settings),
        problems,
        total,
        agents,
        config_problem,
    })
}

impl DoctorReport {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.config_problem.is_none()
    }

    /// `orch doctor --json`'s object.
    pub fn to_json(&self) -> Value {
        let list: Vec<_> = self
            .problems
            .iter()
            .map(|p| json!({ "task": p.task.0, "problem": p.message }))
            .collect();
        json!({
            "database": self.database, "tasks": self.total, "ok": self.ok(), "problems": list,
            "config_problem": self.config_problem, "agents": self.agents.clone().unwrap_or_default(),
        })
    }

    /// `orch doctor`'s text.
    pub fn print(&self) {
        let total = self.total;
        if self.problems.is_empty() {
            println!(
                "ok: {total} task(s) checked; every task's events replay to its current state"
            );
        } else {
            for p in &self.problems {
                println!("task {}: {}", p.task, p.message);
            }
            println!("{} problem(s) in {total} task(s)", self.problems.len());
        }
        match &self.config_problem {
            Some(problem) => println!("config: {problem}"),
            None => {
                if let Some(agents) = &self.agents {
                    crate::agents::print_table(agents);
                }
            }
        }
    }
}

/// A spinner with `message` and the time taken, on stderr when it is a terminal.
pub fn progress_spinner(message: String) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        spinner.set_style(style);
    }
    spinner.set_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    Some(spinner)
}

pub async fn recover(settings: &Settings, args: JsonArgs) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let report = store.tick(op("recover")).await?;
    if args.json {
        let recovered: Vec<_> = report
            .recovered
            .iter()
            .map(|r| json!({ "run": r.run.0, "task": r.task.0, "status": r.status.as_str() }))
            .collect();
        let requeued: Vec<i64> = report.requeued.iter().map(|t| t.0).collect();
        print_json(&json!({ "recovered": recovered, "requeued": requeued }))
    } else {
        for r in &report.recovered {
            println!(
                "run {} of task {}: lease expired; task is now {}",
                r.run, r.task, r.status
            );
        }
        for t in &report.requeued {
            println!("task {t}: backoff elapsed; queued again");
        }
        if report.recovered.is_empty() && report.requeued.is_empty() {
            println!("nothing to recover");
        }
        Ok(())
    }
}

pub fn version(args: JsonArgs) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    if args.json {
        print_json(&json!({ "name": "orch", "version": version }))
    } else {
        println!("orch {version}");
        Ok(())
    }
}

pub fn schema(args: SchemaArgs) -> anyhow::Result<()> {
    match args.kind {
        SchemaKind::Workflow => print!("{}", spec::workflow_schema()),
        SchemaKind::Task => print!("{}", spec::task_schema()),
    }
    Ok(())
}

/// The `warnings` of a submission's answer (fields that looked like secrets), on stderr.
fn print_warnings(answer: &serde_json::Value) {
    for warning in answer["warnings"].as_array().into_iter().flatten() {
        if let Some(text) = warning.as_str() {
            eprintln!("warning: {text}");
        }
    }
}
