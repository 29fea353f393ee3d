//! Gemini CLI's `--output-format stream-json` lines.
//!
//! `init` (session id, model), `message` (assistant text, often in `delta` pieces),
//! `tool_use` / `tool_result`, `error`, and a final `result` with `status` and `stats`.

use serde_json::Value;

use super::{parse_json, str_at, u64_at};
use crate::pricing::Price;
use crate::AgentEvent;

/// Gathers the assistant's text pieces into the result.
#[derive(Debug)]
pub struct GeminiParser {
    price: Option<Price>,
    text: String,
}

impl GeminiParser {
    /// A parser pricing usage with `price`, the price of the requested model if known.
    pub fn new(price: Option<Price>) -> GeminiParser {
        GeminiParser {
            price,
            text: String::new(),
        }
    }

    /// The events of one line.
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        let Some(value) = parse_json(line) else {
            return super::unparsed(line);
        };
        match str_at(&value, "/type") {
            Some("init") => vec![AgentEvent::Init {
                session_id: str_at(&value, "/session_id").unwrap_or_default().to_owned(),
                model: str_at(&value, "/model").map(str::to_owned),
            }],
            Some("message") => {
                let role = str_at(&value, "/role").unwrap_or("assistant").to_owned();
                let text = str_at(&value, "/content").unwrap_or_default().to_owned();
                if role == "assistant" {
                    self.text.push_str(&text);
                }
                vec![AgentEvent::Message { role, text }]
            }
            Some("tool_use") => vec![AgentEvent::ToolCall {
                id: str_at(&value, "/tool_id").unwrap_or_default().to_owned(),
                name: str_at(&value, "/tool_name").unwrap_or_default().to_owned(),
                input: value.pointer("/parameters").cloned().unwrap_or(Value::Null),
            }],
            Some("tool_result") => vec![AgentEvent::ToolResult {
                id: str_at(&value, "/tool_id").unwrap_or_default().to_owned(),
                output: str_at(&value, "/output")
                    .or_else(|| str_at(&value, "/error/message"))
                    .unwrap_or_default()
                    .to_owned(),
                is_error: str_at(&value, "/status") == Some("error"),
            }],
            Some("error") => vec![AgentEvent::Error {
                message: str_at(&value, "/message").unwrap_or_default().to_owned(),
            }],
            Some("result") => {
                let stats = value.pointer("/stats").cloned().unwrap_or(Value::Null);
                let input = u64_at(&stats, "/input_tokens");
                let output = u64_at(&stats, "/output_tokens");
                let is_error = str_at(&value, "/status").is_some_and(|s| s != "success");
                let text = if is_error {
                    str_at(&value, "/error/message")
                        .unwrap_or("the session failed")
                        .to_owned()
                } else {
                    std::mem::take(&mut self.text)
                };
                vec![
                    AgentEvent::Usage {
                        input_tokens: input,
                        output_tokens: output,
                        cost_usd: self.price.map(|p| p.cost(input, output)),
                    },
                    AgentEvent::Result { text, is_error },
                ]
            }
            _ => vec![AgentEvent::Unknown { raw: value }],
        }
    }
}
