//! The work of each subcommand. Until the daemon exists every command opens the store directly;
//! several `orch` processes may do so at once.

use std::path::Path;

use anyhow::Context;
use orch_core::spec;
use orch_core::{
    NewTask, RetryPolicy, Status, Step, StepAction, TaskId, TaskSpec, TaskTitle, Timestamp,
};
use orch_store::{Op, Store, Submission, TaskFilter};
use serde_json::json;

use crate::cli::{
    InitArgs, JsonArgs, RunArgs, SchemaArgs, SchemaKind, TaskAddArgs, TaskCancelArgs, TaskCommand,
    TaskIdArgs, TaskListArgs, TaskRetryArgs,
};
use crate::config::{self, Settings};
use crate::output::{self, print_json, EventView, RunView, TaskView};
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
    let path = settings.database_path();
    Store::open_sqlite(&path, settings.sqlite.clone())
        .await
        .with_context(|| format!("open the orch database at {}", path.display()))
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
    if args.json {
        print_json(&json!({
            "home": settings.home,
            "database": settings.database_path(),
            "project": { "id": project.id.0, "name": project.name, "path": project.path },
        }))?;
    } else {
        println!("orch home:  {}", settings.home.display());
        println!("database:   {}", settings.database_path().display());
        println!("project:    {} ({})", project.name, project.path);
        println!("next: `orch task add \"...\"` or `orch run workflow.yml`");
    }
    Ok(())
}

pub async fn run_workflow(settings: &Settings, args: RunArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| {
        UserError::new(format!(
            "cannot read the workflow file {}: {e}",
            args.file.display()
        ))
    })?;
    let name = args.file.display().to_string();
    let workflow = spec::parse_workflow(&name, &text).map_err(|e| UserError::new(e.to_string()))?;
    let project_dir = match &args.project {
        Some(dir) => config::project_root(dir)?,
        None => {
            let parent = args
                .file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            config::project_root(parent)?
        }
    };
    let store = open_store(settings).await?;
    let op = op("cli");
    let project = store
        .ensure_project(&project_dir.to_string_lossy(), op.now)
        .await?;
    let keys: Vec<Option<String>> = workflow.tasks.iter().map(|t| t.spec.key.clone()).collect();
    let submission = Submission {
        project: project.id,
        workflow: Some((workflow.name.clone(), text)),
        tasks: workflow.tasks,
    };
    let ids = store.submit(&submission, op).await?;
    let tasks = futures_tasks(&store, &ids).await?;
    if args.json {
        let views: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
        print_json(
            &json!({ "workflow": tasks.first().and_then(|t| t.workflow).map(|w| w.0), "project": project.name, "tasks": views }),
        )?;
    } else {
        println!(
            "submitted {} task(s) from {} to project {}",
            ids.len(),
            args.file.display(),
            project.name
        );
        let mut table = output::table(&["id", "key", "status", "needs", "title"]);
        for (task, key) in tasks.iter().zip(keys) {
            let needs: Vec<String> = task.needs.iter().map(ToString::to_string).collect();
            table.add_row(vec![
                task.id.to_string(),
                key.unwrap_or_default(),
                task.status.to_string(),
                needs.join(","),
                task.spec.title.to_string(),
            ]);
        }
        println!("{table}");
    }
    Ok(())
}

async fn futures_tasks(store: &Store, ids: &[TaskId]) -> anyhow::Result<Vec<orch_core::Task>> {
    let mut tasks = Vec::with_capacity(ids.len());
    for id in ids {
        tasks.push(store.task(*id).await?);
    }
    Ok(tasks)
}

pub async fn task(settings: &Settings, command: TaskCommand) -> anyhow::Result<()> {
    match command {
        TaskCommand::Add(args) => task_add(settings, args).await,
        TaskCommand::List(args) => task_list(settings, args).await,
        TaskCommand::Get(args) => task_get(settings, args).await,
        TaskCommand::Cancel(args) => task_cancel(settings, args).await,
        TaskCommand::Retry(args) => task_retry(settings, args).await,
        TaskCommand::Unblock(args) => {
            let store = open_store(settings).await?;
            let status = store.unblock(TaskId(args.id), op("cli")).await?;
            report_status(args.id, "unblocked", status, args.json)
        }
        TaskCommand::Logs(args) => crate::daemon::task_logs(settings, args).await,
        TaskCommand::Approve(args) => {
            let store = open_store(settings).await?;
            let status = store.approve(TaskId(args.id), op("cli")).await?;
            report_status(args.id, "approved", status, args.json)
        }
    }
}

