//! Landing a finished task's change in the project's checkout without a forge: `orch task diff`,
//! `orch task merge` and `orch task apply`, and a workflow's automatic final merge.
//!
//! A git task's change is its branch (named in the base record this home wrote beside the
//! worktree) from where it started (the `start` commit of its `job.json`, else the merge base
//! with the base branch) to its head. A copy's change is what differs from the manifest made
//! with the copy (`copy_changes.rs`).
//!
//! Merging never runs `git merge`: the result is computed first with `git merge-tree
//! --write-tree` (objects only; a conflict is found without touching the checkout), committed
//! with `commit-tree`, then the checkout is moved with `read-tree -m -u` (which refuses, changing
//! nothing, when it would overwrite a local change or an untracked file) and the branch with an
//! `update-ref` from the tip read at the start. So a refused merge leaves no `MERGE_HEAD`, the
//! same `HEAD` and a clean status. Every command goes through the hardened runner (no hooks, no
//! user config, no external drivers): landing content is what the user asked for, but nothing
//! on the task's branch can make orch run a program or change the checkout's config.
//! The commits orch makes carry an `Orch-Task: <id> <head>` trailer, by which a landing that
//! happened before a crash is recognised instead of made twice.

use std::path::{Path, PathBuf};

use super::copy::manifest_path;
use super::copy_changes;
use super::git::{git, git_output, stdout_line};
use super::worktree::{main_repository, worktree_group_name, MainRepository};
use super::{blocking, io_error, parse_record, GitScope, WorkspaceError, PATCH_OPTIONS};

pub use orch_core::MergeMode;

/// What to merge and how.
#[derive(Debug, Clone, Copy)]
pub struct MergeRequest<'a> {
    /// The task's number (in messages and the trailer).
    pub task_id: i64,
    /// The task's title (the squash commit's subject).
    pub title: &'a str,
    /// How.
    pub mode: MergeMode,
    /// The branch to land in; `None` is the branch the checkout has checked out.
    pub into: Option<&'a str>,
}

/// What a merge or apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The commit now at the tip of `into` (none for `apply` and copies).
    pub commit: Option<String>,
    /// The branch landed in, or the project directory for a copy or `apply`.
    pub into: String,
    /// The files it changed, relative to the project.
    pub files: Vec<String>,
    /// Nothing was done: the change was already there.
    pub already: bool,
}

/// A finished task's change, found from what this home recorded.
#[derive(Debug, Clone)]
pub enum TaskChange {
    /// A branch of the project's repository.
    Git {
        /// The main checkout's top directory.
        checkout: PathBuf,
        /// Its git directory.
        git_dir: PathBuf,
        /// The task's branch.
        branch: String,
        /// The branch's tip.
        head: String,
        /// Where the task started.
        start: String,
    },
    /// A copy of a directory that is not a repository.
    Copy {
        /// The copy.
        copy: PathBuf,
        /// The original (the project directory).
        source: PathBuf,
    },
}

impl TaskChange {
    /// Find task `task_id`'s change for the project at `project_dir` in this `home`: its branch
    /// (from the base record beside its worktree) or its copy. `start` is the `start.commit` of
    /// its `job.json` when there is one; otherwise the merge base of the branch with
    /// `base_branch` (`None`: the checkout's `HEAD`).
    pub async fn locate(
        home: &Path,
        project_dir: &Path,
        task_id: i64,
        start: Option<&str>,
        base_branch: Option<&str>,
    ) -> Result<TaskChange, WorkspaceError> {
        let worktrees = home.join("worktrees");
        let Some(main) = main_repository(project_dir).await? else {
            let copy = worktrees.join("copies").join(task_id.to_string());
            if !copy.is_dir() {
                return Err(WorkspaceError::Refused(format!(
                    "task {task_id} has no copy of {} in {} (it has not run on this machine, \
                     or retention removed it)",
                    project_dir.display(),
                    worktrees.display()
                )));
            }
            return Ok(TaskChange::Copy {
                copy,
                source: canonical_dir(project_dir)?,
            });
        };
        let (branch, head, recorded_base) = recorded_branch(&worktrees, &main, task_id).await?;
        let start = match start {
            Some(start) => start.to_owned(),
            None => {
                let scope = GitScope::Repository {
                    git_dir: &main.git_dir,
                    work_tree: None,
                };
                let base = base_branch.unwrap_or("HEAD");
                let output = git_output(&scope, &["merge-base", &head, base]).await?;
                let line = stdout_line(&output.stdout);
                if output.status.success() && !line.is_empty() {
                    line
                } else {
                    recorded_base
                }
            }
        };
        Ok(TaskChange::Git {
            checkout: main.toplevel,
            git_dir: main.git_dir,
            branch,
            head,
            start,
        })
    }

