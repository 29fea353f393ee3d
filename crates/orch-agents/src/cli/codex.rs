//! Codex CLI's `exec --json` lines.
//!
//! `thread.started` (the thread id is the session to resume), `turn.started`, `item.started` /
//! `item.completed` for agent messages, command executions, file changes and reasoning, then
//! `turn.completed` with usage, or `error` + `turn.failed`. Codex reports no cost: it comes from
//! the price table.

use serde_json::{json, Value};

use super::{parse_json, str_at, u64_at};
use crate::pricing::Price;
use crate::AgentEvent;

/// Sums usage across turns and remembers the last message, which is the result.
#[derive(Debug)]
pub struct CodexParser {
    price: Option<Price>,
    input: u64,
    output: u64,
    last_message: String,
    started: Vec<String>,
}

impl CodexParser {
    /// A parser pricing usage with `price`, the price of the requested model if known.
    pub fn new(price: Option<Price>) -> CodexParser {
        CodexParser {
            price,
            input: 0,
            output: 0,
            last_message: String::new(),
            started: Vec::new(),
        }
    }

    /// The events of one line.
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        let Some(value) = parse_json(line) else {
            return super::unparsed(line);
        };
        match str_at(&value, "/type") {
            Some("thread.started") => vec![AgentEvent::Init {
                session_id: str_at(&value, "/thread_id").unwrap_or_default().to_owned(),
                model: None,
            }],
            Some("turn.started") => Vec::new(),
            Some("item.started") => match value.pointer("/item") {
                Some(item) => self.item(item, false),
                None => vec![AgentEvent::Unknown { raw: value }],
            },
            Some("item.updated") => Vec::new(),
            Some("item.completed") => match value.pointer("/item") {
                Some(item) => self.item(item, true),
                None => vec![AgentEvent::Unknown { raw: value }],
            },
            Some("turn.completed") => {
                let usage = value.pointer("/usage").cloned().unwrap_or(Value::Null);
                // Saturating: a CLI's counts are input, and must not overflow a sum.
                self.input = self.input.saturating_add(u64_at(&usage, "/input_tokens"));
                self.output = self.output.saturating_add(u64_at(&usage, "/output_tokens"));
                let cost = self.price.map(|p| p.cost(self.input, self.output));
                vec![
                    AgentEvent::Usage {
                        input_tokens: self.input,
                        output_tokens: self.output,
                        cost_usd: cost,
                    },
                    AgentEvent::Result {
                        text: self.last_message.clone(),
                        is_error: false,
                    },
                ]
            }
            Some("turn.failed") => {
                let message = str_at(&value, "/error/message")
                    .unwrap_or("the turn failed")
                    .to_owned();
                vec![AgentEvent::Result {
                    text: message,
                    is_error: true,
                }]
            }
            Some("error") => vec![AgentEvent::Error {
                message: str_at(&value, "/message").unwrap_or_default().to_owned(),
            }],
            _ => vec![AgentEvent::Unknown { raw: value }],
        }
    }

    fn item(&mut self, item: &Value, completed: bool) -> Vec<AgentEvent> {
        let id = str_at(item, "/id").unwrap_or_default().to_owned();
        match str_at(item, "/type") {
            Some("agent_message") if completed => {
                let text = str_at(item, "/text").unwrap_or_default().to_owned();
                self.last_message = text.clone();
                vec![AgentEvent::Message {
                    role: "assistant".into(),
                    text,
                }]
            }
            Some("command_execution") => {
                let mut events = Vec::new();
                if !self.started.contains(&id) {
                    self.started.push(id.clone());
                    events.push(AgentEvent::ToolCall {
                        id: id.clone(),
                        name: "command_execution".into(),
                        input: json!({ "command": item.pointer("/command").cloned().unwrap_or(Value::Null) }),
                    });
                }
                if completed {
                    let code = item.pointer("/exit_code").and_then(Value::as_i64);
                    events.push(AgentEvent::ToolResult {
                        id,
                        output: str_at(item, "/aggregated_output")
                            .unwrap_or_default()
                            .to_owned(),
                        is_error: code.is_some_and(|c| c != 0)
                            || str_at(item, "/status") == Some("failed"),
                    });
                }
                events
            }
            Some("file_change") if completed => {
                let changes = item.pointer("/changes").cloned().unwrap_or(Value::Null);
                let mut events = Vec::new();
                for change in changes.as_array().into_iter().flatten() {
                    events.push(AgentEvent::ToolCall {
                        id: id.clone(),
                        name: "file_change".into(),
                        input: json!({ "path": change.pointer("/path").cloned().unwrap_or(Value::Null), "kind": change.pointer("/kind").cloned().unwrap_or(Value::Null) }),
                    });
                }
                events.push(AgentEvent::ToolResult {
                    id,
                    output: str_at(item, "/status").unwrap_or("completed").to_owned(),
                    is_error: str_at(item, "/status") == Some("failed"),
                });
                events
            }
            Some("error") if completed => vec![AgentEvent::Error {
                message: str_at(item, "/message").unwrap_or_default().to_owned(),
            }],
            Some("reasoning") | Some("agent_message") | Some("file_change") | Some("error") => {
                Vec::new()
            }
            _ => vec![AgentEvent::Unknown { raw: item.clone() }],
        }
    }
}
