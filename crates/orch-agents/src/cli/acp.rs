//! Agents that speak the Agent Client Protocol (ACP) on stdin/stdout: any of them runs as a
//! command agent with `output = "acp"`, without new code.
//!
//! ```toml
//! [agents.commands.opencode-acp]
//! argv = ["opencode", "acp"]
//! output = "acp"
//! pass_env = ["OPENCODE_CONFIG_CONTENT"]
//!
//! [agents.commands.gemini-acp]
//! argv = ["gemini", "--acp"]                # `--experimental-acp` in older versions
//! output = "acp"
//! pass_env = ["GEMINI_API_KEY"]
//! ```
//!
//! ACP is JSON-RPC 2.0, one message per line. orch is the client: it sends `initialize`, then
//! `session/new` (or `session/load` to resume, when the agent advertises `loadSession`), then one
//! `session/prompt`; the agent streams `session/update` notifications and the prompt's response
//! carries the `stopReason`. Then orch closes the agent's stdin, which ends it (or the result
//! grace does). orch advertises no file system and no terminal capability, so the agent uses its
//! own tools in the working directory, and it answers every `session/request_permission` with
//! its "allow once" option: the session is headless, like the other CLIs run with edits
//! accepted. An ACP agent always runs as a direct child (a `session = "tmux"` setting is not
//! applied): the relay in a tmux pane has no stdin orch could write to.
//!
//! Events: the `session/new` (or resumed) session id is `init`; agent message chunks are joined
//! into one `message` per stretch of text; `tool_call` / `tool_call_update` become `tool_call`
//! (once per call, when its input is known) and `tool_result`; token usage on the prompt answer
//! (or Gemini CLI's `_meta.quota`) is `usage`; the answer is `result`, whose text is the agent's
//! last message (the text after its last tool call), and an error unless the `stopReason` is
//! `end_turn`. Other updates (plans, thoughts, mode and command lists) are kept as `unknown`.
//! A JSON-RPC error answer is an `error` event naming the refused method, judged like any CLI's
//! error text; an agent that exits before answering is a crash with its stderr.
//!
//! Why a small hand-written client rather than the `agent-client-protocol` crate (5.0.0 on
//! crates.io at the time of writing; not built here): it is a full SDK whose connection owns
//! the transport and runs the session inside its own `connect_with` future, with its own
//! dependencies (a derive crate, the schema crate, futures-concurrency, uuid, anyhow). Every CLI
//! here goes through the one process runner, which owns the pipes, the line reader (with its
//! length cap and the raw output capture), the stall watchdog, the result grace and
//! cancellation by process group; handing the pipes to the SDK would bypass or duplicate all of
//! that. The part of ACP a headless client needs is six messages, so [`AcpClient`] is a pure
//! state machine like the other dialects: lines in, events and lines to send out, no I/O (and
//! unit-testable as such).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{parse_json, str_at, unparsed};
use crate::pricing::Price;
use crate::AgentEvent;

/// The ACP version orch speaks.
const PROTOCOL_VERSION: u64 = 1;

/// JSON-RPC ids of orch's own requests.
const ID_INITIALIZE: u64 = 1;
const ID_SESSION: u64 = 2;
const ID_PROMPT: u64 = 3;

/// "Method not found", for client methods orch does not offer.
const METHOD_NOT_FOUND: i64 = -32601;

/// Where the conversation with the agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `initialize` sent.
    Initializing,
    /// `session/new` or `session/load` sent.
    OpeningSession,
    /// `session/prompt` sent; updates stream in.
    Prompting,
    /// The prompt answered (or the session failed): nothing more to send.
    Done,
}

/// The client side of one ACP session: feed it the agent's stdout lines, send what it queues.
#[derive(Debug)]
pub struct AcpClient {
    prompt: String,
    cwd: String,
    resume: Option<String>,
    phase: Phase,
    session_id: Option<String>,
    /// Agent message chunks not yet reported as a `message` event.
    pending_message: String,
    /// The agent's last message of the turn (its chunks since the last tool call): the result,
    /// as the other CLIs' final answer is their last message, not the narration before tools.
    answer: String,
    /// A tool call came after the text in `answer`: the next chunk starts a new message.
    answer_closed: bool,
    /// JSON-RPC lines to write to the agent's stdin.
    outgoing: Vec<String>,
    /// Tool calls by id: their name and whether their `tool_call` event went out. A call may
    /// come without input (OpenCode sends it in the first update) or only inside a permission
    /// request (Gemini CLI): the event waits for the input, or for the call to be asked about
    /// or to finish, whichever comes first.
    calls: BTreeMap<String, Call>,
    /// The model: the one configured, then the one the agent reports for the session.
    model: Option<String>,
    /// Prices per model, for agents that report tokens but no cost.
    pricing: BTreeMap<String, Price>,
}

