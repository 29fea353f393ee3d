//! `orch job ... --server URL`: the same commands through the daemon's HTTP API (`/v1/jobs`)
//! instead of the home's database. The job is drafted here exactly as for the store (its task
//! checked by `orch task add`'s parser, its workflow file read and parsed), then checked again
//! by the daemon. `orch job tick` stays local: the daemon ticks by itself.

use orch_api::{AddJob, JobView};
use serde_json::json;

use super::{draft, print_added, print_list, print_run, report, JobCommand};
use crate::client::Api;
use crate::UserError;

/// A job name as a path segment (names are letters, digits, `-`, `_` and `.`; anything else
/// is refused by the daemon, and must not change the path).
fn segment(name: &str) -> anyhow::Result<&str> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name == "."
        || name == ".."
    {
        return Err(UserError::new(format!(
            "`{name}` is not a job name; `orch job list` shows the jobs there are"
        ))
        .into());
    }
    Ok(name)
}

/// Run one `orch job` command against the daemon's API.
pub async fn job(api: &Api, command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Add(args) => {
            let json_out = args.json;
            let draft = draft(*args)?;
            let (task, workflow) = match draft.target {
                orch_store::jobs::JobTarget::Task(spec) => (Some(spec), None),
                orch_store::jobs::JobTarget::Workflow(text) => (None, Some(text)),
            };
            let body = AddJob {
                name: draft.name,
                project: draft.project.as_str().to_owned(),
                schedule: draft.schedule,
                timezone: Some(draft.timezone),
                missed: Some(draft.missed.as_str().to_owned()),
                task,
                workflow,
            };
            let view: JobView = api.post_as("/v1/jobs", &body).await?;
            print_added(&view, json_out)?;
        }
        JobCommand::List(args) => {
            let views: Vec<JobView> = api.get_as("/v1/jobs", &[] as &[(&str, &str)]).await?;
            print_list(&views, args.json)?;
        }
        JobCommand::Remove(args) => {
            let view = api
                .delete_as(&format!("/v1/jobs/{}", segment(&args.name)?))
                .await?;
            report(&view, "removed", args.json)?;
        }
        JobCommand::Enable(args) => {
            let path = format!("/v1/jobs/{}/enable", segment(&args.name)?);
            report(&api.post_as(&path, &json!({})).await?, "enabled", args.json)?;
        }
        JobCommand::Disable(args) => {
            let path = format!("/v1/jobs/{}/disable", segment(&args.name)?);
            report(
                &api.post_as(&path, &json!({})).await?,
                "disabled",
                args.json,
            )?;
        }
        JobCommand::Run(args) => {
            let path = format!("/v1/jobs/{}/run", segment(&args.name)?);
            print_run(&api.post_as(&path, &json!({})).await?, args.json)?;
        }
        JobCommand::Tick(_) => {
            return Err(UserError::new(
                "orch job tick runs the scheduler here, on the home's database; the daemon at \
                 --server ticks by itself. Run it without --server (or ORCH_URL) on the daemon's \
                 machine, or use `orch job run NAME --server URL` to fire one job now",
            )
            .into())
        }
    }
    Ok(())
}
