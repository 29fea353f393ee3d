//! `sim`: a deterministic, offline agent that really edits files and emits the same event
//! stream as the real agents, at zero cost.
//!
//! `sim` lets every part of orch (workers, bundles, diffs, retries, cancellation, the CLI demo)
//! run without an API key or a network. It reads instructions from its prompt, carries them out
//! in the request's workdir, and reports each one as a tool call, exactly where a real agent's
//! `Write`, `Edit` or `Bash` call would appear.
//!
//! # Instructions
//!
//! A line of the prompt whose first word is one of these directives is an instruction (spaces
//! before the `@` are allowed); every other line is prose and is ignored, so `@alice` or an
//! e-mail address in an ordinary prompt changes nothing. Paths are relative to the workdir and
//! have no spaces.
//!
//! | Directive | Effect | Tool call |
//! |---|---|---|
//! | `@write <path>`, content lines, `@end` | create or overwrite the file, creating parent directories | `write_file {path, content}` |
//! | `@append <path>`, content lines, `@end` | add the lines at the end (on a new line), creating the file if missing | `append_file {path, content}` |
//! | `@replace <path> <old> => <new>` | replace the first `old` in the file; fails the session if absent. Both texts are trimmed, one line each, and `old` cannot contain `=>` | `edit_file {path, old, new}` |
//! | `@delete <path>` | delete the file (a symlink itself, never its target; not directories) | `delete_file {path}` |
//! | `@run <program> <args...>` | **not executed**: sim has no sandbox, so it only reports the call, with the result "sim does not run commands" and `is_error: false`. Use an `exec` step to run commands | `bash {command}` |
//! | `@fail <message>` | stop here: earlier instructions stay done, later ones are skipped; the session fails with the message | none |
//! | `@sleep <ms>` | wait, cancellably (for tests of long-running agents) | none |
//! | `@say <text>` | one more assistant message | none |
//! | `@cost <usd>` | add to the session's reported cost and report the usage so far at once (for tests of budgets) | none |
//! | `@answer <text>` | a line of the final answer (the `Result` event and `result_text`) instead of the summary; several `@answer` lines are joined with newlines | none |
//! | `@plan`, the plan's JSON lines, `@end` | in a planner step (orch's `plan` label, `orch_core::planner`), write the plan to the file named by `ORCH_PLAN_FILE`; in any other step it does nothing (and says so) | `write_plan {content}` |
//! | `@ask [--secret] [--file] [--hint aws\|gcp\|azure\|kubernetes] KEY...` | an info request, like `orch ask`: when a required key is missing from the session's environment, write the request to `ORCH_ASK_FILE` and end the session there (later instructions are skipped; the run parks and this step runs again with the values); otherwise go on | `ask_user {keys, hint, reason}` |
//!
//! Content lines are taken verbatim up to a line that is exactly `@end` (surrounding spaces
//! allowed), so a file cannot contain such a line. The whole prompt is parsed before anything
//! runs: a malformed prompt (an unclosed `@write`, a stray `@end`, `@sleep 1s`) fails the session
//! with the prompt line at fault and touches no file.
//!
//! A prompt with no directive at all appends a note to `NOTES.md` (its first line as a `##`
//! heading, then its word count), so every sim step leaves a visible diff.
//!
//! `@answer` is how a test scripts what a model *says*: the router and the reviewer read the
//! final answer as JSON, so a prompt line `@answer {"verdict": "approve", "reasons": []}` makes
//! sim a reviewer that approves. Combined with a project's own prompt templates (which can test
//! the attempt or review round), it scripts a sequence of answers across calls.
//!
//! In a workflow file, write the prompt as a YAML block scalar (`|`): a plain YAML scalar cannot
//! start with `@`.
//!
//! ```yaml
//! steps:
//!   - agent: sim
//!     prompt: |
//!       Add a greeting and check it builds.
//!       @write src/greeting.rs
//!       pub fn greet() -> &'static str {
//!           "hello"
//!       }
//!       @end
//!       @replace src/lib.rs // modules go here => pub mod greeting;
//!       @run cargo test
//!       @say The greeting is in place.
//! ```
//!
//! # Paths stay inside the workdir
//!
//! Absolute paths, `..` that climbs above the workdir, and paths that leave it through a symlink
//! (an existing ancestor directory, or the file itself when writing through it) are refused: the
//! tool result is an error and the session fails. See `files.rs` for the exact checks.
//!
//! # Events
//!
//! `Init { session_id, model: "sim" }`, a `Message` with the plan, then per instruction a
//! `ToolCall` + `ToolResult` pair (or a `Message` for `@say`), then `Usage` (input tokens: words
//! of the prompt; output tokens: words of its messages, of the file content it wrote and of its
//! result; cost 0) and `Result`. A failure adds an `Error` before `Usage` and ends with a
//! `Result` whose `is_error` is true. A cancelled session stops at once and emits nothing more,
//! like a killed CLI. Nothing in the events depends on where the workdir is, except the session
//! id.
//!
//! The session id is `sim-` and the first 16 hex digits of the SHA-256 of the workdir path (as
//! given), a NUL byte and the prompt; with `resume_session` the given id is kept and the plan
//! says that the session was resumed. `model` and `env` of the request are ignored.

