//! Workspaces: one git worktree per task on a branch `orch/<task-id>-<slug>` (real git), or a
//! copy for a directory that is not a repository, per project config. The branch starts from
//! the task's dependencies' branches or the project's base branch, and the task owns it
//! whoever runs it (`start.rs`); finished steps are checkpointed on it (`checkpoint.rs`).
//! Agents and commands never run in the main checkout.
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

pub mod base_merge;
mod checkpoint;
mod copy;
mod copy_changes;
mod git;
mod land;
mod places;
pub mod push;
mod start;
mod worktree;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

pub use copy_changes::{ChangeKind, CopyChange};
pub use git::{git_command, GitScope, ENVIRONMENT_WHITELIST};
pub use land::{Landed, MergeMode, MergeRequest, TaskChange};
pub use places::{parse_record, BaseRecord, GitPlaces};
pub use start::{Start, StartRequest, TaskKey};

use git::{git, git_output, retry_on_contention, stdout_line};
use places::Finding;

use copy::prepare_copy;
use worktree::{main_repository, prepare_worktree};

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
    /// The largest project (bytes of its files) copy mode copies; a larger one is refused.
    pub copy_max_bytes: u64,
    /// When the task was created: with `task_id`, the key its branch is recorded under in the
    /// repository (see `workspace/start.rs`).
    pub task_created_at: i64,
    /// What a new branch starts from.
    pub start: StartRequest,
}

/// The default of [`WorkspaceRequest::copy_max_bytes`]: 1 GiB.
pub const DEFAULT_COPY_MAX_BYTES: u64 = 1024 * 1024 * 1024;

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
        /// Where the branch started: `base_commit`, and whether from the base branch or the
        /// dependencies' branches.
        start: Start,
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
    /// The task's dependencies' branches do not merge: the task cannot start (before any step
    /// runs). Not retried: the same branches conflict again.
    #[error(
        "the dependencies' branches conflict: merging `{branch}` into {merged} conflicts in {}; \
         resolve it (for example merge the branches by hand and reset the dependency's branch, or \
         give this task `from: base`) and `orch task retry` it",
        files.join(", ")
    )]
    Conflict {
        /// The branches merged so far.
        merged: String,
        /// The branch that conflicted with them.
        branch: String,
        /// The conflicting files.
        files: Vec<String>,
    },
    /// A `done` dependency's branch cannot be found in this repository.
    #[error(
        "cannot start from dependency task {task}: {why}; a worker needs the dependencies' \
         branches in the project's repository (remote workers: use the daemon's checkout path, \
         not a separate clone), or give the task `from: base`"
    )]
    DependencyMissing {
        /// The dependency.
        task: i64,
        /// Why.
        why: String,
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
    /// A project to copy is larger than the configured limit.
    #[error(
        "{} holds {} of files, more than the {} copy mode copies; raise `copy_max_size` in the \
         project's .orch.toml or <home>/config.toml (or ORCH_COPY_MAX_SIZE), or make the \
         project a git repository",
        dir.display(), human_size(*bytes), human_size(*limit)
    )]
    TooLarge {
        /// The project directory.
        dir: PathBuf,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// Copying a task's changes back was refused: these files changed in the original since
    /// the copy was made. Nothing was written.
    #[error(
        "refused: {} changed in {} since the task's copy was made; nothing was copied back. \
         Reconcile them by hand (`orch task diff` shows the task's change)",
        files.join(", "), dir.display()
    )]
    ChangedMeanwhile {
        /// The original project directory.
        dir: PathBuf,
        /// The files, relative to it.
        files: Vec<String>,
    },
    /// A landing (`orch task merge`, `apply`) or a look-up for one was refused; the text says
    /// why and what to do. Nothing was changed.
    #[error("{0}")]
    Refused(String),
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
        self.commit_with(message, false).await
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
    /// files' blobs in the object database, which `git gc` drops. A copy's diff is its changes
    /// against the manifest made with it, as a patch against the original (`copy_changes.rs`).
    pub async fn diff(&self) -> Result<Vec<u8>, WorkspaceError> {
        let (path, branch, base_commit, places) = match self {
            Workspace::Git {
                path,
                branch,
                base_commit,
                places,
                ..
            } => (path, branch, base_commit, places),
            Workspace::Copy { path, source } => {
                let (copy, source) = (path.clone(), source.clone());
                return blocking(move || {
                    copy_changes::patch(&copy, &source, &copy::manifest_path(&copy))
                })
                .await;
            }
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
        let tip = format!("refs/heads/{branch}");
        start::is_ancestor(&common_scope(places), &tip, into).await
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
            start: Start {
                commit: record.base_commit.clone(),
                from: orch_core::StartFrom::Base,
                branches: Vec::new(),
            },
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

/// One try at committing the worktree on `reference`. Each try reads the tip afresh, so a try
/// that lost a race for the index or the ref to another git process starts over instead of
/// committing on a stale parent. Without `allow_empty`, an unchanged tree commits nothing.
async fn commit_once(
    scope: &GitScope<'_>,
    reference: &str,
    message: &str,
    allow_empty: bool,
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
    if tree == tip_tree && !allow_empty {
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

/// The branch name for a task: `orch/<id>-<slug of the title>` (the title transliterated to
/// lowercase ascii, `-`, at most 40 characters of slug).
pub fn branch_name(task_id: i64, title: &str) -> String {
    let mut slug = String::new();
    let mut separator_pending = false;
    // Transliterated first, so a title in any script gives a readable slug, not an empty one.
    for character in deunicode::deunicode(title).chars() {
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
    let mut args = vec!["diff", "--cached"];
    args.extend_from_slice(PATCH_OPTIONS);
    args.extend([base_commit, "--"]);
    git(&scope, &args).await
}

/// The options of every patch orch's git writes: binary files included, fixed prefixes, no
/// colour, and no external diff or text conversion driver whatever the config or a
/// `.gitattributes` says, so the patch is one `git apply` takes and no driver runs.
pub(super) const PATCH_OPTIONS: &[&str] = &[
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--src-prefix=a/",
    "--dst-prefix=b/",
];

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

/// `1.5 GiB`, `12.0 MiB`, `300 bytes`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    // Precision beyond a tenth does not matter for a size shown to a person.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
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
