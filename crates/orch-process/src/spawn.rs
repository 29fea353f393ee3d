//! [`Spawn`]: the description of one process to start, and [`Running`], the started process
//! whose group is killed when it is dropped.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::group::{register, signal_group, stop_group};
use crate::sandbox::{child, support, Sandbox, SandboxError};

/// Where a standard stream of the process goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Io {
    /// `/dev/null`.
    #[default]
    Null,
    /// A pipe to this process.
    Piped,
    /// This process's own stream.
    Inherit,
}

impl Io {
    fn stdio(self) -> std::process::Stdio {
        match self {
            Io::Null => std::process::Stdio::null(),
            Io::Piped => std::process::Stdio::piped(),
            Io::Inherit => std::process::Stdio::inherit(),
        }
    }
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program could not be started (not found, not executable, the sandbox refused in the
    /// child, ...).
    #[error("could not start `{program}`: {source}")]
    Start {
        /// The program.
        program: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The sandbox could not be prepared.
    #[error("could not prepare the sandbox for `{program}`: {source}")]
    Sandbox {
        /// The program.
        program: String,
        /// The error.
        #[source]
        source: SandboxError,
    },
}

impl SpawnError {
    /// The I/O error, when the start itself failed (to tell "not installed" apart).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            SpawnError::Start { source, .. } => Some(source.kind()),
            SpawnError::Sandbox { .. } => None,
        }
    }
}

/// One process to start. The environment is always cleared: the process gets exactly the
/// variables given here. By default it leads its own process group, with stdin, stdout and
/// stderr on `/dev/null`, and no sandbox.
#[derive(Debug, Clone)]
pub struct Spawn {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: BTreeMap<OsString, OsString>,
    stdin: Io,
    stdout: Io,
    stderr: Io,
    own_group: bool,
    registry: Option<PathBuf>,
    sandbox: Sandbox,
    kill_on_drop: bool,
}

impl Spawn {
    /// `program` (a path, or a name looked up on the `PATH` given with [`Spawn::env`]).
    pub fn new(program: impl AsRef<OsStr>) -> Spawn {
        Spawn {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: BTreeMap::new(),
            stdin: Io::Null,
            stdout: Io::Null,
            stderr: Io::Null,
            own_group: true,
            registry: None,
            sandbox: Sandbox::Off,
            kill_on_drop: true,
        }
    }