impl AcpClient {
    /// A client that will send `prompt` in a session rooted at `cwd`, resuming `resume` if set.
    pub fn new(prompt: &str, cwd: &str, resume: Option<&str>) -> AcpClient {
        let mut client = AcpClient {
            prompt: prompt.to_owned(),
            cwd: cwd.to_owned(),
            resume: resume.map(str::to_owned),
            phase: Phase::Initializing,
            session_id: None,
            pending_message: String::new(),
            answer: String::new(),
            answer_closed: false,
            outgoing: Vec::new(),
            calls: BTreeMap::new(),
            model: None,
            pricing: BTreeMap::new(),
        };
        client.request(
            ID_INITIALIZE,
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "clientCapabilities": {
                    "fs": {"readTextFile": false, "writeTextFile": false},
                    "terminal": false,
                },
                "clientInfo": {"name": "orch", "version": env!("CARGO_PKG_VERSION")},
            }),
        );
        client
    }

    /// Price the session's tokens with `pricing` (by the agent's model, else `model`) when the
    /// agent reports no cost.
    pub fn priced(mut self, model: Option<&str>, pricing: &BTreeMap<String, Price>) -> AcpClient {
        self.model = model.map(str::to_owned);
        self.pricing = pricing.clone();
        self
    }

    /// Lines to write to the agent's stdin, each without its newline.
    pub fn take_outgoing(&mut self) -> Vec<String> {
        std::mem::take(&mut self.outgoing)
    }

    /// Whether the session is over, so the agent's stdin can be closed.
    pub fn finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The events of one line from the agent.
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        let Some(message) = parse_json(line) else {
            return unparsed(line);
        };
        let method = str_at(&message, "/method").map(str::to_owned);
        let id = message.get("id").cloned().filter(|id| !id.is_null());
        match (method, id) {
            (Some(method), Some(id)) => self.agent_request(&method, id, &message),
            (Some(method), None) if method == "session/update" => self.update(&message),
            (Some(_), None) => vec![AgentEvent::Unknown { raw: message }],
            (None, Some(id)) => self.response(&id, &message),
            (None, None) => vec![AgentEvent::Unknown { raw: message }],
        }
    }

    /// Events owed when the agent's output ends. An agent that ended before answering gets no
    /// error event here: the judge then reports it as a crash with its exit status and stderr.
    pub fn finish(&mut self) -> Vec<AgentEvent> {
        self.flush_message()
    }

    fn request(&mut self, id: u64, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
    }

    fn send(&mut self, message: Value) {
        self.outgoing.push(message.to_string());
    }

    /// A reply to one of orch's requests.
    fn response(&mut self, id: &Value, message: &Value) -> Vec<AgentEvent> {
        if let Some(error) = message.get("error") {
            self.phase = Phase::Done;
            let mut events = self.flush_message();
            let method = match id.as_u64() {
                Some(ID_INITIALIZE) => "initialize",
                Some(ID_SESSION) if self.resume.is_some() => "session/load",
                Some(ID_SESSION) => "session/new",
                Some(ID_PROMPT) => "session/prompt",
                _ => "a request",
            };
            events.push(AgentEvent::Error {
                message: format!("the ACP agent refused {method}: {}", rpc_error_text(error)),
            });
            return events;
        }
        let result = message.get("result").cloned().unwrap_or(Value::Null);
        match (id.as_u64(), self.phase) {
            (Some(ID_INITIALIZE), Phase::Initializing) => self.initialized(&result),
            (Some(ID_SESSION), Phase::OpeningSession) => {
                let session = match &self.resume {
                    Some(resumed) => resumed.clone(),
                    None => match str_at(&result, "/sessionId") {
                        Some(id) => id.to_owned(),
                        None => {
                            self.phase = Phase::Done;
                            return vec![AgentEvent::Error {
                                message: "the ACP agent's `session/new` answer has no sessionId"
                                    .into(),
                            }];
                        }
                    },
                };
                self.session_id = Some(session.clone());
                self.phase = Phase::Prompting;
                // Updates that came while loading replayed the old conversation: not this turn.
                self.pending_message.clear();
                let prompt = json!({
                    "sessionId": session,
                    "prompt": [{"type": "text", "text": self.prompt}],
                });
                self.request(ID_PROMPT, "session/prompt", prompt);
                let model = session_model(&result);
                if model.is_some() {
                    self.model = model.clone();
                }
                vec![AgentEvent::Init {
                    session_id: session,
                    model,
                }]
            }
            (Some(ID_PROMPT), Phase::Prompting) => self.prompt_answered(&result),
            _ => vec![AgentEvent::Unknown {
                raw: message.clone(),
            }],
        }
    }

    fn initialized(&mut self, result: &Value) -> Vec<AgentEvent> {
        self.phase = Phase::OpeningSession;
        let params = json!({"cwd": self.cwd, "mcpServers": []});
        match self.resume.clone() {
            None => self.request(ID_SESSION, "session/new", params),
            Some(session) => {
                let can_load = result
                    .pointer("/agentCapabilities/loadSession")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if !can_load {
                    self.phase = Phase::Done;
                    return vec![AgentEvent::Error {
                        message: format!(
                            "cannot resume session {session}: the ACP agent does not advertise `loadSession`; start a new task instead of replying"
                        ),
                    }];
                }
                let mut params = params;
                params["sessionId"] = json!(session);
                self.request(ID_SESSION, "session/load", params);
            }
        }
        Vec::new()
    }

    fn prompt_answered(&mut self, result: &Value) -> Vec<AgentEvent> {
        self.phase = Phase::Done;
        let mut events = self.flush_message();
        // ACP's (unstable) `usage`, else Gemini CLI's `_meta.quota.token_count`.
        let usage = result.get("usage").cloned().or_else(|| {
            let count = result.pointer("/_meta/quota/token_count")?;
            Some(json!({
                "inputTokens": count.get("input_tokens"),
                "outputTokens": count.get("output_tokens"),
            }))
        });
        if let Some(usage) = usage {
            let mut event = usage_event(&usage);
            if let AgentEvent::Usage {
                input_tokens,
                output_tokens,
                cost_usd: cost @ None,
            } = &mut event
            {
                let price = self.model.as_ref().and_then(|m| self.pricing.get(m));
                *cost = price.map(|p| p.cost(*input_tokens, *output_tokens));
            }
            events.push(event);
        }
        let stop = str_at(result, "/stopReason").unwrap_or("end_turn");
        let answer = self.answer.trim().to_owned();
        events.push(match stop {
            "end_turn" => AgentEvent::Result {
                text: answer,
                is_error: false,
            },
            other => AgentEvent::Result {
                text: format!("the ACP agent stopped the turn: {other}. {answer}")
                    .trim()
                    .to_owned(),
                is_error: true,
            },
        });
        events
    }

    /// A request from the agent to orch.
    fn agent_request(&mut self, method: &str, id: Value, message: &Value) -> Vec<AgentEvent> {
        if method == "session/request_permission" {
            let mut events = self.flush_message();
            if let Some(call) = message.pointer("/params/toolCall") {
                events.extend(self.announce(call, true));
            }
            let options = message
                .pointer("/params/options")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let kind_of = |o: &Value| str_at(o, "/kind").unwrap_or("").to_owned();
            // Once, not always: "always" makes some agents switch their session's mode (Gemini
            // CLI then reports the switch as message text).
            let chosen = ["allow_once", "allow_always"]
                .iter()
                .find_map(|kind| options.iter().find(|o| kind_of(o) == *kind))
                .and_then(|o| str_at(o, "/optionId"))
                .map(str::to_owned);
            let outcome = match chosen {
                Some(option) => json!({"outcome": "selected", "optionId": option}),
                None => json!({"outcome": "cancelled"}),
            };
            self.send(json!({"jsonrpc": "2.0", "id": id, "result": {"outcome": outcome}}));
            return events;
        }
        // orch advertised no fs or terminal capability: anything else is not offered.
        self.send(json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": METHOD_NOT_FOUND, "message": format!("orch does not offer `{method}`")},
        }));
        vec![AgentEvent::Unknown {
            raw: message.clone(),
        }]
    }

    /// A `session/update` notification.
    fn update(&mut self, message: &Value) -> Vec<AgentEvent> {
        let Some(update) = message.pointer("/params/update") else {
            return vec![AgentEvent::Unknown {
                raw: message.clone(),
            }];
        };
        if self.phase != Phase::Prompting {
            // `session/load` replays the earlier conversation before it answers.
            return Vec::new();
        }
        let kind = str_at(update, "/sessionUpdate").unwrap_or("");
        if kind == "agent_message_chunk" {
            if let Some(text) = str_at(update, "/content/text") {
                if self.answer_closed {
                    self.answer.clear();
                    self.answer_closed = false;
                }
                self.pending_message.push_str(text);
                self.answer.push_str(text);
            }
            return Vec::new();
        }
        let mut events = self.flush_message();
        match kind {
            "tool_call" => events.extend(self.announce(update, false)),
            "tool_call_update" => {
                let status = str_at(update, "/status");
                let finished = matches!(status, Some("completed" | "failed"));
                let announced = self.announce(update, finished);
                let said_something = announced.is_some();
                events.extend(announced);
                if finished {
                    events.push(AgentEvent::ToolResult {
                        id: str_at(update, "/toolCallId").unwrap_or("").to_owned(),
                        output: tool_output(update),
                        is_error: status == Some("failed"),
                    });
                } else if !said_something {
                    events.push(AgentEvent::Unknown {
                        raw: update.clone(),
                    });
                }
            }
            "usage_update" => events.push(usage_event(update)),
            _ => events.push(AgentEvent::Unknown {
                raw: update.clone(),
            }),
        }
        events
    }

    /// The `tool_call` event for `call` (a `tool_call`, a `tool_call_update` or a permission
    /// request's `toolCall`) if it is due: once per call, when its input is known, or at once
    /// with what is known when `now`.
    fn announce(&mut self, call: &Value, now: bool) -> Option<AgentEvent> {
        self.answer_closed = true;
        let id = str_at(call, "/toolCallId").unwrap_or("").to_owned();
        let entry = self.calls.entry(id.clone()).or_insert_with(|| Call {
            name: str_at(call, "/title")
                .or_else(|| str_at(call, "/kind"))
                .unwrap_or("tool")
                .to_owned(),
            reported: false,
        });
        if entry.reported {
            return None;
        }
        let input = raw_input(call).or_else(|| now.then(|| described_input(call)))?;
        entry.reported = true;
        Some(AgentEvent::ToolCall {
            id,
            name: entry.name.clone(),
            input,
        })
    }

    fn flush_message(&mut self) -> Vec<AgentEvent> {
        if self.pending_message.trim().is_empty() {
            self.pending_message.clear();
            return Vec::new();
        }
        vec![AgentEvent::Message {
            role: "assistant".into(),
            text: std::mem::take(&mut self.pending_message),
        }]
    }
}

