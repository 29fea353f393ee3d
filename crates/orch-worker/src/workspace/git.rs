//! orch's own git: the one hardened runner every git command orch makes goes through
//! (workspaces, retention and `orch gc`, `orch demo`), so that git obeys nothing a task planted.
//!
//! # Why the git CLI, locked down, and not gitoxide in process
//! gitoxide (`gix`) would run no foreign program at all, but orch needs `worktree add` with a
//! checkout, `add -A` honouring `.gitignore` and attributes exactly as git does, a binary diff
//! that `git apply` takes, commits and ref updates; gix covers these only partly (worktree
//! creation and `add` semantics are not at parity with git, and the diff would have to be
//! written by us), and any difference shows up as a patch or commit the user's git disagrees
//! with. The CLI is the reference behaviour; what made it dangerous is only where it looks and
//! what it obeys, and both are closed here:
//!
//! - **Where it looks: never discovered.** A task's worktree is named by the places recorded
//!   when orch made it (see `places.rs`): `GIT_DIR` is the repository's *common* directory (the
//!   main checkout's `.git`), `GIT_WORK_TREE` the worktree, `GIT_INDEX_FILE` an index orch names.
//!   The worktree's `.git` file and its admin dir's `HEAD`, `commondir`, `gitdir`, `config.worktree`,
//!   `hooks/`, `info/` (all writable by the task) are therefore never read by orch's git, and
//!   orch commits onto `refs/heads/<recorded branch>` with plumbing, never through a `HEAD` the
//!   task could point at `main`. Only the main checkout is found by discovery, once, from the
//!   project directory, which the task cannot write.
//! - **What it obeys: only the main repository's own config.** The environment is cleared (only
//!   `PATH`, `LANG`/`LC_ALL=C`, `HOME=/nonexistent` and the `GIT_*` variables set here reach git:
//!   never the daemon's tokens, nor a `GIT_DIR` or `GIT_EXTERNAL_DIFF` orch itself inherited),
//!   `GIT_CONFIG_NOSYSTEM=1` and `GIT_CONFIG_GLOBAL=/dev/null` drop system and user config, and
//!   `-c` overrides (which outrank every config file and reach git's own child processes through
//!   `GIT_CONFIG_PARAMETERS`) switch off everything that runs a program or changes what is read:
//!   hooks (`core.hooksPath=/dev/null`; plumbing runs none anyway), `core.fsmonitor`, the
//!   untracked cache, the pager, split index and sparse checkout, signing (`gpg.program` is then
//!   never run), automatic gc/maintenance, credential helpers and every transport
//!   (`protocol.allow=never`, so `core.sshCommand`/`core.askPass` have nothing to serve). Diffs
//!   pass `--no-ext-diff --no-textconv` (`-c diff.external=` is not used: git treats an empty
//!   value as a command named ""), so a `.gitattributes` naming a diff or textconv driver runs
//!   nothing; a `filter=` attribute runs a driver only if the main repository's own config defines
//!   it. Aliases cannot replace the built-in commands orch calls.
//!
//! The trusted config is therefore exactly the main repository's `.git/config` (and what it
//! includes): the user wrote it and a task cannot write it (the sandbox gives a task its own
//! admin dir and the object store, nothing else of `.git`). `include.path`/`includeIf` in a
//! planted `config.worktree` or admin-dir `config` are never read, because those files are
//! never read; `extensions.worktreeConfig` only ever selects the main worktree's
//! `config.worktree` here. `safe.directory` is left at git's default (only the project directory
//! is discovered, and a repository owned by another user is refused as git refuses it).
//!
//! [`git_command`] is the single place a git `Command` is built (program, arguments,
//! environment, directory), so the spawn module can take it over whole.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use orch_process::{Io, Spawn};

use super::places::GitPlaces;
use super::WorkspaceError;

/// How often an operation that lost a race with another git process of the same repository is
/// tried in all.
const CONTENTION_ATTEMPTS: u32 = 6;

/// The `-c` settings every git command gets; they outrank every config file (see the module
/// documentation for why each is here).
const LOCKED_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.pager=cat",
    "core.splitIndex=false",
    "core.sparseCheckout=false",
    "core.askPass=",
    "credential.helper=",
    "protocol.allow=never",
    "submodule.recurse=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "user.name=orch",
    "user.email=orch@localhost",
];

/// The environment variables the hardened runner may pass to git, besides the `GIT_*` it sets
/// for the scope (`GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE`).
pub const ENVIRONMENT_WHITELIST: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_CONFIG_GLOBAL",
    "GIT_ATTR_NOSYSTEM",
    "GIT_TERMINAL_PROMPT",
    "GIT_OPTIONAL_LOCKS",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
];

/// Which repository a git command works on, always said explicitly.
#[derive(Debug, Clone, Copy)]
pub enum GitScope<'a> {
    /// Find the repository containing `dir` by git's discovery. Only for the project directory
    /// (the main checkout, which tasks cannot write) and for a repository orch creates itself.
    Discover {
        /// Where to start.
        dir: &'a Path,
    },
    /// A repository named by its git directory (the main checkout's), with its work tree when
    /// the command needs one.
    Repository {
        /// `GIT_DIR`.
        git_dir: &'a Path,
        /// `GIT_WORK_TREE`; without it git gets no work tree to look at.
        work_tree: Option<&'a Path>,
    },
    /// A task's worktree through the places recorded when orch made it: the repository's common
    /// directory, the worktree, and an index orch names.
    Worktree {
        /// The recorded places.
        places: &'a GitPlaces,
        /// `GIT_INDEX_FILE`: the worktree's own index (in its admin dir) or a scratch copy.
        index: &'a Path,
    },
}

