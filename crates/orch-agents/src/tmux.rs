//! Live sessions: an agent run inside a tmux session named after its task, so a human can
//! watch it (`orch task attach`), list it (`orch task live`) and end it (`orch task kill`).
//!
//! orch uses its own tmux server (socket `<home>/tmux/socket`), never the user's. The pane runs
//! `orch agent-relay` (unconfined: it is orch's code writing orch's relay files), which starts
//! the agent through `orch_process::Spawn` with the environment and the sandbox orch chose
//! (`env.json` and `sandbox.json` beside its other files) and copies its
//! stdout and stderr both to the pane and to files in the run's live directory; the worker
//! reads those files as they grow, exactly as it reads a directly spawned CLI's pipes, so the
//! output still lands in the bundle and the same parser, stall watchdog and result grace apply.
//! When the agent exits the relay writes its exit status to `exit` and the pane (and session)
//! closes.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a live session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// orch's tmux socket.
    pub socket: PathBuf,
    /// The session's name (`orch-task-<id>`).
    pub name: String,
    /// A directory of this run for the relay's files.
    pub dir: PathBuf,
}

/// The session name of a task.
pub fn session_name(task: i64) -> String {
    format!("orch-task-{task}")
}

/// orch's tmux socket under a home.
pub fn socket(home: &Path) -> PathBuf {
    home.join("tmux").join("socket")
}

/// A session as `tmux list-sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Its name.
    pub name: String,
    /// The task, when the name is one of orch's.
    pub task: Option<i64>,
    /// When it started (Unix seconds).
    pub created: i64,
    /// The pane's process.
    pub pane_pid: Option<i32>,
}

/// Why a tmux command failed.
#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    /// tmux is not installed.
    #[error("tmux is not installed (not found on PATH); install it to use `session = \"tmux\"`")]
    NotInstalled,
    /// No such session.
    #[error("no live session `{0}`; `orch task live` lists the running ones")]
    NoSession(String),
    /// tmux said no.
    #[error("tmux {args}: {message}")]
    Failed {
        /// What was run.
        args: String,
        /// What tmux printed.
        message: String,
    },
}