    /// Append one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Spawn {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The working directory.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Spawn {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Add environment variables (the process gets no others).
    pub fn envs<I, K, V>(mut self, vars: I) -> Spawn
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        self
    }

    /// Where stdin, stdout and stderr go.
    pub fn stdio(mut self, stdin: Io, stdout: Io, stderr: Io) -> Spawn {
        (self.stdin, self.stdout, self.stderr) = (stdin, stdout, stderr);
        self
    }

    /// Stay in orch's process group (for short helpers orch waits for, such as git); by default
    /// the process leads a new group, which is what stopping by group needs.
    pub fn in_callers_group(mut self) -> Spawn {
        self.own_group = false;
        self
    }

    /// Record the process group in `dir` while it runs ([`crate::kill_orphaned_groups`]).
    pub fn registry(mut self, dir: Option<PathBuf>) -> Spawn {
        self.registry = dir;
        self
    }

    /// Let the process run to its end when its [`Running`] (or the future of [`Spawn::output`])
    /// is dropped, instead of killing it: for git, which stopped half-way leaves lock files
    /// behind for every later command.
    pub fn finish_when_dropped(mut self) -> Spawn {
        self.kill_on_drop = false;
        self
    }

    /// The environment the process will get, exactly.
    pub fn environment(&self) -> &BTreeMap<OsString, OsString> {
        &self.env
    }

    /// How the process is confined.
    pub fn sandbox(mut self, sandbox: Sandbox) -> Spawn {
        self.sandbox = sandbox;
        self
    }

    /// The program as given.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    fn program_text(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    fn command(&self) -> Result<std::process::Command, SpawnError> {
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(&self.env)
            .stdin(self.stdin.stdio())
            .stdout(self.stdout.stdio())
            .stderr(self.stderr.stdio());
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        if self.own_group {
            command.process_group(0);
        }
        if let Sandbox::Enforced(policy) = &self.sandbox {
            let prepared = policy
                .prepare(support(), self.cwd.as_deref())
                .map_err(|source| SpawnError::Sandbox {
                    program: self.program_text(),
                    source,
                })?;
            child::install(&mut command, prepared);
        }
        Ok(command)
    }

    fn start_error(&self, source: io::Error) -> SpawnError {
        SpawnError::Start {
            program: self.program_text(),
            source,
        }
    }

    /// Start the process (tokio).
    pub fn start(self) -> Result<Running, SpawnError> {
        let mut command = tokio::process::Command::from(self.command()?);
        command.kill_on_drop(self.kill_on_drop);
        let child = command.spawn().map_err(|e| self.start_error(e))?;
        let group = self
            .own_group
            .then(|| child.id().and_then(|pid| i32::try_from(pid).ok()))
            .flatten()
            .map(Pid::from_raw);
        let registered = match (&self.registry, group) {
            (Some(dir), Some(group)) => register(dir, group),
            _ => None,
        };
        Ok(Running {
            child,
            group,
            registered,
            done: false,
            kill_on_drop: self.kill_on_drop,
        })
    }

    /// Start the process and wait for it, collecting stdout and stderr (whatever [`Io`] they
    /// were given, they are piped): for short helpers such as git, run with an exact
    /// environment.
    pub async fn output(mut self) -> Result<Output, SpawnError> {
        self.stdout = Io::Piped;
        self.stderr = Io::Piped;
        let program = self.program_text();
        let mut running = self.start()?;
        let stdout = read_all(running.child.stdout.take());
        let stderr = read_all(running.child.stderr.take());
        let (status, stdout, stderr) = tokio::try_join!(running.child.wait(), stdout, stderr)
            .map_err(|source| SpawnError::Start {
                program: program.clone(),
                source,
            })?;
        running.finish();
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// [`Spawn::output`] for blocking callers (a synchronous command, a blocking task).
    pub fn output_blocking(mut self) -> Result<Output, SpawnError> {
        self.stdout = Io::Piped;
        self.stderr = Io::Piped;
        let program = self.program_text();
        let child = self.start_blocking()?;
        child
            .wait_with_output()
            .map_err(|source| SpawnError::Start { program, source })
    }

    /// Start the process as a `std` child (for the blocking tmux relay); the caller waits.
    pub fn start_blocking(self) -> Result<std::process::Child, SpawnError> {
        self.command()?.spawn().map_err(|e| self.start_error(e))
    }
}

/// A started process. Dropping it kills its whole group (SIGKILL) unless it was finished, and
/// forgets its registry entry.
#[derive(Debug)]
pub struct Running {
    /// The child: take its pipes, wait for it.
    pub child: tokio::process::Child,
    group: Option<Pid>,
    registered: Option<PathBuf>,
    done: bool,
    kill_on_drop: bool,
}

impl Running {
    /// The process group it leads.
    pub fn group(&self) -> Option<Pid> {
        self.group
    }

    /// Wait for the leader to exit, then kill whatever it left in its group (`sleep 1000 &`),
    /// so nothing keeps its pipes open.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.finish();
        Ok(status)
    }

    /// SIGTERM to the group, SIGKILL after `grace` (see [`stop_group`]); the leader is reaped.
    pub async fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        let status = match self.group {
            Some(group) => stop_group(&mut self.child, group, grace).await,
            None => {
                let _ = self.child.start_kill();
                self.child.wait().await
            }
        };
        self.finish();
        status
    }

    /// The leader is done: kill what is left of its group and forget the registry entry.
    pub fn finish(&mut self) {
        if let Some(group) = self.group {
            signal_group(group, Signal::SIGKILL);
        }
        if let Some(path) = self.registered.take() {
            let _ = std::fs::remove_file(path);
        }
        self.done = true;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.kill_on_drop {
            self.finish();
        } else if let Some(path) = self.registered.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut bytes).await?;
    }
    Ok(bytes)
}