fn report_status(id: i64, verb: &str, status: Status, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&json!({ "id": id, "status": status.as_str() }))
    } else {
        println!("task {id} {verb}; it is now {status}");
        Ok(())
    }
}

async fn task_add(settings: &Settings, args: TaskAddArgs) -> anyhow::Result<()> {
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
        Some(dir) => config::project_root(dir)?,
        None => {
            config::project_root(&std::env::current_dir().context("read the current directory")?)?
        }
    };
    let store = open_store(settings).await?;
    let op = op("cli");
    let project = store
        .ensure_project(&project_dir.to_string_lossy(), op.now)
        .await?;
    let submission = Submission {
        project: project.id,
        workflow: None,
        tasks: vec![NewTask {
            spec,
            needs_in_batch: Vec::new(),
            needs_existing: args.needs.iter().copied().map(TaskId).collect(),
            parent: None,
        }],
    };
    let ids = store.submit(&submission, op).await.map_err(|e| match e {
        orch_store::StoreError::Invalid { field, reason } => anyhow::Error::from(UserError::new(
            format!("--{field}: {reason}; `orch task list` shows the tasks there are"),
        )),
        other => other.into(),
    })?;
    let task = store.task(ids[0]).await?;
    if args.json {
        print_json(&TaskView::from(&task))
    } else {
        println!(
            "added task {} ({}) to project {}",
            task.id, task.status, project.name
        );
        Ok(())
    }
}

fn apply_overrides(spec: &mut TaskSpec, args: &TaskAddArgs) -> anyhow::Result<()> {
    for label in &args.labels {
        if !spec.labels.contains(label) {
            spec.labels.push(label.clone());
        }
    }
    if let Some(priority) = args.priority {
        spec.priority = priority;
    }
    if let Some(max) = args.max_attempts {
        if max == 0 {
            return Err(UserError::new("--max-attempts 0: a task needs at least 1 attempt").into());
        }
        spec.retry.max_attempts = max;
    }
    if args.requires_approval {
        spec.requires_approval = true;
    }
    Ok(())
}

fn spec_from_flags(args: &TaskAddArgs) -> anyhow::Result<TaskSpec> {
    let raw_title = args.title.clone().unwrap_or_default();
    let title = TaskTitle::parse(raw_title).map_err(|e| UserError::new(format!("TITLE: {e}")))?;
    let body = args.body.clone().unwrap_or_default();
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
            commands.push(orch_core::Command {
                argv,
                env: Default::default(),
                cwd: None,
                timeout: None,
            });
        }
        steps.push(Step {
            name: "exec".into(),
            action: StepAction::Exec { commands },
            timeout: None,
        });
    }
    if let Some(agent) = &args.agent {
        let prompt = if body.trim().is_empty() {
            title.to_string()
        } else {
            body.clone()
        };
        steps.push(Step {
            name: "agent".into(),
            action: StepAction::Agent {
                agent: agent.clone(),
                prompt,
                model: None,
                profile: None,
            },
            timeout: None,
        });
    }
    let mut spec = TaskSpec {
        key: None,
        title,
        body,
        labels: Vec::new(),
        priority: 0,
        steps,
        retry: RetryPolicy::default(),
        timeout: None,
        requires_approval: false,
    };
    apply_overrides(&mut spec, args)?;
    Ok(spec)
}

