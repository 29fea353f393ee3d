//! Claude Code's `--output-format stream-json` lines.
//!
//! `system/init` (session id, model), one `assistant` line per content block (text, tool_use,
//! thinking), `user` lines carrying tool results, and a final `result` line with the summed
//! usage, the CLI's own cost and `is_error` (an API error exits 1 with `subtype: success` but
//! `is_error: true`, so `subtype` alone means nothing).

use serde_json::Value;

use super::{parse_json, str_at, u64_at};
use crate::AgentEvent;

/// The parser's state: the usage of the assistant messages seen so far, so each new message
/// reports the session's usage at once (a budget can stop the session mid-stream) rather than
/// only in the final `result`.
#[derive(Debug, Default)]
pub struct ClaudeParser {
    /// The id of the last assistant message counted (its content blocks repeat its usage).
    last_message: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
}

fn usage_tokens(usage: &Value) -> (u64, u64) {
    // Saturating: a CLI's counts are input, and must not overflow a sum.
    let input = u64_at(usage, "/input_tokens")
        .saturating_add(u64_at(usage, "/cache_creation_input_tokens"))
        .saturating_add(u64_at(usage, "/cache_read_input_tokens"));
    (input, u64_at(usage, "/output_tokens"))
}

impl ClaudeParser {
    /// The events of one line.
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        let Some(value) = parse_json(line) else {
            return super::unparsed(line);
        };
        match (str_at(&value, "/type"), str_at(&value, "/subtype")) {
            (Some("system"), Some("init")) => vec![AgentEvent::Init {
                session_id: str_at(&value, "/session_id").unwrap_or_default().to_owned(),
                model: str_at(&value, "/model").map(str::to_owned),
            }],
            (Some("assistant"), _) => {
                let mut events = content_events(&value, "assistant");
                let id = str_at(&value, "/message/id").map(str::to_owned);
                if let (Some(id), Some(usage)) = (id, value.pointer("/message/usage")) {
                    if self.last_message.as_deref() != Some(id.as_str()) {
                        let (input, output) = usage_tokens(usage);
                        self.input_tokens = self.input_tokens.saturating_add(input);
                        self.output_tokens = self.output_tokens.saturating_add(output);
                        self.last_message = Some(id);
                        events.push(AgentEvent::Usage {
                            input_tokens: self.input_tokens,
                            output_tokens: self.output_tokens,
                            cost_usd: None,
                        });
                    }
                }
                events
            }
            (Some("user"), _) => content_events(&value, "user"),
            (Some("result"), _) => {
                let (input, output) = value.pointer("/usage").map_or((0, 0), usage_tokens);
                let cost = value.pointer("/total_cost_usd").and_then(Value::as_f64);
                let is_error = value
                    .pointer("/is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    || str_at(&value, "/subtype").is_some_and(|s| s.starts_with("error"));
                let mut text = str_at(&value, "/result").unwrap_or_default().to_owned();
                if is_error {
                    if let Some(status) = value.pointer("/api_error_status").and_then(Value::as_u64)
                    {
                        if !text.contains(&status.to_string()) {
                            text = format!("API error status {status}: {text}");
                        }
                    }
                    if text.trim().is_empty() {
                        text = format!(
                            "the session ended with `{}`",
                            str_at(&value, "/subtype").unwrap_or("an error")
                        );
                    }
                }
                vec![
                    AgentEvent::Usage {
                        input_tokens: input,
                        output_tokens: output,
                        cost_usd: cost,
                    },
                    AgentEvent::Result { text, is_error },
                ]
            }
            _ => vec![AgentEvent::Unknown { raw: value }],
        }
    }
}

fn content_events(value: &Value, role: &str) -> Vec<AgentEvent> {
    let Some(blocks) = value.pointer("/message/content") else {
        return vec![AgentEvent::Unknown { raw: value.clone() }];
    };
    if let Some(text) = blocks.as_str() {
        return vec![AgentEvent::Message {
            role: role.to_owned(),
            text: text.to_owned(),
        }];
    }
    let mut events = Vec::new();
    for block in blocks.as_array().into_iter().flatten() {
        match str_at(block, "/type") {
            Some("text") => events.push(AgentEvent::Message {
                role: role.to_owned(),
                text: str_at(block, "/text").unwrap_or_default().to_owned(),
            }),
            Some("tool_use") => events.push(AgentEvent::ToolCall {
                id: str_at(block, "/id").unwrap_or_default().to_owned(),
                name: str_at(block, "/name").unwrap_or_default().to_owned(),
                input: block.pointer("/input").cloned().unwrap_or(Value::Null),
            }),
            Some("tool_result") => events.push(AgentEvent::ToolResult {
                id: str_at(block, "/tool_use_id").unwrap_or_default().to_owned(),
                output: tool_output(block.pointer("/content")),
                is_error: block
                    .pointer("/is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }),
            Some("thinking") | Some("redacted_thinking") => {}
            _ => events.push(AgentEvent::Unknown { raw: block.clone() }),
        }
    }
    events
}

fn tool_output(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.pointer("/text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}
