//! Workspaces: one git worktree per task on a branch `orch/<task-id>-<slug>` from the project's
//! base branch (real git), or a copy for a directory that is not a repository, per project
//! config. Agents and commands never run in the main checkout.
//!
//! Layout under `worktrees_root`:
//! - `<repo-name>-<hash of the repo path>/<task>`: the task's worktree;
//! - `<repo-name>-<hash of the repo path>/<task>.base`: the base record, `<sha> <branch>`, the
//!   commit the task's branch was created from. It sits beside the worktree, not inside it, so it
//!   survives the worktree directory being deleted and is never seen by agents or commits. When it
//!   is missing (a crash between creating the branch and writing it, or a wiped directory) it is
//!   rebuilt from `git merge-base <branch> <base>` and written again, so the base never drifts
//!   after that even when the base branch moves on;
//! - `copies/<task>`: copies of directories that are not repositories.
//!
//! Architecture invariant: nothing here changes the main checkout. The only git commands run in
//! it are reads, `worktree add|prune|remove` (which touch `.git/worktrees` and create branches)
//! and nothing that moves its HEAD, index or files.
//!
//! Git runs as a child process (argv, never a shell) with prompts disabled, a fixed identity and
//! signing off, so it behaves the same on a machine with no git configuration and never waits
//! for a human.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

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

/// Most characters of the title's slug in a branch name.
const SLUG_MAX_CHARS: usize = 40;

/// How often an operation that lost a race with another git process is tried in all.
const CONTENTION_ATTEMPTS: u32 = 6;

/// Environment variables that would point git at another repository, index or work tree than
/// the one we name (they are set, for example, when orch itself runs inside a git hook).
const REDIRECTING_GIT_VARIABLES: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

impl Workspace {
    /// Create the workspace, or reuse the task's existing one (a retry continues on its branch).
    ///
    /// For a git project: an existing worktree on the task's branch is reused as it is; a branch
    /// whose worktree directory is gone gets a new worktree on it; a directory in the worktree's
    /// place that is not a worktree of this repository is replaced; otherwise a new branch is
    /// created from `base_branch` (or the current HEAD). Races with other tasks of the same
    /// repository (git's lock files, half-made worktrees) are retried with backoff.
    pub async fn prepare(request: &WorkspaceRequest) -> Result<Workspace, WorkspaceError> {
        match repository_toplevel(&request.project_dir).await? {
            Some(toplevel) => prepare_worktree(request, &toplevel).await,
            None => match request.non_git {
                NonGitMode::Copy => prepare_copy(request).await,
                NonGitMode::NeedsReview => {
                    Err(WorkspaceError::NeedsReview(request.project_dir.clone()))
                }
                NonGitMode::Fail => Err(WorkspaceError::NotGit(request.project_dir.clone())),
            },
        }
    }

    /// The directory to run in.
    pub fn path(&self) -> &Path {
        match self {
            Workspace::Git { path, .. } | Workspace::Copy { path, .. } => path,
        }
    }

    /// Commit every change (including new files) on the task's branch; `None` if nothing changed
    /// or the workspace is a copy.
    ///
    /// The commit is made as `orch <orch@localhost>`, unsigned and without the repository's
    /// hooks: it is a checkpoint of the agent's work, and a hook that fails or prompts must not
    /// lose it. Hooks still run when a human commits or pushes the branch.
    pub async fn commit_all(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
        let Workspace::Git { path, .. } = self else {
            return Ok(None);
        };
        git_retrying_contention(path, &["add", "-A"], None).await?;
        if !has_staged_changes(path).await? {
            return Ok(None);
        }
        git_retrying_contention(
            path,
            &[
                "commit",
                "--quiet",
                "--no-verify",
                "--allow-empty-message",
                "-m",
                message,
            ],
            None,
        )
        .await?;
        let head = git(path, &["rev-parse", "--verify", "HEAD"], None).await?;
        Ok(Some(stdout_line(&head)))
    }

