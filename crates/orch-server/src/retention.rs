//! Retention: remove the worktrees (and copies) of finished tasks once their branch is merged
//! or they are older than the configured age, and their run bundles (`<home>/runs/<task>`: logs,
//! results, patches) once they are older than the bundles' own age. `orch gc` runs it now; the
//! daemon runs it hourly.
//!
//! Tasks in `needs_review` keep their worktrees whatever their age: a human is meant to look at
//! them. Branches are never deleted, only worktrees, so no work is lost. The git it needs goes
//! through the workspace's hardened runner, on the repository recorded beside each worktree,
//! never through anything inside the worktree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::{Status, TaskId, Timestamp};
use orch_store::Store;
use orch_worker::workspace::{parse_record, Workspace};

/// What a retention pass did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Removed workspaces: task, directory, why.
    pub removed: Vec<(TaskId, PathBuf, String)>,
    /// Workspaces kept because their task is not finished or not old enough.
    pub kept: usize,
}

/// A workspace found on disk under `<home>/worktrees`.
struct Found {
    task: TaskId,
    workspace: Workspace,
}

/// Every workspace under `worktrees_root`, rebuilt from what is on disk: git worktrees are
/// `<group>/<task>` with a `<group>/<task>.base` record (base commit, branch and the git
/// directories orch recorded when it made the worktree), copies are `copies/<task>`.
///
/// Nothing is asked of git here and nothing inside a worktree is read: a task may have replaced
/// its `.git`. A worktree whose record predates the recorded git directories is handled as a
/// plain directory: removing it deletes the directory only, never running git in it (its stale
/// registration is pruned by a later `prepare` that needs the path or the branch).
fn find_workspaces(worktrees_root: &Path) -> Vec<Found> {
    let mut found = Vec::new();
    let Ok(groups) = std::fs::read_dir(worktrees_root) else {
        return found;
    };
    for group in groups
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
    {
        let is_copies = group.file_name().is_some_and(|n| n == "copies");
        let Ok(entries) = std::fs::read_dir(&group) else {
            continue;
        };
        for path in entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
        {
            let Some(task) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            let as_directory = || Workspace::Copy {
                path: path.clone(),
                source: PathBuf::new(),
            };
            let workspace = if is_copies {
                as_directory()
            } else {
                let Some(record) = std::fs::read(group.join(format!("{task}.base")))
                    .ok()
                    .as_deref()
                    .and_then(parse_record)
                else {
                    continue;
                };
                // Records hold canonical paths; `path` is canonical when the home is.
                let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                Workspace::from_record(&canonical, record).unwrap_or_else(as_directory)
            };
            found.push(Found {
                task: TaskId(task),
                workspace,
            });
        }
    }
    found.sort_by_key(|f| f.task);
    found
}

/// Run one retention pass. `now` and `older_than` decide age by the task's last status change.
pub async fn collect(
    store: &Store,
    home: &Path,
    older_than: Duration,
    now: Timestamp,
    dry_run: bool,
) -> Result<GcReport, orch_store::StoreError> {
    let mut report = GcReport::default();
    // Walking the worktrees is file-system work: off the async threads.
    let root = home.join("worktrees");
    let found = tokio::task::spawn_blocking(move || find_workspaces(&root))
        .await
        .map_err(|e| orch_store::StoreError::Io {
            context: "list the worktrees".to_owned(),
            source: std::io::Error::other(e),
        })?;
    for found in found {
        // A workspace of a task this home does not know (a deleted database): leave it.
        let Some(task) = known_task(store, found.task).await? else {
            report.kept += 1;
            continue;
        };
        if !matches!(
            task.status,
            Status::Done | Status::Failed | Status::Cancelled
        ) {
            report.kept += 1;
            continue;
        }
        let old = task.updated_at.after(older_than) <= now;
        let merged = match found.workspace.main_branch().await {
            Ok(Some(base)) => found.workspace.is_merged(&base).await.unwrap_or(false),
            _ => false,
        };
        // A done task whose branch is merged has nothing left in its worktree; anything else
        // waits for the age limit.
        let why = if merged && task.status == Status::Done {
            "its branch is merged"
        } else if old {
            "it finished longer ago than the retention age"
        } else {
            report.kept += 1;
            continue;
        };
        if !dry_run {
            if let Err(e) = found.workspace.remove().await {
                tracing::warn!(task = %task.id, "could not remove the workspace: {e}");
                report.kept += 1;
                continue;
            }
        }
        report
            .removed
            .push((task.id, found.workspace.path().to_owned(), why.to_owned()));
    }
    Ok(report)
}

/// Remove `task`'s workspace in this home, if it has one here (its pull request was merged):
/// the removed directory. A task that ran on a remote worker has its worktree on that worker,
/// whose retention removes it once its branch is merged or old.
pub async fn remove_task_workspace(home: &Path, task: TaskId) -> Result<Option<PathBuf>, String> {
    let root = home.join("worktrees");
    let found = tokio::task::spawn_blocking(move || find_workspaces(&root))
        .await
        .map_err(|e| format!("list the worktrees: {e}"))?;
    let Some(found) = found.into_iter().find(|f| f.task == task) else {
        return Ok(None);
    };
    found
        .workspace
        .remove()
        .await
        .map_err(|e| format!("remove the worktree of task {task}: {e}"))?;
    Ok(Some(found.workspace.path().to_owned()))
}

/// Remove the run bundles (`<home>/runs/<task>`, every attempt) of tasks that finished (done,
/// failed or cancelled) longer ago than `older_than`. `needs_review` tasks and unfinished ones
/// keep theirs; so do bundles of tasks this home does not know.
pub async fn collect_bundles(
    store: &Store,
    home: &Path,
    older_than: Duration,
    now: Timestamp,
    dry_run: bool,
) -> Result<GcReport, orch_store::StoreError> {
    let mut report = GcReport::default();
    let runs = home.join("runs");
    let Some(mut bundles) = orch_worker::off_async(|| {
        let entries = std::fs::read_dir(&runs).ok()?;
        Some(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let task = e.file_name().to_str()?.parse::<i64>().ok()?;
                    Some((TaskId(task), e.path()))
                })
                .filter(|(_, path)| path.is_dir())
                .collect::<Vec<(TaskId, PathBuf)>>(),
        )
    }) else {
        return Ok(report);
    };
    bundles.sort();
    for (id, path) in bundles {
        let Some(task) = known_task(store, id).await? else {
            report.kept += 1;
            continue;
        };
        let finished = matches!(
            task.status,
            Status::Done | Status::Failed | Status::Cancelled
        );
        if !finished || task.updated_at.after(older_than) > now {
            report.kept += 1;
            continue;
        }
        if !dry_run {
            if let Err(e) = orch_worker::off_async(|| std::fs::remove_dir_all(&path)) {
                tracing::warn!(task = %id, "could not remove the run bundles {}: {e}", path.display());
                report.kept += 1;
                continue;
            }
        }
        report.removed.push((
            id,
            path,
            "its run bundles are older than the bundle retention age".to_owned(),
        ));
    }
    Ok(report)
}

/// The task, or `None` if this home's store does not know it.
async fn known_task(
    store: &Store,
    id: TaskId,
) -> Result<Option<orch_core::Task>, orch_store::StoreError> {
    match store.task(id).await {
        Ok(task) => Ok(Some(task)),
        Err(orch_store::StoreError::TaskNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
