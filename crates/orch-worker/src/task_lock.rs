//! One run at a time in a task's worktree: a run holds an exclusive `flock` on
//! `<home>/locks/task-<task>.lock` (in the home, outside every worktree, so a step cannot touch
//! it; not under `worktrees/`, which exists only once a workspace was made) from before its workspace is prepared until it has reported.
//!
//! The lock file holds the id of the run that last took it. A run that takes the lock after an
//! earlier run of the task stops whatever is left of that run's processes in this home first
//! (`exec::kill_processes_of_runs`): a worker killed with SIGKILL releases its locks with its
//! death, but its steps may live on. A run that finds the lock held (an earlier run of the task
//! in this process has not stopped yet, e.g. its lease was lost and it is still stopping its
//! steps) waits up to a deadline and then gives its run back (requeue) rather than run beside
//! it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::{RunId, TaskId};
use tokio::time::Instant;

/// How often a run waiting for the lock looks again.
const POLL: Duration = Duration::from_millis(50);

/// A held task lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct TaskLock {
    _file: File,
}

/// Why a run could not take its task's lock.
#[derive(Debug, thiserror::Error)]
pub enum TaskLockError {
    /// Another run of the task held the lock for the whole wait.
    #[error(
        "task {task}'s worktree is still in use by run {holder} (waited {waited:?}); the run is \
         given back to be tried again"
    )]
    Busy {
        /// The task.
        task: TaskId,
        /// The run recorded in the lock file, or "an earlier run".
        holder: String,
        /// How long the run waited.
        waited: Duration,
    },
    /// The lock file could not be used.
    #[error("the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The lock file of `task` under the home's worktrees directory.
pub fn lock_path(home: &Path, task: TaskId) -> PathBuf {
    home.join("locks").join(format!("task-{}.lock", task.0))
}

/// Take `task`'s lock for `run`, waiting up to `wait` for an earlier run to let go; then stop
/// what is left of the earlier run's processes (found under `<home>/runs`) and record `run`.
pub async fn acquire(
    home: &Path,
    task: TaskId,
    run: RunId,
    wait: Duration,
) -> Result<TaskLock, TaskLockError> {
    let path = lock_path(home, task);
    let io = |source| TaskLockError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?
    };
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                tokio::time::sleep(POLL).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(TaskLockError::Busy {
                    task,
                    holder: previous_run(&mut file)
                        .map_or_else(|| "an earlier run".to_owned(), |r| r.to_string()),
                    waited: started.elapsed(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
    }
    if let Some(previous) = previous_run(&mut file).filter(|previous| *previous != run) {
        let scratch_root = home.join("scratch");
        let killed = tokio::task::spawn_blocking(move || {
            crate::exec::kill_processes_of_runs(&scratch_root, &[previous.0])
        })
        .await
        .unwrap_or_default();
        for group in killed {
            tracing::warn!(%task, %run, %previous, group, "stopped the processes an earlier run of the task left behind");
        }
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", run.0).map_err(io)?;
    Ok(TaskLock { _file: file })
}

/// Stop what a previous incarnation of the worker using `home` left running: the process groups
/// in its registry (`<home>/processes`), and any process of the runs last recorded in the task
/// locks (what the registry missed: a command spawned in the instant before it was registered).
/// Call it holding the home's lock and before claiming anything, so none of these runs is ours.
/// Returns the process groups stopped.
pub fn stop_previous_incarnation(home: &Path) -> Vec<i32> {
    let mut killed = crate::exec::kill_orphaned_groups(&home.join("processes"));
    let recorded: Vec<i64> = std::fs::read_dir(home.join("locks"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("task-"))
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|text| text.trim().parse().ok())
        .collect();
    killed.extend(crate::exec::kill_processes_of_runs(
        &home.join("scratch"),
        &recorded,
    ));
    killed
}

/// The run recorded in the lock file, if any.
fn previous_run(file: &mut File) -> Option<RunId> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok().map(RunId)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_second_run_of_a_task_waits_for_the_first_and_gives_up_while_it_holds_the_lock() {
        let home = tempfile::tempdir().unwrap();
        let first = acquire(home.path(), TaskId(7), RunId(1), Duration::ZERO)
            .await
            .unwrap();
        let busy = acquire(home.path(), TaskId(7), RunId(2), Duration::from_millis(120)).await;
        match busy {
            Err(TaskLockError::Busy { holder, waited, .. }) => {
                assert_eq!(holder, "1");
                assert!(waited >= Duration::from_millis(120));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        // Another task is not held up.
        acquire(home.path(), TaskId(8), RunId(3), Duration::ZERO)
            .await
            .unwrap();
        drop(first);
        acquire(home.path(), TaskId(7), RunId(2), Duration::ZERO)
            .await
            .unwrap();
        let recorded = std::fs::read_to_string(lock_path(home.path(), TaskId(7))).unwrap();
        assert_eq!(recorded.trim(), "2");
    }

    #[tokio::test]
    async fn a_run_waiting_for_the_lock_takes_it_once_the_earlier_run_lets_go() {
        let home = tempfile::tempdir().unwrap();
        let first = acquire(home.path(), TaskId(1), RunId(1), Duration::ZERO)
            .await
            .unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(first);
        });
        acquire(home.path(), TaskId(1), RunId(2), Duration::from_secs(10))
            .await
            .unwrap();
        release.await.unwrap();
    }
}
