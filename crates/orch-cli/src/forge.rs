//! The forge commands and views: `orch init --repo`, `orch task publish`, the links `orch task
//! get` shows, and the line `orch task add` prints about a task given only a title and body.

use std::path::Path;

use orch_core::forge::RepoSlug;
use orch_core::{TaskId, TaskSpec};
use orch_store::Store;
use serde_json::{json, Value};

use crate::cli::TaskIdArgs;
use crate::client::{Backend, Remote};
use crate::config::Settings;
use crate::output::print_json;
use crate::UserError;

/// Link the project at `dir` to `repo` (`orch init --repo`): checked as GitHub names
/// repositories, stored on the project, and checked against the project's `[forge]` section.
pub async fn link(
    settings: &Settings,
    store: &Store,
    dir: &Path,
    repo: &str,
) -> anyhow::Result<String> {
    let slug = RepoSlug::parse(repo).map_err(|e| UserError::new(format!("--repo: {e}")))?;
    let app = orch_app::App::new(store.clone());
    let project = orch_app::ProjectDir::resolve(&dir.to_string_lossy(), "--repo")?;
    let (_, link) = app.link_repo(&project, &slug, "cli").await?;
    // A `[forge]` section naming another repository, or a broken one, is said now, not at the
    // first push.
    orch_server::forge::settings(&settings.home, dir, Some(&link))
        .map_err(|e| UserError::new(e.to_string()))?;
    Ok(link.repo.to_string())
}

/// `orch task publish <id>`.
pub async fn task_publish(
    settings: &Settings,
    remote: &Remote,
    args: TaskIdArgs,
) -> anyhow::Result<()> {
    let backend = Backend::open(settings, remote, None).await?;
    let answer = match &backend {
        Backend::Store(app) => {
            let published =
                orch_server::forge::publish(app, &settings.home, TaskId(args.id), "cli").await?;
            orch_server::api::forge::publish_view(published)
        }
        Backend::Api(api) => {
            api.post_as::<orch_api::PublishView, _>(
                &format!("/v1/tasks/{}/publish", args.id),
                &json!({}),
            )
            .await?
        }
    };
    if args.json {
        return print_json(&answer);
    }
    let repo = &answer.repo;
    if answer.enqueued {
        println!(
            "task {} will be opened as an issue of {repo} (outbox op {}); `orch task get {}` \
             shows the issue once it is open",
            args.id, answer.op, args.id
        );
    } else {
        println!(
            "task {} was published before (outbox op {}, {}); nothing new was enqueued",
            args.id, answer.op, answer.state
        );
    }
    Ok(())
}

/// The link lines of `orch task get`.
pub fn print_links(forge: &Value) {
    if forge.is_null() {
        return;
    }
    let repo = forge["repo"].as_str().unwrap_or("?");
    if let Some(issue) = forge["issue"].as_u64() {
        println!("issue:    {repo}#{issue}");
    }
    if let Some(pr) = forge["pr_number"].as_u64() {
        println!(
            "pull:     #{pr}{}",
            forge["pr_url"]
                .as_str()
                .map(|url| format!(" ({url})"))
                .unwrap_or_default()
        );
    }
    if let Some(branch) = forge["head_branch"].as_str() {
        println!(
            "pushed:   {branch} to {repo}{}",
            forge["pushed_commit"]
                .as_str()
                .map(|c| format!(" at {}", c.get(..12).unwrap_or(c)))
                .unwrap_or_default()
        );
    }
}

/// For a task given only a title and body: which agent its one step gets, in one line.
pub fn implicit_step_line(
    settings: &Settings,
    project_dir: &Path,
    spec: &TaskSpec,
) -> Option<String> {
    if !spec.has_routed_implicit_step() {
        return None;
    }
    let default = orch_worker::project::ProjectConfig::load_merged(&settings.home, project_dir)
        .ok()
        .and_then(|c| c.default_agent)
        .filter(|agent| agent != "auto");
    Some(match default {
        Some(agent) => format!(
            "agent step: `{agent}` (the project's default_agent), with the title and body as its \
             prompt"
        ),
        None => "agent step: routed (`agent: auto`), with the title and body as its prompt; \
                 `orch task route <id>` shows the choice"
            .to_owned(),
    })
}
