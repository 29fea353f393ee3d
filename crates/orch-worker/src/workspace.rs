//! Workspaces: one git worktree per task on a branch `orch/<task-id>-<slug>` from the project's
//! base branch (real git), or a copy for a directory that is not a repository, per project
//! config. Agents and commands never run in the main checkout.
//!
//! Layout under `worktrees_root`:
//! - `<repo-name>-<hash of the repo path>/<task>`: the task's worktree;
//! - `<repo-name>-<hash of the repo path>/<task>.base`: the base record, first line
//!   `<sha> <branch>` (the commit the task's branch was created from), then the places orch's
//!   git uses for the worktree (format in `places.rs`). It sits beside the worktree, not inside
//!   it, so it survives the worktree directory being deleted and is never seen by agents or
//!   commits. When it is missing (a crash between creating the branch and writing it, or a wiped
//!   directory) it is rebuilt from `git merge-base <branch> <base>` and written again, so the
//!   base never drifts after that even when the base branch moves on;
//! - `copies/<task>`: copies of directories that are not repositories.
//!
//! Architecture invariant: nothing here changes the main checkout. The only git commands run in
//! it are reads, `worktree add|prune` (which touch `.git/worktrees` and create branches) and
//! nothing that moves its HEAD, index or files.
//!
//! Architecture invariant: orch's git obeys nothing a task can write. Every git command is built
//! by [`git_command`] (cleared environment, no system or user config, hooks, fsmonitor and
//! external programs off; the decision and what config is trusted are in `git.rs`). A task's
//! worktree is only ever named through the [`GitPlaces`] recorded when orch made it, never
//! discovered from the worktree; commits are plumbing onto `refs/heads/<branch>`, never through
//! the worktree's `HEAD`. Before orch diffs or commits, [`Workspace::verify`] checks that the
//! task has not replaced or redirected the worktree's `.git`, its admin dir's links or `HEAD`;
//! if it has, orch refuses ([`WorkspaceError::Tampered`]) and runs no git there at all. Removal
//! deletes the recorded directories itself, without following links and without asking git
//! (which would read the task-writable `.git` and `gitdir` files).

mod git;
mod places;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use git::{git_command, GitScope, ENVIRONMENT_WHITELIST};
pub use places::{parse_record, BaseRecord, GitPlaces};

use git::{git, git_failure, git_output, retry_on_contention, stdout_line};
use places::Finding;

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
        /// Where orch's git looks for this worktree, recorded when orch made it.
        places: GitPlaces,
    },
    /// A copy of a directory that is not a repository.
    Copy {
        /// The copy.
        path: PathBuf,
        /// The original.
        source: PathBuf,
    },
}

/// Why no workspace was prepared, or why orch refused to diff or commit it.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The project is not a git repository and its config says `needs_review`.
    #[error("{0} is not a git repository and the project's `non_git` setting is `needs_review`")]
    NeedsReview(PathBuf),
    /// The project is not a git repository and its config says `fail`.
    #[error("{0} is not a git repository and the project's `non_git` setting is `fail`")]
    NotGit(PathBuf),
    /// The task replaced or redirected the worktree's git metadata (its `.git`, its admin dir's
    /// `commondir`/`gitdir`, its index) or moved its `HEAD` off the task's branch. orch ran no git
    /// in the worktree: nothing a task planted there was executed or followed.
    #[error(
        "refused: the worktree {} was changed by the task so that git would follow it elsewhere \
         ({what}); orch did not commit or diff it and ran no git in it",
        path.display()
    )]
    Tampered {
        /// The worktree.
        path: PathBuf,
        /// What was found.
        what: String,
    },
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

