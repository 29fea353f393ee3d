//! `orch job`: cron jobs that submit a task or a workflow at each slot of a schedule. Jobs live
//! in the database, so every daemon on it sees them; the scheduler leader fires them, and `orch
//! job tick` runs one pass by hand (without a daemon). Every calendar decision uses
//! `orch_store::calendar_clock`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use orch_api::{FiringView, JobView};
use orch_app::jobs::{firing_view, job_view, JobDraft, JobTick};
use orch_app::ProjectDir;
use orch_core::cron::MissedPolicy;
use orch_core::spec;
use orch_store::jobs::JobTarget;
use serde_json::{json, Value};

use crate::cli::TaskAddArgs;
use crate::client::{Backend, Remote};
use crate::config::Settings;
use crate::output::print_json;
use crate::UserError;

/// `orch job ...`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Add a job: a cron schedule that submits a task (the `orch task add` flags) or a workflow
    /// file (--workflow) at each slot.
    ///
    /// Schedules have five fields (`minute hour day-of-month month day-of-week`, e.g.
    /// `0 9 * * MON-FRI`) or six with seconds first; `@daily`, `@hourly` and the like work
    /// too. Slots are computed in --tz. Each slot fires once however many daemons share the
    /// database. A slot missed while no daemon ran is skipped, or with `--missed catch-up` all
    /// missed slots together fire once when the scheduler is back.
    Add(Box<JobAddArgs>),
    /// List the jobs with their next firing (in the job's time zone) and their last one.
    List(JobListArgs),
    /// Remove a job (the tasks it submitted stay).
    Remove(JobNameArgs),
    /// Enable a disabled job; slots that passed while it was disabled are not fired.
    Enable(JobNameArgs),
    /// Disable a job: the scheduler stops firing it.
    Disable(JobNameArgs),
    /// Fire a job now, by hand, whatever its schedule (its schedule goes on as before).
    Run(JobNameArgs),
    /// Run one scheduler pass over every enabled job now: fire the due slots. `orch serve`
    /// does this every tick; this is for running jobs without a daemon (e.g. from an outer
    /// scheduler) and for checking a schedule.
    Tick(JobListArgs),
}

