//! Bringing a task's branch up to date with its pull request's base (issue 12, the conflict
//! follow-up): the base branch is fetched from the remote (the same door as a push: the
//! transport of the remote's scheme and, for https, orch's credential helper reading the token
//! from an environment variable given to this one git process; never a token in argv, a URL or
//! a config file) into a private ref, and merged into the task's branch with plumbing
//! (`merge-tree --write-tree`, `commit-tree`, a compare-and-swap `update-ref`), in orch's own
//! process, never inside a step's sandbox.
//!
//! A merge, not a rebase: the merge commit's first parent is the branch's tip (the commit pushed
//! last), so the next push is a fast-forward of the pull request's head and the base's commits
//! become its ancestors. A clean merge is the whole change; a conflicting one is committed with
//! git's conflict markers in the conflicted files, and the follow-up run that starts next (it
//! begins by resetting the worktree to the branch's tip) has the agent resolve them; orch
//! commits what the agent leaves on top, and the forge sync pushes it.
//!
//! Crash safety: the merge commit names the base commit in an `Orch-Merge-Base:` trailer. A
//! merge made before a crash (the branch moved, the follow-up not yet recorded) is found again
//! by [`prepared_merge`] and reused, never made twice.

use std::path::Path;

use super::git::{git, git_command, git_failure, git_output, stdout_line, GitOutput, GitScope};
use super::push::{credential_helper, remote_url, transport, ForgeToken, TOKEN_VAR};
use super::WorkspaceError;

/// The trailer of orch's merge commits naming the base commit they merged.
pub const MERGE_BASE_TRAILER: &str = "Orch-Merge-Base: ";

/// Most characters of a conflicted file shown to the agent.
const MAX_FILE_CHARS: usize = 4_000;

/// Most conflicted files shown with their text.
const MAX_FILES_SHOWN: usize = 10;

/// Merge the pull request's base into a task's branch.
#[derive(Debug, Clone)]
pub struct BaseMergeRequest<'a> {
    /// The main checkout (its repository holds the task's branch).
    pub project_dir: &'a Path,
    /// The remote: a name of the main repository's config or a URL.
    pub remote: &'a str,
    /// The pull request's base branch on the remote.
    pub base_branch: &'a str,
    /// The task's branch.
    pub branch: &'a str,
    /// The task (names the private ref the base is fetched into).
    pub task: i64,
    /// The token for https remotes.
    pub token: Option<&'a ForgeToken>,
}

/// One file left with conflict markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictedFile {
    /// Its path in the repository.
    pub path: String,
    /// Its text with the markers (clipped; empty for a binary file).
    pub text: String,
}

/// What the merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseMerge {
    /// The base commit fetched.
    pub base_commit: String,
    /// The merge commit now at the branch's tip (`None`: the base was already merged).
    pub merge_commit: Option<String>,
    /// The files left with conflict markers for the agent.
    pub conflicted: Vec<ConflictedFile>,
}

