//! Running one CLI session as a process: spawn, read, watch, stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::transcript::{Ending, Transcript};
use super::{Dialect, Invocation};
use crate::tmux::{self, LiveSession};
use crate::{AgentError, AgentEvent, AgentOutcome, AgentRequest, RawOutput};
use orch_process::{Io, Sandbox, Spawn};

/// The longest stdout line kept whole; longer lines are cut (and then fail to parse, which
/// makes them `unknown` events rather than errors).
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
/// How much of stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// Between SIGTERM and SIGKILL when orch stops a CLI.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The timers of one session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// No output at all for this long: killed as stalled.
    pub stall_timeout: Duration,
    /// After the final result, how long the CLI may take to exit.
    pub result_grace: Duration,
}

enum Line {
    Out(String),
    Err(String),
}

/// Run `invocation` in `workdir` and turn its output into events through `dialect`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    agent: &str,
    invocation: Invocation,
    workdir: &Path,
    mut dialect: Dialect,
    limits: Limits,
    request: &AgentRequest,
    live: Option<(&LiveSession, &Path)>,
    events: mpsc::UnboundedSender<AgentEvent>,
    cancel: CancellationToken,
) -> Result<AgentOutcome, AgentError> {
    let Some(program) = invocation.argv.first().cloned() else {
        return Err(AgentError::Unavailable {
            agent: agent.to_owned(),
            reason: "its command line is empty".into(),
        });
    };
    let (lines_tx, mut lines) = mpsc::channel::<Line>(256);
    // A dialect that talks back (ACP) gets a piped stdin, and so runs as a direct child even
    // when its settings ask for a live session: the relay in a tmux pane has no stdin to feed.
    let talks_back = dialect.wants_stdin();
    let (mut proc, mut stdin) = match live {
        Some((session, relay)) if !talks_back => (
            Proc::live(
                agent,
                session,
                relay,
                &invocation,
                workdir,
                &sandbox_for(&program, &invocation, request),
                lines_tx,
            )
            .await?,
            None,
        ),
        _ => Proc::direct(
            agent,
            &program,
            &invocation,
            workdir,
            request,
            lines_tx,
            talks_back,
        )?,
    };
    send_outgoing(&mut dialect, &mut stdin);
    // The direct child registers itself (`orch_process::Spawn::registry`); a live session's
    // pane is recorded here.
    let registered = match (&request.process_registry, &proc) {
        (
            Some(dir),
            Proc::Live {
                pane: Some(pane), ..
            },
        ) => orch_process::group::register(dir, *pane),
        _ => None,
    };
    // Leaving early (the caller dropping this future) must not leave the CLI running: the
    // direct child's `Running` kills its group when dropped, this guard a live pane's.
    let _guard = GroupGuard(match &proc {
        Proc::Live { pane, .. } => *pane,
        Proc::Direct { .. } => None,
    });

    let mut transcript = Transcript::default();
    let mut stderr_tail = String::new();
    let mut deadline = Instant::now() + limits.stall_timeout;
    let mut result_deadline: Option<Instant> = None;
    let mut streams_open = true;
    let mut exit: Option<(Option<i32>, Option<i32>)> = None;
    let ending = loop {
        if let (Some((code, signal)), false) = (exit, streams_open) {
            break Ending::Exited { code, signal };
        }
        let grace =
            result_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                proc.stop().await;
                break Ending::Cancelled;
            }
            line = lines.recv(), if streams_open => match line {
                Some(Line::Out(text)) => {
                    deadline = Instant::now() + limits.stall_timeout;
                    if let Some(raw) = &request.raw_output {
                        let _ = raw.send(RawOutput::Stdout(text.clone()));
                    }
                    for event in dialect.line(&text) {
                        if matches!(event, AgentEvent::Result { .. }) && result_deadline.is_none() {
                            result_deadline = Some(Instant::now() + limits.result_grace);
                        }
                        transcript.observe(&event);
                        let _ = events.send(event);
                    }
                    send_outgoing(&mut dialect, &mut stdin);
                    if talks_back && dialect.input_finished() && result_deadline.is_none() {
                        // The session is over (an answer or a refusal): an agent that does not
                        // exit when its stdin closes gets the result grace, not the stall timeout.
                        result_deadline = Some(Instant::now() + limits.result_grace);
                    }
                }
                Some(Line::Err(text)) => {
                    deadline = Instant::now() + limits.stall_timeout;
                    if let Some(raw) = &request.raw_output {
                        let _ = raw.send(RawOutput::Stderr(text.clone()));
                    }
                    stderr_tail.push_str(&text);
                    stderr_tail.push('\n');
                    if stderr_tail.len() > STDERR_TAIL_BYTES {
                        let cut = stderr_tail.len() - STDERR_TAIL_BYTES;
                        let cut = (cut..stderr_tail.len()).find(|i| stderr_tail.is_char_boundary(*i)).unwrap_or(0);
                        stderr_tail.drain(..cut);
                    }
                }
                None => streams_open = false,
            },
            status = proc.wait(), if exit.is_none() => {
                exit = Some(status.map_err(|source| AgentError::Io { context: format!("wait for `{program}`"), source })?);
            }
            () = tokio::time::sleep_until(grace), if result_deadline.is_some() => {
                proc.stop().await;
                break Ending::EndedAfterResult;
            }
            () = tokio::time::sleep_until(deadline) => {
                proc.stop().await;
                break Ending::Stalled(limits.stall_timeout);
            }
        }
    };
    proc.close();
    if let Some(path) = registered {
        let _ = std::fs::remove_file(path);
    }
    for event in dialect.finish() {
        transcript.observe(&event);
        let _ = events.send(event);
    }
    transcript.finish(agent, invocation.argv.clone(), ending, &stderr_tail)
}