mod files;
mod instructions;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{AgentError, AgentEvent, AgentOutcome, AgentRequest};
use files::{Done, ToolError, Workdir};
use instructions::Instruction;

/// The file a prompt without directives appends its note to.
const NOTES_FILE: &str = "NOTES.md";

/// The tool result of every `@run`.
const COMMANDS_NOT_RUN: &str = "sim does not run commands";

/// The simulated agent.
#[derive(Debug, Clone, Default)]
pub struct SimAgent {}

impl SimAgent {
    /// Run one simulated session: follow the prompt's instructions in `request.workdir` and
    /// report them as events. See the module documentation for the instruction format.
    pub async fn run(
        &self,
        request: &AgentRequest,
        events: mpsc::UnboundedSender<AgentEvent>,
        cancel: CancellationToken,
    ) -> Result<AgentOutcome, AgentError> {
        if cancel.is_cancelled() {
            return Err(AgentError::Cancelled(
                "sim was cancelled before it started".to_owned(),
            ));
        }
        let requested = request.workdir.clone();
        let workdir = on_blocking_pool(move || Workdir::open(&requested))
            .await
            .and_then(|opened| opened)
            .map_err(|source| AgentError::Io {
                context: format!("open the workdir {}", request.workdir.display()),
                source,
            })?;

        let resumed = request.resume_session.is_some();
        let session_id = match &request.resume_session {
            Some(id) => id.clone(),
            None => session_id(&request.workdir, &request.prompt),
        };
        let mut session = Session::new(events, session_id, &request.prompt);
        session.emit(AgentEvent::Init {
            session_id: session.session_id.clone(),
            model: Some("sim".to_owned()),
        });
        let resumed_prefix = if resumed {
            format!("Resuming session {}. ", session.session_id)
        } else {
            String::new()
        };

        let (instructions, plan_text) = match instructions::parse(&request.prompt) {
            Ok(instructions) if instructions.is_empty() => (
                vec![Instruction::Append {
                    path: NOTES_FILE.to_owned(),
                    content: note(&request.prompt),
                }],
                format!(
                    "The prompt has no sim directives, so I will append a note to `{NOTES_FILE}`."
                ),
            ),
            Ok(instructions) => {
                let plan_text = plan(&instructions);
                (instructions, plan_text)
            }
            Err(error) => {
                let message = format!("sim cannot follow this prompt: {error}");
                session.say(format!("{resumed_prefix}{message}"));
                return Err(session.fail(message.clone(), AgentError::Failed(message)));
            }
        };
        session.say(format!("{resumed_prefix}{plan_text}"));

        let total = instructions.len();
        for (index, instruction) in instructions.into_iter().enumerate() {
            let step = index + 1;
            if cancel.is_cancelled() {
                return Err(AgentError::Cancelled(format!(
                    "sim was cancelled before step {step} of {total}"
                )));
            }
            match instruction {
                Instruction::Write { path, content } => {
                    session.count_output(&content);
                    let input = json!({ "path": path, "content": content });
                    let workdir = workdir.clone();
                    session
                        .file_tool("write_file", input, move || {
                            workdir.write_file(&path, &content)
                        })
                        .await?;
                }
                Instruction::Append { path, content } => {
                    session.count_output(&content);
                    let input = json!({ "path": path, "content": content });
                    let workdir = workdir.clone();
                    session
                        .file_tool("append_file", input, move || {
                            workdir.append_file(&path, &content)
                        })
                        .await?;
                }
                Instruction::Replace { path, old, new } => {
                    session.count_output(&new);
                    let input = json!({ "path": path, "old": old, "new": new });
                    let workdir = workdir.clone();
                    session
                        .file_tool("edit_file", input, move || {
                            workdir.replace_in_file(&path, &old, &new)
                        })
                        .await?;
                }
                Instruction::Delete { path } => {
                    let input = json!({ "path": path });
                    let workdir = workdir.clone();
                    session
                        .file_tool("delete_file", input, move || workdir.delete_file(&path))
                        .await?;
                }
                Instruction::Run { command } => {
                    let id = session.call_tool("bash", json!({ "command": command }));
                    session.emit(AgentEvent::ToolResult {
                        id,
                        output: format!("{COMMANDS_NOT_RUN}; `{command}` was not run"),
                        is_error: false,
                    });
                    session.commands_not_run += 1;
                }
                Instruction::Fail { message } => {
                    return Err(session.fail(message.clone(), AgentError::Failed(message)));
                }
                Instruction::Sleep { millis } => {
                    tokio::select! {
                        () = cancel.cancelled() => {
                            return Err(AgentError::Cancelled(format!(
                                "sim was cancelled during `@sleep {millis}` (step {step} of {total})"
                            )));
                        }
                        () = tokio::time::sleep(Duration::from_millis(millis)) => {}
                    }
                }
                Instruction::Say { text } => session.say(text),
                Instruction::Answer { text } => session.answer.push(text),
                Instruction::Cost { micros } => {
                    // Millionths of a dollar back to dollars (exact for any test's amount).
                    #[allow(clippy::cast_precision_loss)]
                    let usd = micros as f64 / 1_000_000.0;
                    session.cost_usd += usd;
                    session.emit_usage();
                }
                Instruction::Plan { content } => write_plan(&content, request, &mut session)?,
                Instruction::Ask { ask } => {
                    if ask_for(&ask, request, &mut session)? {
                        // Asking ends the session: the worker parks the run and this step
                        // runs again, values in its environment, once someone answers.
                        session.steps_done += 1;
                        break;
                    }
                }
            }
            session.steps_done += 1;
        }
        Ok(session.finish())
    }
}