/// `orch job add`.
#[derive(Debug, Args)]
pub struct JobAddArgs {
    /// The job's unique name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The cron expression, e.g. "*/15 * * * *" (five fields, or six with seconds first).
    #[arg(long, short = 's', value_name = "CRON")]
    pub schedule: String,
    /// The IANA time zone the schedule is in, e.g. Europe/Berlin.
    #[arg(long = "tz", value_name = "ZONE", default_value = "UTC")]
    pub timezone: String,
    /// What to do with slots missed while no daemon ran: `skip` them, or `catch-up` (fire
    /// once for all of them).
    #[arg(long, value_name = "POLICY", default_value = "skip")]
    pub missed: String,
    /// Submit this workflow file's tasks at each slot (read now and stored with the job).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["title", "file", "body", "exec", "agent"])]
    pub workflow: Option<PathBuf>,
    /// The task's one-line title (or use --file or --workflow).
    #[arg(required_unless_present_any = ["file", "workflow"])]
    pub title: Option<String>,
    /// Read the task from a YAML task file (see `orch schema task`).
    #[arg(long, short = 'f', conflicts_with_all = ["title", "body", "exec", "agent"])]
    pub file: Option<PathBuf>,
    /// Longer description; the prompt of agent steps.
    #[arg(long)]
    pub body: Option<String>,
    /// A label (repeatable).
    #[arg(long = "label", short = 'l', value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Higher runs first.
    #[arg(long, short = 'p', allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Attempts before a task ends failed.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// A command to run (repeatable: one exec step with these commands in order).
    #[arg(long, value_name = "COMMAND")]
    pub exec: Vec<String>,
    /// Run this agent with the body (or title) as its prompt; `auto` lets the router choose.
    #[arg(long)]
    pub agent: Option<String>,
    /// Each task waits for `orch task approve` before running.
    #[arg(long)]
    pub requires_approval: bool,
    /// The project, an existing directory [default: the workflow's `project:`, else the
    /// repository or directory you are in].
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A job named on the command line.
#[derive(Debug, Args)]
pub struct JobNameArgs {
    /// The job's name (`orch job list`).
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `orch job list` and `orch job tick`.
#[derive(Debug, Args)]
pub struct JobListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[path = "jobs_remote.rs"]
mod remote;

/// Run one `orch job` command: through the daemon's API with `--server` (or `ORCH_URL`), else
/// against the home's store.
pub async fn job(settings: &Settings, remote: &Remote, command: JobCommand) -> anyhow::Result<()> {
    if remote.server.is_some() {
        if let Backend::Api(api) = Backend::open(settings, remote, None).await? {
            return remote::job(&api, command).await;
        }
    }
    let app = crate::commands::app(settings).await?;
    let now = orch_store::calendar_clock();
    match command {
        JobCommand::Add(args) => {
            let json = args.json;
            let draft = draft(*args)?;
            let job = app.add_job(draft, now).await?;
            print_added(&job_view(&job, None, now), json)?;
        }
        JobCommand::List(args) => {
            print_list(&app.job_views(now).await?, args.json)?;
        }
        JobCommand::Remove(args) => {
            let job = app.store().remove_job(&args.name).await?;
            report(&job_view(&job, None, now), "removed", args.json)?;
        }
        JobCommand::Enable(args) => {
            let job = app.store().set_job_enabled(&args.name, true, now).await?;
            report(&job_view(&job, None, now), "enabled", args.json)?;
        }
        JobCommand::Disable(args) => {
            let job = app.store().set_job_enabled(&args.name, false, now).await?;
            report(&job_view(&job, None, now), "disabled", args.json)?;
        }
        JobCommand::Run(args) => {
            let firing = app.run_job(&args.name, now, "cli").await?;
            let Some(firing) = firing else {
                return Err(UserError::new(format!(
                    "job {} fired at this very millisecond already; run it again",
                    args.name
                ))
                .into());
            };
            print_run(&firing_view(&args.name, &firing), args.json)?;
        }
        JobCommand::Tick(args) => {
            let tick = app.tick_jobs(now, "cli").await?;
            if args.json {
                print_json(&tick_view(&tick))?;
            } else {
                for (name, firing) in &tick.fired {
                    print_firing(&firing_view(name, firing));
                }
                for name in &tick.skipped {
                    println!("job {name}: missed slots skipped (policy skip)");
                }
                for (name, error) in &tick.failed {
                    eprintln!("error: job {name}: {error}");
                }
                if tick.fired.is_empty() && tick.skipped.is_empty() && tick.failed.is_empty() {
                    println!("no job was due");
                }
            }
            if let Some((name, error)) = tick.failed.first() {
                anyhow::bail!("job {name} could not be ticked: {error}");
            }
        }
    }
    Ok(())
}

/// The job the flags describe: its schedule and policy are checked by the core, its task by
/// the same parser as `orch task add`, its workflow file by `orch run`'s.
fn draft(args: JobAddArgs) -> anyhow::Result<JobDraft> {
    let missed = MissedPolicy::parse(&args.missed)
        .map_err(|e| UserError::new(format!("--missed: {}", e.reason)))?;
    let (target, project) = match &args.workflow {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                UserError::new(format!(
                    "cannot read the workflow file {}: {e}",
                    file.display()
                ))
            })?;
            let name = file.display().to_string();
            let parsed =
                spec::parse_workflow(&name, &text).map_err(|e| UserError::new(e.to_string()))?;
            let project = crate::project::of_workflow(
                args.project.as_deref(),
                file,
                parsed.project.as_deref(),
            )?;
            (JobTarget::Workflow(text), project)
        }
        None => {
            let task_args = TaskAddArgs {
                title: args.title.clone(),
                file: args.file.clone(),
                body: args.body.clone(),
                labels: args.labels.clone(),
                priority: args.priority,
                needs: Vec::new(),
                max_attempts: args.max_attempts,
                exec: args.exec.clone(),
                agent: args.agent.clone(),
                requires_approval: args.requires_approval,
                project: args.project.clone(),
                json: args.json,
                unique_key: None,
                parent: None,
                tools: Vec::new(),
                budget_tokens: None,
                budget_usd: None,
            };
            let spec = match &args.file {
                Some(file) => {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        UserError::new(format!("cannot read the task file {}: {e}", file.display()))
                    })?;
                    let mut spec = spec::parse_task(&file.display().to_string(), &text)
                        .map_err(|e| UserError::new(e.to_string()))?;
                    crate::commands::apply_overrides(&mut spec, &task_args)?;
                    spec
                }
                None => crate::commands::spec_from_flags(&task_args)?,
            };
            let project = match &args.project {
                Some(dir) => crate::project::named("--project", dir)?,
                None => crate::project::current()?,
            };
            (JobTarget::Task(Box::new(spec)), project)
        }
    };
    let project = ProjectDir::resolve(&project.to_string_lossy(), "--project")
        .map_err(|e| UserError::new(format!("{}: {}", e.field, e.reason)))?;
    Ok(JobDraft {
        name: args.name,
        project,
        schedule: args.schedule,
        timezone: args.timezone,
        missed,
        target,
    })
}