    /// A unified diff of the workspace against its base: committed and uncommitted changes and
    /// new files. Binary files appear as git's binary diff.
    ///
    /// For git, the worktree is staged with `git add -A` into a throwaway index (a copy of the
    /// worktree's own index, so unchanged files are not hashed again) and that index is diffed
    /// against the base commit. The worktree's real index is never written: what the user or the
    /// agent staged stays as it was, and new files stay untracked. New files count unless
    /// `.gitignore` ignores them. The only trace is the new files' blobs in the object database,
    /// which `git gc` drops. A copy has no baseline to compare with, so its diff is empty.
    pub async fn diff(&self) -> Result<Vec<u8>, WorkspaceError> {
        let Workspace::Git {
            path, base_commit, ..
        } = self
        else {
            return Ok(Vec::new());
        };
        let git_dir = stdout_path(&git(path, &["rev-parse", "--absolute-git-dir"], None).await?);
        let scratch_index = git_dir.join(format!(
            "orch-diff-index-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = diff_with_index(path, &git_dir, &scratch_index, base_commit).await;
        // The scratch index is ours alone; a failure to delete it only leaves a stray file in the
        // worktree's private git directory, which `remove` deletes with the rest.
        let leftovers = [scratch_index.clone(), scratch_index.with_extension("lock")];
        let _ = blocking(move || {
            for file in leftovers {
                let _ = std::fs::remove_file(file);
            }
            Ok(())
        })
        .await;
        result
    }

    /// Remove the workspace (and for git, the worktree registration; the branch is kept).
    ///
    /// The base record beside the worktree is kept with the branch, so a later `prepare` of the
    /// same task continues on the branch against the same base. Removing a workspace whose
    /// directory is already gone succeeds; its stale registration is pruned when a later
    /// `prepare` needs the path or the branch.
    pub async fn remove(&self) -> Result<(), WorkspaceError> {
        match self {
            Workspace::Copy { path, .. } => remove_dir_if_present(path.clone()).await,
            Workspace::Git { path, .. } => remove_worktree(path).await,
        }
    }

    /// Whether the task's branch is merged into `into` (a branch or any commit-ish): its tip is
    /// an ancestor of `into`. A branch with no commits of its own counts as merged. Runs in the
    /// worktree, so call it before `remove`. A copy has no branch and is never merged.
    pub async fn is_merged(&self, into: &str) -> Result<bool, WorkspaceError> {
        let Workspace::Git { path, branch, .. } = self else {
            return Ok(false);
        };
        let tip = format!("refs/heads/{branch}");
        let args = ["merge-base", "--is-ancestor", tip.as_str(), into];
        let output = git_output(path, &args, None).await?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(git_failure(path, &args, &output)),
        }
    }
}

/// The branch name for a task: `orch/<id>-<slug of the title>` (lowercase ascii, `-`, at most 40
/// characters of slug).
pub fn branch_name(task_id: i64, title: &str) -> String {
    let mut slug = String::new();
    let mut separator_pending = false;
    for character in title.chars() {
        let character = character.to_ascii_lowercase();
        if character.is_ascii_alphanumeric() {
            if separator_pending && !slug.is_empty() {
                slug.push('-');
            }
            separator_pending = false;
            slug.push(character);
        } else {
            separator_pending = true;
        }
    }
    // The slug is ascii, so truncating by bytes cuts between characters.
    slug.truncate(SLUG_MAX_CHARS);
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("orch/{task_id}")
    } else {
        format!("orch/{task_id}-{slug}")
    }
}