/// Run `tmux -S <socket> <args>` and return its stdout.
pub fn tmux(socket: &Path, args: &[&str]) -> Result<String, TmuxError> {
    let output = tmux_command(socket, args)
        .output_blocking()
        .map_err(|e| match e.io_kind() {
            Some(std::io::ErrorKind::NotFound) => TmuxError::NotInstalled,
            _ => TmuxError::Failed {
                args: args.join(" "),
                message: e.to_string(),
            },
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(TmuxError::Failed {
            args: args.join(" "),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `tmux -S <socket> <args>` through the one spawn module, in the caller's process group. The
/// first command starts orch's tmux server, which keeps the environment it was started with for
/// every pane: it gets only what tmux needs, never orch's tokens.
pub fn tmux_command(socket: &Path, args: &[&str]) -> orch_process::Spawn {
    let term = std::env::var_os("TERM").unwrap_or_else(|| "xterm-256color".into());
    let env = ["PATH", "LANG", "LC_ALL"]
        .into_iter()
        .filter_map(|name| Some((name.into(), std::env::var_os(name)?)))
        .chain([("TERM".into(), term)])
        .collect::<Vec<(std::ffi::OsString, std::ffi::OsString)>>();
    orch_process::Spawn::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(args)
        .envs(env)
        .in_callers_group()
}

/// The live sessions on orch's tmux server (none when the server is not running).
pub fn list(socket: &Path) -> Result<Vec<SessionInfo>, TmuxError> {
    if !socket.exists() {
        return Ok(Vec::new());
    }
    let text = match tmux(
        socket,
        &[
            "list-sessions",
            "-F",
            "#{session_name}\t#{session_created}\t#{pane_pid}",
        ],
    ) {
        Ok(text) => text,
        // A socket left by a server that has exited: nothing runs.
        Err(TmuxError::Failed { message, .. })
            if message.contains("no server running") || message.contains("error connecting") =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split('\t');
            let name = parts.next()?.to_owned();
            let created = parts.next()?.parse().ok()?;
            let pane_pid = parts.next().and_then(|p| p.parse().ok());
            let task = name
                .strip_prefix("orch-task-")
                .and_then(|id| id.parse().ok());
            Some(SessionInfo {
                name,
                task,
                created,
                pane_pid,
            })
        })
        .collect())
}

/// What the pane shows now, with its scrollback.
pub fn capture(socket: &Path, name: &str) -> Result<String, TmuxError> {
    require(socket, name)?;
    tmux(
        socket,
        &["capture-pane", "-p", "-J", "-S", "-2000", "-t", name],
    )
}

/// End a session (its agent gets SIGHUP from the closing terminal).
pub fn kill(socket: &Path, name: &str) -> Result<(), TmuxError> {
    require(socket, name)?;
    tmux(socket, &["kill-session", "-t", name]).map(|_| ())
}

fn require(socket: &Path, name: &str) -> Result<(), TmuxError> {
    if list(socket)?.iter().any(|s| s.name == name) {
        Ok(())
    } else {
        Err(TmuxError::NoSession(name.to_owned()))
    }
}

/// Start `argv` in a detached session running `relay` (the orch binary's `agent-relay`).
pub(crate) fn start(
    session: &LiveSession,
    relay: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
    workdir: &Path,
    sandbox: &orch_process::Sandbox,
) -> Result<Option<i32>, TmuxError> {
    let io = |e: std::io::Error| TmuxError::Failed {
        args: "prepare the live session".into(),
        message: e.to_string(),
    };
    if let Some(parent) = session.socket.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::create_dir_all(&session.dir).map_err(io)?;
    for name in ["stdout", "stderr", "exit"] {
        let _ = std::fs::remove_file(session.dir.join(name));
    }
    write_private(
        &session.dir.join("env.json"),
        &serde_json::to_vec(env).unwrap_or_default(),
    )
    .map_err(io)?;
    write_private(
        &session.dir.join("sandbox.json"),
        &serde_json::to_vec(sandbox).unwrap_or_default(),
    )
    .map_err(io)?;
    // A session left by a crashed run of the same task would block the name.
    let _ = tmux(&session.socket, &["kill-session", "-t", &session.name]);
    let dir = session.dir.display().to_string();
    let workdir_text = workdir.display().to_string();
    let relay_text = relay.display().to_string();
    let mut args: Vec<&str> = vec![
        "new-session",
        "-d",
        "-s",
        &session.name,
        "-x",
        "200",
        "-y",
        "50",
        "-c",
        &workdir_text,
    ];
    let run_id = env.get("ORCH_RUN_ID").map(|id| format!("ORCH_RUN_ID={id}"));
    if let Some(run_id) = &run_id {
        args.extend(["-e", run_id.as_str()]);
    }
    args.extend(["--", &relay_text, "agent-relay", "--dir", &dir, "--"]);
    args.extend(argv.iter().map(String::as_str));
    if let Err(e) = tmux(&session.socket, &args) {
        // The relay never started, so nobody deletes the environment (it holds API keys).
        let _ = std::fs::remove_file(session.dir.join("env.json"));
        return Err(e);
    }
    let pid = tmux(
        &session.socket,
        &["display-message", "-p", "-t", &session.name, "#{pane_pid}"],
    )
    .ok()
    .and_then(|text| text.trim().parse().ok());
    Ok(pid)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// The relay inside the pane: run `argv` with the environment in `<dir>/env.json` (deleted as
/// soon as it is read: it holds API keys) and the sandbox in `<dir>/sandbox.json` (a missing or
/// unreadable one refuses to start the agent: it never runs unconfined by accident), copy stdout and stderr to this terminal and to
/// `<dir>/stdout` / `<dir>/stderr`, write the exit status to `<dir>/exit` (`code N` or
/// `signal N`) and return the code to exit with.
pub fn relay(dir: &Path, argv: &[String]) -> i32 {
    let env_path = dir.join("env.json");
    let env: BTreeMap<String, String> = std::fs::read(&env_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&env_path);
    let Some(program) = argv.first() else {
        finish(dir, "code 127");
        return 127;
    };
    let sandbox = std::fs::read(dir.join("sandbox.json"))
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<orch_process::Sandbox>(&bytes).map_err(|e| e.to_string())
        });
    let child = sandbox
        .map_err(|e| format!("no sandbox policy ({e})"))
        .and_then(|sandbox| {
            orch_process::Spawn::new(program)
                .args(&argv[1..])
                .envs(&env)
                .stdio(
                    orch_process::Io::Null,
                    orch_process::Io::Piped,
                    orch_process::Io::Piped,
                )
                // The pane's own group: tmux and orch stop the whole session by it.
                .in_callers_group()
                .sandbox(sandbox)
                .start_blocking()
                .map_err(|e| e.to_string())
        });
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::write(
                dir.join("stderr"),
                format!("cannot start `{program}`: {e}\n"),
            );
            eprintln!("cannot start `{program}`: {e}");
            finish(dir, "code 127");
            return 127;
        }
    };
    let copies: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .zip(["stdout", "stderr"])
    .filter_map(|(stream, name)| stream.map(|s| (s, dir.join(name), name == "stdout")))
    .map(|(stream, path, is_stdout)| {
        std::thread::spawn(move || {
            let Ok(mut file) = std::fs::File::create(&path) else {
                return;
            };
            let mut reader = std::io::BufReader::new(stream);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let _ = file.write_all(&line);
                let _ = file.flush();
                if is_stdout {
                    let _ = std::io::stdout().write_all(&line);
                    let _ = std::io::stdout().flush();
                } else {
                    let _ = std::io::stderr().write_all(&line);
                }
                line.clear();
            }
        })
    })
    .collect();
    let status = child.wait();
    for copy in copies {
        let _ = copy.join();
    }
    let (text, code) = match status {
        Ok(status) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => (format!("code {code}"), code),
            (None, Some(signal)) => (format!("signal {signal}"), 128 + signal),
            (None, None) => ("code 1".to_owned(), 1),
        },
        Err(_) => ("code 1".to_owned(), 1),
    };
    finish(dir, &text);
    code
}

/// Written last, atomically: its presence means the output files are complete.
fn finish(dir: &Path, status: &str) {
    let tmp = dir.join("exit.tmp");
    if std::fs::write(&tmp, status).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join("exit"));
    }
}

/// The exit status the relay wrote, if it has.
pub(crate) fn exit_status(dir: &Path) -> Option<(Option<i32>, Option<i32>)> {
    let text = std::fs::read_to_string(dir.join("exit")).ok()?;
    let (kind, value) = text.trim().split_once(' ')?;
    let value: i32 = value.parse().ok()?;
    Some(match kind {
        "signal" => (None, Some(value)),
        _ => (Some(value), None),
    })
}

/// How often the worker looks for new output and for the end of a live session.
pub(crate) const POLL: Duration = Duration::from_millis(50);
