//! Claude Code's `--output-format stream-json` lines.
//!
//! `system/init` (session id, model), one `assistant` line per content block (text, tool_use,
//! thinking), `user` lines carrying tool results, and a final `result` line with the summed
//! usage, the CLI's own cost and `is_error` (an API error exits 1 with `subtype: success` but
//! `is_error: true`, so `subtype` alone means nothing).

use serde_json::Value;

use super::{parse_json, str_at, u64_at};
use crate::AgentEvent;

/// The parser's state: nothing but what `result` needs.
#[derive(Debug, Default)]
pub struct ClaudeParser {}

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
            (Some("assistant"), _) => content_events(&value, "assistant"),
            (Some("user"), _) => content_events(&value, "user"),
            (Some("result"), _) => {
                let usage = value.pointer("/usage");
                // Saturating: a CLI's counts are input, and must not overflow a sum.
                let input = usage.map_or(0, |u| {
                    u64_at(u, "/input_tokens")
                        .saturating_add(u64_at(u, "/cache_creation_input_tokens"))
                        .saturating_add(u64_at(u, "/cache_read_input_tokens"))
                });
                let output = usage.map_or(0, |u| u64_at(u, "/output_tokens"));
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