/// The top of the git work tree containing `project_dir`, or `None` when it is in none.
async fn repository_toplevel(project_dir: &Path) -> Result<Option<PathBuf>, WorkspaceError> {
    let dir = project_dir.to_path_buf();
    let is_dir = blocking(move || {
        std::fs::metadata(&dir)
            .map(|metadata| metadata.is_dir())
            .map_err(io_error(format!(
                "open project directory {}",
                dir.display()
            )))
    })
    .await?;
    if !is_dir {
        return Err(WorkspaceError::Io {
            context: format!("open project directory {}", project_dir.display()),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let args = ["rev-parse", "--show-toplevel"];
    let output = git_output(project_dir, &args, None).await?;
    if output.status.success() {
        return Ok(Some(canonical(stdout_path(&output.stdout)).await?));
    }
    // Only "not a repository" means a plain directory; anything else (dubious ownership, a
    // broken `.git`) is a repository git cannot use, and copying it instead would hide that.
    if String::from_utf8_lossy(&output.stderr).contains("not a git repository") {
        Ok(None)
    } else {
        Err(git_failure(project_dir, &args, &output))
    }
}

/// Where one task's worktree of one repository goes, and what it must be.
struct WorktreeTarget {
    /// The main checkout's top directory.
    toplevel: PathBuf,
    /// The repository's common git directory (shared by all its worktrees), canonical.
    common_dir: PathBuf,
    /// The worktree directory, canonical parent.
    path: PathBuf,
    /// The base record beside the worktree.
    record: PathBuf,
    /// The task's branch.
    branch: String,
    /// What to branch from; `None` is the main checkout's HEAD.
    base_branch: Option<String>,
}

/// What is found at a worktree's place.
enum WorktreeState {
    /// Nothing.
    Missing,
    /// A worktree of the repository with the task's branch checked out.
    OnBranch,
    /// A worktree of the repository with something else checked out (described).
    OtherHead(String),
    /// Something that is not a worktree of the repository.
    Stale,
}

async fn prepare_worktree(
    request: &WorkspaceRequest,
    toplevel: &Path,
) -> Result<Workspace, WorkspaceError> {
    let common_dir = common_git_dir(toplevel).await?;
    let group = request.worktrees_root.join(worktree_group_name(toplevel));
    let group = {
        let group = group.clone();
        blocking(move || {
            std::fs::create_dir_all(&group).map_err(io_error(format!(
                "create worktree directory {}",
                group.display()
            )))?;
            std::fs::canonicalize(&group).map_err(io_error(format!("resolve {}", group.display())))
        })
        .await?
    };
    let record = group.join(format!("{}.base", request.task_id));
    let branch = choose_branch(request, toplevel, &record).await?;
    let target = WorktreeTarget {
        toplevel: toplevel.to_path_buf(),
        common_dir,
        path: group.join(request.task_id.to_string()),
        record,
        branch,
        base_branch: request.base_branch.clone(),
    };
    // Each attempt looks at the state afresh, so an attempt that lost a race half-way (the
    // branch created, the worktree not) is finished by the next one instead of tripping on it.
    retry_on_contention(|| prepare_worktree_once(&target)).await
}

async fn prepare_worktree_once(target: &WorktreeTarget) -> Result<Workspace, WorkspaceError> {
    match place_worktree(target).await {
        Err(WorkspaceError::Git { stderr, .. }) if is_held_by_registration(&stderr) => {
            // A worktree directory deleted by hand (or a crash) leaves a registration that keeps
            // its path taken and its branch "checked out"; pruning drops it. Prune runs only on
            // this recovery path: it can delete the metadata of another task's `worktree add` in
            // its first instants (which that task then retries as contention).
            git(&target.toplevel, &["worktree", "prune"], None).await?;
            place_worktree(target).await
        }
        result => result,
    }
}

/// Whether `git worktree add` refused because a registration holds the path or the branch.
fn is_held_by_registration(stderr: &str) -> bool {
    stderr.contains("already registered")
        || stderr.contains("already used by worktree")
        || stderr.contains("already checked out")
}

/// Reuse, recreate or create the worktree, looking at what is there first.
async fn place_worktree(target: &WorktreeTarget) -> Result<Workspace, WorkspaceError> {
    match inspect_worktree(target).await? {
        WorktreeState::OnBranch => {
            let base_commit = base_commit_of_existing_branch(target).await?;
            tracing::info!(path = %target.path.display(), branch = %target.branch, "reusing worktree");
            return Ok(git_workspace(target, base_commit));
        }
        WorktreeState::OtherHead(head) => {
            return Err(WorkspaceError::Git {
                args: "worktree add".to_string(),
                dir: target.path.clone(),
                stderr: format!(
                    "the task's worktree has {head} checked out instead of its branch `{branch}`; \
                     switch it back with `git -C {path} switch {branch}`, or delete {path} to start \
                     again from the branch",
                    branch = target.branch,
                    path = target.path.display(),
                ),
            });
        }
        WorktreeState::Stale => {
            tracing::warn!(path = %target.path.display(), "replacing a directory that is not a worktree of the task's branch");
            remove_dir_if_present(target.path.clone()).await?;
        }
        WorktreeState::Missing => {}
    }
    if branch_exists(&target.toplevel, &target.branch).await? {
        add_worktree(
            target,
            &[target.path.as_os_str(), OsStr::new(&target.branch)],
        )
        .await?;
        let base_commit = base_commit_of_existing_branch(target).await?;
        tracing::info!(path = %target.path.display(), branch = %target.branch, "recreated worktree on existing branch");
        return Ok(git_workspace(target, base_commit));
    }
    let base_commit = resolve_base(target).await?;
    // Written before the branch exists, so a branch never exists without its record unless the
    // record was deleted afterwards (then the merge base stands in).
    write_base_record(target, &base_commit).await?;
    // The base is passed as a commit id, not a name, so the branch gets no upstream even when
    // the base is a remote-tracking branch.
    add_worktree(
        target,
        &[
            OsStr::new("-b"),
            OsStr::new(&target.branch),
            target.path.as_os_str(),
            OsStr::new(&base_commit),
        ],
    )
    .await?;
    tracing::info!(path = %target.path.display(), branch = %target.branch, base = %base_commit, "created worktree");
    Ok(git_workspace(target, base_commit))
}

async fn add_worktree(target: &WorktreeTarget, args: &[&OsStr]) -> Result<(), WorkspaceError> {
    let mut command = vec![OsStr::new("worktree"), OsStr::new("add")];
    command.extend_from_slice(args);
    git(&target.toplevel, &command, None).await.map(drop)
}

fn git_workspace(target: &WorktreeTarget, base_commit: String) -> Workspace {
    Workspace::Git {
        path: target.path.clone(),
        branch: target.branch.clone(),
        base_commit,
    }
}

async fn inspect_worktree(target: &WorktreeTarget) -> Result<WorktreeState, WorkspaceError> {
    let path = target.path.clone();
    let metadata = blocking(move || match std::fs::symlink_metadata(&path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WorkspaceError::Io {
            context: format!("inspect {}", path.display()),
            source: e,
        }),
    })
    .await?;
    let Some(metadata) = metadata else {
        return Ok(WorktreeState::Missing);
    };
    if !metadata.is_dir() {
        return Ok(WorktreeState::Stale);
    }
    // Git searches upwards from a directory that is not a worktree, so a plain directory inside
    // some other repository answers with that repository's top: the top must be the path itself.
    let output = git_output(
        &target.path,
        &["rev-parse", "--show-toplevel", "--git-common-dir"],
        None,
    )
    .await?;
    if !output.status.success() {
        // Only a directory git does not recognise is deleted; a worktree git refuses for another
        // reason (ownership, permissions) may hold work, so that stops here with git's words.
        if String::from_utf8_lossy(&output.stderr).contains("not a git repository") {
            return Ok(WorktreeState::Stale);
        }
        return Err(git_failure(
            &target.path,
            &["rev-parse", "--show-toplevel", "--git-common-dir"],
            &output,
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    let (Some(top), Some(common)) = (lines.next(), lines.next()) else {
        return Ok(WorktreeState::Stale);
    };
    let same_top =
        canonical(PathBuf::from(top)).await.ok().as_deref() == Some(target.path.as_path());
    let same_repository = canonical(target.path.join(common)).await.ok().as_deref()
        == Some(target.common_dir.as_path());
    if !same_top || !same_repository {
        return Ok(WorktreeState::Stale);
    }
    let head = git_output(&target.path, &["symbolic-ref", "--quiet", "HEAD"], None).await?;
    if head.status.success() {
        let reference = stdout_line(&head.stdout);
        if reference == format!("refs/heads/{}", target.branch) {
            return Ok(WorktreeState::OnBranch);
        }
        return Ok(WorktreeState::OtherHead(format!("`{reference}`")));
    }
    Ok(WorktreeState::OtherHead("a detached HEAD".to_string()))
}

/// The base commit of a branch that already exists: its record when the record is for this
/// branch and names a commit that still exists, else the merge base with the base branch (which
/// is then recorded).
async fn base_commit_of_existing_branch(target: &WorktreeTarget) -> Result<String, WorkspaceError> {
    if let Some(recorded) = read_base_record(target).await? {
        if commit_exists(&target.toplevel, &recorded).await? {
            return Ok(recorded);
        }
    }
    let base = target
        .base_branch
        .clone()
        .unwrap_or_else(|| "HEAD".to_string());
    let tip = format!("refs/heads/{}", target.branch);
    let args = ["merge-base", tip.as_str(), base.as_str()];
    let output = git_output(&target.toplevel, &args, None).await?;
    let merge_base = stdout_line(&output.stdout);
    if !output.status.success() || merge_base.is_empty() {
        let mut failure = git_failure(&target.toplevel, &args, &output);
        if let WorkspaceError::Git { stderr, .. } = &mut failure {
            stderr.push_str(&format!(
                " (the base record {} is missing or invalid and no merge base of `{}` and \
                 `{base}` was found; write the commit the branch started from into that file as \
                 `<sha> {}`)",
                target.record.display(),
                target.branch,
                target.branch,
            ));
        }
        return Err(failure);
    }
    write_base_record(target, &merge_base).await?;
    Ok(merge_base)
}

/// The commit a new branch starts from.
async fn resolve_base(target: &WorktreeTarget) -> Result<String, WorkspaceError> {
    if let Some(name) = &target.base_branch {
        let not_found = || WorkspaceError::Git {
            args: format!("rev-parse --verify {name}"),
            dir: target.toplevel.clone(),
            stderr: format!(
                "the base branch `{name}` does not name a commit in this repository; set \
                 `base_branch` in the project's .orch.toml to an existing branch, or remove it to \
                 branch from the current HEAD"
            ),
        };
        // A name starting with `-` would be read as an option.
        if name.is_empty() || name.starts_with('-') {
            return Err(not_found());
        }
        let revision = format!("{name}^{{commit}}");
        let output = git_output(
            &target.toplevel,
            &["rev-parse", "--verify", "--quiet", &revision],
            None,
        )
        .await?;
        if !output.status.success() {
            return Err(not_found());
        }
        return Ok(stdout_line(&output.stdout));
    }
    let args = ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"];
    let output = git_output(&target.toplevel, &args, None).await?;
    if output.status.success() {
        return Ok(stdout_line(&output.stdout));
    }
    let on_branch =
        git_output(&target.toplevel, &["symbolic-ref", "--quiet", "HEAD"], None).await?;
    if on_branch.status.success() {
        return Err(WorkspaceError::Git {
            args: "rev-parse --verify HEAD".to_string(),
            dir: target.toplevel.clone(),
            stderr: format!(
                "the repository has no commits yet (HEAD is unborn), so there is nothing to branch \
                 the task from; make a first commit in {} (for example `git commit --allow-empty \
                 -m \"initial commit\"`) and retry the task",
                target.toplevel.display()
            ),
        });
    }
    Err(git_failure(&target.toplevel, &args, &output))
}

async fn read_base_record(target: &WorktreeTarget) -> Result<Option<String>, WorkspaceError> {
    let record = target.record.clone();
    let text = blocking(move || match std::fs::read_to_string(&record) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WorkspaceError::Io {
            context: format!("read base record {}", record.display()),
            source: e,
        }),
    })
    .await?;
    let Some(text) = text else {
        return Ok(None);
    };
    let mut fields = text.split_whitespace();
    let (Some(sha), Some(branch)) = (fields.next(), fields.next()) else {
        return Ok(None);
    };
    // A record left by an earlier task with the same number but another title is not ours.
    let is_object_id =
        matches!(sha.len(), 40 | 64) && sha.bytes().all(|byte| byte.is_ascii_hexdigit());
    Ok((is_object_id && branch == target.branch).then(|| sha.to_string()))
}

async fn write_base_record(
    target: &WorktreeTarget,
    base_commit: &str,
) -> Result<(), WorkspaceError> {
    let record = target.record.clone();
    let contents = format!("{base_commit} {}\n", target.branch);
    blocking(move || {
        // Written aside and renamed, so a crash never leaves a half-written record.
        let partial = record.with_extension(format!("base.partial-{:016x}", rand::random::<u64>()));
        let context = format!("write base record {}", record.display());
        std::fs::write(&partial, contents).map_err(io_error(context.clone()))?;
        std::fs::rename(&partial, &record).map_err(|source| {
            let _ = std::fs::remove_file(&partial);
            WorkspaceError::Io { context, source }
        })
    })
    .await
}

/// The task's branch: the one its base record names if this home made it before (a retry), else
/// `orch/<id>-<slug>` if that is free. Task numbers are unique only within one orch home, so when
/// the name is taken (another home on the same repository, or an earlier database), the branch
/// gets a suffix derived from this home's worktree directory, and then a counter if need be:
/// a task never continues on a branch it did not create.
async fn choose_branch(
    request: &WorkspaceRequest,
    toplevel: &Path,
    record: &Path,
) -> Result<String, WorkspaceError> {
    let record_path = record.to_path_buf();
    let recorded = blocking(move || Ok(std::fs::read_to_string(&record_path).ok())).await?;
    if let Some(branch) = recorded
        .as_deref()
        .and_then(|text| text.split_whitespace().nth(1))
    {
        return Ok(branch.to_owned());
    }
    let plain = branch_name(request.task_id, &request.title);
    if !branch_exists(toplevel, &plain).await? {
        return Ok(plain);
    }
    // Without a record, this home's own worktree on that branch still proves it is ours.
    let path = record.with_extension("");
    if path.is_dir() {
        let head = git_output(&path, &["symbolic-ref", "--quiet", "--short", "HEAD"], None).await?;
        if head.status.success() && String::from_utf8_lossy(&head.stdout).trim() == plain {
            return Ok(plain);
        }
    }
    use sha2::Digest;
    let home = hex::encode(sha2::Sha256::digest(
        request.worktrees_root.to_string_lossy().as_bytes(),
    ));
    let mut candidate = format!("{plain}-{}", &home[..6]);
    let mut counter = 2;
    while branch_exists(toplevel, &candidate).await? {
        candidate = format!("{plain}-{}-{counter}", &home[..6]);
        counter += 1;
    }
    Ok(candidate)
}

async fn branch_exists(toplevel: &Path, branch: &str) -> Result<bool, WorkspaceError> {
    let reference = format!("refs/heads/{branch}");
    let args = ["rev-parse", "--verify", "--quiet", reference.as_str()];
    let output = git_output(toplevel, &args, None).await?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(git_failure(toplevel, &args, &output)),
    }
}

async fn commit_exists(toplevel: &Path, sha: &str) -> Result<bool, WorkspaceError> {
    let object = format!("{sha}^{{commit}}");
    let output = git_output(toplevel, &["cat-file", "-e", object.as_str()], None).await?;
    Ok(output.status.success())
}

async fn common_git_dir(toplevel: &Path) -> Result<PathBuf, WorkspaceError> {
    // Older gits print this relative to the current directory; joining keeps an absolute one.
    let common = stdout_path(&git(toplevel, &["rev-parse", "--git-common-dir"], None).await?);
    canonical(toplevel.join(common)).await
}

/// `<repo-name>-<hash>`: readable, and distinct for two repositories with the same name.
fn worktree_group_name(toplevel: &Path) -> String {
    let name: String = toplevel
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-') {
                character
            } else {
                '_'
            }
        })
        .collect();
    let name = if name.is_empty() {
        "repo".to_string()
    } else {
        name
    };
    let digest = Sha256::digest(toplevel.as_os_str().as_encoded_bytes());
    format!("{name}-{}", hex::encode(&digest[..6]))
}