/// What orch knows of one tool call.
#[derive(Debug)]
struct Call {
    name: String,
    reported: bool,
}

/// A tool call's input from its description, for agents that send no `rawInput`: its kind,
/// title and locations, and for edits the `path` (which is how changed files are found).
fn described_input(call: &Value) -> Value {
    let mut input = json!({
        "kind": call.get("kind"),
        "title": call.get("title"),
        "locations": call.get("locations"),
    });
    if matches!(str_at(call, "/kind"), Some("edit" | "delete" | "move")) {
        if let Some(path) = str_at(call, "/locations/0/path") {
            input["path"] = json!(path);
        }
    }
    input
}

/// A tool call's input, when the update carries a non-empty one.
fn raw_input(update: &Value) -> Option<Value> {
    update
        .get("rawInput")
        .filter(|v| v.as_object().is_none_or(|o| !o.is_empty()) && !v.is_null())
        .cloned()
}

/// The session's model from a `session/new` answer: the (unstable) `models` field, or the
/// `configOptions` entry of category `model` (OpenCode).
fn session_model(result: &Value) -> Option<String> {
    if let Some(model) = str_at(result, "/models/currentModelId") {
        return Some(model.to_owned());
    }
    result
        .get("configOptions")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| str_at(o, "/category") == Some("model"))
        .and_then(|o| str_at(o, "/currentValue"))
        .map(str::to_owned)
}

