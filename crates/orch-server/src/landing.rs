//! Landing a finished task's change in its project's checkout, for every front end (`orch task
//! diff|merge|apply`, `GET /v1/tasks/{id}/diff`, a workflow's automatic final merge): finds the
//! task's project, where it started (`start.commit` of its latest `job.json`, else the merge
//! base with the project's `base_branch`) and its change, lands it with
//! [`orch_worker::workspace::TaskChange`], and records the `merged` note on the task.
//!
//! Like retention, this works on this home's worktrees and the project's checkout on this
//! machine: a task that ran on a remote worker has its branch in that worker's checkout.

use std::path::{Path, PathBuf};

use orch_core::{EventKind, Status, Task, TaskId};
use orch_store::{Op, Store, StoreError};
use orch_worker::project::ProjectConfig;
use orch_worker::workspace::{Landed, MergeMode, MergeRequest, TaskChange, WorkspaceError};
use serde_json::json;

/// Why a landing was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LandError {
    /// The task or its project could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change could not be found or landed (the text says why and what to do).
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The project's config does not parse.
    #[error("{0}")]
    Config(String),
    /// The task is still being worked on.
    #[error(
        "task {task} is {status}; land a task once it has finished (done, needs_review, failed \
         or cancelled)"
    )]
    Unfinished {
        /// The task.
        task: TaskId,
        /// Its status.
        status: Status,
    },
}

/// A task with its project directory and its change.
#[derive(Debug, Clone)]
pub struct Located {
    /// The task.
    pub task: Task,
    /// The project's directory (the checkout changes land in).
    pub project_dir: PathBuf,
    /// Its change.
    pub change: TaskChange,
}

/// The task, its project's directory and its change.
pub async fn locate(store: &Store, home: &Path, id: TaskId) -> Result<Located, LandError> {
    let task = store.task(id).await?;
    let project_dir = project_dir(store, &task).await?;
    let start = recorded_start(home, store, id).await?;
    let config = ProjectConfig::load_merged(home, &project_dir)
        .map_err(|e| LandError::Config(e.to_string()))?;
    let change = TaskChange::locate(
        home,
        &project_dir,
        id.0,
        start.as_deref(),
        config.base_branch.as_deref(),
    )
    .await?;
    Ok(Located {
        task,
        project_dir,
        change,
    })
}

/// The task's change as a patch.
pub async fn diff(store: &Store, home: &Path, id: TaskId) -> Result<Vec<u8>, LandError> {
    Ok(locate(store, home, id).await?.change.diff().await?)
}

/// Land the task's change in its project's checkout and record the `merged` note (also when
/// the change was already there but no note says so, as after a crash between the two).
pub async fn merge(
    store: &Store,
    home: &Path,
    id: TaskId,
    mode: MergeMode,
    into: Option<&str>,
    op: Op<'_>,
) -> Result<Landed, LandError> {
    let (located, landed) = land(store, home, id, mode, into).await?;
    if !landed.already || !was_merged(store, id).await? {
        record_merged(store, &located, &landed, mode, op).await?;
    }
    Ok(landed)
}

async fn land(
    store: &Store,
    home: &Path,
    id: TaskId,
    mode: MergeMode,
    into: Option<&str>,
) -> Result<(Located, Landed), LandError> {
    let located = locate(store, home, id).await?;
    refuse_unfinished(&located.task)?;
    let landed = located
        .change
        .merge(MergeRequest {
            task_id: id.0,
            title: located.task.spec.title.as_str(),
            mode,
            into,
        })
        .await?;
    Ok((located, landed))
}

async fn record_merged(
    store: &Store,
    located: &Located,
    landed: &Landed,
    mode: MergeMode,
    op: Op<'_>,
) -> Result<(), StoreError> {
    let (branch, head) = located
        .change
        .branch()
        .map_or((None, None), |(b, h)| (Some(b), Some(h)));
    let reason = match &landed.commit {
        Some(commit) => format!("landed in `{}` as {commit}", landed.into),
        None => format!("copied back into {}", landed.into),
    };
    let data = json!({
        "commit": landed.commit, "into": landed.into, "mode": mode.as_str(),
        "files": landed.files, "branch": branch, "head": head,
    });
    store
        .record_note(located.task.id, EventKind::Merged, &reason, data, op)
        .await
        .map(drop)
}

/// The daemon's automatic merges (`merge:` in workflow files): it follows the event log and,
/// for each `complete` event of a task with a merge policy that is still done and has no
/// `merged` or `merge_refused` note after that event, lands the task. A refused landing is
/// recorded as a `merge_refused` note with the reason; the task stays done.
///
/// Crash safety: the position in the log is kept in memory only, so a restarted daemon reads the
/// log again from the start and lands what a crash left unlanded; what was landed is known by
/// its note, or (a crash between landing and the note) by the branch already being in the
/// target (`TaskChange::merge` recognises its own commits), when only the note is written.
#[derive(Debug, Default)]
pub struct AutoMerge {
    /// The last event looked at.
    after: i64,
}