/// `@plan`: write the plan to the file named by `ORCH_PLAN_FILE`, when the step is a planner.
fn write_plan(
    content: &str,
    request: &AgentRequest,
    session: &mut Session,
) -> Result<(), AgentError> {
    use orch_core::planner::PLAN_FILE_VAR;
    let Some(path) = request.env.get(PLAN_FILE_VAR) else {
        session.say(format!(
            "This step is not a planner ({PLAN_FILE_VAR} is not set), so `@plan` does nothing."
        ));
        return Ok(());
    };
    session.count_output(content);
    let id = session.call_tool("write_plan", json!({ "content": content }));
    let written = std::fs::write(path, content);
    session.emit(AgentEvent::ToolResult {
        id,
        output: match &written {
            Ok(()) => "wrote the plan".to_owned(),
            Err(e) => format!("could not write the plan: {e}"),
        },
        is_error: written.is_err(),
    });
    written.map_err(|source| {
        let message = format!("sim could not write the plan file: {source}");
        session.fail(message.clone(), AgentError::Failed(message))
    })
}

/// `@ask`: if the request's environment lacks a required key, write the info request to the
/// file named by `ORCH_ASK_FILE` (as `orch ask` does) and answer `true`; otherwise say the
/// values are there and answer `false`.
fn ask_for(
    ask: &orch_core::info_request::Ask,
    request: &AgentRequest,
    session: &mut Session,
) -> Result<bool, AgentError> {
    use orch_core::info_request::{key_list, ASK_FILE_VAR};
    let missing: Vec<_> = ask
        .keys
        .iter()
        .filter(|k| request.env.get(&k.name).is_none_or(|v| v.is_empty()))
        .cloned()
        .collect();
    if missing.iter().all(|k| k.optional) {
        session.say(format!(
            "The values I need are here: {}.",
            key_list(&ask.keys)
        ));
        return Ok(false);
    }
    let Some(path) = request.env.get(ASK_FILE_VAR) else {
        let message = format!(
            "sim needs {} and cannot ask: {ASK_FILE_VAR} is not set",
            key_list(&missing)
        );
        return Err(session.fail(message.clone(), AgentError::Failed(message)));
    };
    let body = serde_json::json!({ "keys": missing, "hint": ask.hint, "reason": ask.reason });
    let id = session.call_tool("ask_user", body.clone());
    let written = std::fs::write(path, body.to_string());
    session.emit(AgentEvent::ToolResult {
        id,
        output: match &written {
            Ok(()) => format!("asked for {}", key_list(&missing)),
            Err(e) => format!("could not write the request: {e}"),
        },
        is_error: written.is_err(),
    });
    if let Err(source) = written {
        return Err(AgentError::Io {
            context: format!("write the info request to {path}"),
            source,
        });
    }
    session.say(format!(
        "I need {} to go on; I asked for them and stop here until they are given.",
        key_list(&missing)
    ));
    Ok(true)
}

