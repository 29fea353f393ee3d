//! Per-step checkpoints: what makes an attempt's effect happen once.
//!
//! Each step that succeeds is committed on the task's branch (plumbing, like every orch
//! commit), even when it changed nothing, with trailers naming it:
//!
//! ```text
//! orch: task 5 run 12 step build
//!
//! Orch-Task: 5
//! Orch-Run: 12
//! Orch-Step: build
//! ```
//!
//! An attempt starts by resetting the worktree to the branch's tip (discarding what a lost
//! attempt left half-done: tracked files back to the tip, new files that `.gitignore` does not
//! ignore deleted; ignored files such as build caches are kept) and skips every step that has a
//! checkpoint since the branch started, so a step is never applied twice and a finished one is
//! never lost. A review rejection ends a round: its commit carries `Orch-Round: end`, and the
//! steps before it run again in the next attempt.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;

use super::git::{git, stdout_line};
use super::{blocking, places, retry_on_contention, GitScope, Workspace, WorkspaceError};

/// The trailer that names a checkpoint's step.
const STEP_TRAILER: &str = "Orch-Step: ";
/// The trailer that ends a round of steps.
const ROUND_END: &str = "Orch-Round: end";

impl Workspace {
    /// Commit the worktree as the checkpoint of `step` of run `run` (even when nothing
    /// changed); `None` for a copy. Refused like [`commit_all`](Self::commit_all) when the task
    /// tampered with the worktree.
    pub async fn checkpoint(
        &self,
        task: i64,
        run: i64,
        step: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        let message = format!(
            "orch: task {task} run {run} step {step}\n\nOrch-Task: {task}\nOrch-Run: {run}\n{STEP_TRAILER}{step}\n"
        );
        self.commit_with(&message, true).await
    }

    /// Commit the worktree (even when nothing changed) as the end of a round of steps: the
    /// steps checkpointed before it run again in the next attempt (a review rejected them).
    pub async fn end_round(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
        self.commit_with(&format!("{message}\n\n{ROUND_END}\n"), true)
            .await
    }

    pub(super) async fn commit_with(
        &self,
        message: &str,
        allow_empty: bool,
    ) -> Result<Option<String>, WorkspaceError> {
        let Workspace::Git { branch, places, .. } = self else {
            return Ok(None);
        };
        self.verify().await?;
        let index = places.index();
        let scope = GitScope::Worktree {
            places,
            index: &index,
        };
        let reference = format!("refs/heads/{branch}");
        retry_on_contention(|| super::commit_once(&scope, &reference, message, allow_empty)).await
    }

    /// The steps checkpointed in the current round (since the branch started, after the last
    /// round end), by name, with their commits. Empty for a copy.
    pub async fn completed_steps(&self) -> Result<BTreeMap<String, String>, WorkspaceError> {
        let Workspace::Git {
            branch,
            base_commit,
            places,
            ..
        } = self
        else {
            return Ok(BTreeMap::new());
        };
        let scope = GitScope::Repository {
            git_dir: &places.common_dir,
            work_tree: None,
        };
        let range = format!("{base_commit}..refs/heads/{branch}");
        let log = git(
            &scope,
            &[
                "log",
                "--first-parent",
                "--format=%H%x00%B%x00",
                &range,
                "--",
            ],
        )
        .await?;
        let text = String::from_utf8_lossy(&log);
        let mut fields = text.split('\0');
        let mut completed = BTreeMap::new();
        // Newest first: stop at the newest round end.
        while let (Some(commit), Some(body)) = (fields.next(), fields.next()) {
            let commit = commit.trim();
            if commit.is_empty() {
                break;
            }
            if body.lines().any(|line| line.trim() == ROUND_END) {
                break;
            }
            if let Some(step) = body
                .lines()
                .find_map(|line| line.trim().strip_prefix(STEP_TRAILER))
            {
                completed
                    .entry(step.trim().to_owned())
                    .or_insert_with(|| commit.to_owned());
            }
        }
        Ok(completed)
    }

    /// The commit at the tip of the task's branch; `None` for a copy.
    pub async fn tip(&self) -> Result<Option<String>, WorkspaceError> {
        let Workspace::Git { branch, places, .. } = self else {
            return Ok(None);
        };
        let scope = GitScope::Repository {
            git_dir: &places.common_dir,
            work_tree: None,
        };
        let reference = format!("refs/heads/{branch}^{{commit}}");
        Ok(Some(stdout_line(
            &git(&scope, &["rev-parse", "--verify", &reference]).await?,
        )))
    }

    /// Reset the worktree to the tip of the task's branch: tracked files and the index as the
    /// tip has them, new files that `.gitignore` does not ignore deleted (without following
    /// links). Refused when the task tampered with the worktree. Returns whether anything was
    /// discarded. A copy is left as it is.
    pub async fn reset_to_tip(&self) -> Result<bool, WorkspaceError> {
        let Workspace::Git {
            branch,
            base_commit,
            places,
            ..
        } = self
        else {
            return Ok(false);
        };
        let before = self.diff().await?;
        let tip_diff = {
            let scope = GitScope::Repository {
                git_dir: &places.common_dir,
                work_tree: None,
            };
            let tip = format!("refs/heads/{branch}");
            git(
                &scope,
                &[
                    "diff",
                    "--binary",
                    "--no-color",
                    "--no-ext-diff",
                    "--no-textconv",
                    "--src-prefix=a/",
                    "--dst-prefix=b/",
                    base_commit.as_str(),
                    tip.as_str(),
                    "--",
                ],
            )
            .await?
        };
        if before == tip_diff {
            return Ok(false);
        }
        let index = places.index();
        let scope = GitScope::Worktree {
            places,
            index: &index,
        };
        let tip = format!("refs/heads/{branch}");
        retry_on_contention(|| async {
            git(&scope, &["read-tree", "--reset", "-u", tip.as_str()]).await
        })
        .await?;
        let untracked = git(
            &scope,
            &[
                "ls-files",
                "-z",
                "--others",
                "--exclude-standard",
                "--directory",
            ],
        )
        .await?;
        let root = places.worktree.clone();
        let paths: Vec<PathBuf> = untracked
            .split(|byte| *byte == 0)
            .filter(|path| !path.is_empty())
            .map(|path| {
                root.join(places::path_from_bytes(
                    path.strip_suffix(b"/").unwrap_or(path),
                ))
            })
            .collect();
        blocking(move || {
            for path in paths {
                // Never outside the worktree: `ls-files` names paths inside it, relative.
                if !path.starts_with(&root)
                    || path.components().any(|c| c.as_os_str() == OsStr::new(".."))
                {
                    continue;
                }
                let removed = match std::fs::symlink_metadata(&path) {
                    Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&path),
                    Ok(_) => std::fs::remove_file(&path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                };
                removed.map_err(super::io_error(format!("remove {}", path.display())))?;
            }
            Ok(())
        })
        .await?;
        Ok(true)
    }
}
