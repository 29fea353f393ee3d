//! Placing a task's git worktree: finding the main repository, choosing the task's branch,
//! inspecting, reusing or (re)creating the worktree, and its base record.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::git::{git, git_failure, git_output, retry_on_contention, stdout_line};
use super::places::{self, Finding};
use super::start::{compute_start, read_ownership, record_ownership, Ownership, Start, TaskKey};
use super::{
    blocking, branch_name, canonical, io_error, parse_record, remove_dir_if_present,
    remove_worktree, BaseRecord, GitPlaces, GitScope, Workspace, WorkspaceError, WorkspaceRequest,
};

/// The main checkout: where git found the repository from the project directory.
pub(super) struct MainRepository {
    /// The main checkout's top directory, canonical.
    pub(super) toplevel: PathBuf,
    /// Its git directory (its `.git`, or its admin dir if the project is itself a worktree).
    pub(super) git_dir: PathBuf,
    /// The repository's common git directory (shared by all its worktrees), canonical.
    pub(super) common_dir: PathBuf,
}

/// The repository containing `project_dir`, or `None` when it is in none. The one place git
/// discovers a repository: the project directory is the main checkout, which tasks cannot write.
pub(super) async fn main_repository(
    project_dir: &Path,
) -> Result<Option<MainRepository>, WorkspaceError> {
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
    /// The task, as its branch is recorded in the repository.
    key: TaskKey,
    /// Where the branch starts, as recorded in the repository (`None`: not recorded yet).
    start: Option<Start>,
    /// What a new branch starts from.
    start_request: super::StartRequest,
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

pub(super) async fn prepare_worktree(
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
    let key = TaskKey {
        id: request.task_id,
        created_at: request.task_created_at,
    };
    // The task's own branch, whoever made it: recorded in the repository (see `start.rs`).
    let (branch, start) = match read_ownership(&main.common_dir, key).await? {
        Some(owned) => (owned.branch, Some(owned.start)),
        None => (choose_branch(request, &main, &path, &record).await?, None),
    };
    let target = WorktreeTarget {
        main,
        path,
        record,
        branch,
        base_branch: request.base_branch.clone(),
        key,
        start,
        start_request: request.start.clone(),
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
            let start = start_of_existing_branch(target, &places).await?;
            tracing::info!(path = %target.path.display(), branch = %target.branch, "reusing worktree");
            return Ok(git_workspace(target, start, places));
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
        // `--force`: the branch may still be checked out in the worktree of a lost attempt in
        // another worker's home. orch commits onto the branch's ref, never through a worktree's
        // HEAD, so the task continues here on its one branch; the stale worktree is retention's.
        add_worktree(
            target,
            &[
                OsStr::new("--force"),
                target.path.as_os_str(),
                OsStr::new(&target.branch),
            ],
        )
        .await?;
        let places = located(target).await?;
        let start = start_of_existing_branch(target, &places).await?;
        tracing::info!(path = %target.path.display(), branch = %target.branch, "recreated worktree on existing branch");
        return Ok(git_workspace(target, start, places));
    }
    let start = start_of_new_branch(target).await?;
    let base_commit = start.commit.clone();
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
    tracing::info!(path = %target.path.display(), branch = %target.branch, base = %base_commit, from = start.from.as_str(), "created worktree");
    Ok(git_workspace(target, start, places))
}

/// The start of a branch about to be created: the recorded one while its commit exists, else
/// computed (base or dependencies) and recorded before the branch exists, so a branch never
/// exists without its ownership record.
async fn start_of_new_branch(target: &WorktreeTarget) -> Result<Start, WorkspaceError> {
    if let Some(start) = &target.start {
        if commit_exists(target, &start.commit).await? {
            return Ok(start.clone());
        }
    }
    let scope = target.main_scope();
    let start = compute_start(
        &scope,
        &target.main.common_dir,
        &target.start_request,
        resolve_base(target),
    )
    .await?;
    let ownership = Ownership {
        branch: target.branch.clone(),
        start,
    };
    // Replaced only when the recorded start commit is gone (collected by a `git gc` before the
    // branch was made); otherwise a record written meanwhile wins.
    let recorded = record_ownership(
        &target.main.common_dir,
        target.key,
        ownership,
        target.start.is_some(),
    )
    .await?;
    if recorded.branch != target.branch {
        return Err(WorkspaceError::Git {
            args: "worktree add".to_string(),
            dir: target.path.clone(),
            stderr: format!(
                "task {} was given the branch `{}` by another worker meanwhile; the task will be \
                 retried on it",
                target.key.id, recorded.branch
            ),
        });
    }
    Ok(recorded.start)
}

/// The start of a branch that exists: the recorded one, else (a branch made by an orch that did
/// not record ownership) the base record's or the merge base, recorded now.
async fn start_of_existing_branch(
    target: &WorktreeTarget,
    places: &GitPlaces,
) -> Result<Start, WorkspaceError> {
    if let Some(start) = &target.start {
        let record = read_base_record(target).await?;
        if record.as_ref().map(|r| (&r.base_commit, r.places.as_ref()))
            != Some((&start.commit, Some(places)))
        {
            write_base_record(target, &start.commit, Some(places)).await?;
        }
        return Ok(start.clone());
    }
    let commit = base_commit_of_existing_branch(target, places).await?;
    let ownership = Ownership {
        branch: target.branch.clone(),
        start: Start {
            commit,
            from: orch_core::StartFrom::Base,
            branches: Vec::new(),
        },
    };
    let recorded = record_ownership(&target.main.common_dir, target.key, ownership, false).await?;
    Ok(recorded.start)
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

fn git_workspace(target: &WorktreeTarget, start: Start, places: GitPlaces) -> Workspace {
    Workspace::Git {
        path: target.path.clone(),
        branch: target.branch.clone(),
        base_commit: start.commit.clone(),
        places,
        start,
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
pub(super) fn worktree_group_name(toplevel: &Path) -> String {
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
