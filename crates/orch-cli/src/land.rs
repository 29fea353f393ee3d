//! `orch task diff|merge|apply`: a finished task's change, shown or landed in the project's
//! checkout (the work is in `orch_server::landing`).

use std::io::Write;

use anyhow::Context;
use orch_core::TaskId;
use orch_server::landing::{self, LandError};
use orch_worker::workspace::{Landed, MergeMode};
use serde_json::json;

use crate::cli::{TaskDiffArgs, TaskIdArgs, TaskMergeArgs};
use crate::client::{Backend, Remote};
use crate::commands::op;
use crate::config::Settings;
use crate::output::print_json;
use crate::UserError;

pub async fn diff(settings: &Settings, remote: &Remote, args: TaskDiffArgs) -> anyhow::Result<()> {
    let backend = Backend::open(settings, remote, None).await?;
    let patch = backend.task_diff(settings, args.id).await?;
    let mut stdout = std::io::stdout().lock();
    if args.name_only {
        for file in orch_worker::run::changed_files(&patch) {
            writeln!(stdout, "{file}").context("write to stdout")?;
        }
    } else {
        stdout.write_all(&patch).context("write to stdout")?;
    }
    Ok(())
}

pub async fn merge(
    settings: &Settings,
    remote: &Remote,
    args: TaskMergeArgs,
) -> anyhow::Result<()> {
    let store = local_store(settings, remote, "`orch task merge`").await?;
    let mode = if args.squash {
        MergeMode::Squash
    } else if args.rebase {
        MergeMode::Rebase
    } else {
        MergeMode::Merge
    };
    let landed = landing::merge(
        &store,
        &settings.home,
        TaskId(args.id),
        mode,
        args.into.as_deref(),
        op("cli"),
    )
    .await
    .map_err(land_error)?;
    report(args.id, &landed, args.json, "merged")
}

pub async fn apply(settings: &Settings, remote: &Remote, args: TaskIdArgs) -> anyhow::Result<()> {
    let store = local_store(settings, remote, "`orch task apply`").await?;
    let landed = landing::apply(&store, &settings.home, TaskId(args.id))
        .await
        .map_err(land_error)?;
    report(args.id, &landed, args.json, "applied")
}

/// The home's store: landing works on this machine's checkout and worktrees, never through a
/// daemon's API.
async fn local_store(
    settings: &Settings,
    remote: &Remote,
    command: &str,
) -> anyhow::Result<orch_store::Store> {
    match Backend::open(settings, remote, Some(command)).await? {
        Backend::Store(app) => Ok(app.store().clone()),
        Backend::Api(_) => Err(UserError::new(format!(
            "{command} runs on the daemon's machine, on its home; drop --server / ORCH_URL"
        ))
        .into()),
    }
}

fn report(id: i64, landed: &Landed, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({
            "task": id, "commit": landed.commit, "into": landed.into,
            "files": landed.files, "already": landed.already,
        }));
    }
    match (&landed.commit, landed.already) {
        (Some(commit), true) => println!(
            "task {id} is already in `{}` (at {commit}); nothing to do",
            landed.into
        ),
        (None, true) => println!("task {id}: nothing to land in {}", landed.into),
        (Some(commit), false) => println!(
            "task {id} {verb} into `{}` as {commit} ({} file(s))",
            landed.into,
            landed.files.len()
        ),
        (None, false) => println!(
            "task {id} {verb} to {} ({} file(s): {})",
            landed.into,
            landed.files.len(),
            landed.files.join(", ")
        ),
    }
    Ok(())
}

/// An unknown task is the user's mistake (exit 2); a refusal is a failed operation (exit 1).
pub fn land_error(error: LandError) -> anyhow::Error {
    match error {
        LandError::Store(orch_store::StoreError::TaskNotFound(id)) => UserError::new(format!(
            "no task {id}; `orch task list` shows the tasks there are"
        ))
        .into(),
        other => anyhow::Error::from(other),
    }
}