async fn has_staged_changes(path: &Path) -> Result<bool, WorkspaceError> {
    let args = ["diff", "--cached", "--quiet"];
    let output = git_output(path, &args, None).await?;
    match output.status.code() {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(git_failure(path, &args, &output)),
    }
}

async fn diff_with_index(
    path: &Path,
    git_dir: &Path,
    scratch_index: &Path,
    base_commit: &str,
) -> Result<Vec<u8>, WorkspaceError> {
    let real_index = git_dir.join("index");
    let seed = scratch_index.to_path_buf();
    let copied = blocking(move || match std::fs::copy(&real_index, &seed) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(WorkspaceError::Io {
            context: format!("copy the index {}", real_index.display()),
            source: e,
        }),
    })
    .await?;
    if !copied {
        git(path, &["read-tree", "HEAD"], Some(scratch_index)).await?;
    }
    git(path, &["add", "-A"], Some(scratch_index)).await?;
    // Fixed prefixes and no external drivers or text conversion, whatever the user's config, so
    // the patch is a plain one that `git apply` takes.
    git(
        path,
        &[
            "diff",
            "--cached",
            "--binary",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            base_commit,
            "--",
        ],
        Some(scratch_index),
    )
    .await
}

async fn remove_worktree(path: &Path) -> Result<(), WorkspaceError> {
    let probe = path.to_path_buf();
    let present = blocking(move || Ok(std::fs::symlink_metadata(&probe).is_ok())).await?;
    if !present {
        return Ok(());
    }
    let args = ["rev-parse", "--show-toplevel", "--git-common-dir"];
    let output = git_output(path, &args, None).await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    let (Some(top), Some(common)) = (lines.next(), lines.next()) else {
        // No longer a worktree (its registration is gone): only the directory is left. Git may
        // have answered for an enclosing repository instead, which must not be touched.
        return remove_dir_if_present(path.to_path_buf()).await;
    };
    let canonical_path = canonical(path.to_path_buf()).await?;
    if !output.status.success() || canonical(PathBuf::from(top)).await? != canonical_path {
        return remove_dir_if_present(path.to_path_buf()).await;
    }
    // Run from the common git directory rather than from inside the directory being removed.
    let common_dir = canonical(path.join(common)).await?;
    let removed = git_retrying_contention(
        &common_dir,
        &[
            OsStr::new("worktree"),
            OsStr::new("remove"),
            OsStr::new("--force"),
            canonical_path.as_os_str(),
        ],
        None,
    )
    .await;
    if let Err(e) = removed {
        // Git refuses some worktrees (with submodules, or locked); the directory is ours to
        // delete, and pruning then drops the registration. Prune only runs on this path because
        // it can race with another task's `worktree add` (which retries that as contention).
        tracing::warn!(path = %path.display(), "git worktree remove failed, deleting the directory: {e}");
        remove_dir_if_present(path.to_path_buf()).await?;
        git_retrying_contention(&common_dir, &["worktree", "prune"], None).await?;
    }
    Ok(())
}