/// The request's sandbox, with the install directories of the CLI (found on the PATH it runs
/// with) readable, for a CLI installed under a hidden directory such as the user's `HOME`.
fn sandbox_for(program: &str, invocation: &Invocation, request: &AgentRequest) -> Sandbox {
    match &request.sandbox {
        Sandbox::Off => Sandbox::Off,
        Sandbox::Enforced(policy) => {
            let mut policy = policy.clone();
            let path = invocation.env.get("PATH").map(String::as_str);
            policy
                .read_only
                .extend(orch_process::sandbox::install_dirs(program, path));
            // Scripts name their interpreter through `env` (`#!/usr/bin/env node`).
            for interpreter in ["node", "bun", "python3"] {
                policy
                    .read_only
                    .extend(orch_process::sandbox::install_dirs(interpreter, path));
            }
            Sandbox::Enforced(policy)
        }
    }
}

/// Hand what the dialect wants to say to the stdin writer; once it has nothing more to say,
/// drop the writer's channel, which closes the agent's stdin (an ACP agent then exits).
fn send_outgoing(dialect: &mut Dialect, stdin: &mut Option<mpsc::UnboundedSender<String>>) {
    let Some(writer) = stdin else {
        return;
    };
    for line in dialect.take_outgoing() {
        let _ = writer.send(line);
    }
    if dialect.input_finished() {
        *stdin = None;
    }
}

/// Write lines to the agent's stdin until the channel closes, then close it. A write error
/// means the agent is gone: the runner sees that through its exit, so it only ends this task.
async fn write_lines(
    mut pipe: tokio::process::ChildStdin,
    mut lines: mpsc::UnboundedReceiver<String>,
) {
    while let Some(mut line) = lines.recv().await {
        line.push('\n');
        if pipe.write_all(line.as_bytes()).await.is_err() || pipe.flush().await.is_err() {
            return;
        }
    }
}

async fn read_lines(stream: impl AsyncRead + Unpin, sink: mpsc::Sender<Line>, stdout: bool) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match read_capped_line(&mut reader, &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while buffer.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buffer.pop();
                }
                let text = String::from_utf8_lossy(&buffer).into_owned();
                let line = if stdout {
                    Line::Out(text)
                } else {
                    Line::Err(text)
                };
                if sink.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Read one line, keeping at most [`MAX_LINE_BYTES`] of it (the rest is read and dropped).
