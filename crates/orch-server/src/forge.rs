//! A project's forge settings as the daemon and the CLI use them: `[forge]` of the merged
//! config (`<home>/config.toml` + the project's `.orch.toml`) checked against the project's
//! stored link (`orch init --repo`), and `orch task publish` on top of the application layer.

use std::path::Path;

use orch_core::forge::{ForgeFile, ForgeSettings, DEFAULT_TRIGGER_LABEL};
use orch_core::{FieldError, TaskId};
use orch_store::{ProjectForge, Store};
use orch_worker::project::ProjectConfig;

/// The project's forge settings: `None` when it has neither a `[forge]` section nor a link.
/// A link without a section gets the defaults (trigger label `orch`, no credentials: nothing
/// is written to the forge until some are configured).
pub fn settings(
    home: &Path,
    project_dir: &Path,
    link: Option<&ProjectForge>,
) -> Result<Option<ForgeSettings>, FieldError> {
    let config = ProjectConfig::load_merged(home, project_dir)
        .map_err(|e| FieldError::new("config", e.to_string()))?;
    let file = match (config.forge, link) {
        (Some(file), _) => file,
        (None, Some(_)) => ForgeFile::default(),
        (None, None) => return Ok(None),
    };
    file.check(link.map(|l| &l.repo))
        .map(Some)
        .map_err(|e| FieldError::new("forge", format!("{}: {e}", project_dir.display())))
}

/// The project's trigger and plan labels (the defaults when its settings do not check).
pub fn labels(home: &Path, project_dir: &Path, link: &ProjectForge) -> (String, String) {
    settings(home, project_dir, Some(link))
        .ok()
        .flatten()
        .map_or_else(
            || {
                (
                    DEFAULT_TRIGGER_LABEL.to_owned(),
                    orch_core::planner::DEFAULT_PLAN_LABEL.to_owned(),
                )
            },
            |s| (s.trigger_label, s.plan_label),
        )
}

/// `orch task publish`: the task's project's trigger label from its settings, then
/// [`orch_app::App::publish`].
pub async fn publish(
    app: &orch_app::App,
    home: &Path,
    task: TaskId,
    actor: &str,
) -> Result<orch_app::forge::Published, orch_app::AppError> {
    let store: &Store = app.store();
    let stored = store.task(task).await?;
    let project = store
        .projects()
        .await?
        .into_iter()
        .find(|p| p.id == stored.project);
    let link = store.project_forge(stored.project).await?;
    let label = match &project {
        Some(project) => {
            settings(home, Path::new(&project.path), link.as_ref())?.map(|s| s.trigger_label)
        }
        None => None,
    };
    app.publish(
        task,
        label.as_deref().unwrap_or(DEFAULT_TRIGGER_LABEL),
        actor,
    )
    .await
}