async fn prepare_copy(request: &WorkspaceRequest) -> Result<Workspace, WorkspaceError> {
    let project_dir = request.project_dir.clone();
    let worktrees_root = request.worktrees_root.clone();
    let task_id = request.task_id;
    let (path, source) =
        blocking(move || copy_project(&project_dir, &worktrees_root, task_id)).await?;
    Ok(Workspace::Copy { path, source })
}

/// Copy `project_dir` to `<worktrees_root>/copies/<task_id>` unless that copy exists already.
fn copy_project(
    project_dir: &Path,
    worktrees_root: &Path,
    task_id: i64,
) -> Result<(PathBuf, PathBuf), WorkspaceError> {
    let copies = worktrees_root.join("copies");
    std::fs::create_dir_all(&copies).map_err(io_error(format!("create {}", copies.display())))?;
    let copies = std::fs::canonicalize(&copies)
        .map_err(io_error(format!("resolve {}", copies.display())))?;
    let root = std::fs::canonicalize(worktrees_root)
        .map_err(io_error(format!("resolve {}", worktrees_root.display())))?;
    let source = std::fs::canonicalize(project_dir)
        .map_err(io_error(format!("resolve {}", project_dir.display())))?;
    let destination = copies.join(task_id.to_string());
    if destination.is_dir() {
        tracing::info!(path = %destination.display(), "reusing copy");
        return Ok((destination, source));
    }
    // Leftovers of a copy interrupted by a crash are never reused: they may be incomplete.
    let partial_prefix = format!(".{task_id}.partial-");
    if let Ok(entries) = std::fs::read_dir(&copies) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&partial_prefix)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    // The copy is made aside and renamed into place, so a copy that exists is complete.
    let partial = copies.join(format!("{partial_prefix}{:016x}", rand::random::<u64>()));
    // The worktrees root is skipped only when it is inside the project, where copying it would
    // copy the copy being made.
    let skip = (root != source && root.starts_with(&source)).then_some(root.as_path());
    if let Err(e) = copy_tree(&source, &partial, skip) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if let Err(source_error) = std::fs::rename(&partial, &destination) {
        let _ = std::fs::remove_dir_all(&partial);
        // Another prepare of the same task finished first: its copy is as good as ours.
        if !destination.is_dir() {
            return Err(WorkspaceError::Io {
                context: format!("move the copy into {}", destination.display()),
                source: source_error,
            });
        }
    }
    tracing::info!(path = %destination.display(), source = %source.display(), "copied project");
    Ok((destination, source))
}