async fn read_capped_line(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        total += used;
        reader.consume(used);
        if done {
            return Ok(total);
        }
    }
}

/// A running CLI: a child of this process, or the relay in a tmux pane.
enum Proc {
    Direct {
        running: orch_process::Running,
        readers: Vec<tokio::task::JoinHandle<()>>,
    },
    Live {
        session: LiveSession,
        pane: Option<Pid>,
        /// Tells the file readers that the relay has finished writing.
        done: CancellationToken,
        readers: Vec<tokio::task::JoinHandle<()>>,
    },
}

impl Proc {
    /// A child process; with `piped_stdin`, also the sender of the lines written to its stdin
    /// (dropping it closes the pipe). Otherwise stdin is `/dev/null`: Codex blocks on an open
    /// stdin until EOF and Claude Code waits for it.
    fn direct(
        agent: &str,
        program: &str,
        invocation: &Invocation,
        workdir: &Path,
        request: &AgentRequest,
        lines: mpsc::Sender<Line>,
        piped_stdin: bool,
    ) -> Result<(Proc, Option<mpsc::UnboundedSender<String>>), AgentError> {
        let stdin = if piped_stdin { Io::Piped } else { Io::Null };
        let mut running = Spawn::new(program)
            .args(&invocation.argv[1..])
            .cwd(workdir)
            .envs(&invocation.env)
            .stdio(stdin, Io::Piped, Io::Piped)
            .registry(request.process_registry.clone())
            .sandbox(sandbox_for(program, invocation, request))
            .start()
            .map_err(|error| match error.io_kind() {
                Some(std::io::ErrorKind::NotFound) => AgentError::Unavailable {
                    agent: agent.to_owned(),
                    reason: format!("`{program}` is not installed (not found on PATH); install it or set `binary` in the agent's settings"),
                },
                _ => AgentError::Io {
                    context: format!("start `{program}`"),
                    source: std::io::Error::other(error.to_string()),
                },
            })?;
        let child = &mut running.child;
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(read_lines(out, lines.clone(), true)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(read_lines(err, lines, false)));
        }
        let stdin = child.stdin.take().map(|pipe| {
            let (sender, receiver) = mpsc::unbounded_channel();
            readers.push(tokio::spawn(write_lines(pipe, receiver)));
            sender
        });
        Ok((Proc::Direct { running, readers }, stdin))
    }

    async fn live(
        agent: &str,
        session: &LiveSession,
        relay: &Path,
        invocation: &Invocation,
        workdir: &Path,
        sandbox: &Sandbox,
        lines: mpsc::Sender<Line>,
    ) -> Result<Proc, AgentError> {
        let started = {
            let (session, relay, argv, env, workdir, sandbox) = (
                session.clone(),
                relay.to_owned(),
                invocation.argv.clone(),
                invocation.env.clone(),
                workdir.to_owned(),
                sandbox.clone(),
            );
            tokio::task::spawn_blocking(move || {
                tmux::start(&session, &relay, &argv, &env, &workdir, &sandbox)
            })
            .await
        };
        let pane = match started {
            Ok(Ok(pid)) => pid.map(Pid::from_raw),
            Ok(Err(e)) => {
                return Err(AgentError::Unavailable {
                    agent: agent.to_owned(),
                    reason: format!("its live session could not start: {e}"),
                })
            }
            Err(e) => {
                return Err(AgentError::Io {
                    context: "start the live session".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            }
        };
        let done = CancellationToken::new();
        let readers = vec![
            tokio::spawn(tail_lines(
                session.dir.join("stdout"),
                lines.clone(),
                true,
                done.clone(),
            )),
            tokio::spawn(tail_lines(
                session.dir.join("stderr"),
                lines,
                false,
                done.clone(),
            )),
        ];
        Ok(Proc::Live {
            session: session.clone(),
            pane,
            done,
            readers,
        })
    }

    /// Wait for the process to end: `(exit code, signal)`.
    async fn wait(&mut self) -> std::io::Result<(Option<i32>, Option<i32>)> {
        match self {
            Proc::Direct { running, .. } => {
                // The leader is gone; whatever it left in its group must not hold the pipes.
                let status = running.wait().await?;
                Ok((
                    status.code(),
                    std::os::unix::process::ExitStatusExt::signal(&status),
                ))
            }
            Proc::Live { session, done, .. } => {
                let mut polls: u32 = 0;
                loop {
                    if let Some(status) = tmux::exit_status(&session.dir) {
                        done.cancel();
                        return Ok(status);
                    }
                    polls += 1;
                    // About once a second: a session ended from outside (`orch task kill`,
                    // `tmux kill-session`) leaves no exit status.
                    if polls.is_multiple_of(20) && !session_alive(session).await {
                        done.cancel();
                        return Ok(tmux::exit_status(&session.dir)
                            .unwrap_or((None, Some(Signal::SIGHUP as i32))));
                    }
                    tokio::time::sleep(tmux::POLL).await;
                }
            }
        }
    }

    /// SIGTERM to the process group, SIGKILL after a grace.
    async fn stop(&mut self) {
        match self {
            Proc::Direct { running, .. } => {
                let _ = running.stop(KILL_GRACE).await;
            }
            Proc::Live {
                session,
                pane,
                done,
                ..
            } => {
                if let Some(pane) = pane {
                    let _ = killpg(*pane, Signal::SIGTERM);
                    let deadline = Instant::now() + KILL_GRACE;
                    while Instant::now() < deadline && tmux::exit_status(&session.dir).is_none() {
                        tokio::time::sleep(tmux::POLL).await;
                    }
                    let _ = killpg(*pane, Signal::SIGKILL);
                }
                let (socket, name) = (session.socket.clone(), session.name.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    tmux::tmux(&socket, &["kill-session", "-t", &name])
                })
                .await;
                done.cancel();
            }
        }
    }

    /// Stop reading output.
    fn close(&mut self) {
        let readers = match self {
            Proc::Direct { readers, .. } | Proc::Live { readers, .. } => readers,
        };
        for reader in readers.drain(..) {
            reader.abort();
        }
    }
}