/// Fetch the base and merge it into the task's branch (or find the merge made before a
/// crash).
pub async fn merge_base(request: &BaseMergeRequest<'_>) -> Result<BaseMerge, WorkspaceError> {
    let scope = GitScope::Discover {
        dir: request.project_dir,
    };
    let base_commit = fetch_base(request).await?;
    let reference = format!("refs/heads/{}", request.branch);
    let tip = rev_parse(&scope, &format!("{reference}^{{commit}}")).await?;
    if let Some(prepared) = prepared_merge(request.project_dir, request.branch).await? {
        if prepared.base_commit == base_commit {
            return Ok(prepared);
        }
    }
    if is_ancestor(&scope, &base_commit, &tip).await? {
        return Ok(BaseMerge {
            base_commit,
            merge_commit: None,
            conflicted: Vec::new(),
        });
    }
    let (tree, conflicted) = merge_tree(&scope, &tip, &base_commit).await?;
    let mut message = format!(
        "orch: merge `{}` into {}\n\n",
        request.base_branch, request.branch
    );
    if !conflicted.is_empty() {
        message.push_str("Conflicts left for the agent to resolve:\n");
        for path in &conflicted {
            message.push_str(&format!("  {path}\n"));
        }
        message.push('\n');
    }
    message.push_str(&format!(
        "Orch-Task: {}\n{MERGE_BASE_TRAILER}{base_commit}\n",
        request.task
    ));
    let commit = stdout_line(
        &git(
            &scope,
            &[
                "commit-tree",
                "--no-gpg-sign",
                "-p",
                &tip,
                "-p",
                &base_commit,
                "-m",
                &message,
                &tree,
            ],
        )
        .await?,
    );
    // From the tip read above only: a branch moved meanwhile fails here.
    git(
        &scope,
        &[
            "update-ref",
            "-m",
            "orch: merge the pull request's base",
            &reference,
            &commit,
            &tip,
        ],
    )
    .await?;
    let conflicted = file_texts(&scope, &commit, conflicted).await?;
    Ok(BaseMerge {
        base_commit,
        merge_commit: Some(commit),
        conflicted,
    })
}

/// The merge of the base orch made at the branch's tip, if the tip is one: its first parent is
/// what was there before, and the conflicts are computed again from its parents.
pub async fn prepared_merge(
    project_dir: &Path,
    branch: &str,
) -> Result<Option<BaseMerge>, WorkspaceError> {
    let scope = GitScope::Discover { dir: project_dir };
    let reference = format!("refs/heads/{branch}^{{commit}}");
    let text = String::from_utf8_lossy(
        &git(
            &scope,
            &["log", "-1", "--format=%H %P%x00%B", &reference, "--"],
        )
        .await?,
    )
    .into_owned();
    let Some((ids, body)) = text.split_once('\0') else {
        return Ok(None);
    };
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let [commit, first, second] = ids.as_slice() else {
        return Ok(None);
    };
    let Some(base) = body
        .lines()
        .find_map(|line| line.trim().strip_prefix(MERGE_BASE_TRAILER.trim_end()))
        .map(str::trim)
    else {
        return Ok(None);
    };
    if base != *second {
        return Ok(None);
    }
    let (_, conflicted) = merge_tree(&scope, first, second).await?;
    let conflicted = file_texts(&scope, commit, conflicted).await?;
    Ok(Some(BaseMerge {
        base_commit: (*second).to_owned(),
        merge_commit: Some((*commit).to_owned()),
        conflicted,
    }))
}

/// The first parent of the branch's tip when the tip is orch's merge of a base: what the branch
/// was before it.
pub async fn before_prepared_merge(
    project_dir: &Path,
    branch: &str,
) -> Result<Option<String>, WorkspaceError> {
    let scope = GitScope::Discover { dir: project_dir };
    if prepared_merge(project_dir, branch).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(
        rev_parse(&scope, &format!("refs/heads/{branch}^1")).await?,
    ))
}

