//! OpenCode's `run --format json` lines.
//!
//! `step_start`, `text`, `tool_use` (with the tool's state: input and output), `step_finish`
//! (tokens and cost of that step), and `error`; `sessionID` on every line. There is no final
//! summary line: usage is summed over the steps and the result is the last text, both emitted
//! when the output ends.

use serde_json::Value;

use super::{parse_json, str_at, u64_at};
use crate::AgentEvent;

/// Sums the steps.
#[derive(Debug, Default)]
pub struct OpenCodeParser {
    session: Option<String>,
    input: u64,
    output: u64,
    cost: f64,
    last_text: String,
    saw_step: bool,
    failed: bool,
}

impl OpenCodeParser {
    /// The events of one line.
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        let Some(value) = parse_json(line) else {
            return super::unparsed(line);
        };
        let mut events = Vec::new();
        if self.session.is_none() {
            if let Some(id) = str_at(&value, "/sessionID") {
                self.session = Some(id.to_owned());
                events.push(AgentEvent::Init {
                    session_id: id.to_owned(),
                    model: None,
                });
            }
        }
        match str_at(&value, "/type") {
            Some("step_start") => self.saw_step = true,
            Some("text") => {
                let text = str_at(&value, "/part/text").unwrap_or_default().to_owned();
                self.last_text = text.clone();
                events.push(AgentEvent::Message {
                    role: "assistant".into(),
                    text,
                });
            }
            Some("tool_use") => {
                let part = value.pointer("/part").cloned().unwrap_or(Value::Null);
                let id = str_at(&part, "/callID").unwrap_or_default().to_owned();
                events.push(AgentEvent::ToolCall {
                    id: id.clone(),
                    name: str_at(&part, "/tool").unwrap_or_default().to_owned(),
                    input: part.pointer("/state/input").cloned().unwrap_or(Value::Null),
                });
                let status = str_at(&part, "/state/status");
                if matches!(status, Some("completed") | Some("error")) {
                    let output = str_at(&part, "/state/output")
                        .or_else(|| str_at(&part, "/state/error"))
                        .unwrap_or_default()
                        .to_owned();
                    events.push(AgentEvent::ToolResult {
                        id,
                        output,
                        is_error: status == Some("error"),
                    });
                }
            }
            Some("step_finish") => {
                let tokens = value
                    .pointer("/part/tokens")
                    .cloned()
                    .unwrap_or(Value::Null);
                // Saturating: a CLI's counts are input, and must not overflow a sum.
                self.input = self
                    .input
                    .saturating_add(u64_at(&tokens, "/input"))
                    .saturating_add(u64_at(&tokens, "/cache/read"));
                self.output = self
                    .output
                    .saturating_add(u64_at(&tokens, "/output"))
                    .saturating_add(u64_at(&tokens, "/reasoning"));
                self.cost += value
                    .pointer("/part/cost")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                events.push(AgentEvent::Usage {
                    input_tokens: self.input,
                    output_tokens: self.output,
                    cost_usd: Some(self.cost),
                });
            }
            Some("error") => {
                self.failed = true;
                let message = str_at(&value, "/error/data/message")
                    .or_else(|| str_at(&value, "/error/message"))
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        value
                            .pointer("/error")
                            .map(Value::to_string)
                            .unwrap_or_default()
                    });
                let status = value
                    .pointer("/error/data/statusCode")
                    .and_then(Value::as_u64)
                    .map(|s| format!(" (status {s})"))
                    .unwrap_or_default();
                events.push(AgentEvent::Error {
                    message: format!("{message}{status}"),
                });
            }
            _ => events.push(AgentEvent::Unknown { raw: value }),
        }
        events
    }

    /// The result, once the output has ended.
    pub fn finish(&mut self) -> Vec<AgentEvent> {
        if self.failed || !self.saw_step {
            return Vec::new();
        }
        vec![AgentEvent::Result {
            text: std::mem::take(&mut self.last_text),
            is_error: false,
        }]
    }
}
