//! A scripted model server for tests: it speaks enough of the Anthropic Messages, OpenAI
//! Responses, OpenAI Chat Completions and Gemini APIs for the real agent CLIs (Claude Code,
//! Codex CLI, OpenCode, Gemini CLI) to run a whole session offline against 127.0.0.1.
//!
//! # Script format
//!
//! A [`Script`] is a list of conversations. For each request the server takes the latest user
//! message that carries text (not a tool result); the first conversation whose `match` is a
//! substring of that text is selected (no `match` = catch-all), and the turn served is the
//! number of assistant turns in the history *after* that user text. The rule reads only the
//! request, so a retried or resumed request gets the same answer. When the turns run out the
//! server answers `say: done` ([`DONE_TEXT`]).
//!
//! ```yaml
//! conversations:
//!   - match: "create hello"            # substring of the latest user text
//!     turns:
//!       - write: {path: hello.txt, content: "hello\n"}   # relative to the agent's cwd
//!       - run: {command: "touch ran.txt"}
//!       - tools: [{run: {command: "echo a > a"}}, {run: {command: "echo b > b"}}]
//!       - say: {text: "Created hello.txt"}
//!   - match: "fail"
//!     turns:
//!       - error: {status: 429, retry_after_secs: 1, message: "slow down"}
//!   - turns: ["hang"]                   # catch-all: accept and never answer
//! ```
//!
//! Other turns: `stall` (200 with streaming headers, then silence until shutdown) and
//! `tools: [...]` (several tool calls in one assistant turn, shown above). In Rust:
//! `Script::single(vec![Turn::Say { text: "hi".into() }])`; at runtime
//! [`ModelServer::set_script`] replaces the script and [`ModelServer::force_next`] queues answers
//! served before it (e.g. one 429, then the script).
//!
//! Per dialect, `write` becomes Claude `Write {file_path (absolute, from "Primary working
//! directory:"), content}`, Codex `apply_patch` with an `*** Add File:` patch, OpenCode
//! `write {filePath, content}` and Gemini `write_file {file_path, content}`; `run` becomes Claude
//! `Bash`, Codex `exec_command`, OpenCode `bash`, Gemini `run_shell_command`. `error` answers the
//! status with the dialect's error JSON (429 also with `retry-after` and rate-limit headers);
//! `hang` keeps the request open until [`ModelServer::shutdown`].
//!
//! Usage is deterministic: input tokens = words of all strings in the request's conversation
//! (`messages` / `input` / `contents`, not the system prompt or tools), output tokens = 10 per
//! tool call or 5 + words of a `say`.
//!
//! Every request is kept in a log ([`ModelServer::requests`]) with its body, selected headers
//! (credentials only as `<present>`) and what was served. Requests without tools (OpenCode's
//! title generation, Gemini CLI's model router; Claude sends none with nonessential traffic
//! off) get a short answer, JSON shaped by the requested schema for Gemini, and use no turn.
//!
//! [`clienv`] builds the isolated environment and config for running each CLI against the
//! server. See `NOTES.md` for what each CLI does on the wire.

pub mod clienv;
pub mod script;

mod anthropic;
mod gemini;
mod openai_chat;
mod openai_responses;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use script::{Conversation, Script, Selection, ToolCall, Turn, DONE_TEXT};
pub use server::{Dialect, RequestRecord, Served};

/// What can go wrong starting the server or loading a script.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The script file or text is invalid.
    #[error("{0}")]
    Script(String),
    /// Binding or serving failed.
    #[error("model server on {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running scripted model server.
#[derive(Debug)]
pub struct ModelServer {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ModelServer {
    /// Binds 127.0.0.1 on a free port and starts serving `script`.
    pub async fn start(script: Script) -> Result<ModelServer, Error> {
        ModelServer::start_on(
            "127.0.0.1:0".parse().expect("a valid literal address"),
            script,
        )
        .await
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving `script`.
    pub async fn start_on(addr: SocketAddr, script: Script) -> Result<ModelServer, Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Io {
                addr: addr.to_string(),
                source,
            })?;
        let addr = server::local_addr(&listener).map_err(|source| Error::Io {
            addr: addr.to_string(),
            source,
        })?;
        let shared = Arc::new(server::Shared::new(script, CancellationToken::new()));
        let task = tokio::spawn(server::serve(listener, shared.clone()));
        Ok(ModelServer { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Only the requests answered from the script (or a forced answer).
    pub fn turn_requests(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(RequestRecord::is_turn)
            .collect()
    }

    /// Replaces the script; later requests are answered from the new one.
    pub fn set_script(&self, script: Script) {
        self.shared.set_script(script);
    }

    /// Answers the next script request with `turn`, whatever the script says (queued, FIFO).
    pub fn force_next(&self, turn: Turn) {
        self.shared.force_next(turn);
    }

    /// Stops serving, releases hanging requests and waits for the server task.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shared.shutdown.cancel();
        let addr = self.addr.to_string();
        match self.task.await {
            Ok(result) => result.map_err(|source| Error::Io { addr, source }),
            Err(join) => Err(Error::Io {
                addr,
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }
}

/// Serves `script` on `addr` until `shutdown` is cancelled (for an `orch model-server` command).
pub async fn serve(
    addr: SocketAddr,
    script: Script,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Io {
            addr: addr.to_string(),
            source,
        })?;
    let shared = Arc::new(server::Shared::new(script, shutdown));
    server::serve(listener, shared)
        .await
        .map_err(|source| Error::Io {
            addr: addr.to_string(),
            source,
        })
}

/// Blocking entry: builds a runtime and serves `script` on `addr` until Ctrl-C.
pub fn run(addr: SocketAddr, script: Script) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            addr: addr.to_string(),
            source,
        })?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            // If the signal handler cannot be installed the server runs until killed.
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        serve(addr, script, shutdown).await
    })
}
