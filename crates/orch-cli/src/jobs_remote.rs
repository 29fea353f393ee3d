//! `orch job ... --server URL`: the same commands through the daemon's HTTP API (`/v1/jobs`)
//! instead of the home's database. The job is drafted here exactly as for the store (its task
//! checked by `orch task add`'s parser, its workflow file read and parsed), then checked again
//! by the daemon. `orch job tick` stays local: the daemon ticks by itself.

use serde_json::{json, Value};

use super::{draft, print_list, JobCommand};
use crate::client::Api;
use crate::output::print_json;
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
            let mut body = json!({
                "name": draft.name,
                "project": draft.project.as_str(),
                "schedule": draft.schedule,
                "timezone": draft.timezone,
                "missed": draft.missed.as_str(),
            });
            match draft.target {
                orch_store::jobs::JobTarget::Task(spec) => body["task"] = json!(spec),
                orch_store::jobs::JobTarget::Workflow(text) => body["workflow"] = json!(text),
            }
            let view = api.post("/v1/jobs", &body).await?;
            if json_out {
                print_json(&view)?;
            } else {
                println!(
                    "added job {} ({} in {}); next firing {}",
                    view["name"].as_str().unwrap_or_default(),
                    view["schedule"].as_str().unwrap_or_default(),
                    view["timezone"].as_str().unwrap_or_default(),
                    view["next_local"].as_str().unwrap_or("never")
                );
            }
        }
        JobCommand::List(args) => {
            let views = api.get("/v1/jobs", &[]).await?;
            let views = views.as_array().cloned().unwrap_or_default();
            print_list(&views, args.json)?;
        }
        JobCommand::Remove(args) => {
            let view = api
                .delete(&format!("/v1/jobs/{}", segment(&args.name)?))
                .await?;
            report(&view, "removed", args.json)?;
        }
        JobCommand::Enable(args) => {
            let path = format!("/v1/jobs/{}/enable", segment(&args.name)?);
            report(&api.post(&path, &json!({})).await?, "enabled", args.json)?;
        }
        JobCommand::Disable(args) => {
            let path = format!("/v1/jobs/{}/disable", segment(&args.name)?);
            report(&api.post(&path, &json!({})).await?, "disabled", args.json)?;
        }
        JobCommand::Run(args) => {
            let path = format!("/v1/jobs/{}/run", segment(&args.name)?);
            let firing = api.post(&path, &json!({})).await?;
            if args.json {
                print_json(&firing)?;
            } else {
                match (firing["task"].as_i64(), firing["error"].as_str()) {
                    (Some(task), _) => println!("job {} fired (manual): task {task}", args.name),
                    (None, Some(error)) => println!(
                        "job {} fired but its submission was refused: {error}",
                        args.name
                    ),
                    (None, None) => println!("job {} fired; it had nothing to submit", args.name),
                }
            }
            if let Some(error) = firing["error"].as_str() {
                return Err(UserError::new(format!("job {}: {error}", args.name)).into());
            }
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

fn report(view: &Value, verb: &str, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        print_json(view)
    } else {
        println!("job {} {verb}", view["name"].as_str().unwrap_or_default());
        Ok(())
    }
}
