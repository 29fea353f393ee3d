//! Running one CLI session as a process: spawn, read, watch, stop.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::transcript::{Ending, Transcript};
use super::{Dialect, Invocation};
use crate::{AgentError, AgentEvent, AgentOutcome, AgentRequest, RawOutput};

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
    events: mpsc::UnboundedSender<AgentEvent>,
    cancel: CancellationToken,
) -> Result<AgentOutcome, AgentError> {
    let Some(program) = invocation.argv.first() else {
        return Err(AgentError::Unavailable {
            agent: agent.to_owned(),
            reason: "its command line is empty".into(),
        });
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(&invocation.argv[1..])
        .current_dir(workdir)
        .env_clear()
        .envs(&invocation.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            AgentError::Unavailable {
                agent: agent.to_owned(),
                reason: format!("`{program}` is not installed (not found on PATH); install it or set `binary` in the agent's settings"),
            }
        } else {
            AgentError::Io {
                context: format!("start `{program}`"),
                source,
            }
        }
    })?;
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    let registered = match (&request.process_registry, group) {
        (Some(dir), Some(group)) => {
            let path = dir.join(group.as_raw().to_string());
            let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, b""));
            Some(path)
        }
        _ => None,
    };
    // Leaving early (the caller dropping this future) must not leave the CLI running.
    let _guard = GroupGuard(group);

    let (lines_tx, mut lines) = mpsc::channel::<Line>(256);
    let stdout = child
        .stdout
        .take()
        .map(|s| tokio::spawn(read_lines(s, lines_tx.clone(), true)));
    let stderr = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_lines(s, lines_tx.clone(), false)));
    drop(lines_tx);

    let mut transcript = Transcript::default();
    let mut stderr_tail = String::new();
    let mut deadline = Instant::now() + limits.stall_timeout;
    let mut result_deadline: Option<Instant> = None;
    let mut streams_open = true;
    let mut exit: Option<std::process::ExitStatus> = None;
    let ending = loop {
        if exit.is_some() && !streams_open {
            let status = exit.unwrap_or_default();
            break Ending::Exited {
                code: status.code(),
                signal: std::os::unix::process::ExitStatusExt::signal(&status),
            };
        }
        let grace =
            result_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                stop(group, &mut child).await;
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
            status = child.wait(), if exit.is_none() => {
                exit = Some(status.map_err(|source| AgentError::Io { context: format!("wait for `{program}`"), source })?);
                // The leader is gone; whatever it left in its group must not hold the pipes.
                if let Some(group) = group {
                    let _ = killpg(group, Signal::SIGKILL);
                }
            }
            () = tokio::time::sleep_until(grace), if result_deadline.is_some() => {
                stop(group, &mut child).await;
                break Ending::EndedAfterResult;
            }
            () = tokio::time::sleep_until(deadline) => {
                stop(group, &mut child).await;
                break Ending::Stalled(limits.stall_timeout);
            }
        }
    };
    for task in [stdout, stderr].into_iter().flatten() {
        task.abort();
    }
    if let Some(path) = registered {
        let _ = std::fs::remove_file(path);
    }
    for event in dialect.finish() {
        transcript.observe(&event);
        let _ = events.send(event);
    }
    transcript.finish(agent, invocation.argv.clone(), ending, &stderr_tail)
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

async fn stop(group: Option<Pid>, child: &mut tokio::process::Child) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = child.kill().await;
}

struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}