/// Events read per page of the log.
const AUTO_MERGE_PAGE: u32 = 1000;

impl AutoMerge {
    /// Look at up to `max_events` new events of the log (`None`: all of them) and land what
    /// they call for. Store failures end the pass (it resumes at the same event next time).
    pub async fn pass(
        &mut self,
        store: &Store,
        home: &Path,
        max_events: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut seen: u64 = 0;
        loop {
            let page = store.events_after(self.after, AUTO_MERGE_PAGE).await?;
            let full = page.len() == AUTO_MERGE_PAGE as usize;
            for feed in page {
                let event = &feed.event;
                if event.kind == EventKind::Complete {
                    self.land_once(store, home, event.task, event.id).await?;
                }
                self.after = event.id;
                seen += 1;
            }
            if !full || max_events.is_some_and(|max| seen >= max) {
                return Ok(());
            }
        }
    }

    async fn land_once(
        &self,
        store: &Store,
        home: &Path,
        id: TaskId,
        completed_at_event: i64,
    ) -> Result<(), StoreError> {
        let task = match store.task(id).await {
            Ok(task) => task,
            Err(StoreError::TaskNotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(policy) = task.spec.merge.clone() else {
            return Ok(());
        };
        if task.status != Status::Done {
            return Ok(());
        }
        let settled = store.events(id).await?.iter().any(|event| {
            event.id > completed_at_event
                && matches!(event.kind, EventKind::Merged | EventKind::MergeRefused)
        });
        if settled {
            return Ok(());
        }
        let op = Op::now("scheduler");
        match land(store, home, id, policy.mode, policy.into.as_deref()).await {
            Ok((located, landed)) => {
                tracing::info!(task = %id, commit = ?landed.commit, into = %landed.into, "landed the task's change");
                record_merged(store, &located, &landed, policy.mode, op).await
            }
            Err(LandError::Store(e)) => Err(e),
            Err(refused) => {
                tracing::warn!(task = %id, "automatic merge refused: {refused}");
                let data = json!({ "into": policy.into, "mode": policy.mode.as_str() });
                store
                    .record_note(
                        id,
                        EventKind::MergeRefused,
                        &format!("automatic merge refused: {refused}"),
                        data,
                        op,
                    )
                    .await
                    .map(drop)
            }
        }
    }
}

/// Apply the task's change to its project's working tree, without committing.
pub async fn apply(store: &Store, home: &Path, id: TaskId) -> Result<Landed, LandError> {
    let located = locate(store, home, id).await?;
    refuse_unfinished(&located.task)?;
    Ok(located.change.apply(&home.join("worktrees")).await?)
}

/// The task's branch and its head (`orch task get`), when this home made one.
pub async fn branch(store: &Store, home: &Path, task: &Task) -> Option<(String, String)> {
    let project_dir = project_dir(store, task).await.ok()?;
    TaskChange::branch_of(home, &project_dir, task.id.0)
        .await
        .ok()
        .flatten()
}

/// Whether a `merged` note is on the task.
pub async fn was_merged(store: &Store, id: TaskId) -> Result<bool, StoreError> {
    Ok(store
        .events(id)
        .await?
        .iter()
        .any(|event| event.kind == EventKind::Merged))
}

fn refuse_unfinished(task: &Task) -> Result<(), LandError> {
    match task.status {
        Status::Done | Status::NeedsReview | Status::Failed | Status::Cancelled => Ok(()),
        status => Err(LandError::Unfinished {
            task: task.id,
            status,
        }),
    }
}

async fn project_dir(store: &Store, task: &Task) -> Result<PathBuf, StoreError> {
    store
        .projects()
        .await?
        .into_iter()
        .find(|project| project.id == task.project)
        .map(|project| PathBuf::from(project.path))
        .ok_or_else(|| StoreError::Corrupt(format!("task {} has no project", task.id)))
}

/// `start.commit` of the latest run's `job.json`, when the worker recorded where it started.
async fn recorded_start(
    home: &Path,
    store: &Store,
    id: TaskId,
) -> Result<Option<String>, LandError> {
    let Some(run) = store.runs(id).await?.into_iter().last() else {
        return Ok(None);
    };
    let job = home
        .join("runs")
        .join(id.to_string())
        .join(run.attempt.to_string())
        .join("job.json");
    Ok(std::fs::read(job)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|job| job["start"]["commit"].as_str().map(str::to_owned))
        .filter(|commit| commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())))
}