impl GitScope<'_> {
    /// The directory the command runs in (and error messages name).
    fn dir(&self) -> &Path {
        match self {
            GitScope::Discover { dir } => dir,
            GitScope::Repository {
                work_tree: Some(work_tree),
                ..
            } => work_tree,
            GitScope::Repository { git_dir, .. } => git_dir,
            GitScope::Worktree { places, .. } => &places.worktree,
        }
    }
}

/// Build the git command for `args` in `scope`: cleared environment, no system or user config,
/// explicit repository, and the [`LOCKED_CONFIG`] overrides before `args`. Every git process
/// orch starts is built here.
pub fn git_command<S: AsRef<OsStr>>(scope: &GitScope<'_>, args: &[S]) -> Spawn {
    let mut env: Vec<(&str, &OsStr)> = Vec::new();
    // PATH is the one thing taken from orch's environment: git finds itself and its helpers
    // through it. Nothing else of the daemon (tokens, GIT_DIR, GIT_EXTERNAL_DIFF...) passes.
    let path = std::env::var_os("PATH");
    if let Some(path) = &path {
        env.push(("PATH", path));
    }
    env.extend([
        // No `~/.gitconfig`, `~/.config/git/{config,attributes,ignore}`: nothing user-level.
        ("HOME", OsStr::new("/nonexistent")),
        // Lock contention is recognised by git's English messages.
        ("LANG", OsStr::new("C")),
        ("LC_ALL", OsStr::new("C")),
        ("GIT_CONFIG_NOSYSTEM", OsStr::new("1")),
        ("GIT_CONFIG_GLOBAL", OsStr::new("/dev/null")),
        ("GIT_ATTR_NOSYSTEM", OsStr::new("1")),
        ("GIT_TERMINAL_PROMPT", OsStr::new("0")),
        // Read-only commands then skip refreshing the index, so they never take its lock.
        ("GIT_OPTIONAL_LOCKS", OsStr::new("0")),
        ("GIT_NO_REPLACE_OBJECTS", OsStr::new("1")),
    ]);
    match scope {
        GitScope::Discover { .. } => {}
        GitScope::Repository { git_dir, work_tree } => {
            env.push(("GIT_DIR", git_dir.as_os_str()));
            if let Some(work_tree) = work_tree {
                env.push(("GIT_WORK_TREE", work_tree.as_os_str()));
            }
        }
        GitScope::Worktree { places, index } => {
            env.push(("GIT_DIR", places.common_dir.as_os_str()));
            env.push(("GIT_WORK_TREE", places.worktree.as_os_str()));
            env.push(("GIT_INDEX_FILE", index.as_os_str()));
        }
    }
    let mut argv: Vec<&OsStr> = Vec::new();
    for setting in LOCKED_CONFIG {
        argv.push(OsStr::new("-c"));
        argv.push(OsStr::new(setting));
    }
    argv.extend(args.iter().map(AsRef::as_ref));
    // orch's own git runs outside the task sandbox (it must write the main repository's refs),
    // which is why it obeys nothing the task can write; it stays in orch's process group.
    Spawn::new("git")
        .args(argv)
        .envs(env)
        .cwd(scope.dir())
        .stdio(Io::Null, Io::Piped, Io::Piped)
        .in_callers_group()
        // A git stopped half-way leaves its lock files behind for every later command; letting
        // it finish is the lesser harm.
        .finish_when_dropped()
}

/// The finished output of a git command, whatever its exit status.
pub(super) struct GitOutput {
    pub(super) status: std::process::ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

/// Run git; its stdout, or an error carrying its stderr when it exits non-zero.
pub(super) async fn git<S: AsRef<OsStr>>(
    scope: &GitScope<'_>,
    args: &[S],
) -> Result<Vec<u8>, WorkspaceError> {
    let output = git_output(scope, args).await?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(git_failure(scope, args, &output))
    }
}

/// Run git and collect its output; an error only when it cannot be started.
pub(super) async fn git_output<S: AsRef<OsStr>>(
    scope: &GitScope<'_>,
    args: &[S],
) -> Result<GitOutput, WorkspaceError> {
    let output = git_command(scope, args)
        .output()
        .await
        .map_err(|source| WorkspaceError::Io {
            context: format!(
                "run `git {}` in {} (is git installed and on PATH?)",
                display_args(args),
                scope.dir().display()
            ),
            source: std::io::Error::other(source),
        })?;
    Ok(GitOutput {
        status: output.status,
        stdout: output.stdout,
        stderr: output.stderr,
    })
}

pub(super) fn git_failure<S: AsRef<OsStr>>(
    scope: &GitScope<'_>,
    args: &[S],
    output: &GitOutput,
) -> WorkspaceError {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stderr = if stderr.is_empty() {
        format!("exited with {}", output.status)
    } else {
        stderr
    };
    WorkspaceError::Git {
        args: display_args(args),
        dir: scope.dir().to_path_buf(),
        stderr,
    }
}

fn display_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|arg| arg.as_ref().to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Retry `operation` while it fails only because another git process of the same repository
/// was busy (see [`is_transient_contention`]).
pub(super) async fn retry_on_contention<T, F, Fut>(mut operation: F) -> Result<T, WorkspaceError>
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

/// The first line of a command's output.
pub(super) fn stdout_line(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}