fn tick_view(tick: &JobTick) -> Value {
    json!({
        "fired": tick.fired.iter().map(|(name, f)| firing_view(name, f)).collect::<Vec<_>>(),
        "skipped": tick.skipped,
        "failed": tick.failed.iter().map(|(name, e)| json!({"job": name, "error": e})).collect::<Vec<_>>(),
    })
}

fn print_firing(firing: &FiringView) {
    let name = &firing.job;
    match (&firing.task, &firing.error) {
        (Some(task), _) => println!(
            "job {name} fired ({}): task {task}",
            firing.kind.replace('_', "-")
        ),
        (None, Some(error)) => println!("job {name} fired but its submission was refused: {error}"),
        (None, None) => println!("job {name} fired; it had nothing to submit"),
    }
}

/// `orch job run`'s output; a refused submission is the command's error.
fn print_run(firing: &FiringView, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(firing)?;
    } else {
        print_firing(firing);
    }
    match &firing.error {
        Some(error) => Err(UserError::new(format!("job {}: {error}", firing.job)).into()),
        None => Ok(()),
    }
}

fn report(view: &JobView, verb: &str, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(view)
    } else {
        println!("job {} {verb}", view.name);
        Ok(())
    }
}

/// `orch job add`'s output.
fn print_added(view: &JobView, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(view)
    } else {
        println!(
            "added job {} ({} in {}); next firing {}",
            view.name,
            view.schedule,
            view.timezone,
            view.next_local.as_deref().unwrap_or("never")
        );
        Ok(())
    }
}

/// `orch job list`'s output: JSON, or a table (or how to add a job when there is none).
fn print_list(views: &[JobView], json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&views)?;
    } else if views.is_empty() {
        println!("no jobs; add one with `orch job add NAME --schedule \"0 9 * * *\" TITLE`");
    } else {
        print_table(views);
    }
    Ok(())
}

fn print_table(views: &[JobView]) {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "NAME", "SCHEDULE", "ZONE", "MISSED", "ENABLED", "NEXT", "LAST", "SUBMITS",
    ]);
    for v in views {
        let last = match &v.last_firing {
            Some(f) => match (f.task, &f.error) {
                (Some(task), _) => format!("task {task}"),
                (None, Some(_)) => "refused".to_owned(),
                (None, None) => "-".to_owned(),
            },
            None => "-".to_owned(),
        };
        table.add_row([
            v.name.clone(),
            v.schedule.clone(),
            v.timezone.clone(),
            v.missed.clone(),
            if v.enabled { "yes" } else { "no" }.to_owned(),
            v.next_local.clone().unwrap_or_else(|| "-".to_owned()),
            last,
            v.title.clone(),
        ]);
    }
    println!("{table}");
}
