//! Workspaces: one git worktree per task on a branch `orch/<task-id>-<slug>` from the project's
//! base branch (real git), or a copy for a directory that is not a repository, per project
//! config. Agents and commands never run in the main checkout.

use std::path::{Path, PathBuf};

use crate::project::NonGitMode;

/// What a task's workspace is made from.
#[derive(Debug, Clone)]
pub struct WorkspaceRequest {
    /// The project directory (the main checkout).
    pub project_dir: PathBuf,
    /// Where worktrees live: `<home>/worktrees`.
    pub worktrees_root: PathBuf,
    /// The task's number.
    pub task_id: i64,
    /// The task's title (slugged into the branch name).
    pub title: String,
    /// Base branch; `None` means the repository's current HEAD branch.
    pub base_branch: Option<String>,
    /// For a directory that is not a git repository.
    pub non_git: NonGitMode,
}

/// A prepared workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workspace {
    /// A git worktree.
    Git {
        /// The worktree directory.
        path: PathBuf,
        /// The branch checked out there.
        branch: String,
        /// The commit the branch started from (what `patch.diff` is against).
        base_commit: String,
    },
    /// A copy of a directory that is not a repository.
    Copy {
        /// The copy.
        path: PathBuf,
        /// The original.
        source: PathBuf,
    },
}

/// Why no workspace was prepared.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The project is not a git repository and its config says `needs_review`.
    #[error("{0} is not a git repository and the project's `non_git` setting is `needs_review`")]
    NeedsReview(PathBuf),
    /// The project is not a git repository and its config says `fail`.
    #[error("{0} is not a git repository and the project's `non_git` setting is `fail`")]
    NotGit(PathBuf),
    /// A git command failed.
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Git {
        /// The arguments.
        args: String,
        /// Where it ran.
        dir: PathBuf,
        /// What git said.
        stderr: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Workspace {
    /// Create the workspace, or reuse the task's existing one (a retry continues on its branch).
    pub async fn prepare(request: &WorkspaceRequest) -> Result<Workspace, WorkspaceError> {
        let _ = request;
        todo!("Workspace::prepare")
    }

    /// The directory to run in.
    pub fn path(&self) -> &Path {
        match self {
            Workspace::Git { path, .. } | Workspace::Copy { path, .. } => path,
        }
    }

    /// Commit every change (including new files) on the task's branch; `None` if nothing changed
    /// or the workspace is a copy.
    pub async fn commit_all(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
        let _ = message;
        todo!("Workspace::commit_all")
    }

    /// A unified diff of the workspace against its base: committed and uncommitted changes and
    /// new files. Binary files appear as git's binary diff.
    pub async fn diff(&self) -> Result<Vec<u8>, WorkspaceError> {
        todo!("Workspace::diff")
    }

    /// Remove the workspace (and for git, the worktree registration; the branch is kept).
    pub async fn remove(&self) -> Result<(), WorkspaceError> {
        todo!("Workspace::remove")
    }
}

/// The branch name for a task: `orch/<id>-<slug of the title>` (lowercase ascii, `-`, at most 40
/// characters of slug).
pub fn branch_name(task_id: i64, title: &str) -> String {
    let _ = (task_id, title);
    todo!("branch_name")
}