/// Fetch the base branch into `refs/orch/base/task-<id>`; its commit.
async fn fetch_base(request: &BaseMergeRequest<'_>) -> Result<String, WorkspaceError> {
    let refused = |stderr: String| WorkspaceError::Git {
        args: "fetch".into(),
        dir: request.project_dir.to_owned(),
        stderr,
    };
    if !valid_branch(request.base_branch) {
        return Err(refused(format!(
            "`{}` is not a branch name orch fetches",
            request.base_branch
        )));
    }
    let url = remote_url(request.project_dir, request.remote).await?;
    let transport = transport(&url).map_err(refused)?;
    let with_token = request.token.is_some() && transport != "file";
    let private = format!("refs/orch/base/task-{}", request.task);
    let mut args = vec![
        "-c".to_owned(),
        format!("protocol.{transport}.allow=always"),
    ];
    if with_token {
        args.extend([
            "-c".to_owned(),
            "credential.helper=".to_owned(),
            "-c".to_owned(),
            format!("credential.helper={}", credential_helper()),
        ]);
    }
    args.extend([
        "fetch".to_owned(),
        "--quiet".to_owned(),
        "--no-tags".to_owned(),
        "--no-write-fetch-head".to_owned(),
        "--no-recurse-submodules".to_owned(),
        url,
        format!("+refs/heads/{}:{private}", request.base_branch),
    ]);
    let scope = GitScope::Discover {
        dir: request.project_dir,
    };
    let mut command = git_command(&scope, &args);
    if let (true, Some(token)) = (with_token, request.token) {
        command = command.envs([(TOKEN_VAR, token.expose())]);
    }
    let output = command
        .output()
        .await
        .map_err(|source| WorkspaceError::Io {
            context: format!("run `git fetch` in {}", request.project_dir.display()),
            source: std::io::Error::other(source),
        })?;
    let output = GitOutput {
        status: output.status,
        stdout: output.stdout,
        stderr: output.stderr,
    };
    if !output.status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.starts_with("credential.helper=!") {
                    "credential.helper=<orch>".to_owned()
                } else {
                    a.clone()
                }
            })
            .collect();
        return Err(git_failure(&scope, &shown, &output));
    }
    rev_parse(&scope, &format!("{private}^{{commit}}")).await
}

/// The merged tree of `ours` and `theirs` and the paths left conflicted in it.
async fn merge_tree(
    scope: &GitScope<'_>,
    ours: &str,
    theirs: &str,
) -> Result<(String, Vec<String>), WorkspaceError> {
    let args = [
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
        ours,
        theirs,
    ];
    let output = git_output(scope, &args).await?;
    // 0: clean; 1: conflicts (the tree holds the markers); anything else failed.
    if !matches!(output.status.code(), Some(0 | 1)) {
        return Err(git_failure(scope, &args, &output));
    }
    let mut fields = output.stdout.split(|byte| *byte == 0);
    let tree = String::from_utf8_lossy(fields.next().unwrap_or_default())
        .trim()
        .to_owned();
    let mut conflicted: Vec<String> = Vec::new();
    for field in fields {
        if field.is_empty() {
            break;
        }
        let path = String::from_utf8_lossy(field).into_owned();
        if !conflicted.contains(&path) {
            conflicted.push(path);
        }
    }
    Ok((tree, conflicted))
}

/// The text of each conflicted file at `commit` (clipped; the first few files only).
async fn file_texts(
    scope: &GitScope<'_>,
    commit: &str,
    paths: Vec<String>,
) -> Result<Vec<ConflictedFile>, WorkspaceError> {
    let mut files = Vec::with_capacity(paths.len());
    for (i, path) in paths.into_iter().enumerate() {
        let mut text = String::new();
        if i < MAX_FILES_SHOWN {
            let object = format!("{commit}:{path}");
            let output = git_output(scope, &["cat-file", "blob", &object]).await?;
            if output.status.success() && !output.stdout.contains(&0) {
                text = String::from_utf8_lossy(&output.stdout)
                    .chars()
                    .take(MAX_FILE_CHARS)
                    .collect();
            }
        }
        files.push(ConflictedFile { path, text });
    }
    Ok(files)
}

async fn rev_parse(scope: &GitScope<'_>, name: &str) -> Result<String, WorkspaceError> {
    Ok(stdout_line(
        &git(scope, &["rev-parse", "--verify", "--end-of-options", name]).await?,
    ))
}

async fn is_ancestor(
    scope: &GitScope<'_>,
    ancestor: &str,
    descendant: &str,
) -> Result<bool, WorkspaceError> {
    let args = ["merge-base", "--is-ancestor", ancestor, descendant];
    let output = git_output(scope, &args).await?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(git_failure(scope, &args, &output)),
    }
}

/// A branch name orch fetches: what git accepts, without option-like or range syntax.
fn valid_branch(branch: &str) -> bool {
    !branch.is_empty()
        && !branch.starts_with('-')
        && !branch.starts_with('/')
        && !branch.ends_with('/')
        && !branch.ends_with(".lock")
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.contains("@{")
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}