/// Copy a tree without following symbolic links, skipping `.orch` directories and `skip`.
fn copy_tree(source: &Path, destination: &Path, skip: Option<&Path>) -> Result<(), WorkspaceError> {
    let context = || format!("copy {} to {}", source.display(), destination.display());
    let walker = walkdir::WalkDir::new(source)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| {
            let skipped_dir = entry.file_type().is_dir()
                && entry.depth() > 0
                && (entry.file_name() == ".orch"
                    || skip.is_some_and(|skip| entry.path().starts_with(skip)));
            !skipped_dir
        });
    for entry in walker {
        let entry = entry.map_err(|e| WorkspaceError::Io {
            context: context(),
            source: e.into(),
        })?;
        let relative = entry
            .path()
            .strip_prefix(source)
            .map_err(|_| WorkspaceError::Io {
                context: context(),
                source: std::io::Error::other(format!(
                    "{} is outside {}",
                    entry.path().display(),
                    source.display()
                )),
            })?;
        let target = destination.join(relative);
        let file_type = entry.file_type();
        let result = if file_type.is_dir() {
            std::fs::create_dir_all(&target)
        } else if file_type.is_symlink() {
            copy_symlink(entry.path(), &target)
        } else if file_type.is_file() {
            std::fs::copy(entry.path(), &target).map(|_| ())
        } else {
            // Sockets, pipes and devices have no content to copy.
            Ok(())
        };
        result.map_err(io_error(format!(
            "copy {} to {}",
            entry.path().display(),
            target.display()
        )))?;
    }
    Ok(())
}