async fn task_list(settings: &Settings, args: TaskListArgs) -> anyhow::Result<()> {
    let status = args
        .status
        .as_deref()
        .map(|s| {
            s.parse::<Status>()
                .map_err(|e| UserError::new(format!("--status: {e}")))
        })
        .transpose()?;
    let store = open_store(settings).await?;
    let project = match &args.project {
        None => None,
        Some(wanted) => {
            let projects = store.projects().await?;
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
    let tasks = store
        .tasks(&TaskFilter {
            status,
            project,
            workflow: None,
            limit: args.limit,
        })
        .await?;
    if args.json {
        let views: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
        print_json(&views)
    } else if tasks.is_empty() {
        println!("no tasks");
        Ok(())
    } else {
        println!("{}", output::task_table(&tasks));
        Ok(())
    }
}

async fn task_get(settings: &Settings, args: TaskIdArgs) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let id = TaskId(args.id);
    let task = store.task(id).await?;
    let runs = store.runs(id).await?;
    let events = store.events(id).await?;
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
    let result: Option<serde_json::Value> = bundle
        .as_ref()
        .and_then(|dir| std::fs::read(dir.join("result.json")).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if args.json {
        let spec = serde_json::to_value(&task.spec)?;
        print_json(&json!({
            "task": TaskView::from(&task),
            "spec": spec,
            "runs": runs.iter().map(RunView::from).collect::<Vec<_>>(),
            "events": events.iter().map(EventView::from).collect::<Vec<_>>(),
            "bundle": bundle,
            "result": result,
        }))
    } else {
        println!("task {}: {}", task.id, task.spec.title);
        println!(
            "status:   {}{}",
            task.status,
            task.status_reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        if let Some(key) = &task.spec.key {
            println!("key:      {key}");
        }
        println!("priority: {}", task.spec.priority);
        println!(
            "attempts: {} of {} used ({} runs in all)",
            task.attempts_used, task.spec.retry.max_attempts, task.run_count
        );
        if !task.needs.is_empty() {
            let needs: Vec<String> = task.needs.iter().map(ToString::to_string).collect();
            println!("needs:    {}", needs.join(", "));
        }
        if !task.spec.labels.is_empty() {
            println!("labels:   {}", task.spec.labels.join(", "));
        }
        if let Some(dir) = &bundle {
            println!("bundle:   {}", dir.display());
        }
        if let Some(result) = &result {
            let text = |key: &str| result[key].as_str().unwrap_or("").to_owned();
            println!("result:   {} ({})", text("status"), text("summary"));
            if let Some(files) = result["changed_files"].as_array().filter(|f| !f.is_empty()) {
                let files: Vec<&str> = files.iter().filter_map(|f| f.as_str()).collect();
                println!("changed:  {}", files.join(", "));
            }
            if let Some(commit) = result["commit"].as_str() {
                println!("commit:   {commit}");
            }
        }
        for (index, step) in task.spec.steps.iter().enumerate() {
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
        if !runs.is_empty() {
            let mut table =
                output::table(&["run", "attempt", "owner", "state", "started", "outcome"]);
            for run in &runs {
                table.add_row(vec![
                    run.id.to_string(),
                    run.attempt.to_string(),
                    run.lease.owner.clone(),
                    run.state.to_string(),
                    output::time(run.started_at),
                    run.outcome.clone().unwrap_or_default(),
                ]);
            }
            println!("\n{table}");
        }
        let mut table = output::table(&["event", "at", "actor", "kind", "from", "to", "reason"]);
        for event in &events {
            table.add_row(vec![
                event.id.to_string(),
                output::time(event.at),
                event.actor.clone(),
                event.kind.to_string(),
                event
                    .from
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                event.to.to_string(),
                event.reason.clone().unwrap_or_default(),
            ]);
        }
        println!("\n{table}");
        Ok(())
    }
}

async fn task_cancel(settings: &Settings, args: TaskCancelArgs) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let status = store
        .cancel(TaskId(args.id), args.reason.as_deref(), op("cli"))
        .await?;
    report_status(args.id, "cancelled", status, args.json)
}

async fn task_retry(settings: &Settings, args: TaskRetryArgs) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let status = store.retry(TaskId(args.id), args.delay, op("cli")).await?;
    report_status(args.id, "retried", status, args.json)
}

pub async fn status(settings: &Settings, args: JsonArgs) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let counts = store.status_counts().await?;
    let total: u64 = counts.values().sum();
    if args.json {
        let by_status: serde_json::Map<String, serde_json::Value> = Status::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    json!(counts.get(s).copied().unwrap_or(0)),
                )
            })
            .collect();
        print_json(&json!({ "total": total, "by_status": by_status }))
    } else {
        let mut table = output::table(&["status", "tasks"]);
        for status in Status::ALL {
            if let Some(n) = counts.get(&status) {
                table.add_row(vec![status.to_string(), n.to_string()]);
            }
        }
        table.add_row(vec!["total".to_owned(), total.to_string()]);
        println!("{table}");
        Ok(())
    }
}

pub async fn doctor(settings: &Settings, args: JsonArgs) -> anyhow::Result<bool> {
    let path = settings.database_path();
    if !path.exists() {
        return Err(UserError::new(format!(
            "no orch database at {}; run `orch init` first (or check --home)",
            path.display()
        ))
        .into());
    }
    let store = open_store(settings).await?;
    let problems = store.check_consistency().await?;
    let counts = store.status_counts().await?;
    let total: u64 = counts.values().sum();
    if args.json {
        let list: Vec<_> = problems
            .iter()
            .map(|p| json!({ "task": p.task.0, "problem": p.message }))
            .collect();
        print_json(
            &json!({ "database": path, "tasks": total, "ok": problems.is_empty(), "problems": list }),
        )?;
    } else if problems.is_empty() {
        println!("ok: {total} task(s) checked; every task's events replay to its current state");
    } else {
        for p in &problems {
            println!("task {}: {}", p.task, p.message);
        }
        println!("{} problem(s) in {total} task(s)", problems.len());
    }
    Ok(problems.is_empty())
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