async fn session_alive(session: &LiveSession) -> bool {
    let (socket, name) = (session.socket.clone(), session.name.clone());
    tokio::task::spawn_blocking(move || tmux::tmux(&socket, &["has-session", "-t", &name]).is_ok())
        .await
        .unwrap_or(false)
}

/// Follow a file the relay appends to, line by line, until `done` and everything is read.
async fn tail_lines(
    path: PathBuf,
    sink: mpsc::Sender<Line>,
    stdout: bool,
    done: CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut offset: u64 = 0;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let finished = done.is_cancelled();
        let mut grew = false;
        if let Ok(mut file) = tokio::fs::File::open(&path).await {
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                let mut chunk = Vec::new();
                if let Ok(n) = file.read_to_end(&mut chunk).await {
                    if n > 0 {
                        grew = true;
                        offset += n as u64;
                        pending.extend_from_slice(&chunk);
                    }
                }
            }
        }
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = pending.drain(..=i).collect();
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            line.truncate(MAX_LINE_BYTES);
            if send_line(&sink, &line, stdout).await.is_err() {
                return;
            }
        }
        if finished && !grew {
            if !pending.is_empty() {
                let _ = send_line(&sink, &pending, stdout).await;
            }
            return;
        }
        if !grew {
            tokio::time::sleep(tmux::POLL).await;
        }
    }
}

async fn send_line(sink: &mpsc::Sender<Line>, bytes: &[u8], stdout: bool) -> Result<(), ()> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let line = if stdout {
        Line::Out(text)
    } else {
        Line::Err(text)
    };
    sink.send(line).await.map_err(|_| ())
}

struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}
