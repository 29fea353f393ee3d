//! Shared helpers for the exec tests: a real workspace in a temp dir with a victim file outside
//! it, commands, running a step the way the worker does, and checks on real processes.

// Each exec test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use orch_core::Command;
use orch_worker::exec::{self, CommandRecord, ExecPolicy, OutputPaths, ValidationError};
use orch_worker::redact::Redactor;
use tokio_util::sync::CancellationToken;

/// What the victim file outside the workspace holds; it must still hold it after every test.
pub const VICTIM_TEXT: &str = "outside the workspace\n";

/// A temp dir holding the workspace `ws/`, a directory `outside/` with a file `victim` that no
/// refused command may touch, and `out/` for captured output.
pub struct TestWorkspace {
    _dir: tempfile::TempDir,
    /// The temp dir, canonical.
    pub top: PathBuf,
    /// The workspace, canonical.
    pub root: PathBuf,
    /// `outside/victim`.
    pub victim: PathBuf,
    victim_mode: u32,
}

impl TestWorkspace {
    pub fn new() -> TestWorkspace {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let top = dir
            .path()
            .canonicalize()
            .expect("canonicalize the temp dir");
        let root = top.join("ws");
        std::fs::create_dir(&root).expect("create the workspace");
        std::fs::create_dir(top.join("outside")).expect("create the outside dir");
        std::fs::create_dir(top.join("out")).expect("create the output dir");
        let victim = top.join("outside").join("victim");
        std::fs::write(&victim, VICTIM_TEXT).expect("write the victim file");
        let victim_mode = mode_of(&victim);
        TestWorkspace {
            _dir: dir,
            top,
            root,
            victim,
            victim_mode,
        }
    }

    /// A path inside the workspace.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Write a file inside the workspace, creating its directories.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(path, contents).expect("write a workspace file");
    }

    /// Output files for a command named `name`.
    pub fn outputs(&self, name: &str) -> OutputPaths {
        OutputPaths {
            stdout: self.top.join("out").join(format!("{name}.stdout")),
            stderr: self.top.join("out").join(format!("{name}.stderr")),
        }
    }

    /// The message with the temp paths replaced by `$WS` and `$TMP`, for snapshots.
    pub fn display(&self, message: &str) -> String {
        message
            .replace(&self.root.display().to_string(), "$WS")
            .replace(&self.top.display().to_string(), "$TMP")
    }

    /// The victim file outside the workspace is as it was made: same text, same mode.
    pub fn assert_victim_untouched(&self) {
        let text = std::fs::read_to_string(&self.victim)
            .expect("the victim file outside the workspace still exists");
        assert_eq!(
            text, VICTIM_TEXT,
            "the victim file outside the workspace was changed"
        );
        assert_eq!(
            mode_of(&self.victim),
            self.victim_mode,
            "the victim file's mode was changed"
        );
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("stat a file")
        .permissions()
        .mode()
}

/// A command with no cwd, env or timeout of its own.
pub fn command(argv: &[&str]) -> Command {
    Command {
        argv: argv.iter().map(|word| word.to_string()).collect(),
        env: BTreeMap::new(),
        cwd: None,
        timeout: None,
    }
}

/// The default policy with a short grace period, so that tests stop quickly.
pub fn policy() -> ExecPolicy {
    ExecPolicy {
        kill_grace: Duration::from_millis(500),
        ..ExecPolicy::default()
    }
}

/// Run one command without validating it, with no extra environment and no secrets.
pub async fn run(
    workspace: &TestWorkspace,
    name: &str,
    command: &Command,
    policy: &ExecPolicy,
) -> CommandRecord {
    run_with_cancel(workspace, name, command, policy, CancellationToken::new()).await
}

pub async fn run_with_cancel(
    workspace: &TestWorkspace,
    name: &str,
    command: &Command,
    policy: &ExecPolicy,
    cancel: CancellationToken,
) -> CommandRecord {
    exec::run_command(
        command,
        &workspace.root,
        &workspace.outputs(name),
        &BTreeMap::new(),
        &Redactor::new(&[]),
        policy,
        cancel,
    )
    .await
    .expect("the command starts")
}

/// What the worker does with an exec step: validate every command, then run them in order.
pub async fn validate_then_run(
    workspace: &TestWorkspace,
    commands: &[Command],
    policy: &ExecPolicy,
) -> Result<Vec<CommandRecord>, ValidationError> {
    exec::validate(commands, &workspace.root, policy)?;
    let mut records = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        records.push(run(workspace, &format!("cmd-{index}"), command, policy).await);
    }
    Ok(records)
}

/// The process has exited. A zombie counts as gone: it is dead and only waits for its parent to
/// reap it, and in some containers PID 1 never reaps the orphans it adopts.
pub fn process_is_gone(pid: i32) -> bool {
    if matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH)) {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which is in parentheses and may
        // itself contain spaces and parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Poll `condition` until it holds, failing the test after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pid a test command wrote to `path` (in the workspace).
pub fn read_pid(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path).expect("the command wrote the grandchild's pid");
    text.trim().parse().expect("the pid file holds a number")
}