/// The state of one session: where events go and what to report at the end.
struct Session {
    events: mpsc::UnboundedSender<AgentEvent>,
    session_id: String,
    input_tokens: u64,
    output_tokens: u64,
    tool_calls: usize,
    steps_done: usize,
    commands_not_run: usize,
    changed_files: BTreeSet<String>,
    /// Lines of the final answer given by `@answer`; empty means "answer with the summary".
    answer: Vec<String>,
    /// The cost `@cost` added, in dollars (0 without it).
    cost_usd: f64,
}

impl Session {
    fn new(events: mpsc::UnboundedSender<AgentEvent>, session_id: String, prompt: &str) -> Self {
        Session {
            events,
            session_id,
            input_tokens: word_count(prompt),
            output_tokens: 0,
            tool_calls: 0,
            steps_done: 0,
            commands_not_run: 0,
            changed_files: BTreeSet::new(),
            answer: Vec::new(),
            cost_usd: 0.0,
        }
    }

    fn emit(&self, event: AgentEvent) {
        // A closed receiver means nobody is watching the stream any more; the work and the
        // returned outcome still matter, so sim carries on, as a real CLI would.
        let _ = self.events.send(event);
    }

    fn count_output(&mut self, text: &str) {
        self.output_tokens += word_count(text);
    }

    fn say(&mut self, text: String) {
        self.count_output(&text);
        self.emit(AgentEvent::Message {
            role: "assistant".to_owned(),
            text,
        });
    }

    /// Emit a tool call and return its id; ids are numbered so that runs are reproducible.
    fn call_tool(&mut self, name: &str, input: serde_json::Value) -> String {
        self.tool_calls += 1;
        let id = format!("call-{}", self.tool_calls);
        self.emit(AgentEvent::ToolCall {
            id: id.clone(),
            name: name.to_owned(),
            input,
        });
        id
    }

    /// Call a file tool on the blocking pool, report its result, and fail the session if it
    /// failed: a sim prompt is a script, and a script that went wrong should stop loudly.
    async fn file_tool(
        &mut self,
        name: &str,
        input: serde_json::Value,
        work: impl FnOnce() -> Result<Done, ToolError> + Send + 'static,
    ) -> Result<(), AgentError> {
        let id = self.call_tool(name, input);
        let outcome = on_blocking_pool(work).await.unwrap_or_else(|source| {
            Err(ToolError::Io {
                context: format!("run the {name} tool"),
                source,
            })
        });
        match outcome {
            Ok(done) => {
                self.emit(AgentEvent::ToolResult {
                    id,
                    output: done.output,
                    is_error: false,
                });
                self.changed_files.insert(done.changed);
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                self.emit(AgentEvent::ToolResult {
                    id,
                    output: message.clone(),
                    is_error: true,
                });
                let failure = format!("{name} failed: {message}");
                let agent_error = match error {
                    ToolError::Refused(_) => AgentError::Failed(failure.clone()),
                    ToolError::Io { context, source } => AgentError::Io { context, source },
                };
                Err(self.fail(failure, agent_error))
            }
        }
    }

    /// End the session as failed: emit `Error`, `Usage` and `Result { is_error: true }`, and
    /// hand back `error` for the caller to return.
    fn fail(&mut self, message: String, error: AgentError) -> AgentError {
        self.emit(AgentEvent::Error {
            message: message.clone(),
        });
        self.count_output(&message);
        self.emit_usage();
        self.emit(AgentEvent::Result {
            text: message,
            is_error: true,
        });
        error
    }