/// The text of a finished tool call: its text content blocks, else its raw output.
fn tool_output(update: &Value) -> String {
    let texts: Vec<&str> = update
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| str_at(c, "/content/text").or_else(|| str_at(c, "/text")))
        .collect();
    if !texts.is_empty() {
        return texts.join("\n");
    }
    match update.get("rawOutput") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("output")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    }
}

/// Usage in either shape ACP agents report it: token counts (`inputTokens`/`outputTokens`) on
/// the prompt answer, or a `usage_update` with a cost.
fn usage_event(usage: &Value) -> AgentEvent {
    let tokens = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cost = usage
        .pointer("/cost/amount")
        .and_then(Value::as_f64)
        .filter(|_| str_at(usage, "/cost/currency").is_none_or(|c| c == "USD"));
    AgentEvent::Usage {
        input_tokens: tokens("inputTokens"),
        output_tokens: tokens("outputTokens"),
        cost_usd: cost,
    }
}

/// A JSON-RPC error as one line: message, code and whatever data explains it.
fn rpc_error_text(error: &Value) -> String {
    let message = str_at(error, "/message").unwrap_or("no message");
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    match error.get("data") {
        Some(Value::String(data)) => format!("{message} ({code}): {data}"),
        Some(data) if !data.is_null() => format!("{message} ({code}): {data}"),
        _ => format!("{message} ({code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `lines` (JSON values) to `client`; returns the events and what it sent, as values.
    fn exchange(client: &mut AcpClient, lines: &[Value]) -> (Vec<AgentEvent>, Vec<Value>) {
        let mut events = Vec::new();
        let mut sent: Vec<Value> = client
            .take_outgoing()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for line in lines {
            events.extend(client.line(&line.to_string()));
            sent.extend(
                client
                    .take_outgoing()
                    .iter()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
        (events, sent)
    }

    fn reply(id: u64, result: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    }

    fn update(update: Value) -> Value {
        json!({"jsonrpc": "2.0", "method": "session/update",
               "params": {"sessionId": "ses_1", "update": update}})
    }

    fn chunk(text: &str) -> Value {
        update(json!({"sessionUpdate": "agent_message_chunk",
                      "content": {"type": "text", "text": text}}))
    }

    #[test]
    fn a_session_maps_to_init_tools_message_usage_and_result() {
        let mut client = AcpClient::new("add hello.txt", "/work/tree", None);
        let (events, sent) = exchange(
            &mut client,
            &[
                reply(
                    1,
                    json!({"protocolVersion": 1, "agentCapabilities": {"loadSession": true}}),
                ),
                reply(
                    2,
                    json!({"sessionId": "ses_1", "models": {"currentModelId": "m/x"}}),
                ),
                update(json!({"sessionUpdate": "plan", "entries": []})),
                chunk("Writing "),
                chunk("the file."),
                update(json!({"sessionUpdate": "tool_call", "toolCallId": "c1",
                              "title": "write", "kind": "edit", "status": "pending",
                              "rawInput": {"filePath": "/work/tree/hello.txt"}})),
                update(
                    json!({"sessionUpdate": "tool_call_update", "toolCallId": "c1",
                              "status": "in_progress"}),
                ),
                update(
                    json!({"sessionUpdate": "tool_call_update", "toolCallId": "c1",
                              "status": "completed",
                              "content": [{"type": "content",
                                           "content": {"type": "text", "text": "Wrote file"}}]}),
                ),
                chunk("Done."),
                reply(
                    3,
                    json!({"stopReason": "end_turn",
                           "usage": {"inputTokens": 120, "outputTokens": 30, "totalTokens": 150}}),
                ),
            ],
        );
        let methods: Vec<&str> = sent.iter().filter_map(|m| str_at(m, "/method")).collect();
        assert_eq!(methods, ["initialize", "session/new", "session/prompt"]);
        assert_eq!(
            sent[0]["params"]["clientCapabilities"]["fs"]["writeTextFile"],
            false
        );
        assert_eq!(
            sent[1]["params"],
            json!({"cwd": "/work/tree", "mcpServers": []})
        );
        assert_eq!(
            sent[2]["params"],
            json!({"sessionId": "ses_1", "prompt": [{"type": "text", "text": "add hello.txt"}]})
        );
        let plan = json!({"sessionUpdate": "plan", "entries": []});
        let in_progress = json!({"sessionUpdate": "tool_call_update", "toolCallId": "c1", "status": "in_progress"});
        assert_eq!(
            events,
            vec![
                AgentEvent::Init {
                    session_id: "ses_1".into(),
                    model: Some("m/x".into())
                },
                AgentEvent::Unknown { raw: plan },
                AgentEvent::Message {
                    role: "assistant".into(),
                    text: "Writing the file.".into()
                },
                AgentEvent::ToolCall {
                    id: "c1".into(),
                    name: "write".into(),
                    input: json!({"filePath": "/work/tree/hello.txt"})
                },
                AgentEvent::Unknown { raw: in_progress },
                AgentEvent::ToolResult {
                    id: "c1".into(),
                    output: "Wrote file".into(),
                    is_error: false
                },
                AgentEvent::Message {
                    role: "assistant".into(),
                    text: "Done.".into()
                },
                AgentEvent::Usage {
                    input_tokens: 120,
                    output_tokens: 30,
                    cost_usd: None
                },
                AgentEvent::Result {
                    text: "Done.".into(),
                    is_error: false
                },
            ]
        );
        assert!(client.finished());
        assert!(client.finish().is_empty());
    }

    /// OpenCode's shape: the call comes without input, the first update brings it; the model
    /// is a `configOptions` entry; the cost comes from the price table.
    #[test]
    fn a_tool_call_waits_for_its_input_and_usage_is_priced_by_the_session_model() {
        let pricing = BTreeMap::from([(
            "p/m".to_owned(),
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
            },
        )]);
        let mut client = AcpClient::new("p", "/w", None).priced(None, &pricing);
        let (events, _) = exchange(
            &mut client,
            &[
                reply(1, json!({})),
                reply(
                    2,
                    json!({"sessionId": "s", "configOptions": [
                        {"id": "mode", "category": "mode", "currentValue": "build"},
                        {"id": "model", "category": "model", "currentValue": "p/m"}]}),
                ),
                update(
                    json!({"sessionUpdate": "tool_call", "toolCallId": "c1", "title": "bash",
                              "kind": "execute", "status": "pending", "rawInput": {}}),
                ),
                update(
                    json!({"sessionUpdate": "tool_call_update", "toolCallId": "c1",
                              "status": "in_progress", "title": "echo hi",
                              "rawInput": {"command": "echo hi"}}),
                ),
                update(
                    json!({"sessionUpdate": "tool_call_update", "toolCallId": "c1",
                              "status": "completed", "rawOutput": {"output": "hi\n"}}),
                ),
                chunk("ok"),
                reply(
                    3,
                    json!({"stopReason": "end_turn",
                           "usage": {"inputTokens": 1_000_000, "outputTokens": 500_000}}),
                ),
            ],
        );
        assert_eq!(
            events,
            vec![
                AgentEvent::Init {
                    session_id: "s".into(),
                    model: Some("p/m".into())
                },
                AgentEvent::ToolCall {
                    id: "c1".into(),
                    name: "bash".into(),
                    input: json!({"command": "echo hi"})
                },
                AgentEvent::ToolResult {
                    id: "c1".into(),
                    output: "hi\n".into(),
                    is_error: false
                },
                AgentEvent::Message {
                    role: "assistant".into(),
                    text: "ok".into()
                },
                AgentEvent::Usage {
                    input_tokens: 1_000_000,
                    output_tokens: 500_000,
                    cost_usd: Some(2.0)
                },
                AgentEvent::Result {
                    text: "ok".into(),
                    is_error: false
                },
            ]
        );
    }

    /// Gemini CLI's shape: a call is only announced inside the permission request.
    #[test]
    fn permission_requests_are_allowed_once_and_other_client_methods_refused() {
        let mut client = AcpClient::new("p", "/w", None);
        let (events, sent) = exchange(
            &mut client,
            &[
                reply(1, json!({})),
                reply(2, json!({"sessionId": "s"})),
                json!({"jsonrpc": "2.0", "id": 7, "method": "session/request_permission",
                       "params": {"sessionId": "s",
                                  "toolCall": {"toolCallId": "c", "title": "Writing to a.txt",
                                               "kind": "edit", "status": "pending",
                                               "locations": [{"path": "/w/a.txt"}]},
                                  "options": [
                                      {"optionId": "no", "name": "Reject", "kind": "reject_once"},
                                      {"optionId": "once", "name": "Allow", "kind": "allow_once"},
                                      {"optionId": "always", "name": "Always", "kind": "allow_always"}]}}),
                update(
                    json!({"sessionUpdate": "tool_call_update", "toolCallId": "c",
                              "status": "completed", "kind": "edit", "content": []}),
                ),
                json!({"jsonrpc": "2.0", "id": "x", "method": "fs/read_text_file",
                       "params": {"sessionId": "s", "path": "/etc/passwd"}}),
            ],
        );
        assert_eq!(
            sent[3],
            json!({"jsonrpc": "2.0", "id": 7,
                   "result": {"outcome": {"outcome": "selected", "optionId": "once"}}})
        );
        assert_eq!(sent[4]["id"], "x");
        assert_eq!(sent[4]["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(
            events[1..3],
            [
                AgentEvent::ToolCall {
                    id: "c".into(),
                    name: "Writing to a.txt".into(),
                    input: json!({"kind": "edit", "title": "Writing to a.txt",
                                  "locations": [{"path": "/w/a.txt"}], "path": "/w/a.txt"})
                },
                AgentEvent::ToolResult {
                    id: "c".into(),
                    output: String::new(),
                    is_error: false
                }
            ]
        );
    }

    #[test]
    fn resume_loads_the_session_and_ignores_the_replayed_history() {
        let mut client = AcpClient::new("again", "/w", Some("ses_9"));
        let (events, sent) = exchange(
            &mut client,
            &[
                reply(1, json!({"agentCapabilities": {"loadSession": true}})),
                chunk("old answer"),
                reply(2, Value::Null),
                chunk("new answer"),
                reply(3, json!({"stopReason": "end_turn"})),
            ],
        );
        assert_eq!(sent[1]["method"], "session/load");
        assert_eq!(
            sent[1]["params"],
            json!({"cwd": "/w", "mcpServers": [], "sessionId": "ses_9"})
        );
        assert_eq!(sent[2]["params"]["sessionId"], "ses_9");
        assert_eq!(
            events.last(),
            Some(&AgentEvent::Result {
                text: "new answer".into(),
                is_error: false
            })
        );
        assert!(matches!(&events[0], AgentEvent::Init { session_id, .. } if session_id == "ses_9"));
    }

    #[test]
    fn resume_without_load_session_is_a_clear_error() {
        let mut client = AcpClient::new("again", "/w", Some("ses_9"));
        let (events, sent) = exchange(
            &mut client,
            &[reply(
                1,
                json!({"agentCapabilities": {"loadSession": false}}),
            )],
        );
        assert_eq!(sent.len(), 1, "nothing after initialize");
        assert!(client.finished());
        let [AgentEvent::Error { message }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!(
            message.contains("does not advertise `loadSession`"),
            "{message}"
        );
    }

    #[test]
    fn a_json_rpc_error_is_judged_by_its_text() {
        let mut client = AcpClient::new("p", "/w", None);
        let (events, _) = exchange(
            &mut client,
            &[
                reply(1, json!({})),
                reply(2, json!({"sessionId": "s"})),
                json!({"jsonrpc": "2.0", "id": 3,
                       "error": {"code": -32603, "message": "Internal error",
                                 "data": {"message": "429 Too Many Requests"}}}),
            ],
        );
        let mut transcript = crate::cli::transcript::Transcript::default();
        for event in &events {
            transcript.observe(event);
        }
        let error = transcript
            .finish(
                "acp",
                Vec::new(),
                crate::cli::transcript::Ending::Exited {
                    code: Some(0),
                    signal: None,
                },
                "",
            )
            .unwrap_err();
        assert!(
            matches!(error, crate::AgentError::RateLimited { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("session/prompt"), "{error}");
    }

    #[test]
    fn a_refusal_is_not_success() {
        let mut client = AcpClient::new("p", "/w", None);
        let (events, _) = exchange(
            &mut client,
            &[
                reply(1, json!({})),
                reply(2, json!({"sessionId": "s"})),
                reply(3, json!({"stopReason": "refusal"})),
            ],
        );
        assert!(
            matches!(events.last(), Some(AgentEvent::Result { is_error: true, text }) if text.contains("refusal")),
            "{events:?}"
        );
    }

    #[test]
    fn lines_that_are_not_json_rpc_are_kept_as_unknown() {
        let mut client = AcpClient::new("p", "/w", None);
        assert!(matches!(
            client.line("starting server...").as_slice(),
            [AgentEvent::Unknown { .. }]
        ));
        assert!(client.line("").is_empty());
    }
}