impl Workspace {
    /// Create the workspace, or reuse the task's existing one (a retry continues on its branch).
    ///
    /// For a git project: an existing worktree on the task's branch is reused as it is; a branch
    /// whose worktree directory is gone gets a new worktree on it; a directory in the worktree's
    /// place that is not the worktree orch recorded (no `.git`, or a `.git` replaced or
    /// redirected by an earlier attempt) is deleted, without running git in it, and replaced;
    /// otherwise a new branch is created from `base_branch` (or the current HEAD). Races with
    /// other tasks of the same repository (git's lock files, half-made worktrees) are retried
    /// with backoff.
    pub async fn prepare(request: &WorkspaceRequest) -> Result<Workspace, WorkspaceError> {
        match main_repository(&request.project_dir).await? {
            Some(main) => prepare_worktree(request, main).await,
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

    /// Check that the task left the worktree's git metadata as orch made it: its `.git` is still
    /// the file naming the recorded admin dir, whose `commondir` and `gitdir` still point at the
    /// recorded repository and back at the worktree, its index is a plain file and `HEAD` still
    /// names the task's branch. Reads files only. A copy always passes.
    pub async fn verify(&self) -> Result<(), WorkspaceError> {
        let Workspace::Git {
            path,
            branch,
            places,
            ..
        } = self
        else {
            return Ok(());
        };
        let (checked, checked_branch) = (places.clone(), branch.clone());
        let finding = blocking(move || Ok(places::check(&checked, &checked_branch))).await?;
        let what = match finding {
            Finding::Intact => return Ok(()),
            Finding::HeadMoved(head) => format!(
                "its HEAD was moved to {head}; orch commits only onto the task's branch `{branch}`"
            ),
            Finding::NoGitFile => "its .git was removed".to_owned(),
            Finding::Tampered(what) => what,
        };
        Err(WorkspaceError::Tampered {
            path: path.clone(),
            what,
        })
    }

    /// Commit every change (including new files) on the task's branch; `None` if nothing changed
    /// or the workspace is a copy. Refused with [`WorkspaceError::Tampered`] when
    /// [`verify`](Self::verify) fails.
    ///
    /// The commit is made with plumbing (everything staged into the worktree's index as
    /// `add -A` would, `write-tree`,
    /// `commit-tree` on the branch's current tip, `update-ref` of `refs/heads/<branch>` from that
    /// tip), as `orch <orch@localhost>`, unsigned: no hook can run, and the commit lands on the
    /// recorded branch whatever the worktree's `HEAD` says. Hooks still run when a human commits
    /// or pushes the branch.
    pub async fn commit_all(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
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
        // Each attempt reads the tip afresh, so an attempt that lost a race for the index or the
        // ref to another git process starts over instead of committing on a stale parent.
        retry_on_contention(|| commit_once(&scope, &reference, message)).await
    }

    /// A unified diff of the workspace against its base: committed and uncommitted changes and
    /// new files. Binary files appear as git's binary diff. Refused with
    /// [`WorkspaceError::Tampered`] when [`verify`](Self::verify) fails.
    ///
    /// For git, the worktree is staged as `git add -A` would (see `stage_all`) into a throwaway index (a copy of the
    /// worktree's own index, so unchanged files are not hashed again, kept beside the worktree in
    /// orch's home) and that index is diffed against the base commit. The worktree's real index is
    /// never written: what the user or the agent staged stays as it was, and new files stay
    /// untracked. New files count unless `.gitignore` ignores them. The only trace is the new
    /// files' blobs in the object database, which `git gc` drops. A copy has no baseline to
    /// compare with, so its diff is empty.
    pub async fn diff(&self) -> Result<Vec<u8>, WorkspaceError> {
        let Workspace::Git {
            path,
            branch,
            base_commit,
            places,
        } = self
        else {
            return Ok(Vec::new());
        };
        self.verify().await?;
        let task = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scratch_index = path.with_file_name(format!(
            ".{task}.diff-index-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = diff_with_index(places, &scratch_index, branch, base_commit).await;
        // The scratch index is ours alone; a failure to delete it only leaves a stray file beside
        // the worktree.
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

    /// Remove the workspace (and for git, the worktree's registration; the branch is kept).
    ///
    /// The base record beside the worktree is kept with the branch, so a later `prepare` of the
    /// same task continues on the branch against the same base. Removing a workspace whose
    /// directory is already gone succeeds. For git, orch deletes the worktree directory and the
    /// recorded admin dir itself (what `git worktree remove --force` does) without following
    /// links: no git runs, so nothing the task planted in `.git` is read, and the admin dir is
    /// deleted only while its `gitdir` file still names this worktree, so a `.git` or `gitdir`
    /// pointing elsewhere never makes orch delete anything outside the two recorded directories.
    pub async fn remove(&self) -> Result<(), WorkspaceError> {
        match self {
            Workspace::Copy { path, .. } => remove_dir_if_present(path.clone()).await,
            Workspace::Git { places, .. } => remove_worktree(places).await,
        }
    }

    /// Whether the task's branch is merged into `into` (a branch or any commit-ish): its tip is
    /// an ancestor of `into`. A branch with no commits of its own counts as merged. Runs in the
    /// repository's common directory, not in the worktree. A copy has no branch and is never
    /// merged.
    pub async fn is_merged(&self, into: &str) -> Result<bool, WorkspaceError> {
        let Workspace::Git { branch, places, .. } = self else {
            return Ok(false);
        };
        let scope = common_scope(places);
        let tip = format!("refs/heads/{branch}");
        let args = ["merge-base", "--is-ancestor", tip.as_str(), into];
        let output = git_output(&scope, &args).await?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(git_failure(&scope, &args, &output)),
        }
    }

    /// The branch the repository's main checkout has checked out, which retention checks merges
    /// against; `None` for a copy or a main checkout on a detached HEAD.
    pub async fn main_branch(&self) -> Result<Option<String>, WorkspaceError> {
        let Workspace::Git { places, .. } = self else {
            return Ok(None);
        };
        let scope = common_scope(places);
        let output = git_output(&scope, &["symbolic-ref", "--quiet", "--short", "HEAD"]).await?;
        let branch = stdout_line(&output.stdout);
        Ok((output.status.success() && !branch.is_empty()).then_some(branch))
    }

    /// The workspace a base record describes, for the worktree at `path`: `None` when the record
    /// has no places (older format) or they are for another directory. Retention builds the
    /// workspaces it removes with this, from what is on disk.
    pub fn from_record(path: &Path, record: BaseRecord) -> Option<Workspace> {
        let places = record.places?;
        (places.worktree == path).then(|| Workspace::Git {
            path: path.to_path_buf(),
            branch: record.branch,
            base_commit: record.base_commit,
            places,
        })
    }
}

/// The repository's common directory with no work tree: for reads of refs and commits.
fn common_scope(places: &GitPlaces) -> GitScope<'_> {
    GitScope::Repository {
        git_dir: &places.common_dir,
        work_tree: None,
    }
}

async fn commit_once(
    scope: &GitScope<'_>,
    reference: &str,
    message: &str,
) -> Result<Option<String>, WorkspaceError> {
    let tip = stdout_line(
        &git(
            scope,
            &["rev-parse", "--verify", &format!("{reference}^{{commit}}")],
        )
        .await?,
    );
    stage_all(scope).await?;
    let tree = stdout_line(&git(scope, &["write-tree"]).await?);
    let tip_tree = stdout_line(
        &git(
            scope,
            &["rev-parse", "--verify", &format!("{tip}^{{tree}}")],
        )
        .await?,
    );
    if tree == tip_tree {
        return Ok(None);
    }
    let commit = stdout_line(
        &git(
            scope,
            &[
                "commit-tree",
                "--no-gpg-sign",
                "-p",
                &tip,
                "-m",
                message,
                &tree,
            ],
        )
        .await?,
    );
    // From the tip read above only: a branch moved meanwhile fails here rather than losing the
    // commits that moved it.
    git(
        scope,
        &[
            "update-ref",
            "-m",
            "orch: commit the task's work",
            reference,
            &commit,
            &tip,
        ],
    )
    .await?;
    Ok(Some(commit))
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

/// The main checkout: where git found the repository from the project directory.
struct MainRepository {
    /// The main checkout's top directory, canonical.
    toplevel: PathBuf,
    /// Its git directory (its `.git`, or its admin dir if the project is itself a worktree).
    git_dir: PathBuf,
    /// The repository's common git directory (shared by all its worktrees), canonical.
    common_dir: PathBuf,
}

/// The repository containing `project_dir`, or `None` when it is in none. The one place git
/// discovers a repository: the project directory is the main checkout, which tasks cannot write.
async fn main_repository(project_dir: &Path) -> Result<Option<MainRepository>, WorkspaceError> {
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
    let scope = GitScope::Discover { dir: project_dir };
    let args = [
        "rev-parse",
        "--show-toplevel",
        "--absolute-git-dir",
        "--git-common-dir",
    ];
    let output = git_output(&scope, &args).await?;
    if !output.status.success() {
        // Only "not a repository" means a plain directory; anything else (dubious ownership, a
        // broken `.git`) is a repository git cannot use, and copying it instead would hide that.
        if String::from_utf8_lossy(&output.stderr).contains("not a git repository") {
            return Ok(None);
        }
        return Err(git_failure(&scope, &args, &output));
    }
    let lines: Vec<PathBuf> = output
        .stdout
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(places::path_from_bytes)
        .collect();
    let [toplevel, git_dir, common] = lines.as_slice() else {
        return Err(git_failure(&scope, &args, &output));
    };
    // Older gits print the common directory relative to the current directory; joining keeps an
    // absolute one.
    Ok(Some(MainRepository {
        toplevel: canonical(toplevel.clone()).await?,
        git_dir: canonical(git_dir.clone()).await?,
        common_dir: canonical(project_dir.join(common)).await?,
    }))
}

/// Where one task's worktree of one repository goes, and what it must be.
struct WorktreeTarget {
    /// The repository, as found from the project directory.
    main: MainRepository,
    /// The worktree directory, canonical parent.
    path: PathBuf,
    /// The base record beside the worktree.
    record: PathBuf,
    /// The task's branch.
    branch: String,
    /// What to branch from; `None` is the main checkout's HEAD.
    base_branch: Option<String>,
}

impl WorktreeTarget {
    /// The main checkout, named explicitly.
    fn main_scope(&self) -> GitScope<'_> {
        GitScope::Repository {
            git_dir: &self.main.git_dir,
            work_tree: Some(&self.main.toplevel),
        }
    }
}

/// What is found at a worktree's place.
enum WorktreeState {
    /// Nothing.
    Missing,
    /// The recorded worktree, intact, with the task's branch checked out.
    OnBranch(GitPlaces),
    /// The recorded worktree, intact, with something else checked out (described).
    OtherHead(String),
    /// Something that is not the recorded worktree (why), with the places recorded for it.
    Stale(String, Option<GitPlaces>),
}

async fn prepare_worktree(
    request: &WorkspaceRequest,
    main: MainRepository,
) -> Result<Workspace, WorkspaceError> {
    let group = request
        .worktrees_root
        .join(worktree_group_name(&main.toplevel));
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
    let path = group.join(request.task_id.to_string());
    let branch = choose_branch(request, &main, &path, &record).await?;
    let target = WorktreeTarget {
        main,
        path,
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
            // its first instants (which that task then retries as contention). Prune only ever
            // deletes admin dirs under `.git/worktrees` whose worktree is gone.
            git(&target.main_scope(), &["worktree", "prune"]).await?;
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
        WorktreeState::OnBranch(places) => {
            let base_commit = base_commit_of_existing_branch(target, &places).await?;
            tracing::info!(path = %target.path.display(), branch = %target.branch, "reusing worktree");
            return Ok(git_workspace(target, base_commit, places));
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
        WorktreeState::Stale(why, places) => {
            tracing::warn!(path = %target.path.display(), "replacing a directory that is not the task's worktree: {why}");
            match places {
                Some(places) => remove_worktree(&places).await?,
                None => remove_dir_if_present(target.path.clone()).await?,
            }
        }
        WorktreeState::Missing => {}
    }
    if branch_exists(target, &target.branch).await? {
        add_worktree(
            target,
            &[target.path.as_os_str(), OsStr::new(&target.branch)],
        )
        .await?;
        let places = located(target).await?;
        let base_commit = base_commit_of_existing_branch(target, &places).await?;
        tracing::info!(path = %target.path.display(), branch = %target.branch, "recreated worktree on existing branch");
        return Ok(git_workspace(target, base_commit, places));
    }
    let base_commit = resolve_base(target).await?;
    // Written before the branch exists, so a branch never exists without its record unless the
    // record was deleted afterwards (then the merge base stands in).
    write_base_record(target, &base_commit, None).await?;
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
    let places = located(target).await?;
    write_base_record(target, &base_commit, Some(&places)).await?;
    tracing::info!(path = %target.path.display(), branch = %target.branch, base = %base_commit, "created worktree");
    Ok(git_workspace(target, base_commit, places))
}

async fn add_worktree(target: &WorktreeTarget, args: &[&OsStr]) -> Result<(), WorkspaceError> {
    let mut command = vec![OsStr::new("worktree"), OsStr::new("add")];
    command.extend_from_slice(args);
    git(&target.main_scope(), &command).await.map(drop)
}

/// The places of the worktree `git worktree add` has just made (nothing of the task has run in
/// it yet).
async fn located(target: &WorktreeTarget) -> Result<GitPlaces, WorkspaceError> {
    let (path, common) = (target.path.clone(), target.main.common_dir.clone());
    blocking(move || {
        places::locate(&path, &common).map_err(|why| WorkspaceError::Io {
            context: format!(
                "record the git directories of the new worktree {}",
                path.display()
            ),
            source: std::io::Error::other(why),
        })
    })
    .await
}

fn git_workspace(target: &WorktreeTarget, base_commit: String, places: GitPlaces) -> Workspace {
    Workspace::Git {
        path: target.path.clone(),
        branch: target.branch.clone(),
        base_commit,
        places,
    }
}

/// Look at the worktree's place by reading files only: no git runs in a directory a task had.
async fn inspect_worktree(target: &WorktreeTarget) -> Result<WorktreeState, WorkspaceError> {
    let recorded = read_base_record(target)
        .await?
        .and_then(|record| record.places)
        .filter(|places| {
            places.worktree == target.path && places.common_dir == target.main.common_dir
        });
    let (path, common, branch) = (
        target.path.clone(),
        target.main.common_dir.clone(),
        target.branch.clone(),
    );
    blocking(move || {
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Ok(WorktreeState::Stale("not a directory".into(), recorded)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(WorktreeState::Missing)
            }
            Err(e) => {
                return Err(WorkspaceError::Io {
                    context: format!("inspect {}", path.display()),
                    source: e,
                })
            }
        }
        // A record in the older format has no places: they are taken from the worktree's `.git`
        // only if it fits this repository in every way `check` looks at.
        let places = match recorded {
            Some(places) => places,
            None => match places::locate(&path, &common) {
                Ok(places) => places,
                Err(why) => return Ok(WorktreeState::Stale(why, None)),
            },
        };
        Ok(match places::check(&places, &branch) {
            Finding::Intact => WorktreeState::OnBranch(places),
            Finding::HeadMoved(head) => WorktreeState::OtherHead(head),
            Finding::NoGitFile => WorktreeState::Stale("it has no .git".into(), Some(places)),
            Finding::Tampered(why) => WorktreeState::Stale(why, Some(places)),
        })
    })
    .await
}

/// The base commit of a branch that already exists: its record when the record is for this
/// branch and names a commit that still exists, else the merge base with the base branch. The
/// record is written again with the worktree's places.
async fn base_commit_of_existing_branch(
    target: &WorktreeTarget,
    places: &GitPlaces,
) -> Result<String, WorkspaceError> {
    let recorded = read_base_record(target).await?;
    if let Some(record) = recorded {
        if commit_exists(target, &record.base_commit).await? {
            if record.places.as_ref() != Some(places) {
                write_base_record(target, &record.base_commit, Some(places)).await?;
            }
            return Ok(record.base_commit);
        }
    }
    let base = target
        .base_branch
        .clone()
        .unwrap_or_else(|| "HEAD".to_string());
    let tip = format!("refs/heads/{}", target.branch);
    let args = ["merge-base", tip.as_str(), base.as_str()];
    let scope = target.main_scope();
    let output = git_output(&scope, &args).await?;
    let merge_base = stdout_line(&output.stdout);
    if !output.status.success() || merge_base.is_empty() {
        let mut failure = git_failure(&scope, &args, &output);
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
    write_base_record(target, &merge_base, Some(places)).await?;
    Ok(merge_base)
}

/// The commit a new branch starts from.
async fn resolve_base(target: &WorktreeTarget) -> Result<String, WorkspaceError> {
    let scope = target.main_scope();
    if let Some(name) = &target.base_branch {
        let not_found = || WorkspaceError::Git {
            args: format!("rev-parse --verify {name}"),
            dir: target.main.toplevel.clone(),
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
        let output = git_output(&scope, &["rev-parse", "--verify", "--quiet", &revision]).await?;
        if !output.status.success() {
            return Err(not_found());
        }
        return Ok(stdout_line(&output.stdout));
    }
    let args = ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"];
    let output = git_output(&scope, &args).await?;
    if output.status.success() {
        return Ok(stdout_line(&output.stdout));
    }
    let on_branch = git_output(&scope, &["symbolic-ref", "--quiet", "HEAD"]).await?;
    if on_branch.status.success() {
        return Err(WorkspaceError::Git {
            args: "rev-parse --verify HEAD".to_string(),
            dir: target.main.toplevel.clone(),
            stderr: format!(
                "the repository has no commits yet (HEAD is unborn), so there is nothing to branch \
                 the task from; make a first commit in {} (for example `git commit --allow-empty \
                 -m \"initial commit\"`) and retry the task",
                target.main.toplevel.display()
            ),
        });
    }
    Err(git_failure(&scope, &args, &output))
}

/// The task's base record, when it is for this task's branch and names an object id.
async fn read_base_record(target: &WorktreeTarget) -> Result<Option<BaseRecord>, WorkspaceError> {
    let record = target.record.clone();
    let bytes = blocking(move || match std::fs::read(&record) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WorkspaceError::Io {
            context: format!("read base record {}", record.display()),
            source: e,
        }),
    })
    .await?;
    let Some(record) = bytes.as_deref().and_then(parse_record) else {
        return Ok(None);
    };
    // A record left by an earlier task with the same number but another title is not ours.
    let sha = &record.base_commit;
    let is_object_id =
        matches!(sha.len(), 40 | 64) && sha.bytes().all(|byte| byte.is_ascii_hexdigit());
    Ok((is_object_id && record.branch == target.branch).then_some(record))
}

async fn write_base_record(
    target: &WorktreeTarget,
    base_commit: &str,
    places: Option<&GitPlaces>,
) -> Result<(), WorkspaceError> {
    let record = target.record.clone();
    let contents = places::render_record(base_commit, &target.branch, places)?;
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
    main: &MainRepository,
    path: &Path,
    record: &Path,
) -> Result<String, WorkspaceError> {
    let record_path = record.to_path_buf();
    let recorded = blocking(move || Ok(std::fs::read(&record_path).ok())).await?;
    if let Some(record) = recorded.as_deref().and_then(parse_record) {
        return Ok(record.branch);
    }
    let scope = GitScope::Repository {
        git_dir: &main.git_dir,
        work_tree: None,
    };
    let plain = branch_name(request.task_id, &request.title);
    if !branch_exists_in(&scope, &plain).await? {
        return Ok(plain);
    }
    // Without a record, this home's own worktree on that branch still proves it is ours; it is
    // read from its files, as `check` does, never by running git in it.
    let (worktree, common, candidate) =
        (path.to_path_buf(), main.common_dir.clone(), plain.clone());
    let ours = blocking(move || {
        Ok(places::locate(&worktree, &common)
            .is_ok_and(|places| places::check(&places, &candidate) == Finding::Intact))
    })
    .await?;
    if ours {
        return Ok(plain);
    }
    let home = hex::encode(Sha256::digest(
        request.worktrees_root.to_string_lossy().as_bytes(),
    ));
    let mut candidate = format!("{plain}-{}", &home[..6]);
    let mut counter = 2;
    while branch_exists_in(&scope, &candidate).await? {
        candidate = format!("{plain}-{}-{counter}", &home[..6]);
        counter += 1;
    }
    Ok(candidate)
}

async fn branch_exists(target: &WorktreeTarget, branch: &str) -> Result<bool, WorkspaceError> {
    branch_exists_in(&target.main_scope(), branch).await
}

async fn branch_exists_in(scope: &GitScope<'_>, branch: &str) -> Result<bool, WorkspaceError> {
    let reference = format!("refs/heads/{branch}");
    let args = ["rev-parse", "--verify", "--quiet", reference.as_str()];
    let output = git_output(scope, &args).await?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(git_failure(scope, &args, &output)),
    }
}

async fn commit_exists(target: &WorktreeTarget, sha: &str) -> Result<bool, WorkspaceError> {
    let object = format!("{sha}^{{commit}}");
    let output = git_output(&target.main_scope(), &["cat-file", "-e", object.as_str()]).await?;
    Ok(output.status.success())
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

async fn diff_with_index(
    places: &GitPlaces,
    scratch_index: &Path,
    branch: &str,
    base_commit: &str,
) -> Result<Vec<u8>, WorkspaceError> {
    // `verify` has checked that the real index is a plain file (or absent), so the copy reads
    // the worktree's own index and nothing a link would lead to.
    let real_index = places.index();
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
    let scope = GitScope::Worktree {
        places,
        index: scratch_index,
    };
    if !copied {
        let tip = format!("refs/heads/{branch}");
        git(&scope, &["read-tree", tip.as_str()]).await?;
    }
    stage_all(&scope).await?;
    // Fixed prefixes and no external drivers or text conversion, whatever the config, so the
    // patch is a plain one that `git apply` takes and no driver a `.gitattributes` names runs.
    git(
        &scope,
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
    )
    .await
}

/// Most bytes of paths passed to one `git update-index`, well below any argument-length limit.
const STAGE_BATCH_BYTES: usize = 64 * 1024;

/// Stage every change of the worktree into the scope's index, as `git add -A` would: modified,
/// deleted and new (not ignored) files, and embedded repositories as gitlinks.
///
/// Not `git add -A` itself: for every gitlink in the index whose directory holds a repository,
/// `add` starts `git status` *inside that repository*, which reads the repository's own config
/// (a task can make one with a `filter.*.clean` driver and a `.gitattributes` naming it, and
/// that driver would run). `ls-files` and `update-index` only read a gitlink's `HEAD`.
async fn stage_all(scope: &GitScope<'_>) -> Result<(), WorkspaceError> {
    let listed = git(
        scope,
        &[
            "ls-files",
            "-z",
            "--modified",
            "--others",
            "--exclude-standard",
        ],
    )
    .await?;
    // An embedded repository is listed as `dir/`; without the slash it becomes a gitlink.
    let mut batches: Vec<Vec<PathBuf>> = vec![Vec::new()];
    let mut batch_bytes = 0;
    for path in listed
        .split(|byte| *byte == 0)
        .filter(|path| !path.is_empty())
    {
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if batch_bytes >= STAGE_BATCH_BYTES {
            batches.push(Vec::new());
            batch_bytes = 0;
        }
        batch_bytes += path.len() + 1;
        if let Some(batch) = batches.last_mut() {
            batch.push(places::path_from_bytes(path));
        }
    }
    for batch in batches.iter().filter(|batch| !batch.is_empty()) {
        let mut args = vec![
            OsStr::new("update-index"),
            OsStr::new("--add"),
            OsStr::new("--remove"),
            OsStr::new("--replace"),
            OsStr::new("--"),
        ];
        args.extend(batch.iter().map(|path| path.as_os_str()));
        git(scope, &args).await?;
    }
    Ok(())
}

/// Delete a worktree and its admin dir without git (see [`Workspace::remove`]).
async fn remove_worktree(places: &GitPlaces) -> Result<(), WorkspaceError> {
    remove_dir_if_present(places.worktree.clone()).await?;
    let places = places.clone();
    let admin_is_ours = blocking(move || Ok(places::removable_admin_dir(&places))).await?;
    if let Some(admin_dir) = admin_is_ours {
        remove_dir_if_present(admin_dir).await?;
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
