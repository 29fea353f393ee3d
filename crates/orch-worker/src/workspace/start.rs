//! Where a task's branch starts, and which branch a task owns, whoever runs it.
//!
//! **Ownership.** A task of one orch database is named by its id and its creation time (ms):
//! two databases on one repository (two homes, or a database made anew) give different keys to
//! their task 5. Before a task's branch is created, its key, branch and start are written to
//! `<common git dir>/orch/tasks/<id>-<created_ms>.json` (an [`Ownership`]), created once and
//! never overwritten while the start commit exists: every later attempt, on any worker and any
//! home using this repository, reads it and continues on the same branch from the same start.
//! The directory is inside the repository's own `.git`, which a task's sandbox cannot write
//! (it gets its admin dir and the object store only), and it is read as a plain file, never
//! through git. A name that another database's task already owns gets a suffix (see
//! `worktree.rs` `choose_branch`), so a task never continues on a branch it did not create.
//!
//! **Start.** `from: base`, or no dependency of this project that is `done`: the base branch.
//! One dependency: its branch's tip as is. Several: merged in `needs` order with `git
//! merge-tree --write-tree` (plumbing: no working tree, no index, no hooks; merge drivers only
//! from the main repository's own config, like every git orch runs) and committed with
//! `commit-tree` (parents: the merge so far and the next tip). A dependency already contained
//! in the merge so far adds nothing; one that contains it is taken as is (fast-forward). A
//! conflict fails the task before any step runs, naming the files ([`WorkspaceError::Conflict`]).

use std::path::{Path, PathBuf};

use orch_core::StartFrom;
use serde::{Deserialize, Serialize};

use super::git::{git, git_failure, git_output, stdout_line};
use super::{blocking, io_error, GitScope, WorkspaceError};

/// What a task's worktree should start from, as the claim says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartRequest {
    /// The task's `from:`.
    pub from: StartFrom,
    /// The task's dependencies in this project that are `done`, in `needs` order.
    pub dependencies: Vec<TaskKey>,
}

/// One task of one orch database: its id and creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskKey {
    /// The task's id.
    pub id: i64,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_at: i64,
}

impl TaskKey {
    fn file_name(self) -> String {
        format!("{}-{}.json", self.id, self.created_at)
    }
}

/// Where a task's worktree started: `job.json`'s `start` and `orch task get`'s `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// The commit the task's branch was created at (what its change is diffed against).
    pub commit: String,
    /// `base` or `dependencies`.
    pub from: StartFrom,
    /// The dependencies' branches it holds, in `needs` order (empty for `base`).
    #[serde(default)]
    pub branches: Vec<String>,
}

/// The ownership record of a task's branch (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Ownership {
    /// The task's branch (without `refs/heads/`).
    pub(super) branch: String,
    /// Where it started.
    pub(super) start: Start,
}

fn ownership_dir(common_dir: &Path) -> PathBuf {
    common_dir.join("orch").join("tasks")
}

/// The ownership record of `key` in the repository, if any (an unreadable one counts as none).
pub(super) async fn read_ownership(
    common_dir: &Path,
    key: TaskKey,
) -> Result<Option<Ownership>, WorkspaceError> {
    let path = ownership_dir(common_dir).join(key.file_name());
    blocking(move || match std::fs::read(&path) {
        // Only a record orch could have written: a branch under `orch/` that git takes as a
        // plain name (never an option), and a start that is an object id.
        Ok(bytes) => Ok(serde_json::from_slice::<Ownership>(&bytes)
            .ok()
            .filter(|owned| is_task_branch(&owned.branch) && is_object_id(&owned.start.commit))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WorkspaceError::Io {
            context: format!("read the task's branch record {}", path.display()),
            source: e,
        }),
    })
    .await
}

