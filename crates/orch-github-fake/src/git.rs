//! The git side of a fake repository: its bare repository on disk, branch tips, mergeability and
//! real merges (merge, squash, rebase) done with plumbing, so the remote's base branch moves.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs git in the bare repository `bare` with no user or system configuration.
pub fn git(bare: &Path, args: &[&str]) -> Result<String> {
    git_with_env(bare, args, &[])
}

fn git_with_env(bare: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Fake GitHub")
        .env("GIT_AUTHOR_EMAIL", "noreply@fake-github.invalid")
        .env("GIT_COMMITTER_NAME", "Fake GitHub")
        .env("GIT_COMMITTER_EMAIL", "noreply@fake-github.invalid")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Creates a bare repository whose HEAD is `default_branch`, with one commit holding a README.
pub fn init_bare(bare: &Path, default_branch: &str, readme: &str) -> Result<String> {
    std::fs::create_dir_all(bare).with_context(|| format!("create {}", bare.display()))?;
    let output = Command::new("git")
        .args(["init", "--bare", "--quiet"])
        .arg(format!("--initial-branch={default_branch}"))
        .arg(bare)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .context("run git init --bare")?;
    if !output.status.success() {
        bail!(
            "git init --bare failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let blob = hash_blob(bare, readme)?;
    let tree = mktree(bare, &format!("100644 blob {blob}\tREADME.md\n"))?;
    let commit = git(bare, &["commit-tree", &tree, "-m", "Initial commit"])?;
    git(
        bare,
        &[
            "update-ref",
            &format!("refs/heads/{default_branch}"),
            &commit,
        ],
    )?;
    Ok(commit)
}

fn hash_blob(bare: &Path, content: &str) -> Result<String> {
    piped(bare, &["hash-object", "-w", "--stdin"], content)
}

fn mktree(bare: &Path, listing: &str) -> Result<String> {
    piped(bare, &["mktree"], listing)
}

fn piped(bare: &Path, args: &[&str], input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run git {}", args.join(" ")))?;
    child
        .stdin
        .take()
        .context("git's stdin")?
        .write_all(input.as_bytes())
        .context("write to git")?;
    let output = child.wait_with_output().context("wait for git")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Commits `files` (path → content) on top of `branch` (created from the default branch's tip
/// `from` when missing); returns the new tip.
pub fn commit_files(
    bare: &Path,
    branch: &str,
    from: &str,
    files: &[(&str, &str)],
    message: &str,
) -> Result<String> {
    let parent = tip(bare, branch)?.map_or_else(|| resolve(bare, from), Ok)?;
    let index = tempfile::NamedTempFile::new().context("create a temporary index")?;
    let index_path = index.path().to_string_lossy().into_owned();
    let env = [("GIT_INDEX_FILE", index_path.as_str())];
    git_with_env(bare, &["read-tree", &parent], &env)?;
    for (path, content) in files {
        let blob = hash_blob(bare, content)?;
        git_with_env(
            bare,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},{path}"),
            ],
            &env,
        )?;
    }
    let tree = git_with_env(bare, &["write-tree"], &env)?;
    let commit = git(bare, &["commit-tree", &tree, "-p", &parent, "-m", message])?;
    git(
        bare,
        &["update-ref", &format!("refs/heads/{branch}"), &commit],
    )?;
    Ok(commit)
}

/// The commit a branch points at, if the branch exists.
pub fn tip(bare: &Path, branch: &str) -> Result<Option<String>> {
    match git(
        bare,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}^{{commit}}"),
        ],
    ) {
        Ok(sha) if !sha.is_empty() => Ok(Some(sha)),
        _ => Ok(None),
    }
}

/// A commit named by a branch or a sha.
pub fn resolve(bare: &Path, name: &str) -> Result<String> {
    if let Some(sha) = tip(bare, name)? {
        return Ok(sha);
    }
    git(
        bare,
        &["rev-parse", "--verify", &format!("{name}^{{commit}}")],
    )
    .with_context(|| format!("no branch or commit {name}"))
}

/// Whether `head` merges into `base` without conflicts.
pub fn mergeable(bare: &Path, base: &str, head: &str) -> Result<bool> {
    let (Some(base), Some(head)) = (tip(bare, base)?, tip(bare, head)?) else {
        return Ok(false);
    };
    Ok(merge_tree(bare, &base, &head, None)?.is_some())
}

/// The tree of `ours` merged with `theirs` (optionally from a given merge base), or `None` on a
/// conflict.
fn merge_tree(
    bare: &Path,
    ours: &str,
    theirs: &str,
    merge_base: Option<&str>,
) -> Result<Option<String>> {
    let mut command = Command::new("git");
    command
        .arg("--git-dir")
        .arg(bare)
        .args(["merge-tree", "--write-tree"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    if let Some(merge_base) = merge_base {
        command.arg(format!("--merge-base={merge_base}"));
    }
    let output = command
        .arg(ours)
        .arg(theirs)
        .output()
        .context("run git merge-tree")?;
    match output.status.code() {
        Some(0) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            Ok(stdout.lines().next().map(str::to_owned))
        }
        Some(1) => Ok(None),
        _ => bail!(
            "git merge-tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Merges `head` into `base` with `method` (`merge`, `squash` or `rebase`), moving `base`;
/// returns the new tip of `base`, or `None` on a conflict.
pub fn merge(
    bare: &Path,
    base: &str,
    head: &str,
    method: &str,
    title: &str,
) -> Result<Option<String>> {
    let base_tip = tip(bare, base)?.with_context(|| format!("no base branch {base}"))?;
    let head_tip = tip(bare, head)?.with_context(|| format!("no head branch {head}"))?;
    let new_tip = match method {
        "merge" => {
            let Some(tree) = merge_tree(bare, &base_tip, &head_tip, None)? else {
                return Ok(None);
            };
            git(
                bare,
                &[
                    "commit-tree",
                    &tree,
                    "-p",
                    &base_tip,
                    "-p",
                    &head_tip,
                    "-m",
                    title,
                ],
            )?
        }
        "squash" => {
            let Some(tree) = merge_tree(bare, &base_tip, &head_tip, None)? else {
                return Ok(None);
            };
            git(bare, &["commit-tree", &tree, "-p", &base_tip, "-m", title])?
        }
        "rebase" => {
            // Replays each commit of head that base lacks, oldest first.
            let listing = git(
                bare,
                &[
                    "rev-list",
                    "--reverse",
                    "--no-merges",
                    &format!("{base_tip}..{head_tip}"),
                ],
            )?;
            let mut current = base_tip.clone();
            for commit in listing.lines().filter(|line| !line.is_empty()) {
                let parent = git(bare, &["rev-parse", &format!("{commit}^")])?;
                let Some(tree) = merge_tree(bare, &current, commit, Some(&parent))? else {
                    return Ok(None);
                };
                let message = git(bare, &["log", "-1", "--format=%B", commit])?;
                current = git(
                    bare,
                    &["commit-tree", &tree, "-p", &current, "-m", &message],
                )?;
            }
            current
        }
        other => bail!("unknown merge method {other}"),
    };
    git(
        bare,
        &[
            "update-ref",
            &format!("refs/heads/{base}"),
            &new_tip,
            &base_tip,
        ],
    )?;
    Ok(Some(new_tip))
}

/// The content of `path` at the tip of `branch`.
pub fn read_file(bare: &Path, branch: &str, path: &str) -> Result<String> {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(["cat-file", "blob", &format!("refs/heads/{branch}:{path}")])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .context("run git cat-file")?;
    if !output.status.success() {
        bail!(
            "no {path} on {branch}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