    /// End the session as done: `Usage`, `Result`, and the outcome.
    fn finish(mut self) -> AgentOutcome {
        let result_text = if self.answer.is_empty() {
            summary(self.steps_done, &self.changed_files, self.commands_not_run)
        } else {
            self.answer.join("\n")
        };
        self.count_output(&result_text);
        self.emit_usage();
        self.emit(AgentEvent::Result {
            text: result_text.clone(),
            is_error: false,
        });
        AgentOutcome {
            session_id: Some(self.session_id),
            result_text,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd,
            changed_files: self.changed_files.into_iter().collect(),
            model: Some("sim".to_owned()),
            argv: Vec::new(),
        }
    }

    fn emit_usage(&self) {
        self.emit(AgentEvent::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: Some(self.cost_usd),
        });
    }
}

/// Run blocking file work off the async threads; a panic in it becomes an I/O error.
async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, std::io::Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
}

/// `sim-` and 16 hex digits of SHA-256(workdir, NUL, prompt): the same task in the same
/// worktree gets the same id, and two worktrees with the same prompt get different ones.
fn session_id(workdir: &Path, prompt: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(workdir.to_string_lossy().as_bytes());
    hasher.update([0u8]);
    hasher.update(prompt.as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("sim-{}", &digest[..16])
}

fn word_count(text: &str) -> u64 {
    // usize always fits in u64 on the platforms Rust supports.
    text.split_whitespace().count() as u64
}

/// The note a prompt without directives leaves in `NOTES.md`.
fn note(prompt: &str) -> String {
    const TITLE_LIMIT: usize = 100;
    let first_line = prompt
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("(empty prompt)");
    let title: String = if first_line.chars().count() > TITLE_LIMIT {
        let kept: String = first_line.chars().take(TITLE_LIMIT).collect();
        format!("{kept}…")
    } else {
        first_line.to_owned()
    };
    let words = plural(word_count(prompt), "word", "words");
    format!(
        "## {title}\n\nsim read this prompt of {words}; it has no sim directives, so this note is the whole change.\n"
    )
}

/// The first assistant message: what sim is about to do.
fn plan(instructions: &[Instruction]) -> String {
    let steps: Vec<String> = instructions
        .iter()
        .map(|instruction| match instruction {
            Instruction::Write { path, .. } => format!("write `{path}`"),
            Instruction::Append { path, .. } => format!("append to `{path}`"),
            Instruction::Replace { path, old, .. } => format!("replace `{old}` in `{path}`"),
            Instruction::Delete { path } => format!("delete `{path}`"),
            Instruction::Run { command } => {
                format!("report `{command}` without running it")
            }
            Instruction::Fail { message } => format!("fail with \"{message}\""),
            Instruction::Sleep { millis } => format!("wait {millis} ms"),
            Instruction::Say { text } => format!("say \"{text}\""),
            Instruction::Answer { .. } => "answer".to_owned(),
            Instruction::Cost { micros } => format!("spend {micros} millionths of a dollar"),
            Instruction::Ask { ask } => format!(
                "ask for {} unless they are given",
                orch_core::info_request::key_list(&ask.keys)
            ),
            Instruction::Plan { .. } => "write the plan".to_owned(),
        })
        .collect();
    let count = plural(steps.len() as u64, "step", "steps");
    format!("Plan ({count}): {}.", steps.join("; "))
}

/// The final answer: one paragraph naming every changed file.
fn summary(steps_done: usize, changed_files: &BTreeSet<String>, commands_not_run: usize) -> String {
    let steps = plural(steps_done as u64, "step", "steps");
    let mut text = if changed_files.is_empty() {
        format!("sim finished {steps} and changed no files.")
    } else {
        let files: Vec<&str> = changed_files.iter().map(String::as_str).collect();
        format!(
            "sim finished {steps} and changed {}: {}.",
            plural(files.len() as u64, "file", "files"),
            files.join(", ")
        )
    };
    if commands_not_run > 0 {
        text.push_str(&format!(
            " It did not run {} because {COMMANDS_NOT_RUN}.",
            plural(commands_not_run as u64, "command", "commands")
        ));
    }
    text
}

fn plural(count: u64, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("1 {singular}")
    } else {
        format!("{count} {plural}")
    }
}