#[cfg(unix)]
fn copy_symlink(link: &Path, target: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(link)?, target)
}

#[cfg(not(unix))]
fn copy_symlink(link: &Path, target: &Path) -> std::io::Result<()> {
    // Without unix symlinks at hand, the link's target content is copied instead.
    if link.is_dir() {
        std::fs::create_dir_all(target)
    } else {
        std::fs::copy(link, target).map(|_| ())
    }
}

async fn remove_dir_if_present(path: PathBuf) -> Result<(), WorkspaceError> {
    blocking(move || {
        let result = match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(io_error(format!("remove {}", path.display())))
    })
    .await
}

/// Retry `operation` while it fails only because another git process of the same repository
/// was busy (see [`is_transient_contention`]).
async fn retry_on_contention<T, F, Fut>(mut operation: F) -> Result<T, WorkspaceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, WorkspaceError>>,
{
    let mut attempt = 0;
    loop {
        match operation().await {
            Err(error) if attempt + 1 < CONTENTION_ATTEMPTS && is_transient_contention(&error) => {
                // Jitter keeps two tasks that collided once from colliding again in step.
                let backoff =
                    Duration::from_millis(50 * 2u64.pow(attempt) + rand::random_range(0..50));
                tracing::debug!("git contention, retrying in {backoff:?}: {error}");
                tokio::time::sleep(backoff).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Whether git failed only because another git process of the same repository was half-way
/// through something: holding a lock file; creating a worktree whose metadata
/// (`.git/worktrees/<name>/commondir`, `gitdir`, ...) `git worktree add` read before it was
/// written; or pruning while this `worktree add` was making its metadata. All pass within
/// milliseconds, and the next attempt finishes what this one started.
fn is_transient_contention(error: &WorkspaceError) -> bool {
    let WorkspaceError::Git { stderr, .. } = error else {
        return false;
    };
    let stderr = stderr.to_ascii_lowercase();
    stderr.contains("index.lock")
        || stderr.contains("could not lock")
        || stderr.contains("cannot lock")
        || stderr.contains("unable to lock")
        || (stderr.contains(".lock") && stderr.contains("file exists"))
        || (stderr.contains("worktrees/")
            && (stderr.contains("failed to read") || stderr.contains("could not open")))
}

/// The finished output of a git command, whatever its exit status.
struct GitOutput {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Run git in `dir`; its stdout, or an error carrying its stderr when it exits non-zero.
async fn git<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    index_file: Option<&Path>,
) -> Result<Vec<u8>, WorkspaceError> {
    let output = git_output(dir, args, index_file).await?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(git_failure(dir, args, &output))
    }
}

async fn git_retrying_contention<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    index_file: Option<&Path>,
) -> Result<Vec<u8>, WorkspaceError> {
    retry_on_contention(|| git(dir, args, index_file)).await
}

/// Run git in `dir` and collect its output; an error only when it cannot be started.
async fn git_output<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    index_file: Option<&Path>,
) -> Result<GitOutput, WorkspaceError> {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .args([
            "-c",
            "user.name=orch",
            "-c",
            "user.email=orch@localhost",
            "-c",
            "commit.gpgSign=false",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_EDITOR", "true")
        // Read-only commands then skip refreshing the index, so they never take its lock.
        .env("GIT_OPTIONAL_LOCKS", "0")
        // Lock contention is recognised by git's English messages.
        .env("LC_ALL", "C");
    for variable in REDIRECTING_GIT_VARIABLES {
        command.env_remove(variable);
    }
    if let Some(index_file) = index_file {
        command.env("GIT_INDEX_FILE", index_file);
    }
    // Not killed on drop: a git stopped half-way leaves its lock files behind for every later
    // command; letting it finish is the lesser harm.
    let output = command
        .output()
        .await
        .map_err(|source| WorkspaceError::Io {
            context: format!(
                "run `git {}` in {} (is git installed and on PATH?)",
                display_args(args),
                dir.display()
            ),
            source,
        })?;
    Ok(GitOutput {
        status: output.status,
        stdout: output.stdout,
        stderr: output.stderr,
    })
}

fn git_failure<S: AsRef<OsStr>>(dir: &Path, args: &[S], output: &GitOutput) -> WorkspaceError {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stderr = if stderr.is_empty() {
        format!("exited with {}", output.status)
    } else {
        stderr
    };
    WorkspaceError::Git {
        args: display_args(args),
        dir: dir.to_path_buf(),
        stderr,
    }
}

fn display_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|arg| arg.as_ref().to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first line of a command's output.
fn stdout_line(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A path printed by git on one line; kept as bytes on unix, where paths need not be UTF-8.
fn stdout_path(stdout: &[u8]) -> PathBuf {
    let line = stdout
        .split(|byte| *byte == b'\n')
        .next()
        .unwrap_or_default();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(OsStr::from_bytes(line))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(std::ffi::OsString::from(
            String::from_utf8_lossy(line)
                .trim_end_matches('\r')
                .to_string(),
        ))
    }
}

async fn canonical(path: PathBuf) -> Result<PathBuf, WorkspaceError> {
    blocking(move || {
        std::fs::canonicalize(&path).map_err(io_error(format!("resolve {}", path.display())))
    })
    .await
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> WorkspaceError {
    move |source| WorkspaceError::Io { context, source }
}

/// Run file-system work off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, WorkspaceError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| WorkspaceError::Io {
            context: "a file-system task stopped before finishing".to_string(),
            source: std::io::Error::other(e),
        })?
}