    /// Task `task_id`'s branch and the commit at its tip, when the project is a repository and
    /// this home made the branch (`orch task get`); `None` otherwise.
    pub async fn branch_of(
        home: &Path,
        project_dir: &Path,
        task_id: i64,
    ) -> Result<Option<(String, String)>, WorkspaceError> {
        let Some(main) = main_repository(project_dir).await? else {
            return Ok(None);
        };
        match recorded_branch(&home.join("worktrees"), &main, task_id).await {
            Ok((branch, head, _)) => Ok(Some((branch, head))),
            Err(WorkspaceError::Refused(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The task's change as a patch `git apply` takes (binary files included).
    pub async fn diff(&self) -> Result<Vec<u8>, WorkspaceError> {
        match self {
            TaskChange::Git {
                git_dir,
                head,
                start,
                ..
            } => {
                let scope = GitScope::Repository {
                    git_dir,
                    work_tree: None,
                };
                let mut args = vec!["diff"];
                args.extend_from_slice(PATCH_OPTIONS);
                args.extend([start.as_str(), head.as_str(), "--"]);
                git(&scope, &args).await
            }
            TaskChange::Copy { copy, source } => {
                let (copy, source) = (copy.clone(), source.clone());
                blocking(move || copy_changes::patch(&copy, &source, &manifest_path(&copy))).await
            }
        }
    }

    /// Land the change in the checkout (see the module docs); a copy's changes are copied back.
    pub async fn merge(&self, request: MergeRequest<'_>) -> Result<Landed, WorkspaceError> {
        match self {
            TaskChange::Git {
                checkout,
                git_dir,
                branch,
                head,
                start,
            } => {
                let branch = BranchRef {
                    checkout,
                    git_dir,
                    branch,
                    head,
                    start,
                };
                merge_branch(&branch, request).await
            }
            TaskChange::Copy { .. } => self.copy_back().await,
        }
    }

    /// Apply the change to the checkout's working tree without committing; refused, changing
    /// nothing, when it does not apply cleanly. A copy's changes are copied back as by `merge`.
    pub async fn apply(&self, scratch_dir: &Path) -> Result<Landed, WorkspaceError> {
        let TaskChange::Git {
            checkout, git_dir, ..
        } = self
        else {
            return self.copy_back().await;
        };
        let patch = self.diff().await?;
        let files = crate::run::changed_files(&patch);
        let into = checkout.display().to_string();
        if patch.is_empty() {
            return Ok(Landed {
                commit: None,
                into,
                files,
                already: true,
            });
        }
        let file = scratch_dir.join(format!(".apply-{:016x}.patch", rand::random::<u64>()));
        {
            let (file, patch) = (file.clone(), patch.clone());
            blocking(move || {
                std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")))
                    .and_then(|()| std::fs::write(&file, patch))
                    .map_err(io_error(format!("write {}", file.display())))
            })
            .await?;
        }
        let scope = GitScope::Repository {
            git_dir,
            work_tree: Some(checkout),
        };
        let file_arg = file.as_os_str().to_owned();
        // `git apply` checks every hunk before it writes anything, so a refusal changes nothing.
        let result = git_output(&scope, &[std::ffi::OsStr::new("apply"), &file_arg]).await;
        let _ = std::fs::remove_file(&file);
        let output = result?;
        if !output.status.success() {
            return Err(WorkspaceError::Refused(format!(
                "the task's change does not apply cleanly to {}; nothing was changed:\n{}",
                checkout.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(Landed {
            commit: None,
            into,
            files,
            already: false,
        })
    }

    async fn copy_back(&self) -> Result<Landed, WorkspaceError> {
        let TaskChange::Copy { copy, source } = self else {
            return Err(WorkspaceError::Refused("not a copy".to_owned()));
        };
        let (copy, source) = (copy.clone(), source.clone());
        let into = source.display().to_string();
        let files =
            blocking(move || copy_changes::copy_back(&copy, &source, &manifest_path(&copy)))
                .await?;
        Ok(Landed {
            commit: None,
            into,
            already: files.is_empty(),
            files,
        })
    }

    /// The branch and its head, for a git task.
    pub fn branch(&self) -> Option<(&str, &str)> {
        match self {
            TaskChange::Git { branch, head, .. } => Some((branch, head)),
            TaskChange::Copy { .. } => None,
        }
    }
}

/// The parts of a git change a merge needs.
struct BranchRef<'a> {
    checkout: &'a Path,
    git_dir: &'a Path,
    branch: &'a str,
    head: &'a str,
    start: &'a str,
}

async fn merge_branch(
    change: &BranchRef<'_>,
    request: MergeRequest<'_>,
) -> Result<Landed, WorkspaceError> {
    let scope = GitScope::Repository {
        git_dir: change.git_dir,
        work_tree: Some(change.checkout),
    };
    let current = {
        let output = git_output(&scope, &["symbolic-ref", "--quiet", "--short", "HEAD"]).await?;
        let name = stdout_line(&output.stdout);
        (output.status.success() && !name.is_empty()).then_some(name)
    };
    let into = match (request.into, &current) {
        (Some(into), _) => into.to_owned(),
        (None, Some(current)) => current.clone(),
        (None, None) => {
            return Err(WorkspaceError::Refused(format!(
                "{} has a detached HEAD; name the branch to merge into with --into BRANCH",
                change.checkout.display()
            )))
        }
    };
    if into == change.branch {
        return Err(WorkspaceError::Refused(format!(
            "--into {into} is the task's own branch; name the branch to land it in"
        )));
    }
    let into_ref = format!("refs/heads/{into}");
    let Some(target) = rev_parse(&scope, &into_ref).await? else {
        return Err(WorkspaceError::Refused(format!(
            "there is no branch `{into}` in {}; create it or name another with --into",
            change.checkout.display()
        )));
    };
    let checked_out = current.as_deref() == Some(into.as_str());
    if checked_out {
        refuse_dirty(&scope, change.checkout).await?;
    }
    let files = changed_names(&scope, change.start, change.head).await?;
    let already = |commit: String| Landed {
        commit: Some(commit),
        into: into.clone(),
        files: files.clone(),
        already: true,
    };
    if is_ancestor(&scope, change.head, &target).await? {
        return Ok(already(target));
    }
    // The task and the head landed: a later landing of new work on the same branch (after a
    // reply) is not mistaken for this one.
    let trailer = format!("Orch-Task: {} {}", request.task_id, change.head);
    if has_trailer_since(&scope, change.start, &target, &trailer).await? {
        return Ok(already(target));
    }
    let commit = match request.mode {
        MergeMode::Merge => {
            let tree = merged_tree(&scope, &target, change.head, None).await?;
            let message = format!(
                "Merge task {}: {}\n\nBranch {}.\n\n{trailer}\n",
                request.task_id, request.title, change.branch
            );
            commit_tree(&scope, &tree, &[&target, change.head], &message).await?
        }
        MergeMode::Squash => {
            let tree = merged_tree(&scope, &target, change.head, None).await?;
            let message = format!(
                "{}\n\nTask {}, squashed from branch {}.\n\n{trailer}\n",
                request.title, request.task_id, change.branch
            );
            commit_tree(&scope, &tree, &[&target], &message).await?
        }
        MergeMode::Rebase => replay(&scope, change, &target, &trailer).await?,
    };
    if checked_out {
        move_checkout(&scope, change.checkout, &target, &commit).await?;
    }
    let reason = format!(
        "orch: land task {} ({})",
        request.task_id,
        request.mode.as_str()
    );
    let updated = git_output(
        &scope,
        &["update-ref", "-m", &reason, &into_ref, &commit, &target],
    )
    .await?;
    if !updated.status.success() {
        if checked_out {
            // Put the files back as they were; the branch never moved.
            let _ = git_output(&scope, &["read-tree", "-m", "-u", &commit, &target]).await;
        }
        return Err(WorkspaceError::Refused(format!(
            "the branch `{into}` moved while the task was being landed; nothing was changed, \
             try again: {}",
            String::from_utf8_lossy(&updated.stderr).trim()
        )));
    }
    Ok(Landed {
        commit: Some(commit),
        into,
        files,
        already: false,
    })
}

/// Refuse a checkout with changes to tracked files (staged or not), naming them.
async fn refuse_dirty(scope: &GitScope<'_>, checkout: &Path) -> Result<(), WorkspaceError> {
    // Without a refresh, files whose timestamps changed but content did not would count.
    let _ = git_output(scope, &["update-index", "-q", "--refresh"]).await?;
    let status = git(
        scope,
        &["status", "--porcelain=v1", "-z", "--untracked-files=no"],
    )
    .await?;
    let files: Vec<String> = status
        .split(|b| *b == 0)
        .filter(|entry| entry.len() > 3)
        .map(|entry| String::from_utf8_lossy(&entry[3..]).into_owned())
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    Err(WorkspaceError::Refused(format!(
        "refused: {} has uncommitted changes ({}); commit or stash them first. Nothing was \
         changed",
        checkout.display(),
        files.join(", ")
    )))
}

/// The tree of merging `theirs` into `ours` (with `base` as the merge base when given),
/// written as objects only; a conflict is refused naming the files.
async fn merged_tree(
    scope: &GitScope<'_>,
    ours: &str,
    theirs: &str,
    base: Option<&str>,
) -> Result<String, WorkspaceError> {
    let mut args = vec![
        "merge-tree".to_owned(),
        "--write-tree".to_owned(),
        "--name-only".to_owned(),
        "--no-messages".to_owned(),
    ];
    if let Some(base) = base {
        args.push(format!("--merge-base={base}"));
    }
    args.push(ours.to_owned());
    args.push(theirs.to_owned());
    let output = git_output(scope, &args).await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    let tree = lines.next().unwrap_or_default().trim().to_owned();
    match output.status.code() {
        Some(0) if !tree.is_empty() => Ok(tree),
        Some(1) => {
            let mut files: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
            files.dedup();
            Err(WorkspaceError::Refused(format!(
                "refused: the task's change conflicts with {ours_name} in {}; nothing was \
                 changed. Merge by hand (`git merge {theirs}`) or retry the task on the \
                 current code",
                files.join(", "),
                ours_name = "the target branch",
            )))
        }
        _ => Err(WorkspaceError::Git {
            args: args.join(" "),
            dir: PathBuf::new(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
    }
}

async fn commit_tree(
    scope: &GitScope<'_>,
    tree: &str,
    parents: &[&str],
    message: &str,
) -> Result<String, WorkspaceError> {
    let mut args = vec!["commit-tree", "--no-gpg-sign"];
    for parent in parents {
        args.push("-p");
        args.push(parent);
    }
    args.extend(["-m", message, tree]);
    Ok(stdout_line(&git(scope, &args).await?))
}

/// Replay the branch's commits (from its start) onto `target`; the last new commit.
async fn replay(
    scope: &GitScope<'_>,
    change: &BranchRef<'_>,
    target: &str,
    trailer: &str,
) -> Result<String, WorkspaceError> {
    let range = format!("{}..{}", change.start, change.head);
    let listed = git(scope, &["rev-list", "--reverse", "--parents", &range]).await?;
    let mut tip = target.to_owned();
    let commits: Vec<Vec<String>> = String::from_utf8_lossy(&listed)
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect();
    let count = commits.len();
    for (index, ids) in commits.iter().enumerate() {
        let [commit, parent] = ids.as_slice() else {
            return Err(WorkspaceError::Refused(format!(
                "the task's branch `{}` has merge commits, which --rebase does not replay; \
                 land it with the default merge or --squash",
                change.branch
            )));
        };
        let tree = merged_tree(scope, &tip, commit, Some(parent)).await?;
        let mut message = String::from_utf8_lossy(
            &git(scope, &["log", "-1", "--format=%B", commit.as_str()]).await?,
        )
        .trim_end()
        .to_owned();
        if index + 1 == count {
            message.push_str(&format!("\n\n{trailer}"));
        }
        message.push('\n');
        tip = commit_tree(scope, &tree, &[&tip], &message).await?;
    }
    Ok(tip)
}

/// Move the checkout's index and files from `from` to `to`; refused, changing nothing, when
/// that would overwrite a local change or an untracked file.
async fn move_checkout(
    scope: &GitScope<'_>,
    checkout: &Path,
    from: &str,
    to: &str,
) -> Result<(), WorkspaceError> {
    let output = git_output(scope, &["read-tree", "-m", "-u", from, to]).await?;
    if output.status.success() {
        return Ok(());
    }
    Err(WorkspaceError::Refused(format!(
        "refused: landing the task would overwrite files in {}; nothing was changed:\n{}",
        checkout.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

async fn changed_names(
    scope: &GitScope<'_>,
    start: &str,
    head: &str,
) -> Result<Vec<String>, WorkspaceError> {
    let names = git(
        scope,
        &[
            "diff",
            "--name-only",
            "--no-renames",
            "-z",
            start,
            head,
            "--",
        ],
    )
    .await?;
    Ok(names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

async fn is_ancestor(scope: &GitScope<'_>, commit: &str, of: &str) -> Result<bool, WorkspaceError> {
    let output = git_output(scope, &["merge-base", "--is-ancestor", commit, of]).await?;
    Ok(output.status.success())
}

/// Whether a commit on `tip` since `start` carries `trailer` (a landing made before a crash).
async fn has_trailer_since(
    scope: &GitScope<'_>,
    start: &str,
    tip: &str,
    trailer: &str,
) -> Result<bool, WorkspaceError> {
    let range = format!("{start}..{tip}");
    // The trailer is `Orch-Task: <id> <sha>`: letters, digits, a colon and spaces, which mean
    // themselves in a basic regular expression; anchored to a whole line.
    let pattern = format!("^{trailer}$");
    let found = git(scope, &["log", "--format=%H", "--grep", &pattern, &range]).await?;
    Ok(!found.is_empty())
}

async fn rev_parse(scope: &GitScope<'_>, name: &str) -> Result<Option<String>, WorkspaceError> {
    let output = git_output(
        scope,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{name}^{{commit}}"),
        ],
    )
    .await?;
    let line = stdout_line(&output.stdout);
    Ok((output.status.success() && !line.is_empty()).then_some(line))
}

/// The task's branch, its tip and the base recorded when it was made, from the base record
/// beside its worktree; `Refused` when there is none or the branch is gone.
async fn recorded_branch(
    worktrees: &Path,
    main: &MainRepository,
    task_id: i64,
) -> Result<(String, String, String), WorkspaceError> {
    let record_path = worktrees
        .join(worktree_group_name(&main.toplevel))
        .join(format!("{task_id}.base"));
    let record = std::fs::read(&record_path)
        .ok()
        .as_deref()
        .and_then(parse_record)
        .ok_or_else(|| {
            WorkspaceError::Refused(format!(
                "task {task_id} has no branch recorded in this home ({} is missing): it has not \
                 run yet, or it ran on a remote worker, whose home and checkout hold the branch",
                record_path.display()
            ))
        })?;
    let scope = GitScope::Repository {
        git_dir: &main.git_dir,
        work_tree: None,
    };
    let head = rev_parse(&scope, &format!("refs/heads/{}", record.branch))
        .await?
        .ok_or_else(|| {
            WorkspaceError::Refused(format!(
                "the branch `{}` of task {task_id} no longer exists in {}",
                record.branch,
                main.toplevel.display()
            ))
        })?;
    Ok((record.branch, head, record.base_commit))
}

fn canonical_dir(dir: &Path) -> Result<PathBuf, WorkspaceError> {
    std::fs::canonicalize(dir).map_err(io_error(format!("resolve {}", dir.display())))
}