fn is_task_branch(branch: &str) -> bool {
    branch.starts_with("orch/")
        && !branch.contains("..")
        && branch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

fn is_object_id(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Write the ownership record of `key`: complete or absent (written aside, fsynced, then
/// linked into place). Unless `replace`, an existing record wins and is returned instead.
pub(super) async fn record_ownership(
    common_dir: &Path,
    key: TaskKey,
    ownership: Ownership,
    replace: bool,
) -> Result<Ownership, WorkspaceError> {
    let dir = ownership_dir(common_dir);
    blocking(move || {
        let path = dir.join(key.file_name());
        let context = format!("record the task's branch in {}", path.display());
        std::fs::create_dir_all(&dir).map_err(io_error(context.clone()))?;
        let bytes = serde_json::to_vec_pretty(&ownership).map_err(|e| WorkspaceError::Io {
            context: context.clone(),
            source: std::io::Error::other(e),
        })?;
        let partial = dir.join(format!(
            ".{}.partial-{:016x}",
            key.file_name(),
            rand::random::<u64>()
        ));
        crate::bundle::write_synced(&partial, &bytes).map_err(io_error(context.clone()))?;
        let placed = if replace {
            std::fs::rename(&partial, &path)
        } else {
            let linked = std::fs::hard_link(&partial, &path);
            let _ = std::fs::remove_file(&partial);
            linked
        };
        match placed {
            Ok(()) => Ok(ownership),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = std::fs::read(&path).map_err(io_error(context.clone()))?;
                serde_json::from_slice(&existing).map_err(|e| WorkspaceError::Io {
                    context,
                    source: std::io::Error::other(e),
                })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                Err(WorkspaceError::Io { context, source: e })
            }
        }
    })
    .await
}

/// The start for a new branch: the base commit (`base`), or the dependencies' tips merged in
/// order. `base` is called only when the base branch is what the task starts from.
pub(super) async fn compute_start(
    scope: &GitScope<'_>,
    common_dir: &Path,
    request: &StartRequest,
    base: impl std::future::Future<Output = Result<String, WorkspaceError>>,
) -> Result<Start, WorkspaceError> {
    if request.from == StartFrom::Base || request.dependencies.is_empty() {
        return Ok(Start {
            commit: base.await?,
            from: StartFrom::Base,
            branches: Vec::new(),
        });
    }
    let mut tips: Vec<(String, String)> = Vec::new();
    for dependency in &request.dependencies {
        let Some(owned) = read_ownership(common_dir, *dependency).await? else {
            return Err(WorkspaceError::DependencyMissing {
                task: dependency.id,
                why: format!(
                    "no branch of it is recorded in the repository {} (it ran in another \
                     checkout, or with an orch that did not record branches)",
                    common_dir.display()
                ),
            });
        };
        let reference = format!("refs/heads/{}^{{commit}}", owned.branch);
        let output = git_output(scope, &["rev-parse", "--verify", "--quiet", &reference]).await?;
        if !output.status.success() {
            return Err(WorkspaceError::DependencyMissing {
                task: dependency.id,
                why: format!("its branch `{}` no longer exists", owned.branch),
            });
        }
        tips.push((owned.branch, stdout_line(&output.stdout)));
    }
    let branches: Vec<String> = tips.iter().map(|(branch, _)| branch.clone()).collect();
    let mut tips = tips.into_iter();
    let Some((mut merged_from, mut commit)) = tips.next() else {
        return Err(WorkspaceError::DependencyMissing {
            task: 0,
            why: "no dependency branch".into(),
        });
    };
    for (branch, tip) in tips {
        if is_ancestor(scope, &tip, &commit).await? {
            continue;
        }
        if is_ancestor(scope, &commit, &tip).await? {
            commit = tip;
            merged_from = format!("{merged_from}, {branch}");
            continue;
        }
        let args = [
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            "-z",
            commit.as_str(),
            tip.as_str(),
        ];
        let output = git_output(scope, &args).await?;
        let mut fields = output
            .stdout
            .split(|byte| *byte == 0)
            .map(|field| String::from_utf8_lossy(field).into_owned());
        let tree = fields.next().unwrap_or_default();
        match output.status.code() {
            Some(0) => {}
            Some(1) => {
                let mut files: Vec<String> = fields.take_while(|f| !f.is_empty()).collect();
                files.dedup();
                return Err(WorkspaceError::Conflict {
                    merged: merged_from,
                    branch,
                    files,
                });
            }
            _ => return Err(git_failure(scope, &args, &output)),
        }
        let message = format!("orch: merge {branch} into {merged_from}");
        commit = stdout_line(
            &git(
                scope,
                &[
                    "commit-tree",
                    "--no-gpg-sign",
                    "-p",
                    &commit,
                    "-p",
                    &tip,
                    "-m",
                    &message,
                    &tree,
                ],
            )
            .await?,
        );
        merged_from = format!("{merged_from}, {branch}");
    }
    Ok(Start {
        commit,
        from: StartFrom::Dependencies,
        branches,
    })
}

/// Whether `ancestor` is an ancestor of (or equal to) `of`.
pub(super) async fn is_ancestor(
    scope: &GitScope<'_>,
    ancestor: &str,
    of: &str,
) -> Result<bool, WorkspaceError> {
    let args = ["merge-base", "--is-ancestor", ancestor, of];
    let output = git_output(scope, &args).await?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(git_failure(scope, &args, &output)),
    }
}
